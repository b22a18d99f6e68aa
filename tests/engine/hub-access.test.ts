/**
 * Gated repositories and commits against a stand-in hub (a local HTTP server with huggingface.co's URL
 * layout, tree and revision APIs) that answers 401 without a token and 403 with one that was not granted.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Command, parseFlags } from '../../cli/args.ts';
import { exportCommandWith } from '../../cli/commands/export.ts';
import { explainHubStatus, hubAuthHeaders, hubModelSource, listHubFiles, resolveHubCommit } from '../../src/engine/hub.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { FIXTURES_DIR } from './fixtures.ts';
import { type ServedFolders, serveFolders } from './http-server.ts';

const TOKEN = 'hf_right_token';
const COMMIT = 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00';
const REPO = 'someorg/gated-llama';
const DIR = join(FIXTURES_DIR, 'llama-gqa');

describe('gated hub repositories and commits (stand-in hub: 401 without a token, 403 with a wrong one)', () => {
  let hub: ServedFolders;
  const options = () => ({ origin: hub.origin, allowed: [hub.origin] });
  beforeAll(async () => {
    hub = await serveFolders(
      { [`/${REPO}/resolve/${COMMIT}/`]: DIR, [`/${REPO}/resolve/main/`]: DIR },
      {
        hubTrees: { [`/api/models/${REPO}/tree/${COMMIT}`]: DIR },
        revisions: { [`/api/models/${REPO}/revision/main`]: COMMIT },
        gated: { [`/${REPO}/`]: TOKEN },
      },
    );
  });
  afterAll(() => hub.close());

  it('without a token: the listing says the repository is gated and how to get in', async () => {
    await expect(listHubFiles(REPO, options())).rejects.toThrow(/someorg\/gated-llama is gated or private: huggingface.co answers only with an access token.*HF_TOKEN/);
  });

  it('with a token the account was not granted: 403 explained (accept the license)', async () => {
    await expect(listHubFiles(REPO, { ...options(), token: 'hf_someone_else' })).rejects.toThrow(/does not open someorg\/gated-llama \(403\).*accept its license/);
  });

  it('with the right token: listed at the commit main points at, every request carrying the token', async () => {
    const before = hub.authorizations.length;
    const listing = await listHubFiles(REPO, { ...options(), token: TOKEN });
    expect(listing.commit).toBe(COMMIT);
    expect(listing.revision).toBe('main');
    expect(listing.files.map((f) => f.path)).toEqual(['config.json', 'model.safetensors']);
    expect(hub.requests.slice(before)).toContain(`/api/models/${REPO}/tree/${COMMIT}`);
    expect(hub.authorizations.slice(before).every((a) => a === `Bearer ${TOKEN}`)).toBe(true);
    expect(await resolveHubCommit(REPO, { ...options(), token: TOKEN })).toBe(COMMIT);
    // a commit is its own answer: no request
    const count = hub.requests.length;
    expect(await resolveHubCommit(`${REPO}@${COMMIT}`, options())).toBe(COMMIT);
    expect(hub.requests.length).toBe(count);
  });

  it('loads at the commit with the token (the same numbers as the folder) and explains itself without one', async () => {
    const ids = [[1, 5, 9, 2, 7, 3]];
    const viaHub = await Model.load(hubModelSource(`${REPO}@${COMMIT}`, { ...options(), token: TOKEN, caches: null }), 'cpu');
    const local = await Model.load(hubModelSource(`${REPO}@main`, { ...options(), token: TOKEN, caches: null }), 'cpu');
    const a = await viaHub.perplexity(ids, makePlan(viaHub.spec.layers));
    const b = await local.perplexity(ids, makePlan(local.spec.layers));
    expect(a.ppl).toBe(b.ppl);
    await expect(Model.load(hubModelSource(`${REPO}@${COMMIT}`, { ...options(), caches: null }), 'cpu')).rejects.toThrow(/gated or private/);
  });

  it('the token goes to the hub origin only', () => {
    expect(hubAuthHeaders('https://huggingface.co/x/y/resolve/main/config.json', 'https://huggingface.co', TOKEN)).toEqual({ authorization: `Bearer ${TOKEN}` });
    expect(hubAuthHeaders('https://cdn-lfs.hf.co/x', 'https://huggingface.co', TOKEN)).toEqual({});
    expect(hubAuthHeaders('https://evil.example/huggingface.co/', 'https://huggingface.co', TOKEN)).toEqual({});
    expect(explainHubStatus(404, REPO, false)).toBeNull();
  });

  it('prunelab export resolves main to its commit: the script and the mergekit config name it; without HF_TOKEN it says the repository is gated', async () => {
    const run = async (args: string[], token?: string) => {
      const command: Command = exportCommandWith({ origin: hub.origin, token });
      const lines: string[] = [];
      await command.run(parseFlags(command, args, [command]), { json: false, print: (t) => lines.push(t), warn: () => {} });
      return lines.join('\n');
    };
    const script = await run(['--model', REPO, '--remove', '1', '--format', 'transformers'], TOKEN);
    expect(script).toMatch(new RegExp(`^REVISION = "${COMMIT}" `, 'm'));
    expect(script).toContain(`Weights: ${REPO} at commit ${COMMIT} (revision "main" when scored).`);
    const yaml = await run(['--model', REPO, '--remove', '1', '--format', 'mergekit'], TOKEN);
    expect(yaml).toContain(`- model: "${REPO}@${COMMIT}"`);
    expect(yaml).toMatch(/^dtype: float32$/m);
    await expect(run(['--model', REPO, '--remove', '1', '--format', 'mergekit'], '')).rejects.toThrow(/gated or private/);
  });
});
