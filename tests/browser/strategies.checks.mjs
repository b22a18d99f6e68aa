// End-to-end checks of the Strategies section (run by tests/browser/run.mjs): sweep, heatmap, logit lens,
// downstream check, speed. One page, checks in order like a person's session; the CLI's numbers for the
// same inputs are computed while the app builds. Small settings keep it well under 90 s on two cores.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setNumber } from './lab-page.mjs';

const MODEL = 'public/models/sotu-llama';
const CALIBRATION = 'public/calibration/moby-dick.txt';
const EVALUATION = 'public/calibration/moby-dick-eval.txt';
/** 1 × 64 tokens of calibration and of evaluation text (the page's default is 2 × 64): keeps SLEB's 33 passes short. */
const WINDOWS = { seqLen: 64, maxSequences: 1 };
const SWEEP = { strategies: ['bi', 'reverse', 'sleb'], maxRemoved: 3 };
/** The heatmap cell clicked: (i, j) cuts blocks i … j − 1. */
const CELL = { i: 2, j: 5 };
const CELL_BLOCKS = [2, 3, 4];
/** A hand-made task file: the upload path, and a known answer for the CLI to agree on. */
const MC_JSONL = [
  { question: 'The state of the', choices: ['Union', 'banana', 'seven'], answer: 0 },
  { question: 'We the people of the United', choices: ['States', 'spoons'], answer: 0 },
  { question: 'Call me', choices: ['Ishmael', 'tomorrow', 'whale'], answer: 0 },
]
  .map((item) => JSON.stringify(item))
  .join('\n');

// The lab's removal key (src/engine/plan.ts removalKey): ascending whole blocks, no halves.
const removalKey = (blocks = []) => `b${[...blocks].sort((a, b) => a - b).join(',')}|a|m`;

async function cliJson(run, args) {
  const r = await run(process.execPath, ['cli/bin.mjs', ...args, '--json']);
  if (r.code !== 0) throw new Error(`prunelab ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export async function prepare({ run }) {
  const dir = mkdtempSync(join(tmpdir(), 'prunelab-strategies-'));
  const tasks = join(dir, 'tasks.jsonl');
  writeFileSync(tasks, `${MC_JSONL}\n`);
  const windows = ['--seq-len', String(WINDOWS.seqLen), '--max-sequences', String(WINDOWS.maxSequences)];
  const sweep = await cliJson(run, [
    'sweep',
    '--model',
    MODEL,
    '--text',
    CALIBRATION,
    '--eval-text',
    EVALUATION,
    ...windows,
    '--strategies',
    SWEEP.strategies.join(','),
    '--max-removed',
    String(SWEEP.maxRemoved),
  ]);
  const mc = await cliJson(run, ['mc', '--model', MODEL, '--tasks', tasks, '--remove', CELL_BLOCKS.join(',')]);
  // The heatmap's first look uses the page's default 2 × 64 calibration tokens.
  const score = await cliJson(run, ['score', '--model', MODEL, '--text', CALIBRATION, '--seq-len', '64', '--max-sequences', '2']);
  return { sweep, mc, score };
}

export async function setup({ browser, baseUrl, backend }) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => {
    pageErrors.push(e.message);
    console.log(`#   page error: ${e.stack ?? e.message}`);
  });
  await page.goto(`${baseUrl}?backend=${backend}`);
  return { context, page, pageErrors };
}

export async function teardown({ context }) {
  await context?.close();
}

async function backendInUse(page) {
  return page.getByTestId('backend-badge').getAttribute('data-backend');
}

const visible = (text) => text.replace(/\n/g, '↵').replace(/^ /, '␣');

