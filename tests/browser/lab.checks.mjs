// End-to-end checks of the lab page (run by tests/browser/run.mjs). One page is shared by the checks, in
// order: they build on each other like a person's session (load, score, cut, compare, mistakes, cancel).
// The core flow (load, score, cut, remove the N lowest) runs on both backends, each against the CLI on the
// same backend; the rest runs on the CPU backend only.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { assertBackend, newLabPage, setNumber, waitForModel } from './lab-page.mjs';
import { removalKey as planRemovalKey } from '../../src/engine/plan.ts';

export const backends = ['cpu', 'webgpu'];

const MODEL = 'public/models/sotu-llama';
const CALIBRATION = 'public/calibration/moby-dick.txt';
const EVALUATION = 'public/calibration/moby-dick-eval.txt';
/** Small settings keep the suite fast on two software-rendered cores. */
const SCORE = { seqLen: 64, maxSequences: 4 };
/** The page's evaluation windows (state.svelte.ts evalWindows). */
const EVAL = { seqLen: 128, maxSequences: 4 };
const CUT = 1;

/** The lab's key for a whole-block removal (the engine's one removal key). */
const removalKey = (blocks = []) => planRemovalKey({ blocks });

async function cliJson(run, args) {
  const r = await run(process.execPath, ['cli/bin.mjs', ...args, '--json']);
  if (r.code !== 0) throw new Error(`prunelab ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/**
 * How far the page may be from the CLI on the same backend. CPU: onnxruntime-web (wasm) in the page vs
 * onnxruntime-node in the CLI; WebGPU: the same WGSL on Chromium's Dawn vs the webgpu package's Dawn, both on
 * SwiftShader. Measured worst (2026-11-30): CPU 2.2e-9 on BI/angular/relMagnitude and 7.3e-8 relative on
 * perplexity; WebGPU 0 and 0 (bit-identical). Block averages are held to 1e-5 (tests/webgpu/compare.ts
 * BLOCK_AVERAGE), perplexity to 1e-6 relative (14× the CPU's measured difference).
 */
const TOLERANCE = { metric: 1e-5, pplRelative: 1e-6 };

/** The CLI's numbers for the same inputs on the same backend, computed while the app builds. */
export async function prepare({ run, backend }) {
  const score = await cliJson(run, [
    'score',
    '--model',
    MODEL,
    '--text',
    CALIBRATION,
    '--seq-len',
    String(SCORE.seqLen),
    '--max-sequences',
    String(SCORE.maxSequences),
    '--backend',
    backend,
  ]);
  const ppl = await cliJson(run, [
    'ppl',
    '--model',
    MODEL,
    '--text',
    EVALUATION,
    '--seq-len',
    String(EVAL.seqLen),
    '--max-sequences',
    String(EVAL.maxSequences),
    '--remove',
    String(CUT),
    '--backend',
    backend,
  ]);
  return { score, ppl };
}

export async function setup({ browser, baseUrl, backend }) {
  const { context, page, pageErrors } = await newLabPage(browser);
  await page.goto(`${baseUrl}?backend=${backend}`);
  return { context, page, pageErrors };
}

export async function teardown({ context }) {
  await context?.close();
}

/** Waits until both sides' outputs and perplexity are computed for the given removal. */
async function waitCompareIdle(page, key, timeout = 60_000) {
  await page.waitForFunction(
    (key) => {
      const q = (id) => document.querySelector(`[data-testid=${id}]`);
      const idle = (el) => el && el.getAttribute('data-busy') === 'false' && el.getAttribute('data-removal') === key;
      return idle(q('output-pruned')) && idle(q('ppl-pruned')) && q('ppl-pruned').hasAttribute('data-ppl') && q('output-original')?.getAttribute('data-busy') === 'false';
    },
    key,
    { timeout },
  );
}

async function compareState(page) {
  return page.evaluate(() => {
    const q = (id) => document.querySelector(`[data-testid=${id}]`);
    return {
      prunedText: q('generated-pruned')?.textContent ?? '',
      originalText: q('generated-original')?.textContent ?? '',
      prunedPpl: Number(q('ppl-pruned')?.getAttribute('data-ppl')),
      originalPpl: Number(q('ppl-original')?.getAttribute('data-ppl')),
      prunedNext: q('next-pruned')?.textContent ?? '',
    };
  });
}

export const checks = [
  {
    name: 'the page opens on the embedded model (sotu-llama, 12 blocks) on the backend asked for (no fallback to the CPU while a WebGPU adapter exists)',
    timeout: 120_000,
    async run({ page, backend }) {
      await waitForModel(page);
      assert.equal(await page.getByTestId('model-blocks').textContent(), '12');
      console.log(`#   ${backend}: ${await assertBackend(page, backend)}`);
    },
  },
  {
    name: 'Score gives one bar per block and BI/angular/relMagnitude equal `prunelab score --json` on the same backend',
    timeout: 120_000,
    async run({ page, prepared }) {
      if (prepared?.error) throw prepared.error;
      await setNumber(page, 'cal-sequences', SCORE.maxSequences);
      await setNumber(page, 'cal-seqlen', SCORE.seqLen);
      await page.getByTestId('score-button').click();
      await page.waitForSelector('[data-testid=score-controls][data-state=done]', { timeout: 110_000 });
      const bars = await page.$$eval('[data-testid=bar]', (els) =>
        els.map((e) => ({ index: Number(e.dataset.index), bi: Number(e.dataset.bi), angular: Number(e.dataset.angular), relMagnitude: Number(e.dataset.relMagnitude) })),
      );
      const table = await page.$$eval('[data-testid=score-table] tbody tr', (rows) =>
        rows.map((r) => ({ index: Number(r.dataset.index), bi: Number(r.querySelector('[data-metric=bi]')?.dataset.value) })),
      );
      const cli = prepared.score;
      assert.equal(bars.length, cli.blocks.length, 'one bar per block');
      assert.equal(table.length, cli.blocks.length, 'one table row per block');
      const tolerance = TOLERANCE.metric;
      let worst = 0;
      for (const expected of cli.blocks) {
        const bar = bars.find((b) => b.index === expected.index);
        const row = table.find((r) => r.index === expected.index);
        for (const metric of ['bi', 'angular', 'relMagnitude']) {
          const diff = Math.abs(bar[metric] - expected[metric]);
          worst = Math.max(worst, diff);
          assert.ok(diff <= tolerance, `block ${expected.index} ${metric}: page ${bar[metric]} vs CLI ${expected[metric]}`);
        }
        assert.ok(Math.abs(row.bi - expected.bi) <= tolerance, `table row ${expected.index}`);
      }
      const summary = await page.getByTestId('score-summary').textContent();
      assert.match(summary, new RegExp(`${cli.tokens} tokens`), `summary "${summary}" names ${cli.tokens} tokens`);
      console.log(`#   ${cli.blocks.length} blocks, ${cli.tokens} tokens, max |page − CLI ${cli.model.backend}| = ${worst.toExponential(2)}`);
    },
  },
  {
    name: 'hovering a bar shows its exact value and rank',
    async run({ page }) {
      await page.locator('[data-testid=bar][data-index="0"] rect.hit').hover();
      const tip = await page.getByTestId('chart-tooltip').textContent();
      assert.match(tip, /Block 0/);
      assert.match(tip, /rank \d+ of 12/);
      await page.mouse.move(5, 5);
    },
  },
  {
    name: `clicking bar ${CUT} cuts the block; the pruned output and perplexity change (perplexity = \`prunelab ppl --remove ${CUT}\`)`,
    timeout: 120_000,
    async run({ page, prepared }) {
      if (prepared?.error) throw prepared.error;
      await waitCompareIdle(page, removalKey([]), 100_000);
      const before = await compareState(page);
      assert.ok(before.prunedText.length > 0, 'the pruned side generated text');
      await page.locator(`[data-testid=bar][data-index="${CUT}"] rect.hit`).click();
      assert.equal(await page.locator(`[data-testid=bar][data-index="${CUT}"]`).getAttribute('data-cut'), 'block');
      assert.equal(await page.locator(`[data-testid=block-cell][data-index="${CUT}"]`).getAttribute('data-cut'), 'block');
      assert.equal(await page.getByTestId('removal-summary').getAttribute('data-removed-blocks'), String(CUT));
      await waitCompareIdle(page, removalKey([CUT]), 100_000);
      const after = await compareState(page);
      assert.equal(after.originalPpl, before.originalPpl, 'the original perplexity does not move');
      assert.notEqual(after.prunedPpl, before.prunedPpl, 'the pruned perplexity changed');
      assert.ok(after.prunedText !== before.prunedText || after.prunedNext !== before.prunedNext, 'the pruned output changed');
      const expected = prepared.ppl.ppl;
      const relative = Math.abs(after.prunedPpl / expected - 1);
      assert.ok(relative <= TOLERANCE.pplRelative, `pruned perplexity ${after.prunedPpl} vs CLI ${expected}`);
      console.log(
        `#   perplexity ${before.prunedPpl.toFixed(2)} -> ${after.prunedPpl.toFixed(2)} with block ${CUT} cut (CLI ${expected.toFixed(2)}; relative difference ${relative.toExponential(2)})`,
      );
    },
  },
  {
    name: '"Remove the N lowest" cuts the N lowest blocks by the metric shown (BI, angular, relative magnitude), for N = 3 and every N where the metrics disagree',
    timeout: 60_000,
    async run({ page }) {
      const bars = await page.$$eval('[data-testid=bar]', (els) =>
        els.map((e) => ({ index: Number(e.dataset.index), bi: Number(e.dataset.bi), angular: Number(e.dataset.angular), relMagnitude: Number(e.dataset.relMagnitude) })),
      );
      const metrics = [
        ['angular', 'metric-angular'],
        ['relMagnitude', 'metric-relMagnitude'],
        ['bi', 'metric-bi'],
      ];
      // Independently of the lab's ranking code: sort by the metric's value, ties by block index.
      const lowest = (metric, n) =>
        [...bars]
          .sort((a, b) => a[metric] - b[metric] || a.index - b.index)
          .slice(0, n)
          .map((b) => b.index)
          .sort((a, b) => a - b)
          .join(',');
      // Where all metrics pick the same blocks, "by the metric shown" and "always by BI" look alike.
      const disagree = bars.map((_, n) => n).filter((n) => n > 0 && new Set(metrics.map(([m]) => lowest(m, n))).size > 1);
      assert.ok(disagree.length > 0, 'on these scores every metric picks the same N lowest for every N: nothing tells the metrics apart');
      const cut = () => page.getByTestId('removal-summary').getAttribute('data-removed-blocks');
      for (const n of [3, ...disagree]) {
        await page.getByTestId('lowest-slider').fill(String(n));
        for (const [metric, testId] of metrics) {
          await page.getByTestId(testId).click();
          assert.equal(await page.locator('[data-testid=influence-chart]').getAttribute('data-metric'), metric);
          assert.equal(await cut(), lowest(metric, n), `the ${n} lowest by ${metric}`);
        }
      }
      await page.getByTestId('lowest-slider').fill('3');
      assert.equal(await cut(), lowest('bi', 3));
      console.log(`#   N = 3 and ${disagree.join(', ')} (where the metrics pick different blocks) checked for each metric`);
    },
  },
  {
    name: 'screenshots at 1280×800 in light and dark, 3 lowest-BI blocks cut',
    timeout: 120_000,
    backends: ['cpu'],
    async run({ page, screenshotDir }) {
      const blocks = await page.getByTestId('removal-summary').getAttribute('data-removed-blocks');
      assert.equal(blocks.split(',').length, 3, `three blocks cut, got "${blocks}"`);
      await waitCompareIdle(page, removalKey(blocks.split(',').map(Number)), 100_000);
      await page.screenshot({ path: join(screenshotDir, 'lab.png') });
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: join(screenshotDir, 'lab-dark.png') });
      await page.screenshot({ path: join(screenshotDir, 'lab-dark-full.png'), fullPage: true });
      await page.emulateMedia({ colorScheme: 'light' });
      await page.screenshot({ path: join(screenshotDir, 'lab-full.png'), fullPage: true });
    },
  },
  {
    name: 'switching the backend reloads the model and keeps the cut, the prompt and the scores (marked as from the old backend)',
    timeout: 120_000,
    backends: ['cpu'],
    async run({ page }) {
      const blocks = await page.getByTestId('removal-summary').getAttribute('data-removed-blocks');
      const prompt = await page.getByTestId('prompt').inputValue();
      const hash = await page.evaluate(() => location.hash);
      // The sweep's estimate comes from the Score pass measured on this backend, and is dropped with it.
      assert.match(await page.getByTestId('sweep-estimate').textContent(), /^≈ \d+ (s|min)$/, 'a scored model gives the sweep a time estimate');
      for (const [choice, kind] of [
        ['webgpu', 'webgpu'],
        ['cpu', 'cpu'],
      ]) {
        await page.getByTestId('backend-choice').selectOption(choice);
        await page.waitForSelector(`[data-testid=backend-badge][data-backend=${kind}]`, { timeout: 90_000 });
        await page.waitForFunction(() => !document.body.textContent.includes('Loading sotu-llama'), null, { timeout: 90_000 });
        assert.equal(await page.getByTestId('removal-summary').getAttribute('data-removed-blocks'), blocks, `the cut survives the switch to ${choice}`);
        assert.equal(await page.getByTestId('prompt').inputValue(), prompt, `the prompt survives the switch to ${choice}`);
        assert.equal(await page.evaluate(() => location.hash), hash, `the experiment (URL state) is unchanged after the switch to ${choice}`);
      }
      assert.equal(await page.getByTestId('sweep-estimate').textContent(), 'time unknown until a first pass', 'no estimate from another backend’s timing');
      const notice = page.locator('[data-testid=notice]').filter({ hasText: 'measured on the webgpu backend' });
      await notice.waitFor({ timeout: 10_000 });
      await notice.getByRole('button', { name: 'Dismiss' }).click();
      await waitCompareIdle(page, removalKey(blocks.split(',').map(Number)), 100_000);
    },
  },
  {
    name: 'an unreachable or unknown hub id shows one clear notice and the lab keeps working',
    timeout: 90_000,
    backends: ['cpu'],
    async run({ page }) {
      const id = 'no-such-owner/no-such-model-prunelab';
      await page.getByTestId('hub-id').fill(id);
      await page.getByTestId('hub-load').click();
      const notice = page.locator('[data-testid=notice][data-level=error]').filter({ hasText: id });
      await notice.waitFor({ timeout: 60_000 });
      assert.match(await notice.textContent(), /Could not load/);
      assert.equal(await page.getByTestId('model-name').textContent(), 'sotu-llama', 'the current model stays loaded');
      await notice.getByRole('button', { name: 'Dismiss' }).click();
      // Still usable: generate again with another prompt.
      await page.getByTestId('prompt').fill('We must');
      await page.getByTestId('generate').click();
      await page.waitForFunction(
        () =>
          document.querySelector('[data-testid=output-original]')?.getAttribute('data-busy') === 'false' &&
          document.querySelector('[data-testid=generated-original]')?.textContent?.length > 0,
        null,
        { timeout: 60_000 },
      );
    },
  },
  {
    name: 'a broken model folder (unsupported config.json) shows a notice naming the problem',
    timeout: 60_000,
    backends: ['cpu'],
    async run({ page }) {
      await page.getByTestId('files-input').setInputFiles([
        { name: 'config.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify({ model_type: 'bert', hidden_size: 8 })) },
        { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from([1, 2, 3]) },
      ]);
      const notice = page.locator('[data-testid=notice][data-level=error]').filter({ hasText: 'model_type' });
      await notice.waitFor({ timeout: 50_000 });
      assert.match(await notice.textContent(), /config\.json/);
      assert.equal(await page.getByTestId('model-name').textContent(), 'sotu-llama');
      await notice.getByRole('button', { name: 'Dismiss' }).click();
    },
  },
  {
    name: 'the page stays responsive while scoring runs (frame round-trips < 1 s), and Cancel stops it',
    timeout: 90_000,
    backends: ['cpu'],
    async run({ page }) {
      await setNumber(page, 'cal-sequences', 400);
      await setNumber(page, 'cal-seqlen', 128);
      await page.getByTestId('score-button').click();
      await page.waitForSelector('[data-testid=score-controls][data-state=running]');
      await page.waitForFunction(() => /^\s*[1-9][\d,]* \//.test(document.querySelector('[data-testid=score-progress]')?.textContent ?? ''), null, { timeout: 60_000 });
      const rounds = [];
      for (let i = 0; i < 8; i++) {
        const t = Date.now();
        await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve())));
        rounds.push(Date.now() - t);
        await page.waitForTimeout(100);
      }
      // The UI reacts while the worker computes: switching the metric re-renders the chart at once.
      const t = Date.now();
      await page.getByTestId('metric-angular').click();
      await page.waitForSelector('[data-testid=influence-chart][data-metric=angular]', { timeout: 1_000 });
      const switchMs = Date.now() - t;
      assert.equal(await page.locator('[data-testid=score-controls]').getAttribute('data-state'), 'running', 'scoring was still running while measured');
      assert.ok(Math.max(...rounds) < 1_000, `frame round-trips ${rounds.join(', ')} ms`);
      await page.getByTestId('score-cancel').click();
      await page.waitForSelector('[data-testid=score-controls][data-state=partial]', { timeout: 15_000 });
      await page.getByTestId('metric-bi').click();
      console.log(`#   frame round-trips during scoring: max ${Math.max(...rounds)} ms; metric switch ${switchMs} ms; cancel ok`);
    },
  },
  {
    name: 'a model folder picked from disk (HF layout) loads and runs',
    timeout: 90_000,
    backends: ['cpu'],
    async run({ page, root }) {
      const files = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].map((f) => join(root, MODEL, f));
      await page.getByTestId('files-input').setInputFiles(files);
      await page.waitForFunction(() => document.querySelector('[data-testid=model-name]')?.textContent === 'local files', null, { timeout: 60_000 });
      assert.equal(await page.getByTestId('model-blocks').textContent(), '12');
      await page.waitForSelector('[data-testid=next-original] li', { timeout: 60_000 });
    },
  },
  {
    name: 'no uncaught errors in the page',
    async run({ pageErrors }) {
      assert.deepEqual(pageErrors, []);
    },
  },
];
