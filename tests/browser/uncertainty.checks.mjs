// Error-bar checks (run by tests/browser/run.mjs): the chart's whiskers and the values table hold the intervals
// `prunelab score --json` gives for the same calibration, drawn where the y scale puts them; the stability
// sentence by the slider says the CLI's cutStability; a share link draws the whiskers before the model loads;
// the second-calibration comparison gives Spearman's ρ of the two CLI orderings; one sequence gives no whiskers.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { newLabPage, setNumber } from './lab-page.mjs';

const MODEL = 'public/models/sotu-llama';
const CALIBRATION = 'public/calibration/moby-dick.txt';
const SECOND = 'public/calibration/moby-dick-eval.txt';
/** Twelve short windows: enough sequences for intervals (no caution), quick on two shared cores. */
const SCORE = { seqLen: 48, maxSequences: 12 };
const K = 3;
const METRICS = ['bi', 'angular', 'relMagnitude'];

async function cliJson(run, args) {
  const r = await run(process.execPath, ['cli/bin.mjs', ...args, '--json']);
  if (r.code !== 0) throw new Error(`prunelab ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** The CLI's intervals (default 1000 resamples, seed 0, as the lab) and the second text's scores, while the app builds. */
export async function prepare({ run }) {
  const windows = ['--seq-len', String(SCORE.seqLen), '--max-sequences', String(SCORE.maxSequences)];
  const score = await cliJson(run, ['score', '--model', MODEL, '--text', CALIBRATION, ...windows, '--k', String(K)]);
  const second = await cliJson(run, ['score', '--model', MODEL, '--text', SECOND, ...windows, '--bootstrap', '2']);
  return { score, second };
}

const newPage = (browser) => newLabPage(browser, { viewport: { width: 1280, height: 900 } });

export async function setup({ browser, baseUrl, backend }) {
  const { context, page, pageErrors } = await newPage(browser);
  await page.goto(`${baseUrl}?backend=${backend}`);
  return { context, page, pageErrors, contexts: [context], shared: {} };
}

export async function teardown({ contexts }) {
  for (const context of contexts ?? []) await context.close().catch(() => {});
}

async function score(page, windows) {
  await page.waitForFunction(() => document.querySelector('[data-testid=model-name]')?.textContent === 'sotu-llama', null, { timeout: 110_000 });
  await setNumber(page, 'cal-sequences', windows.maxSequences);
  await setNumber(page, 'cal-seqlen', windows.seqLen);
  await page.getByTestId('score-button').click();
  await page.waitForSelector('[data-testid=score-controls][data-state=done]', { timeout: 110_000 });
}

/** Each bar's value and fill geometry, and its whisker's bounds and drawn ends (null when it has none). */
function readChart(page) {
  return page.$$eval('[data-testid=bar]', (bars) =>
    bars.map((bar) => {
      const fill = bar.querySelector('rect.fill');
      const whisker = bar.querySelector('[data-testid=whisker]');
      const stem = whisker?.querySelector('line');
      return {
        index: Number(bar.dataset.index),
        fillTop: Number(fill?.getAttribute('y')),
        fillBottom: Number(fill?.getAttribute('y')) + Number(fill?.getAttribute('height')),
        whisker: whisker
          ? { lo: Number(whisker.dataset.lo), hi: Number(whisker.dataset.hi), yTop: Number(stem.getAttribute('y1')), yBottom: Number(stem.getAttribute('y2')) }
          : null,
      };
    }),
  );
}

async function tolerance(page) {
  return (await page.getByTestId('backend-badge').getAttribute('data-backend')) === 'webgpu' ? 1e-3 : 1e-4;
}

export const checks = [
  {
    name: 'error bars: the chart’s whiskers are the CLI’s 95% intervals for every metric, drawn at y(lo) and y(hi)',
    timeout: 240_000,
    async run({ page, prepared, shared }) {
      if (prepared?.error) throw prepared.error;
      await score(page, SCORE);
      const cli = prepared.score;
      assert.equal(cli.bootstrap.sequences, SCORE.maxSequences);
      const tol = await tolerance(page);
      let worst = 0;
      for (const metric of METRICS) {
        await page.getByTestId(`metric-${metric}`).click();
        await page.waitForSelector(`[data-testid=influence-chart][data-metric=${metric}]`);
        const bars = await readChart(page);
        assert.equal(bars.length, cli.blocks.length);
        for (const block of cli.blocks) {
          const bar = bars.find((b) => b.index === block.index);
          assert.ok(bar.whisker, `block ${block.index} has a whisker (${metric})`);
          const [lo, hi] = block.ci[metric];
          worst = Math.max(worst, Math.abs(bar.whisker.lo - lo), Math.abs(bar.whisker.hi - hi));
          assert.ok(
            Math.abs(bar.whisker.lo - lo) <= tol && Math.abs(bar.whisker.hi - hi) <= tol,
            `block ${block.index} ${metric}: whisker [${bar.whisker.lo}, ${bar.whisker.hi}] vs CLI [${lo}, ${hi}]`,
          );
          // The linear scale starts at 0 at the bars' bottom: a value v is drawn at bottom − v · (bottom − top) / value.
          const pixelsPerUnit = (bar.fillBottom - bar.fillTop) / block[metric];
          assert.ok(Math.abs(bar.whisker.yTop - (bar.fillBottom - hi * pixelsPerUnit)) < 0.05, `block ${block.index} ${metric}: the upper end is drawn at y(hi)`);
          assert.ok(Math.abs(bar.whisker.yBottom - (bar.fillBottom - lo * pixelsPerUnit)) < 0.05, `block ${block.index} ${metric}: the lower end is drawn at y(lo)`);
        }
      }
      await page.getByTestId('metric-bi').click();
      shared.scored = true;
      console.log(`#   worst |whisker − CLI interval| = ${worst.toExponential(2)} over ${cli.blocks.length} blocks × 3 metrics`);
    },
  },
  {
    name: 'error bars: the toggle hides and shows the whiskers; the values table lists the same intervals',
    timeout: 30_000,
    async run({ page, prepared }) {
      const toggle = page.getByTestId('whiskers-toggle');
      await toggle.uncheck();
      assert.equal(await page.locator('[data-testid=whisker]').count(), 0, 'no whiskers when toggled off');
      await toggle.check();
      assert.equal(await page.locator('[data-testid=whisker]').count(), prepared.score.blocks.length);
      await page.locator('details.values summary').click();
      const cells = await page.$$eval('[data-testid=score-table] tbody td[data-metric]', (tds) =>
        tds.map((td) => ({ index: Number(td.closest('tr').dataset.index), metric: td.dataset.metric, lo: Number(td.dataset.lo), hi: Number(td.dataset.hi), text: td.textContent })),
      );
      const tol = await tolerance(page);
      for (const block of prepared.score.blocks) {
        for (const metric of METRICS) {
          const cell = cells.find((c) => c.index === block.index && c.metric === metric);
          assert.ok(Math.abs(cell.lo - block.ci[metric][0]) <= tol && Math.abs(cell.hi - block.ci[metric][1]) <= tol, `table block ${block.index} ${metric}`);
          assert.match(cell.text, /\[\d\.\d+(e−?\d+)?, \d\.\d+(e−?\d+)?\]/);
        }
      }
    },
  },
  {
    name: 'error bars: "remove the 3 lowest" says stable or unstable with the CLI’s cut stability, and P(lowest) per block',
    timeout: 30_000,
    async run({ page, prepared, screenshotDir }) {
      const slider = page.getByTestId('lowest-slider');
      await slider.fill(String(K));
      const sentence = page.getByTestId('cut-stability');
      await sentence.waitFor();
      const cli = prepared.score;
      const p = Number(await sentence.getAttribute('data-p'));
      const text = await sentence.textContent();
      // Both bootstraps draw the same resamples (seed 0); float differences between backends could only flip near-ties.
      assert.ok(Math.abs(p - cli.cutStability) <= 0.01, `cut stability ${p} vs CLI ${cli.cutStability}`);
      assert.equal(await sentence.getAttribute('data-stable'), String(cli.bootstrap.stable));
      assert.match(
        text,
        new RegExp(
          `^${cli.bootstrap.stable ? 'stable' : 'unstable'}: the bootstrap's 3 lowest by Block Influence are \\{${cli.bootstrap.cut.join(', ')}\\} in [\\d.]+% of 1000 resamples`,
        ),
      );
      const removed = (await page.getByTestId('removal-summary').getAttribute('data-removed-blocks')).split(',').map(Number);
      assert.deepEqual(removed, cli.bootstrap.cut, 'the slider cut is the CLI’s point-estimate cut');
      const pLowest = await page.$$eval('[data-testid=score-table] tbody td[data-p-lowest]', (tds) =>
        tds.map((td) => ({ index: Number(td.closest('tr').dataset.index), p: Number(td.dataset.pLowest) })),
      );
      assert.equal(pLowest.length, cli.blocks.length);
      for (const block of cli.blocks) assert.ok(Math.abs(pLowest.find((b) => b.index === block.index).p - block.pLowest) <= 0.01, `P(lowest) of block ${block.index}`);
      // On a log scale the small blocks' whiskers are visible next to block 0's; the picture is for a person to look at.
      const logScale = page.locator('[data-testid=influence-chart] label', { hasText: 'log scale' }).locator('input');
      await logScale.check();
      const section = page.locator('section.influence');
      await section.screenshot({ path: join(screenshotDir, 'uncertainty-whiskers.png') });
      await page.locator('[data-testid=bar][data-index="6"] rect.hit').hover();
      const tooltip = page.getByTestId('chart-tooltip');
      assert.match(await tooltip.textContent(), /\[\d\.\d+, \d\.\d+\].*95% CI: bootstrap over 12 sequences \(1000 resamples\).*among the 3 lowest in [\d.]+% of resamples/s);
      await page.locator('[data-testid=influence-chart]').screenshot({ path: join(screenshotDir, 'uncertainty-tooltip.png') });
      await page.mouse.move(0, 0);
      await logScale.uncheck();
      console.log(`#   ${text}`);
    },
  },
  {
    name: 'error bars: a share link draws the whiskers (quantised) before its model has loaded',
    timeout: 60_000,
    async run({ browser, page, prepared, contexts, backend }) {
      await page.getByTestId('copy-link').click();
      const link = await page.getByTestId('share-link').inputValue();
      const fresh = await newPage(browser);
      contexts.push(fresh.context);
      // The model never arrives in this profile: whatever is drawn came from the link.
      await fresh.context.route('**/models/sotu-llama/model.safetensors', (route) => route.abort('failed'));
      const url = new URL(link);
      url.searchParams.set('backend', backend);
      await fresh.page.goto(url.href);
      await fresh.page.waitForFunction((n) => document.querySelectorAll('[data-testid=whisker]').length === n, prepared.score.blocks.length, { timeout: 15_000 });
      assert.equal(await fresh.page.locator('[data-testid=model-name]').count(), 0, 'no model was loaded');
      const bars = await readChart(fresh.page);
      const tol = await tolerance(page);
      // Quantised in the link: within (max − min) / (2 · 65534) of the bounds, on top of the backend tolerance.
      const bounds = prepared.score.blocks.flatMap((b) => b.ci.bi);
      const step = (Math.max(...bounds) - Math.min(...bounds)) / (2 * 65534);
      for (const block of prepared.score.blocks) {
        const whisker = bars.find((b) => b.index === block.index).whisker;
        assert.ok(Math.abs(whisker.lo - block.ci.bi[0]) <= tol + step && Math.abs(whisker.hi - block.ci.bi[1]) <= tol + step, `link whisker of block ${block.index}`);
      }
    },
  },
  {
    name: 'error bars: scoring a second calibration text gives Spearman’s ρ of the two CLI orderings and the blocks that change places',
    timeout: 180_000,
    async run({ page, prepared }) {
      await page.locator('[data-testid=calibration-compare] summary').click();
      await page.getByTestId('compare-run').click();
      const result = page.getByTestId('compare-result');
      await result.waitFor({ timeout: 170_000 });
      const rank = (blocks) => new Map([...blocks].sort((a, b) => a.bi - b.bi || a.index - b.index).map((b, r) => [b.index, r + 1]));
      const here = rank(prepared.score.blocks);
      const there = rank(prepared.second.blocks);
      const n = here.size;
      const d2 = [...here].reduce((a, [index, r]) => a + (r - there.get(index)) ** 2, 0);
      const rho = 1 - (6 * d2) / (n * (n * n - 1));
      const moved = [...here].filter(([index, r]) => r !== there.get(index)).map(([index]) => index);
      assert.ok(Math.abs(Number(await result.getAttribute('data-rho')) - rho) < 1e-9, `ρ ${await result.getAttribute('data-rho')} vs ${rho} from the CLI's orderings`);
      const shown = (await result.getAttribute('data-moved')).split(',').filter(Boolean).map(Number);
      assert.deepEqual(
        [...shown].sort((a, b) => a - b),
        moved.sort((a, b) => a - b),
      );
      console.log(`#   ${(await result.textContent()).replace(/\s+/g, ' ').trim()}`);
    },
  },
  {
    name: 'error bars: one calibration sequence gives no whiskers, a disabled toggle and the reason by the slider',
    timeout: 120_000,
    async run({ page, pageErrors }) {
      await score(page, { seqLen: SCORE.seqLen, maxSequences: 1 });
      assert.equal(await page.locator('[data-testid=whisker]').count(), 0);
      assert.equal(await page.getByTestId('whiskers-toggle').isDisabled(), true);
      await page.getByTestId('lowest-slider').fill('2');
      const sentence = page.getByTestId('cut-stability');
      await sentence.waitFor();
      assert.equal(await sentence.getAttribute('data-stable'), 'unknown');
      assert.match(await sentence.textContent(), /one calibration sequence/);
      assert.deepEqual(pageErrors, []);
    },
  },
];