export const checks = [
  {
    name: 'strategies: the heatmap shows L(L+1)/2 cells; its neighbour cells (i, i+1) equal `prunelab score` (cos = 1 − BI, angular)',
    timeout: 120_000,
    async run({ page, prepared }) {
      if (prepared?.error) throw prepared.error;
      await page.waitForFunction(() => document.querySelector('[data-testid=model-name]')?.textContent === 'sotu-llama', null, { timeout: 110_000 });
      await page.waitForSelector('[data-testid=similarity-heatmap][data-states="13"]', { timeout: 60_000 });
      const cells = await page.$$eval('[data-testid=heat-cell]', (els) =>
        els.map((e) => ({ i: Number(e.dataset.i), j: Number(e.dataset.j), cos: Number(e.dataset.cos), angular: Number(e.dataset.angular) })),
      );
      assert.equal(cells.length, (12 * 13) / 2, 'one cell per pair i < j of states 0 … 12');
      const tolerance = (await backendInUse(page)) === 'webgpu' ? 1e-3 : 1e-4;
      let worst = 0;
      for (const block of prepared.score.blocks) {
        const cell = cells.find((c) => c.i === block.index && c.j === block.index + 1);
        worst = Math.max(worst, Math.abs(1 - cell.cos - block.bi), Math.abs(cell.angular - block.angular));
        assert.ok(Math.abs(1 - cell.cos - block.bi) <= tolerance, `cell (${cell.i}, ${cell.j}): 1 − cos ${1 - cell.cos} vs BI ${block.bi}`);
        assert.ok(Math.abs(cell.angular - block.angular) <= tolerance, `cell (${cell.i}, ${cell.j}): angular ${cell.angular} vs ${block.angular}`);
      }
      console.log(`#   78 cells; neighbour cells vs \`prunelab score\`: max |diff| = ${worst.toExponential(2)}`);
    },
  },
  {
    name: `strategies: a sweep (${SWEEP.strategies.join(', ')}; max removed ${SWEEP.maxRemoved}) streams in and equals \`prunelab sweep --json\` (1e-4 relative CPU, 1e-3 WebGPU)`,
    timeout: 150_000,
    async run({ page, prepared }) {
      if (prepared?.error) throw prepared.error;
      for (const s of ['bi-iter', 'angular', 'relmag', 'random']) await page.getByTestId(`pick-${s}`).uncheck();
      for (const s of SWEEP.strategies) assert.ok(await page.getByTestId(`pick-${s}`).isChecked(), `${s} is picked`);
      // A number the field cannot take is put back and said, never silently ignored.
      await setNumber(page, 'sweep-max-removed', 0);
      assert.match(await page.getByTestId('sweep-rejected').innerText(), /max removed must be a whole number from 1 to \d+, not “0”; kept \d+\./);
      assert.notEqual(await page.getByTestId('sweep-max-removed').inputValue(), '0', 'the field shows the value in use');
      await setNumber(page, 'sweep-max-removed', SWEEP.maxRemoved);
      assert.equal(await page.getByTestId('sweep-rejected').count(), 0, 'a good value clears the notice');
      for (const which of ['cal', 'eval']) {
        await setNumber(page, `sweep-${which}-sequences`, WINDOWS.maxSequences);
        await setNumber(page, `sweep-${which}-seqlen`, WINDOWS.seqLen);
      }
      // Nothing scored on this page yet: the sweep says it cannot estimate its time rather than guess.
      assert.equal(await page.getByTestId('sweep-estimate').textContent(), 'time unknown until a first pass');
      await page.getByTestId('sweep-run').click();
      // Streaming: steps show while the sweep still runs.
      await page.waitForFunction(
        () =>
          document.querySelector('[data-testid=sweep-panel]')?.dataset.state === 'running' &&
          document.querySelectorAll('[data-testid=sweep-cell]').length > 0 &&
          document.querySelector('[data-testid=sweep-progress]'),
        null,
        { timeout: 60_000 },
      );
      await page.waitForSelector('[data-testid=sweep-panel][data-state=done]', { timeout: 140_000 });
      const cells = await page.$$eval('[data-testid=sweep-cell]', (els) =>
        els.map((e) => ({ strategy: e.dataset.strategy, k: Number(e.dataset.k), ppl: Number(e.dataset.ppl), removed: e.dataset.removed })),
      );
      const tolerance = (await backendInUse(page)) === 'webgpu' ? 1e-3 : 1e-4;
      let worst = 0;
      for (const strategy of SWEEP.strategies) {
        const expected = prepared.sweep.strategies[strategy];
        assert.equal(expected.length, SWEEP.maxRemoved + 1);
        for (let k = 0; k <= SWEEP.maxRemoved; k++) {
          const cell = cells.find((c) => c.strategy === strategy && c.k === k);
          assert.ok(cell, `${strategy} k=${k} in the table`);
          assert.equal(cell.removed, expected[k].removed.join(','), `${strategy} k=${k} removes the same blocks`);
          const rel = Math.abs(cell.ppl / expected[k].ppl - 1);
          worst = Math.max(worst, rel);
          assert.ok(rel <= tolerance, `${strategy} k=${k}: page ${cell.ppl} vs CLI ${expected[k].ppl}`);
        }
      }
      const series = await page.$$eval('[data-testid=sweep-series]', (els) => els.map((e) => e.dataset.strategy));
      assert.deepEqual([...series].sort(), [...SWEEP.strategies].sort(), 'one line per strategy');
      assert.match(await page.getByTestId('pair-summary').textContent(), /BI one-shot has the lower perplexity at/);
      assert.match(await page.getByTestId('cliff-summary').textContent(), /Reverse order/);
      console.log(`#   ${cells.length} steps, max relative |page − CLI| = ${worst.toExponential(2)}`);
    },
  },
  {
    name: 'strategies: a finished sweep stays across a backend switch, marked as measured on the old backend, and unmarked back on it',
    timeout: 150_000,
    backends: ['cpu'],
    async run({ page, screenshotDir }) {
      const cellsOf = () => page.$$eval('[data-testid=sweep-cell]', (els) => els.map((e) => `${e.dataset.strategy}:${e.dataset.k}:${e.dataset.ppl}`));
      const before = await cellsOf();
      assert.ok(before.length > 0, 'the previous check ran a sweep');
      for (const kind of ['webgpu', 'cpu']) {
        await page.getByTestId('backend-choice').selectOption(kind);
        await page.waitForSelector(`[data-testid=backend-badge][data-backend=${kind}]`, { timeout: 90_000 });
        await page.waitForFunction(() => !document.body.textContent.includes('Loading sotu-llama'), null, { timeout: 90_000 });
        await page.waitForSelector('[data-testid=sweep-panel][data-state=done]', { timeout: 10_000 });
        assert.deepEqual(await cellsOf(), before, `the sweep's steps survive the switch to ${kind}`);
        const marks = await page.getByTestId('sweep-measured-on').count();
        if (kind === 'webgpu') {
          assert.match(await page.getByTestId('sweep-measured-on').textContent(), /measured on the cpu backend/);
          await page.getByTestId('sweep-panel').screenshot({ path: join(screenshotDir, 'sweep-measured-on.png') });
        } else assert.equal(marks, 0, 'back on the backend it ran on, the sweep is not marked');
      }
    },
  },
  {
    name: 'strategies: screenshots of the strategies view at 1280×800 (light and dark)',
    async run({ page, screenshotDir }) {
      await page.getByTestId('strategies-view').evaluate((el) => el.scrollIntoView());
      await page.waitForTimeout(200);
      await page.screenshot({ path: join(screenshotDir, 'strategies.png') });
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: join(screenshotDir, 'strategies-dark.png') });
      await page.emulateMedia({ colorScheme: 'light' });
    },
  },
  {
    name: `strategies: clicking heatmap cell (${CELL.i}, ${CELL.j}) cuts blocks ${CELL_BLOCKS.join(', ')}; hovering shows its values`,
    async run({ page }) {
      const cell = page.locator(`[data-testid=heat-cell][data-i="${CELL.i}"][data-j="${CELL.j}"]`);
      await cell.hover();
      assert.match(await page.getByTestId('heat-tooltip').textContent(), /mean cos[\s\S]*angular[\s\S]*cut blocks 2…4/);
      await cell.click();
      assert.equal(await page.getByTestId('removal-summary').getAttribute('data-removed-blocks'), CELL_BLOCKS.join(','));
      for (const b of CELL_BLOCKS) assert.equal(await page.locator(`[data-testid=block-cell][data-index="${b}"]`).getAttribute('data-cut'), 'block');
      await page.waitForSelector(`[data-testid=heat-cut][data-i="${CELL.i}"][data-j="${CELL.j}"]`);
      await page.mouse.move(5, 5);
    },
  },
  {
    name: "strategies: the logit lens's output row equals the pruned model's next-token top-1 in the compare panel; skipped blocks shown",
    timeout: 120_000,
    async run({ page }) {
      const key = removalKey(CELL_BLOCKS);
      await page.waitForFunction(
        (key) => {
          const q = (id) => document.querySelector(`[data-testid=${id}]`);
          const lens = q('logit-lens');
          const pruned = q('output-pruned');
          return (
            lens?.dataset.busy === 'false' &&
            lens.dataset.removal === key &&
            pruned?.dataset.busy === 'false' &&
            pruned.dataset.removal === key &&
            q('next-pruned')?.querySelector('li')
          );
        },
        key,
        { timeout: 110_000 },
      );
      const skipped = await page.$$eval('[data-testid=lens-skipped]', (els) => els.map((e) => Number(e.dataset.block)));
      assert.deepEqual(skipped, CELL_BLOCKS);
      const output = await page.$$eval('[data-testid=lens-cell][data-output=true]', (els) =>
        els.map((e) => ({ position: Number(e.dataset.position), text: e.dataset.tokenText, prob: Number(e.dataset.prob) })),
      );
      const last = output.reduce((a, b) => (b.position > a.position ? b : a));
      const top = await page.locator('[data-testid=next-pruned] li').first();
      const shownToken = await top.locator('.token').textContent();
      const shownProb = await top.locator('.prob').textContent();
      assert.equal(visible(last.text), shownToken, 'same top-1 token');
      assert.equal(`${(last.prob * 100).toFixed(1)}%`, shownProb, 'same probability');
      const rows = await page.$$eval('[data-testid=lens-cell][data-position]', (els) => new Set(els.map((e) => e.dataset.state)).size);
      assert.equal(rows, 12 - CELL_BLOCKS.length + 1, 'one row per residual state (embedding + active blocks)');
      console.log(`#   lens top-1 after the last prompt token: "${last.text}" ${(last.prob * 100).toFixed(1)}% = compare panel`);
    },
  },
  {
    name: 'strategies: an uploaded JSONL scores original vs pruned; accuracies equal `prunelab mc --tasks --remove`',
    timeout: 90_000,
    async run({ page, prepared }) {
      if (prepared?.error) throw prepared.error;
      await page.getByTestId('mc-file').setInputFiles({ name: 'tasks.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(MC_JSONL) });
      await page.getByTestId('mc-run').click();
      const result = page.getByTestId('mc-result');
      await result.waitFor({ timeout: 80_000 });
      const get = async (name) => Number(await result.getAttribute(name));
      const cli = prepared.mc;
      assert.equal(await get('data-n'), cli.n);
      assert.equal(await get('data-acc-pruned'), cli.accuracy);
      assert.equal(await get('data-acc-norm-pruned'), cli.accNorm);
      assert.equal(await get('data-acc-original'), cli.original.accuracy);
      assert.equal(await get('data-acc-norm-original'), cli.original.accNorm);
      assert.match(await page.getByTestId('mc-pruned-acc').textContent(), /^\d+\.\d%$/);
      console.log(`#   ${cli.n} questions: original acc ${cli.original.accuracy.toFixed(3)}, pruned acc ${cli.accuracy.toFixed(3)} (= CLI)`);
    },
  },
  {
    name: 'strategies: speed along the sweep measures decode tok/s for k = 0 … 11 next to a least-squares fit (fixed + per-block time)',
    timeout: 90_000,
    async run({ page }) {
      await setNumber(page, 'speed-tokens', 4);
      await page.getByTestId('speed-run').click();
      await page.waitForSelector('[data-testid=speed-panel][data-busy=false][data-points="12"]', { timeout: 80_000 });
      const points = await page.$$eval('[data-testid=speed-chart-point][data-series=measured]', (els) => els.map((e) => Number(e.dataset.value)));
      assert.equal(points.length, 12);
      for (const v of points) assert.ok(Number.isFinite(v) && v > 0, `tok/s ${v}`);
      // The fit, recomputed here from the drawn points: ms/token = a + b × (12 − k), least squares (a ≥ 0).
      const xy = points.map((v, k) => [12 - k, 1000 / v]);
      const mx = xy.reduce((a, [x]) => a + x, 0) / 12;
      const my = xy.reduce((a, [, y]) => a + y, 0) / 12;
      let b = xy.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / xy.reduce((a, [x]) => a + (x - mx) ** 2, 0);
      if (my - b * mx < 0) b = xy.reduce((a, [x, y]) => a + x * y, 0) / xy.reduce((a, [x]) => a + x * x, 0);
      const shown = /fit: ([\d.]+) ms per block/.exec(await page.getByTestId('speed-summary').textContent());
      assert.ok(shown, 'the summary states the fitted time per block');
      assert.ok(Math.abs(Number(shown[1]) - b) <= 0.006, `per-block ms: page ${shown[1]} vs ${b.toFixed(4)} from the points`);
      console.log(`#   decode tok/s k=0 ${points[0].toFixed(0)}, k=11 ${points[11].toFixed(0)}`);
    },
  },
  {
    name: 'strategies: Cancel stops a running sweep and keeps the steps measured so far',
    timeout: 60_000,
    async run({ page }) {
      await page.getByTestId('pick-random').check();
      await setNumber(page, 'sweep-max-removed', 11);
      await page.getByTestId('sweep-run').click();
      await page.waitForFunction(
        () => document.querySelector('[data-testid=sweep-panel]')?.dataset.state === 'running' && document.querySelectorAll('[data-testid=sweep-cell]').length >= 2,
        null,
        { timeout: 40_000 },
      );
      await page.getByTestId('sweep-cancel').click();
      await page.waitForSelector('[data-testid=sweep-panel][data-state=cancelled]', { timeout: 15_000 });
      assert.ok((await page.locator('[data-testid=sweep-cell]').count()) >= 2, 'the measured steps stay');
    },
  },
  {
    name: 'strategies: no uncaught errors in the page',
    async run({ pageErrors }) {
      assert.deepEqual(pageErrors, [], `page errors: ${pageErrors.join(' | ')}`);
    },
  },
];
