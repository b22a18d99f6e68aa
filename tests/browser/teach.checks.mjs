// Hand-off and teaching checks (run by tests/browser/run.mjs): the transformers / mergekit downloads carry
// the cut; the guided tour steps to its end with the keyboard alone; the presenter view opens from a link;
// the lab works at 390×844; a sweep survives a link round trip into a fresh profile.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newLabPage, setNumber } from './lab-page.mjs';

const SCORE = { seqLen: 64, maxSequences: 4 };
const MODEL_DIR = 'public/models/sotu-llama';
let baseUrlOf = '';
const BASE_URL = (backend) => `${baseUrlOf}?backend=${backend}`;

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

const newPage = (browser, options = {}) => newLabPage(browser, options);

async function waitModel(page, name = 'sotu-llama', timeout = 60_000) {
  await page.waitForFunction((name) => document.querySelector('[data-testid=model-name]')?.textContent === name, name, { timeout });
}

async function download(page, testId) {
  const [file] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.getByTestId(testId).click()]);
  const bytes = readFileSync(await file.path());
  return { name: file.suggestedFilename(), bytes, text: bytes.toString('utf8') };
}

export async function setup({ browser, baseUrl, backend }) {
  baseUrlOf = baseUrl;
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
    name: 'teach: notes: every panel has a "what am I looking at" note one click away; the formula under the chart takes the hovered block’s numbers and links the paper',
    timeout: 30_000,
    async run({ main }) {
      const { page } = main;
      for (const topic of ['influence', 'model', 'compare', 'share', 'strategies']) {
        const button = page.getByTestId(`help-${topic}`);
        await button.scrollIntoViewIfNeeded();
        assert.equal(await page.getByTestId(`help-note-${topic}`).count(), 0, `${topic}: no text until asked`);
        await button.click();
        const note = page.getByTestId(`help-note-${topic}`);
        await note.waitFor({ timeout: 2_000 });
        const box = await note.boundingBox();
        const width = await page.evaluate(() => document.documentElement.clientWidth);
        assert.ok(box.x >= 0 && box.x + box.width <= width, `${topic}: the note is on screen (${box.x}…${box.x + box.width} of ${width})`);
        assert.ok((await note.textContent()).length > 80, `${topic}: says something`);
        await page.keyboard.press('Escape');
        await note.waitFor({ state: 'detached', timeout: 2_000 });
      }
      // The formula: hovering bar 2 puts block 2's BI into it; each metric links its paper.
      await page.locator('[data-testid=influence-chart]').scrollIntoViewIfNeeded();
      await page.locator('[data-testid=bar][data-index="2"] rect.hit').hover();
      const note = page.getByTestId('formula-note');
      await page.waitForFunction(() => document.querySelector('[data-testid=formula-note]')?.getAttribute('data-block') === '2', null, { timeout: 2_000 });
      const bi = Number(await page.locator('[data-testid=bar][data-index="2"]').getAttribute('data-bi'));
      assert.match(await page.getByTestId('formula-substituted').textContent(), new RegExp(`BI2 = 1 − ${(1 - bi).toFixed(4)} = ${bi.toFixed(4)}`));
      const papers = { bi: '2403.03853', angular: '2403.17887', relMagnitude: '2312.09299' };
      for (const [metric, id] of Object.entries(papers)) {
        await page.getByTestId(`metric-${metric}`).click();
        assert.equal(await note.getAttribute('data-metric'), metric);
        assert.ok((await note.locator('a').getAttribute('href')).endsWith(id), `${metric} links arXiv ${id}`);
      }
      await page.getByTestId('metric-bi').click();
    },
  },
  {
    name: 'teach: presenter: a link ending in &present opens one panel at a time in large type at 1280×720; arrow keys step, Esc leaves (screenshots)',
    timeout: 90_000,
    async run({ browser, contexts, shared, backend, screenshotDir }) {
      assert.ok(shared.link, 'the phone check made a link');
      const room = await newPage(browser, { viewport: { width: 1280, height: 720 } });
      contexts.push(room.context);
      const { page } = room;
      const url = new URL(shared.link);
      url.searchParams.set('backend', backend);
      await page.goto(`${url.href}&present`);
      const presenter = page.getByTestId('presenter');
      await presenter.waitFor({ timeout: 20_000 });
      await page.waitForFunction(() => document.querySelectorAll('[data-testid=bar][data-bi]').length === 12, null, { timeout: 20_000 });
      assert.equal(await page.getByTestId('tour').count(), 0, 'no tour over a presentation');
      const visible = (id) =>
        page.evaluate((id) => {
          const el = document.querySelector(`[data-testid=${id}]`);
          return !!el && el.getClientRects().length > 0;
        }, id);
      /** On-screen height of the chart's axis numbers, in pixels (after the presenter's zoom). */
      const tickHeight = () =>
        page.evaluate(() =>
          Math.min(...[...document.querySelectorAll('[data-testid=influence-chart] .axis text')].map((t) => t.getBoundingClientRect().height).filter((h) => h > 0)),
        );
      const noSideScroll = () => page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth);
      const slides = [];
      const expectations = {
        chart: { shown: ['influence-chart', 'formula-note'], hidden: ['compare-panel', 'status-bar', 'sweep-panel', 'block-strip'] },
        cut: { shown: ['influence-chart', 'block-strip', 'pruning-controls'], hidden: ['compare-panel', 'status-bar'] },
        compare: { shown: ['output-original', 'output-pruned', 'ppl-pruned'], hidden: ['influence-chart', 'status-bar', 'sweep-panel', 'prompt'] },
        sweep: { shown: ['sweep-chart', 'sweep-run'], hidden: ['influence-chart', 'compare-panel', 'status-bar', 'sweep-max-removed'] },
      };
      await waitModel(page).catch(() => {});
      for (let n = 1; n <= 4; n++) {
        const id = await presenter.getAttribute('data-slide');
        slides.push(id);
        await page.waitForTimeout(300);
        for (const testId of expectations[id].shown) assert.ok(await visible(testId), `${id}: ${testId} is shown`);
        for (const testId of expectations[id].hidden) assert.equal(await visible(testId), false, `${id}: ${testId} is hidden`);
        assert.ok(await noSideScroll(), `${id}: nothing wider than the screen`);
        if (id === 'chart') {
          const h = await tickHeight();
          assert.ok(h >= 15, `axis numbers are ${h.toFixed(1)} px tall on screen (11 px unzoomed); a projector needs ≥ 15`);
        }
        if (id === 'compare') await page.waitForFunction(() => document.querySelector('[data-testid=ppl-pruned]')?.hasAttribute('data-ppl'), null, { timeout: 60_000 });
        await page.screenshot({ path: join(screenshotDir, `presenter-1280x720-${n}-${id}.png`) });
        await page.keyboard.press('ArrowRight');
      }
      assert.deepEqual(slides, ['chart', 'cut', 'compare', 'sweep']);
      await page.keyboard.press('ArrowLeft');
      await page.waitForFunction(() => document.querySelector('[data-testid=presenter]')?.getAttribute('data-slide') === 'compare', null, { timeout: 5_000 });
      await page.keyboard.press('Escape');
      await presenter.waitFor({ state: 'detached', timeout: 5_000 });
      assert.ok((await visible('status-bar')) && (await visible('influence-chart')) && (await visible('compare-panel')), 'Esc gives the whole lab back');
      assert.ok(!(await page.evaluate(() => location.hash.includes('present'))), 'the flag is not part of the experiment in the address bar');
      assert.deepEqual(room.pageErrors, []);
      await room.context.close();
    },
  },
  {
    name: 'teach: tour: opens by itself on a first visit and steps to its end with the keyboard alone, then stays closed (screenshots of every step)',
    timeout: 120_000,
    async run({ browser, baseUrl, backend, contexts, screenshotDir }) {
      // A first visit by a person: no tour-seen flag, and not an automated browser (the tour stays shut for those).
      const fresh = await newPage(browser, { viewport: { width: 1280, height: 800 } });
      contexts.push(fresh.context);
      await fresh.context.addInitScript(() => Object.defineProperty(Navigator.prototype, 'webdriver', { get: () => false }));
      const { page } = fresh;
      await page.goto(`${baseUrl}?backend=${backend}${startHash()}`);
      const tour = page.getByTestId('tour');
      await tour.waitFor({ timeout: 20_000 });
      await waitModel(page);
      const focusedId = () => page.evaluate(() => document.activeElement?.getAttribute('data-testid'));
      assert.equal(await focusedId(), 'tour-next', 'focus starts on Next');
      const steps = [];
      for (let n = 1; n <= 10; n++) {
        await page.waitForFunction((n) => document.querySelector('[data-testid=tour]')?.getAttribute('data-step') === String(n), n, { timeout: 5_000 });
        const id = await tour.getAttribute('data-step-id');
        steps.push(id);
        // The steps that act do it from the keyboard too: Score now, Cut the 3 lowest.
        if (id === 'vector') {
          for (let tab = 0; tab < 5 && (await focusedId()) !== 'tour-score'; tab++) await page.keyboard.press('Tab');
          assert.equal(await focusedId(), 'tour-score', 'Tab reaches Score now inside the card');
          await page.keyboard.press('Enter');
          await page.waitForSelector('[data-testid=score-controls][data-state=done]', { timeout: 60_000 });
          await page.waitForSelector('[data-testid=tour-cos-lowest]', { timeout: 5_000 });
          const cos = Number(await page.getByTestId('tour-cos-lowest').textContent());
          const bi = await page.$$eval('[data-testid=bar]', (els) => Math.min(...els.map((e) => Number(e.dataset.bi))));
          assert.ok(Math.abs(cos - (1 - bi)) < 1e-4, `the card's cos ${cos} is 1 − the lowest BI ${bi}`);
          await page.getByTestId('tour-next').focus();
        }
        if (id === 'cut') {
          await page.getByTestId('tour-cut').focus();
          await page.keyboard.press('Enter');
          await page.waitForFunction(() => document.querySelector('[data-testid=removal-summary]')?.getAttribute('data-removed-blocks')?.split(',').length === 3, null, {
            timeout: 5_000,
          });
          await page.getByTestId('tour-next').focus();
        }
        await page.waitForTimeout(250);
        await page.screenshot({ path: join(screenshotDir, `tour-${n}-${id}.png`) });
        const next = await page.getByTestId('tour-next').textContent();
        await page.keyboard.press('Enter');
        if (next.trim() === 'Done') break;
      }
      assert.deepEqual(steps, ['stack', 'vector', 'formula', 'cut', 'compare', 'sweep']);
      await tour.waitFor({ state: 'detached', timeout: 5_000 });
      assert.equal(await page.evaluate(() => localStorage.getItem('prunelab.tour.seen')), '1', 'remembered as seen');
      await page.reload();
      await waitModel(page);
      assert.equal(await page.getByTestId('tour').count(), 0, 'a second visit opens no tour');
      // The Tour button opens it again, by keyboard; Esc closes it.
      await page.getByTestId('tour-open').focus();
      await page.keyboard.press('Enter');
      await tour.waitFor({ timeout: 5_000 });
      await page.keyboard.press('ArrowRight');
      await page.waitForFunction(() => document.querySelector('[data-testid=tour]')?.getAttribute('data-step') === '2', null, { timeout: 5_000 });
      await page.keyboard.press('Escape');
      await tour.waitFor({ state: 'detached', timeout: 5_000 });
      assert.equal(await focusedId(), 'tour-open', 'focus returns to the Tour button');
      assert.deepEqual(fresh.pageErrors, []);
      await fresh.context.close();
    },
  },
  {
    name: 'teach: strategies: sweep, multiple choice and speed are in the JSON / CSV export; the sweep survives a link round trip into a fresh profile (drawn before the model loads, marked from link)',
    timeout: 240_000,
    async run({ browser, main, contexts, backend, screenshotDir }) {
      const { page } = main;
      const cells = () =>
        page.$$eval('[data-testid=sweep-cell]', (els) =>
          els.map((e) => ({ strategy: e.dataset.strategy, k: Number(e.dataset.k), ppl: Number(e.dataset.ppl), removed: e.dataset.removed })),
        );
      await waitModel(page);
      if ((await page.getByTestId('score-controls').getAttribute('data-state')) !== 'done') {
        await page.getByTestId('score-button').click();
        await page.waitForSelector('[data-testid=score-controls][data-state=done]', { timeout: 40_000 });
      }
      // A small sweep: BI, reverse and random (min–max over seeds), up to 3 blocks removed.
      for (const s of ['bi-iter', 'angular', 'relmag', 'sleb']) await page.getByTestId(`pick-${s}`).uncheck();
      await setNumber(page, 'sweep-max-removed', 3);
      await setNumber(page, 'sweep-seeds', 2);
      await page.getByTestId('sweep-run').click();
      await page.waitForSelector('[data-testid=sweep-panel][data-state=done]', { timeout: 120_000 });
      const measured = await cells();
      assert.equal(measured.length, 3 * 4, 'three strategies × k = 0 … 3');
      await setNumber(page, 'mc-count', 2);
      await page.getByTestId('mc-run').click();
      await page.waitForSelector('[data-testid=mc-result]', { timeout: 60_000 });
      const mc = await page.getByTestId('mc-result').evaluate((e) => ({ original: Number(e.dataset.accOriginal), pruned: Number(e.dataset.accPruned), n: Number(e.dataset.n) }));
      await setNumber(page, 'speed-tokens', 2);
      await page.getByTestId('speed-run').click();
      await page.waitForSelector('[data-testid=speed-panel][data-busy=false][data-points="12"]', { timeout: 80_000 });
      const speed = await page.$$eval('[data-testid=speed-chart-point][data-series=measured]', (els) => els.map((e) => Number(e.dataset.value)));

      const json = JSON.parse(await download(page, 'export-strategies-json').then((f) => f.text));
      assert.equal(json.format, 'prunelab-strategies');
      for (const c of measured) {
        const step = json.sweep.steps[c.strategy][c.k];
        assert.equal(step.ppl, c.ppl, `JSON sweep ${c.strategy} k=${c.k}`);
        assert.equal(step.removed.join(','), c.removed);
      }
      assert.equal(json.sweep.fromLink, false);
      assert.deepEqual([json.mc.original.accuracy, json.mc.pruned.accuracy, json.mc.pruned.n], [mc.original, mc.pruned, mc.n]);
      assert.ok(json.mc.pruned.accuracyInterval[0] <= mc.pruned && mc.pruned <= json.mc.pruned.accuracyInterval[1]);
      assert.deepEqual(
        json.speed.points.map((p) => p.tokensPerSecond),
        speed,
      );
      const csv = (await download(page, 'export-strategies-csv')).text.trimEnd().split('\r\n');
      const header = csv[0].split(',');
      const rowsOf = (table) =>
        csv
          .slice(1)
          .map((l) => l.split(','))
          .filter((r) => r[0] === table);
      assert.equal(rowsOf('sweep').length, measured.length);
      for (const r of rowsOf('sweep')) {
        const c = measured.find((m) => m.strategy === r[header.indexOf('strategy')] && m.k === Number(r[header.indexOf('k')]));
        assert.equal(Number(r[header.indexOf('ppl')]), c.ppl);
      }
      assert.equal(rowsOf('mc').length, 2);
      assert.equal(rowsOf('speed').length, 12);
      const results = JSON.parse((await download(page, 'export-json')).text);
      assert.equal(results.extras.strategies.sweep.steps.bi.length, 4, 'the main results JSON carries the strategies too');
      const png = (await download(page, 'export-sweep-png')).bytes;
      assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG', 'the sweep chart as PNG');
      assert.ok(png.readUInt32BE(16) > 600 && png.readUInt32BE(20) > 500, `the PNG is the plot at 2× (${png.readUInt32BE(16)}×${png.readUInt32BE(20)})`);
      writeFileSync(join(screenshotDir, 'sweep-export.png'), png);
      const sweepSvg = (await download(page, 'export-sweep-svg')).text;
      assert.match(sweepSvg, /<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      // the file carries the legend of the strategies shown on the page (hidden ones left out)
      const shownLabels = await page.$$eval('[data-testid=sweep-chart] [data-legend-item][aria-pressed=true]', (items) => items.map((i) => i.dataset.legendItem));
      const hiddenLabels = await page.$$eval('[data-testid=sweep-chart] [data-legend-item][aria-pressed=false]', (items) => items.map((i) => i.dataset.legendItem));
      const texts = [...sweepSvg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1].replaceAll('&amp;', '&'));
      assert.ok(shownLabels.length > 0);
      for (const label of shownLabels) assert.ok(texts.includes(label), `the exported sweep's legend has "${label}"`);
      for (const label of hiddenLabels) assert.ok(!texts.includes(label), `a hidden strategy ("${label}") is left out of the exported legend`);

      // The link, in a fresh profile, with the model's weights held back: the sweep is drawn at once.
      await page.getByTestId('copy-link').click();
      const link = await page.getByTestId('share-link').inputValue();
      const fresh = await newPage(browser);
      contexts.push(fresh.context);
      await fresh.context.addInitScript(() => localStorage.setItem('prunelab.tour.seen', '1'));
      let release;
      const held = new Promise((resolve) => (release = resolve));
      await fresh.context.route('**/models/sotu-llama/model.safetensors', async (route) => {
        await held;
        await route.continue();
      });
      const url = new URL(link);
      url.searchParams.set('backend', backend);
      await fresh.page.goto(url.href);
      await fresh.page.waitForSelector('[data-testid=sweep-from-link]', { timeout: 20_000 });
      assert.equal(await fresh.page.locator('[data-testid=model-name]').count(), 0, 'drawn before the model has loaded');
      assert.equal(await fresh.page.locator('[data-testid=sweep-series]').count(), 3, 'three curves from the link');
      await fresh.page.getByTestId('sweep-panel').scrollIntoViewIfNeeded();
      await fresh.page.screenshot({ path: join(screenshotDir, 'sweep-from-link-before-model.png') });
      const fromLink = await fresh.page.$$eval('[data-testid=sweep-cell]', (els) =>
        els.map((e) => ({ strategy: e.dataset.strategy, k: Number(e.dataset.k), ppl: Number(e.dataset.ppl), removed: e.dataset.removed })),
      );
      assert.equal(fromLink.length, measured.length);
      const all = [...measured.map((c) => c.ppl), ...json.sweep.steps.random.flatMap((s) => [s.pplMin, s.pplMax])];
      const factor = Math.exp((Math.log(Math.max(...all)) - Math.log(Math.min(...all))) / (2 * 65534)) * (1 + 1e-9);
      for (const c of measured) {
        const got = fromLink.find((f) => f.strategy === c.strategy && f.k === c.k);
        assert.equal(got.removed, c.removed, `${c.strategy} k=${c.k}: the same blocks`);
        assert.ok(Math.max(got.ppl / c.ppl, c.ppl / got.ppl) <= factor, `${c.strategy} k=${c.k}: link ${got.ppl} vs measured ${c.ppl}`);
      }
      release();
      await waitModel(fresh.page);
      await fresh.page.waitForTimeout(500);
      assert.equal(await fresh.page.locator('[data-testid=sweep-from-link]').count(), 1, 'still the link’s sweep once the model is there');
      assert.equal(await fresh.page.locator('[data-testid=sweep-cell]').count(), measured.length);
      const again = JSON.parse((await download(fresh.page, 'export-strategies-json')).text);
      assert.equal(again.sweep.fromLink, true, 'the export says where the curves came from');
      assert.deepEqual(fresh.pageErrors, []);
      await fresh.context.close();
    },
  },
  {
    name: 'teach: hub: a gated repository explains itself without a token (401) and with a wrong one (403), loads with the right one; the link and exports carry the commit, never the token; a moved branch is said',
    timeout: 120_000,
    async run({ browser, root, contexts, backend, screenshotDir }) {
      const TOKEN = 'hf_teach_test_token';
      const COMMIT = 'a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0';
      const NEWER = 'ffffeeeeddddccccbbbbaaaa9999888877776666';
      const GATED = 'prunelab-test/gated-sotu';
      const names = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
      const sizes = Object.fromEntries(names.map((n) => [n, readFileSync(join(root, MODEL_DIR, n)).length]));
      let head = COMMIT;
      const seen = [];
      /** huggingface.co as it answers a gated repository: 401 without a token, 403 with one that was not granted. */
      const standIn = async (route) => {
        const request = route.request();
        const url = new URL(request.url());
        const cors = {
          'access-control-allow-origin': '*',
          'access-control-allow-headers': 'authorization, range, accept',
          'access-control-expose-headers': 'content-range, content-length',
        };
        if (request.method() === 'OPTIONS') return route.fulfill({ status: 204, headers: cors });
        const auth = request.headers().authorization;
        seen.push({ path: url.pathname, auth });
        if (auth !== `Bearer ${TOKEN}`) return route.fulfill({ status: auth ? 403 : 401, headers: cors, body: 'Access to this model is restricted.' });
        if (url.pathname === `/api/models/${GATED}/revision/main`) return route.fulfill({ headers: cors, json: { id: GATED, sha: head } });
        const tree = /^\/api\/models\/prunelab-test\/gated-sotu\/tree\/(\w+)$/.exec(url.pathname);
        if (tree) return route.fulfill({ headers: cors, json: names.map((path) => ({ type: 'file', path, size: sizes[path] })) });
        const file = /^\/prunelab-test\/gated-sotu\/resolve\/(\w+)\/(.+)$/.exec(url.pathname);
        if (file && names.includes(file[2])) {
          const bytes = readFileSync(join(root, MODEL_DIR, file[2]));
          const range = /bytes=(\d+)-(\d+)/.exec(request.headers().range ?? '');
          if (range) {
            const [start, end] = [Number(range[1]), Math.min(Number(range[2]), bytes.length - 1)];
            return route.fulfill({ status: 206, headers: { ...cors, 'content-range': `bytes ${start}-${end}/${bytes.length}` }, body: bytes.subarray(start, end + 1) });
          }
          return route.fulfill({ headers: { ...cors, 'content-type': 'application/octet-stream' }, body: bytes });
        }
        return route.fulfill({ status: 404, headers: cors, body: 'Entry not found' });
      };
      const open = async () => {
        const p = await newPage(browser);
        contexts.push(p.context);
        await p.context.addInitScript(() => localStorage.setItem('prunelab.tour.seen', '1'));
        await p.context.route('https://huggingface.co/**', standIn);
        // Which hosts received an Authorization header.
        p.authorized = [];
        p.page.on('request', (r) => r.headers().authorization && p.authorized.push(new URL(r.url()).host));
        return p;
      };
      const { page, pageErrors, context, authorized } = await open();
      await page.goto(`${BASE_URL(backend)}`);
      await waitModel(page);
      const load = async () => {
        await page.getByTestId('hub-id').fill(GATED);
        await page.getByTestId('hub-load').click();
      };
      await load();
      await page.getByTestId('hub-error').filter({ hasText: 'gated or private' }).waitFor({ timeout: 10_000 });
      assert.match(await page.locator('[data-testid=notice]').last().textContent(), /access token/);
      await page.getByTestId('hub-token').fill('hf_not_granted');
      await page.getByTestId('hub-token').press('Tab');
      await load();
      await page.getByTestId('hub-error').filter({ hasText: '403' }).waitFor({ timeout: 10_000 });
      assert.match(await page.getByTestId('hub-error').textContent(), /accept its license/);
      await page.getByTestId('model-panel').screenshot({ path: join(screenshotDir, 'hub-gated-403.png') });
      await page.getByTestId('hub-token').fill(TOKEN);
      await page.getByTestId('hub-token').press('Tab');
      await load();
      await page.getByTestId('hub-confirm-box').waitFor({ timeout: 10_000 });
      assert.equal(await page.getByTestId('hub-commit').getAttribute('data-commit'), COMMIT, 'listed at the commit main points at');
      await page.getByTestId('hub-confirm').click();
      await waitModel(page, GATED, 30_000);
      assert.ok(
        seen.some((r) => r.path === `/${GATED}/resolve/${COMMIT}/model.safetensors`),
        'the weights are read at the commit',
      );
      assert.deepEqual([...new Set(authorized)], ['huggingface.co'], 'the token went to huggingface.co only');
      assert.equal(await page.evaluate(() => localStorage.getItem('prunelab.hf-token')), null, 'not remembered unless asked');
      await page.getByTestId('hub-token-remember').check();
      assert.equal(await page.evaluate(() => localStorage.getItem('prunelab.hf-token')), TOKEN);
      await page.getByTestId('hub-token-remember').uncheck();
      assert.equal(await page.evaluate(() => localStorage.getItem('prunelab.hf-token')), null);
      // The link and every export carry the commit, none the token.
      await page.getByTestId('copy-link').click();
      const link = await page.getByTestId('share-link').inputValue();
      const wire = JSON.parse(Buffer.from(new URL(link).hash.split('.')[1], 'base64url').toString('utf8'));
      assert.deepEqual(wire.m, ['h', GATED, 'main', COMMIT]);
      assert.ok(!link.includes(TOKEN));
      await page.getByTestId('score-button').click();
      await page.waitForSelector('[data-testid=score-controls][data-state=done]', { timeout: 40_000 });
      const results = (await download(page, 'export-json')).text;
      assert.equal(JSON.parse(results).extras.model.commit, COMMIT);
      const script = (await download(page, 'export-transformers')).text;
      assert.match(script, new RegExp(`^REVISION = "${COMMIT}" `, 'm'));
      for (const text of [results, script]) assert.ok(!text.includes(TOKEN), 'no export holds the token');
      // The branch moves on: the link opens at its own commit, and says so.
      head = NEWER;
      const later = await open();
      await later.context.addInitScript((t) => localStorage.setItem('prunelab.hf-token', t), TOKEN);
      await later.page.goto(link);
      await later.page.locator('[data-testid=notice]').filter({ hasText: 'has changed since the link was made' }).waitFor({ timeout: 15_000 });
      assert.match(await later.page.getByTestId('hub-head-moved').textContent(), /ffffeee/);
      assert.equal(await later.page.getByTestId('hub-commit').getAttribute('data-commit'), COMMIT, 'the link’s commit is what would load');
      assert.deepEqual(pageErrors, []);
      await context.close();
      await later.context.close();
    },
  },
  {
    name: 'teach: hand-off: no uncaught errors in the pages',
    async run({ pageErrors }) {
      assert.deepEqual(pageErrors, []);
    },
  },
];
