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
    name: 'teach: hand-off: no uncaught errors in the pages',
    async run({ pageErrors }) {
      assert.deepEqual(pageErrors, []);
    },
  },
];
