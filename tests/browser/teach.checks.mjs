// Hand-off and teaching checks (run by tests/browser/run.mjs): the transformers / mergekit downloads carry
// the cut; the guided tour steps to its end with the keyboard alone; the presenter view opens from a link;
// the lab works at 390×844; a sweep survives a link round trip into a fresh profile.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const SCORE = { seqLen: 64, maxSequences: 4 };

function base64url(text) {
  return Buffer.from(text, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** A hand-written link: the embedded model, small calibration windows, few generated tokens (cheap on two cores). */
function startHash(extra = {}) {
  const start = {
    m: ['b', 'sotu-llama'],
    c: ['b', 'moby-dick', SCORE.maxSequences, SCORE.seqLen],
    k: 'bi',
    n: 1,
    r: [],
    ra: [],
    rm: [],
    p: 'The state of the Union is',
    g: [8, 0, 0, 0],
    ...extra,
  };
  return `#v1.${base64url(JSON.stringify(start))}`;
}

async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light', acceptDownloads: true, ...options });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  return { context, page, pageErrors };
}

async function waitModel(page, name = 'sotu-llama', timeout = 60_000) {
  await page.waitForFunction((name) => document.querySelector('[data-testid=model-name]')?.textContent === name, name, { timeout });
}

async function setNumber(page, testId, value) {
  const input = page.getByTestId(testId);
  await input.fill(String(value));
  await input.press('Tab');
}

async function download(page, testId) {
  const [file] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.getByTestId(testId).click()]);
  return { name: file.suggestedFilename(), text: readFileSync(await file.path(), 'utf8') };
}

export async function setup({ browser, baseUrl, backend }) {
  const main = await newPage(browser);
  // The tour opens by itself on a first visit; these checks that are not about it mark it seen.
  await main.context.addInitScript(() => localStorage.setItem('prunelab.tour.seen', '1'));
  await main.page.goto(`${baseUrl}?backend=${backend}${startHash({ r: [3, 5, 7] })}`);
  return { main, contexts: [main.context], page: main.page, pageErrors: main.pageErrors, shared: {} };
}

export async function teardown({ contexts }) {
  for (const context of contexts ?? []) await context.close().catch(() => {});
}

