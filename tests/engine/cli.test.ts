import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { FIXTURES_DIR, readGolden } from './fixtures.ts';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '..', '..', 'cli', 'bin.mjs');

async function cli(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args]);
    return { stdout, stderr, code: 0 };
  } catch (e) {
    const err = e as { stdout: string; stderr: string; code: number };
    return { stdout: err.stdout, stderr: err.stderr, code: err.code };
  }
}

describe('CLI contract (npx prunelab)', () => {
  it('score --json prints one object with model, tokens and per-block BI/angular/relMagnitude equal to the goldens', async () => {
    const dir = join(FIXTURES_DIR, 'qwen2-bias');
    const { stdout, code } = await cli(['score', '--model', dir, '--ids', join(dir, 'ids.json'), '--json']);
    expect(code).toBe(0);
    const out = JSON.parse(stdout);
    const golden = readGolden('qwen2-bias');
    expect(out.tokens).toBe(41);
    expect(out.model.modelType).toBe('qwen2');
    expect(out.blocks.map((b: { index: number }) => b.index)).toEqual([0, 1, 2, 3]);
    out.blocks.forEach((b: { bi: number; angular: number; relMagnitude: number }, i: number) => {
      expect(Math.abs(b.bi - golden.blocks[i].bi)).toBeLessThan(1e-4);
      expect(Math.abs(b.angular - golden.blocks[i].angular)).toBeLessThan(1e-4);
      expect(Math.abs(b.relMagnitude - golden.blocks[i].relMagnitude)).toBeLessThan(1e-4);
    });
  });

  it('ppl --remove --json follows the contract and matches the golden removal', async () => {
    const dir = join(FIXTURES_DIR, 'llama3-rope');
    const golden = readGolden('llama3-rope');
    const { stdout, code } = await cli(['ppl', '--model', dir, '--ids', join(dir, 'ids.json'), '--remove', '2,1', '--json']);
    expect(code).toBe(0);
    const out = JSON.parse(stdout);
    expect(Object.keys(out).sort()).toEqual(['memory', 'nll', 'ppl', 'removed', 'timing', 'tokens']);
    expect(out.memory).toEqual({ mode: 'resident', gpuPeakBytes: 0, weightBytes: expect.any(Number) });
    expect(out.removed).toEqual([1, 2]);
    expect(out.tokens).toBe(golden.removal.nll.count);
    expect(Math.abs(out.ppl - golden.removal.nll.ppl) / golden.removal.nll.ppl).toBeLessThan(1e-4);
  });

  it('prune writes a checkpoint whose ppl equals ppl --remove on the original', async () => {
    for (const name of ['gpt2', 'qwen3-qknorm']) {
      const dir = join(FIXTURES_DIR, name);
      const out = mkdtempSync(join(tmpdir(), `prunelab-pruned-${name}-`));
      expect((await cli(['prune', '--model', dir, '--remove', '1,2', '--out', out])).code).toBe(0);
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
      expect(config.n_layer ?? config.num_hidden_layers).toBe(2);
      const pruned = JSON.parse((await cli(['ppl', '--model', out, '--ids', join(dir, 'ids.json'), '--json'])).stdout);
      const removed = JSON.parse((await cli(['ppl', '--model', dir, '--ids', join(dir, 'ids.json'), '--remove', '1,2', '--json'])).stdout);
      expect(pruned.tokens).toBe(removed.tokens);
      expect(Math.abs(pruned.ppl - removed.ppl) / removed.ppl, name).toBeLessThan(1e-6);
    }
  });

  it('errors go to stderr with a non-zero exit and name the problem', async () => {
    const dir = join(FIXTURES_DIR, 'llama-gqa');
    const bad = await cli(['ppl', '--model', dir, '--ids', join(dir, 'ids.json'), '--remove', '9', '--json']);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/block 9 does not exist \(the model has blocks 0\.\.3\)/);
    const noTok = await cli(['score', '--model', dir, '--text', join(dir, 'config.json')]);
    expect(noTok.stderr).toMatch(/no tokenizer\.json/);
    const unknown = await cli(['frobnicate']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
  });
});
