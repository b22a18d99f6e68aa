// Heal checks (run by tests/browser/run.mjs): a link that asks for a healed cut refits it on opening and the
// compare panel shows original / pruned / healed; the healed zip, loaded by the CLI, gives the perplexity the
// lab shows; another cut drops the heal, Heal heals it again; a cut from block 0 cannot be healed.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { unzipSync } from 'fflate';
import { assertBackend, newLabPage, waitForModel } from './lab-page.mjs';
import { removalKey as planRemovalKey } from '../../src/engine/plan.ts';

export const backends = ['cpu', 'webgpu'];

const EVALUATION = 'public/calibration/moby-dick-eval.txt';
/** The compare panel's perplexity windows (state.svelte.ts evalWindows): 4 × 128 tokens of moby-dick-eval. */
const EVAL = { seqLen: 128, maxSequences: 4 };
/** Calibration of the fit: 8 × 128 tokens of moby-dick (more rows than the hidden size, 128). */
const CALIBRATION = { seqLen: 128, maxSequences: 8 };
const REMOVED = [4, 5, 6];

/** The lab's key for a whole-block removal (the engine's one removal key). */
const removalKey = (blocks = []) => planRemovalKey({ blocks });

function base64url(text) {
  return Buffer.from(text, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64url(text) {
  return JSON.parse(Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8'));
}

export async function setup({ browser, baseUrl, backend }) {
  const { context, page, pageErrors } = await newLabPage(browser, { viewport: { width: 1280, height: 900 } });
  const link = {
    m: ['b', 'sotu-llama'],
    c: ['b', 'moby-dick', CALIBRATION.maxSequences, CALIBRATION.seqLen],
    k: 'bi',
    n: 1,
    r: REMOVED,
    ra: [],
    rm: [],
    p: 'The state of the Union is',
    g: [8, 0, 0, 0],
    h: 1,
  };
  await page.goto(`${baseUrl}?backend=${backend}#v1.${base64url(JSON.stringify(link))}`);
  return { context, page, pageErrors };
}

export async function teardown({ context }) {
  await context?.close().catch(() => {});
}

/** Waits until the heal bar is in `state` and, when healed, the healed column's output and perplexity are done for `blocks`. */
async function waitHealed(page, blocks, backend) {
  // SwiftShader (software WebGPU) on shared cores fits and measures several times slower than the CPU backend.
  const timeout = backend === 'webgpu' ? 480_000 : 150_000;
  await page.waitForFunction(
    (key) => {
      const q = (id) => document.querySelector(`[data-testid=${id}]`);
      const bar = q('heal-bar');
      if (bar?.dataset.state === 'error') return true;
      const idle = (el) => el && el.getAttribute('data-busy') === 'false' && el.getAttribute('data-removal') === key;
      return bar?.dataset.state === 'healed' && idle(q('output-healed')) && idle(q('ppl-healed')) && q('ppl-healed').hasAttribute('data-ppl') && idle(q('ppl-pruned'));
    },
    removalKey(blocks),
    { timeout },
  );
  const state = await page.getByTestId('heal-bar').getAttribute('data-state');
  if (state === 'error') assert.fail(`healing failed: ${await page.getByTestId('heal-error').textContent()}`);
}

async function pplOf(page, side) {
  return Number(await page.getByTestId(`ppl-${side}`).getAttribute('data-ppl'));
}

export const checks = [
  {
    name: 'heal: a link with a healed cut refits it on opening; original, pruned and healed side by side, healed below pruned',
    timeout: 540_000,
    async run({ page, backend, screenshotDir }) {
      await waitForModel(page);
      await assertBackend(page, backend);
      await waitHealed(page, REMOVED, backend);
      assert.match(await page.getByTestId('heal-summary').textContent(), /span \[4–6\] replaced by one linear map folded into block 3/);
      assert.equal(await page.locator('[data-testid^=output-]').count(), 3);
      const [original, pruned, healed] = [await pplOf(page, 'original'), await pplOf(page, 'pruned'), await pplOf(page, 'healed')];
      assert.ok(healed < pruned, `healed ${healed} should be below pruned ${pruned}`);
      assert.ok((await page.getByTestId('generated-healed').textContent()).length > 0, 'the healed column generated text');
      // The address bar keeps the heal (h: 1), not the map.
      await page.waitForFunction(() => location.hash.startsWith('#v1.'), null, { timeout: 5_000 });
      const wire = fromBase64url((await page.evaluate(() => location.hash)).slice(4).split('.')[0]);
      assert.equal(wire.h, 1);
      assert.deepEqual(wire.r, REMOVED);
      await page.getByTestId('compare-panel').screenshot({ path: join(screenshotDir, `heal-compare-${backend}.png`) });
      console.log(`#   perplexity original ${original.toFixed(2)}, pruned ${pruned.toFixed(2)}, healed ${healed.toFixed(2)}`);
    },
  },
  {
    name: 'heal: the healed zip, loaded by `prunelab ppl`, gives the lab’s healed perplexity (1e-4 relative)',
    timeout: 90_000,
    backends: ['cpu'],
    async run({ page, run }) {
      const appPpl = await pplOf(page, 'healed');
      const [file] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.getByTestId('export-healed-zip').click()]);
      assert.equal(file.suggestedFilename(), 'sotu-llama-healed.zip');
      const dir = mkdtempSync(join(tmpdir(), 'prunelab-healed-zip-'));
      try {
        for (const [name, bytes] of Object.entries(unzipSync(new Uint8Array(readFileSync(await file.path()))))) {
          if (name.endsWith('/')) continue;
          mkdirSync(join(dir, dirname(name)), { recursive: true });
          writeFileSync(join(dir, name), bytes);
        }
        const folder = join(dir, 'sotu-llama-healed');
        assert.equal(JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')).num_hidden_layers, 12 - REMOVED.length);
        const note = readFileSync(join(folder, 'PRUNELAB.md'), 'utf8');
        assert.match(note, /## Healing/);
        assert.match(note, /\| \[4–6\] \| 3 \(3\) \| 1024 \|/);
        const args = ['cli/bin.mjs', 'ppl', '--model', folder, '--text', EVALUATION, '--seq-len', String(EVAL.seqLen), '--max-sequences', String(EVAL.maxSequences), '--json'];
        const r = await run(process.execPath, args);
        assert.equal(r.code, 0, `prunelab ppl failed: ${r.stderr}`);
        const cli = JSON.parse(r.stdout);
        assert.ok(Math.abs(cli.ppl / appPpl - 1) <= 1e-4, `CLI ppl ${cli.ppl} vs lab ${appPpl}`);
        console.log(`#   healed perplexity lab ${appPpl.toFixed(4)} vs CLI on the zip ${cli.ppl.toFixed(4)}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
  {
    name: 'heal: another cut drops the heal; Heal fits the new cut; a cut from block 0 cannot be healed',
    timeout: 540_000,
    async run({ page, backend }) {
      // Cutting block 7 too makes the span [4–7]: the old map does not apply any more.
      await page.locator('[data-testid=block-cell][data-index="7"]').click();
      await page.waitForFunction(() => document.querySelector('[data-testid=heal-bar]')?.dataset.state === 'none', null, { timeout: 10_000 });
      assert.equal(await page.locator('[data-testid^=output-]').count(), 2);
      await page.getByTestId('heal').click();
      await waitHealed(page, [...REMOVED, 7], backend);
      assert.match(await page.getByTestId('heal-summary').textContent(), /span \[4–7\]/);
      // Block 0 has no block before it to fold a map into.
      await page.locator('[data-testid=block-cell][data-index="0"]').click();
      await page.waitForFunction(() => document.querySelector('[data-testid=heal-bar]')?.dataset.state === 'none', null, { timeout: 10_000 });
      assert.equal(await page.getByTestId('heal').isDisabled(), true);
      assert.match(await page.getByTestId('heal-hint').textContent(), /starts at block 0/);
    },
  },
  {
    name: 'heal: no uncaught errors in the page',
    async run({ pageErrors }) {
      assert.deepEqual(pageErrors, []);
    },
  },
];