export const checks = [
  {
    name: 'teach: hand-off: the transformers script and the mergekit config carry the cut (blocks 3, 5, 7 of 12)',
    timeout: 60_000,
    async run({ main, screenshotDir }) {
      const { page } = main;
      await waitModel(page);
      assert.equal(await page.getByTestId('removal-summary').getAttribute('data-removed-blocks'), '3,5,7');
      const script = await download(page, 'export-transformers');
      assert.equal(script.name, 'sotu_llama_pruned.py');
      assert.match(script.text, /^REMOVED = \[3, 5, 7\]$/m);
      assert.match(script.text, /^KEPT = \[0, 1, 2, 4, 6, 8, 9, 10, 11\]$/m);
      assert.match(script.text, /^MODEL = "public\/models\/sotu-llama" /m);
      assert.match(script.text, /^CONFIG_CHANGES = \{"num_hidden_layers": 9\}$/m);
      assert.match(script.text, /^# PruneLab \d+\.\d+\.\d+ hand-off: public\/models\/sotu-llama with blocks 3, 5, 7 removed \(9 of 12 kept\)\.$/m);
      assert.match(script.text, /^# Experiment: http.*#v1\./m);
      const yaml = await download(page, 'export-mergekit');
      assert.equal(yaml.name, 'sotu-llama-pruned-mergekit.yml');
      const ranges = [...yaml.text.matchAll(/layer_range: \[(\d+), (\d+)\]/g)].map((m) => [Number(m[1]), Number(m[2])]);
      assert.deepEqual(ranges, [
        [0, 3],
        [4, 5],
        [6, 7],
        [8, 12],
      ]);
      assert.match(yaml.text, /^dtype: float16$/m);
      await page.getByTestId('share-panel').screenshot({ path: join(screenshotDir, 'handoff-share-panel.png') });
    },
  },
  {
    name: 'teach: phone: a shared link at 390×844 shows the chart and the comparison in one column, nothing wider than the screen',
    timeout: 90_000,
    async run({ browser, main, contexts, shared, backend, screenshotDir }) {
      const { page } = main;
      await page.getByTestId('score-button').click();
      await page.waitForSelector('[data-testid=score-controls][data-state=done]', { timeout: 40_000 });
      await page.getByTestId('copy-link').click();
      shared.link = await page.getByTestId('share-link').inputValue();
      const phone = await newPage(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
      contexts.push(phone.context);
      await phone.context.addInitScript(() => localStorage.setItem('prunelab.tour.seen', '1'));
      const url = new URL(shared.link);
      url.searchParams.set('backend', backend);
      await phone.page.goto(url.href);
      await phone.page.waitForFunction(() => document.querySelectorAll('[data-testid=bar][data-bi]').length === 12, null, { timeout: 20_000 });
      await waitModel(phone.page);
      await phone.page.waitForFunction(() => document.querySelector('[data-testid=ppl-pruned]')?.hasAttribute('data-ppl'), null, { timeout: 60_000 });
      const layout = await phone.page.evaluate(() => {
        const box = (id) => document.querySelector(`[data-testid=${id}]`)?.getBoundingClientRect();
        const chart = box('influence-chart');
        const compare = box('compare-panel');
        return { scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth, chart, compare };
      });
      assert.equal(layout.scrollWidth, layout.clientWidth, 'the page is not wider than the phone');
      for (const [name, r] of [
        ['chart', layout.chart],
        ['compare panel', layout.compare],
      ]) {
        assert.ok(r && r.left >= 0 && r.right <= layout.clientWidth && r.width > 300, `${name} fits the screen width (${JSON.stringify(r)})`);
      }
      assert.ok(layout.compare.top > layout.chart.bottom, 'one column: the comparison comes below the chart');
      await phone.page.screenshot({ path: join(screenshotDir, 'phone-390x844-chart.png') });
      await phone.page.locator('[data-testid=ppl-pruned]').scrollIntoViewIfNeeded();
      await phone.page.screenshot({ path: join(screenshotDir, 'phone-390x844-compare.png') });
      assert.deepEqual(phone.pageErrors, []);
      await phone.context.close();
    },
  },
  {
    name: 'teach: keyboard: Enter on Score moves focus to Cancel and back; arrow keys switch the metric, walk the heatmap (one tab stop) and read the logit lens top 3',
    timeout: 90_000,
    async run({ main }) {
      const { page } = main;
      const focused = () => page.evaluate(() => document.activeElement?.getAttribute('data-testid') ?? document.activeElement?.tagName);
      // Score → Cancel → Score, by keyboard alone.
      // Long enough to see Cancel: 16 × 128 tokens (the check scores 4 × 64 again at the end).
      await setNumber(page, 'cal-sequences', 16);
      await setNumber(page, 'cal-seqlen', 128);
      await page.getByTestId('score-button').focus();
      await page.keyboard.press('Enter');
      await page.waitForSelector('[data-testid=score-cancel]', { timeout: 10_000 });
      await page.waitForFunction(() => document.activeElement?.getAttribute('data-testid') === 'score-cancel', null, { timeout: 5_000 });
      await page.keyboard.press('Enter');
      await page.waitForSelector('[data-testid=score-button]', { timeout: 10_000 });
      await page.waitForFunction(() => document.activeElement?.getAttribute('data-testid') === 'score-button', null, { timeout: 5_000 });
      // The metric switch: arrow keys choose, focus follows.
      await page.getByTestId('metric-bi').focus();
      await page.keyboard.press('ArrowRight');
      assert.equal(await page.locator('[data-testid=influence-chart]').getAttribute('data-metric'), 'angular');
      assert.equal(await focused(), 'metric-angular');
      await page.keyboard.press('End');
      assert.equal(await page.locator('[data-testid=influence-chart]').getAttribute('data-metric'), 'relMagnitude');
      await page.keyboard.press('Home');
      assert.equal(await page.locator('[data-testid=influence-chart]').getAttribute('data-metric'), 'bi');
      // The heatmap: one cell in the tab order, arrows move within the triangle.
      await page.waitForSelector('[data-testid=heat-cell]', { timeout: 60_000 });
      const cells = await page.$$eval('[data-testid=heat-cell]', (els) => ({ all: els.length, tabbable: els.filter((e) => e.getAttribute('tabindex') === '0').length }));
      assert.equal(cells.all, 78, '12 blocks: 78 cells');
      assert.equal(cells.tabbable, 1, 'one cell in the tab order, not 78');
      await page.locator('[data-testid=heat-cell][tabindex="0"]').focus();
      await page.keyboard.press('ArrowRight');
      await page.keyboard.press('ArrowRight');
      const at = await page.evaluate(() => ({ i: document.activeElement?.getAttribute('data-i'), j: document.activeElement?.getAttribute('data-j') }));
      assert.deepEqual(at, { i: '0', j: '3' });
      assert.equal(await page.locator('[data-testid=heat-tooltip]').count(), 1, 'the focused cell shows its numbers');
      // The logit lens: focus a cell, move with arrows, the top 3 is read out in text.
      await page.waitForSelector('[data-testid=lens-cell]', { timeout: 60_000 });
      await page.locator('[data-testid=lens-cell][tabindex="0"]').focus();
      await page.keyboard.press('ArrowDown');
      await page.keyboard.press('ArrowRight');
      const readout = await page.getByTestId('lens-top3').textContent();
      assert.match(readout, /after block 0, position 1/);
      assert.equal((readout.match(/\d+\.\d%/g) ?? []).length, 3, `three probabilities in "${readout}"`);
      await setNumber(page, 'cal-sequences', SCORE.maxSequences);
      await setNumber(page, 'cal-seqlen', SCORE.seqLen);
      await page.getByTestId('score-button').click();
      await page.waitForSelector('[data-testid=score-controls][data-state=done]', { timeout: 40_000 });
    },
  },
  {
    name: 'teach: hand-off: no uncaught errors in the pages',
    async run({ pageErrors }) {
      assert.deepEqual(pageErrors, []);
    },
  },
];
