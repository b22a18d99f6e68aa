// Share and export checks (run by tests/browser/run.mjs): a link opens the same experiment in a fresh browser
// profile (chart first, from the link's scores, while the model still downloads), back/forward walk the
// states, hostile links leave a notice and a working lab, the exported checkpoint gives the CLI the app's
// perplexity, JSON / CSV / SVG / PNG hold the chart, and hub models list their size, load and cache.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { unzipSync } from 'fflate';
import { assertBackend, newLabPage } from './lab-page.mjs';
import { removalKey as planRemovalKey } from '../../src/engine/plan.ts';

/** The link round trip runs on both backends; export, hostile links, screenshots and the hub on the CPU only. */
export const backends = ['cpu', 'webgpu'];

const MODEL_DIR = 'public/models/sotu-llama';
const EVALUATION = 'public/calibration/moby-dick-eval.txt';
/** The compare panel's perplexity windows (state.svelte.ts evalWindows): 4 × 128 tokens of moby-dick-eval. */
const EVAL = { seqLen: 128, maxSequences: 4 };
const SCORE = { seqLen: 64, maxSequences: 4 };
const CUT = 3;
const PROMPT = 'We the people, in order to form';
const TOKENS = 8;
/** How long the fresh profile's model download is held back, to look at the chart before it arrives. */
const DOWNLOAD_DELAY_MS = 2500;

/** The lab's key for a whole-block removal (the engine's one removal key). */
const removalKey = (blocks = []) => planRemovalKey({ blocks });

function base64url(text) {
  return Buffer.from(text, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

async function newPage(browser, options = {}) {
  const { context, page, pageErrors } = await newLabPage(browser, options);
  page.on('dialog', (d) => {
    pageErrors.push(`a dialog opened: ${d.message()}`);
    void d.dismiss();
  });
  return { context, page, pageErrors };
}

export async function setup({ browser, baseUrl, backend }) {
  const author = await newPage(browser);
  // The author starts from a hand-written link too: small calibration windows and few generated tokens keep
  // every page's compare panel cheap on two shared cores (the rest is the default experiment).
  const start = {
    m: ['b', 'sotu-llama'],
    c: ['b', 'moby-dick', SCORE.maxSequences, SCORE.seqLen],
    k: 'bi',
    n: 1,
    r: [],
    ra: [],
    rm: [],
    p: 'The state of the Union is',
    g: [TOKENS, 0, 0, 0],
  };
  await author.page.goto(`${baseUrl}?backend=${backend}#v1.${base64url(JSON.stringify(start))}`);
  return { author, contexts: [author.context], pageErrors: author.pageErrors, page: author.page, shared: {} };
}

export async function teardown({ contexts }) {
  for (const context of contexts ?? []) await context.close().catch(() => {});
}

async function waitModel(page, name = 'sotu-llama', timeout = 60_000) {
  await page.waitForFunction((name) => document.querySelector('[data-testid=model-name]')?.textContent === name, name, { timeout });
}

async function waitCompareIdle(page, key, timeout = 60_000) {
  await page.waitForFunction(
    (key) => {
      const q = (id) => document.querySelector(`[data-testid=${id}]`);
      const idle = (el) => el && el.getAttribute('data-busy') === 'false' && el.getAttribute('data-removal') === key;
      return idle(q('output-pruned')) && idle(q('ppl-pruned')) && q('ppl-pruned').hasAttribute('data-ppl');
    },
    key,
    { timeout },
  );
}

/** The bars as drawn: index, the three metrics (full precision, from data-*), and the cut. */
function readBars(page) {
  return page.$$eval('[data-testid=bar]', (els) =>
    els.map((e) => ({
      index: Number(e.dataset.index),
      bi: e.dataset.bi === undefined ? null : Number(e.dataset.bi),
      angular: e.dataset.angular === undefined ? null : Number(e.dataset.angular),
      relMagnitude: e.dataset.relMagnitude === undefined ? null : Number(e.dataset.relMagnitude),
      cut: e.dataset.cut,
    })),
  );
}

async function download(page, testId) {
  const [file] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.getByTestId(testId).click()]);
  const path = await file.path();
  return { name: file.suggestedFilename(), bytes: readFileSync(path) };
}

const METRICS = ['bi', 'angular', 'relMagnitude'];

export const checks = [
  {
    name: 'share: score, cut 3 blocks, change metric and prompt, then Copy link gives a link to that experiment',
    timeout: 150_000,
    async run({ author, shared, backend }) {
      const { page } = author;
      await waitModel(page);
      assert.equal(await page.getByTestId('cal-seqlen').inputValue(), String(SCORE.seqLen));
      await page.getByTestId('score-button').click();
      await assertBackend(page, backend);
      await page.waitForSelector('[data-testid=score-controls][data-state=done]', { timeout: 120_000 });
      await page.getByTestId('lowest-slider').fill(String(CUT));
      // The slider means "the 3 lowest by the metric shown": switching to angular re-picks them.
      await page.getByTestId('metric-angular').click();
      await page.getByTestId('prompt').fill(PROMPT);
      // The link carries the prompt of the last run (what the outputs show), so run it.
      await page.getByTestId('generate').click();
      await page.getByTestId('copy-link').click();
      const link = await page.getByTestId('share-link').inputValue();
      assert.match(link, /#v1\.[\w-]+\.[\w-]+$/, `link "${link.slice(0, 80)}…" holds the state and the scores`);
      assert.match(await page.getByTestId('copy-status').textContent(), /Copied|Copy the selected/);
      const removed = (await page.getByTestId('removal-summary').getAttribute('data-removed-blocks')).split(',').map(Number);
      assert.equal(removed.length, CUT);
      const bars = await readBars(page);
      assert.equal(bars.length, 12);
      // The address bar follows the lab too (written shortly after the last change).
      await page.waitForFunction(() => location.hash.startsWith('#v1.'), null, { timeout: 5_000 });
      Object.assign(shared, { link, removed, bars });
      console.log(`#   link ${link.length} characters; cut ${removed.join(', ')} by angular distance`);
    },
  },
  {
    name: 'export: the pruned-model zip, loaded by `prunelab ppl`, gives the app’s pruned perplexity (1e-4 relative)',
    timeout: 60_000,
    backends: ['cpu'],
    async run({ author, shared, run }) {
      const { page } = author;
      await waitCompareIdle(page, removalKey(shared.removed), 50_000);
      const appPpl = Number(await page.getByTestId('ppl-pruned').getAttribute('data-ppl'));
      const zip = await download(page, 'export-zip');
      assert.match(zip.name, /^sotu-llama-pruned\.zip$/);
      const dir = mkdtempSync(join(tmpdir(), 'prunelab-zip-'));
      try {
        const files = unzipSync(new Uint8Array(zip.bytes));
        for (const [name, bytes] of Object.entries(files)) {
          if (name.endsWith('/')) continue;
          mkdirSync(join(dir, dirname(name)), { recursive: true });
          writeFileSync(join(dir, name), bytes);
        }
        const folder = join(dir, 'sotu-llama-pruned');
        const config = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8'));
        assert.equal(config.num_hidden_layers, 12 - CUT);
        assert.match(readFileSync(join(folder, 'PRUNELAB.md'), 'utf8'), new RegExp(`Removed original blocks \\(0-based\\): \\*\\*${shared.removed.join(', ')}\\*\\*`));
        const r = await run(process.execPath, [
          'cli/bin.mjs',
          'ppl',
          '--model',
          folder,
          '--text',
          EVALUATION,
          '--seq-len',
          String(EVAL.seqLen),
          '--max-sequences',
          String(EVAL.maxSequences),
          '--json',
        ]);
        assert.equal(r.code, 0, `prunelab ppl failed: ${r.stderr}`);
        const cli = JSON.parse(r.stdout);
        assert.ok(Math.abs(cli.ppl / appPpl - 1) <= 1e-4, `CLI ppl ${cli.ppl} vs app ${appPpl}`);
        console.log(`#   zip ${(zip.bytes.length / 1e6).toFixed(2)} MB; perplexity app ${appPpl.toFixed(4)} vs CLI on the export ${cli.ppl.toFixed(4)}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
  {
    name: 'export: JSON and CSV hold the chart’s numbers; SVG and PNG hold the chart',
    timeout: 30_000,
    backends: ['cpu'],
    async run({ author, shared, screenshotDir }) {
      const { page } = author;
      const bars = await readBars(page);
      const json = JSON.parse((await download(page, 'export-json')).bytes.toString('utf8'));
      assert.equal(json.format, 'prunelab-results');
      assert.deepEqual(json.removed, shared.removed);
      assert.equal(json.metric, 'angular');
      assert.equal(json.blocks.length, bars.length);
      for (const bar of bars) {
        const row = json.blocks.find((b) => b.index === bar.index);
        for (const metric of METRICS) assert.equal(row[metric], bar[metric], `JSON block ${bar.index} ${metric}`);
        assert.equal(row.removed, bar.cut === 'block');
      }
      const csv = (await download(page, 'export-csv')).bytes.toString('utf8').trim().split('\r\n');
      const header = csv[0].split(',');
      assert.deepEqual(header.slice(0, 4), ['index', 'bi', 'angular', 'relMagnitude']);
      assert.equal(csv.length, bars.length + 1);
      for (const line of csv.slice(1)) {
        const cells = line.split(',');
        const bar = bars.find((b) => b.index === Number(cells[0]));
        for (const [k, metric] of METRICS.entries()) assert.equal(Number(cells[k + 1]), bar[metric], `CSV block ${bar.index} ${metric}`);
        assert.equal(cells[header.indexOf('removed')], String(bar.cut === 'block'));
      }
      const svg = (await download(page, 'export-svg')).bytes.toString('utf8');
      assert.match(svg, /^<\?xml[^>]*>\s*<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      assert.equal((svg.match(/class="|var\(--/g) ?? []).length, 0, 'styles are inlined (no classes or CSS variables left)');
      // the legend beside the chart on the page is drawn into the file, swatches included
      const legend = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
      for (const label of ['kept', 'removed', 'half removed'])
        assert.ok(legend.includes(label), `the exported chart's legend has "${label}" (texts: ${legend.slice(-6).join(' | ')})`);
      assert.ok(
        (svg.match(/url\(&quot;#hatch-removed&quot;\)|url\("#hatch-removed"\)|url\(#hatch-removed\)/g) ?? []).length >= 1,
        "the removed swatch uses the bars' hatch pattern",
      );
      const width = Number(/<svg[^>]*\swidth="(\d+(?:\.\d+)?)"/.exec(svg)[1]);
      const png = (await download(page, 'export-png')).bytes;
      assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
      assert.equal(png.readUInt32BE(16), Math.round(width * 2), 'the PNG is the chart at 2×');
      writeFileSync(join(screenshotDir, 'share-chart-export.png'), png);
      console.log(`#   SVG ${(svg.length / 1024).toFixed(0)} KB, PNG ${png.readUInt32BE(16)}×${png.readUInt32BE(20)}`);
    },
  },
  {
    name: 'share: the link in a fresh profile draws the same scores before the model has loaded, then the same cuts, metric and prompt',
    timeout: 90_000,
    async run({ browser, contexts, shared, backend, screenshotDir }) {
      assert.ok(shared.link, 'the previous check made a link');
      const fresh = await newPage(browser);
      contexts.push(fresh.context);
      shared.fresh = fresh;
      let release;
      const held = new Promise((resolve) => (release = resolve));
      await fresh.context.route('**/models/sotu-llama/model.safetensors', async (route) => {
        await Promise.race([held, new Promise((r) => setTimeout(r, DOWNLOAD_DELAY_MS))]);
        await route.continue();
      });
      const url = new URL(shared.link);
      url.searchParams.set('backend', backend);
      await fresh.page.goto(url.href);
      await fresh.page.waitForFunction(() => document.querySelectorAll('[data-testid=bar][data-bi]').length === 12, null, { timeout: 10_000 });
      const early = await readBars(fresh.page);
      const stillLoading = await fresh.page.evaluate(() => !document.querySelector('[data-testid=model-name]') && !!document.querySelector('[data-testid=load-progress]'));
      assert.ok(stillLoading, 'the chart was read while the model was still loading');
      assert.equal(await fresh.page.getByTestId('scores-from-link').count(), 1, 'the chart says its scores are from the link');
      assert.equal(await fresh.page.locator('[data-testid=influence-chart]').getAttribute('data-metric'), 'angular');
      // Quantised in the link: within (max − min) / (2 · 65534) of the measured value.
      let worst = 0;
      for (const metric of METRICS) {
        const values = shared.bars.map((b) => b[metric]);
        const tolerance = (Math.max(...values) - Math.min(...values)) / (2 * 65534) + 1e-12;
        for (const bar of shared.bars) {
          const got = early.find((b) => b.index === bar.index)[metric];
          worst = Math.max(worst, Math.abs(got - bar[metric]) / tolerance);
          assert.ok(Math.abs(got - bar[metric]) <= tolerance, `block ${bar.index} ${metric}: link ${got} vs measured ${bar[metric]}`);
        }
      }
      await fresh.page.screenshot({ path: join(screenshotDir, 'share-link-while-loading.png') });
      const earlyCuts = early.filter((b) => b.cut === 'block').map((b) => b.index);
      assert.deepEqual(earlyCuts, shared.removed, 'the chart marks the same blocks cut before the model loads');
      release();
      await waitModel(fresh.page);
      await assertBackend(fresh.page, backend);
      assert.equal(await fresh.page.getByTestId('removal-summary').getAttribute('data-removed-blocks'), shared.removed.join(','));
      const cells = await fresh.page.$$eval('[data-testid=block-cell][data-cut=block]', (els) => els.map((e) => Number(e.dataset.index)));
      assert.deepEqual(cells, shared.removed, 'the block strip shows the same cuts');
      assert.equal(await fresh.page.getByTestId('prompt').inputValue(), PROMPT);
      assert.equal(await fresh.page.getByTestId('cal-seqlen').inputValue(), String(SCORE.seqLen));
      assert.equal(await fresh.page.getByTestId('max-tokens').inputValue(), String(TOKENS));
      assert.equal(await fresh.page.getByTestId('scores-from-link').count(), 1, 'still the link’s scores until re-scored');
      assert.equal(await fresh.page.locator('[data-testid=notice][data-level=warning]').count(), 0, 'an honest link raises no warning');
      console.log(`#   chart read while loading; worst |link − measured| = ${worst.toFixed(2)} × the quantisation bound`);
    },
  },
  {
    name: 'share: back and forward walk through the states (a cut is a step)',
    timeout: 20_000,
    async run({ shared }) {
      const { page } = shared.fresh;
      const extra = [0, 1, 2].find((i) => !shared.removed.includes(i));
      const hashBefore = await page.evaluate(() => location.hash);
      await page.locator(`[data-testid=bar][data-index="${extra}"] rect.hit`).click();
      await page.waitForFunction((h) => location.hash !== h, hashBefore, { timeout: 5_000 });
      const withExtra = [...shared.removed, extra].sort((a, b) => a - b).join(',');
      assert.equal(await page.getByTestId('removal-summary').getAttribute('data-removed-blocks'), withExtra);
      await page.goBack();
      await page.waitForFunction((want) => document.querySelector('[data-testid=removal-summary]')?.getAttribute('data-removed-blocks') === want, shared.removed.join(','), {
        timeout: 5_000,
      });
      await page.goForward();
      await page.waitForFunction((want) => document.querySelector('[data-testid=removal-summary]')?.getAttribute('data-removed-blocks') === want, withExtra, { timeout: 5_000 });
      await page.goBack();
      await page.waitForFunction((want) => document.querySelector('[data-testid=removal-summary]')?.getAttribute('data-removed-blocks') === want, shared.removed.join(','), {
        timeout: 5_000,
      });
      assert.deepEqual(shared.fresh.pageErrors, []);
      // Its compare panel would keep computing: free the cores for the checks that follow.
      await shared.fresh.context.close();
    },
  },
  {
    name: 'share: a hostile link (script in the prompt, bad block numbers, wrong types, garbage scores) shows a notice and a working lab',
    timeout: 30_000,
    backends: ['cpu'],
    async run({ browser, baseUrl, contexts, backend }) {
      const hostile = await newPage(browser);
      contexts.push(hostile.context);
      const { page, pageErrors } = hostile;
      const prompt = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>';
      const wire = {
        m: ['b', 'sotu-llama'],
        c: ['b', 'moby-dick', 4, 64],
        k: 'constructor',
        n: -1,
        r: [1, 99, -3, 'x', 1e300, 2],
        ra: { __proto__: 1 },
        p: prompt,
        g: [4, 0, 0, 0],
        s: { t: 'many', q: 'bad' },
      };
      await page.goto(`${baseUrl}?backend=${backend}#v1.${base64url(JSON.stringify(wire))}.AAAA_garbage`);
      const notice = page.locator('[data-testid=notice][data-level=warning]').filter({ hasText: 'ignored' });
      await notice.waitFor({ timeout: 10_000 });
      const text = await notice.textContent();
      assert.match(text, /metric/, 'the notice names the bad metric');
      assert.match(text, /removed blocks/, 'the notice names the bad block numbers');
      await waitModel(page);
      assert.equal(await page.getByTestId('prompt').inputValue(), prompt, 'the prompt arrives as text');
      assert.equal(await page.evaluate(() => window.__pwned), undefined, 'nothing in the link ran');
      assert.equal(await page.locator('main img, main script').count(), 0, 'nothing in the link became markup');
      assert.equal(await page.getByTestId('removal-summary').getAttribute('data-removed-blocks'), '1,2', 'only the valid block numbers were applied');
      assert.equal(await page.locator('[data-testid=influence-chart]').getAttribute('data-metric'), 'bi');
      // The address bar no longer holds the hostile text: it holds the state the lab applied.
      await page.waitForFunction(() => !location.hash.includes('garbage'), null, { timeout: 5_000 });
      // Garbage and an unknown version, typed into the hash of the running lab.
      for (const [hash, pattern] of [
        ['#v1.%%%not-base64%%%', /could not be opened/],
        ['#v9.abc', /format v9/],
      ]) {
        await page.evaluate((h) => {
          location.hash = h;
        }, hash);
        await page.locator('[data-testid=notice]').filter({ hasText: pattern }).waitFor({ timeout: 5_000 });
      }
      // Still working: a click cuts a block, and the model answers the (harmless) prompt.
      await page.locator('[data-testid=block-cell][data-index="5"]').click();
      assert.equal(await page.getByTestId('removal-summary').getAttribute('data-removed-blocks'), '1,2,5');
      await page.waitForFunction(() => document.querySelector('[data-testid=generated-original]')?.textContent.length > 0, null, { timeout: 20_000 });
      assert.deepEqual(pageErrors, []);
      await hostile.context.close();
    },
  },
  {
    name: 'share: screenshots of the lab with Share and export at 1280×800, light and dark',
    timeout: 20_000,
    backends: ['cpu'],
    async run({ author, screenshotDir }) {
      const { page } = author;
      await page.getByTestId('copy-link').click();
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: join(screenshotDir, 'share.png') });
      // The Model panel (hub field, cached models) and the Share panel, scrolled into view.
      await page.getByTestId('model-panel').evaluate((el) => el.scrollIntoView({ block: 'end' }));
      await page.screenshot({ path: join(screenshotDir, 'share-panels.png') });
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: join(screenshotDir, 'share-panels-dark.png') });
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: join(screenshotDir, 'share-dark.png') });
      await page.emulateMedia({ colorScheme: 'light' });
    },
  },
  {
    name: 'hub: the size is shown before downloading; confirmed, it loads with progress, is cached, listed with its size and deleted',
    timeout: 40_000,
    backends: ['cpu'],
    async run({ author, root, screenshotDir }) {
      const { page, context } = author;
      const repo = 'prunelab-test/sotu-llama';
      const names = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
      const sizes = Object.fromEntries(names.map((n) => [n, statSync(join(root, MODEL_DIR, n)).size]));
      const requested = [];
      // huggingface.co with the hub's URL layout (tree API + resolve), served from the embedded model.
      await context.route('https://huggingface.co/**', async (route) => {
        const url = new URL(route.request().url());
        requested.push(url.pathname);
        if (url.pathname === `/api/models/${repo}/tree/main`) {
          return route.fulfill({
            headers: { 'access-control-allow-origin': '*' },
            json: names.map((path) => ({ type: 'file', path, size: sizes[path], ...(path.endsWith('.safetensors') ? { lfs: { size: sizes[path] } } : {}) })),
          });
        }
        const file = url.pathname.startsWith(`/${repo}/resolve/main/`) ? url.pathname.slice(`/${repo}/resolve/main/`.length) : null;
        if (file && names.includes(file))
          return route.fulfill({ body: readFileSync(join(root, MODEL_DIR, file)), headers: { 'content-type': 'application/octet-stream', 'access-control-allow-origin': '*' } });
        if (url.pathname.includes('/offline/')) return route.abort('internetdisconnected');
        return route.fulfill({ status: 404, body: 'Entry not found', headers: { 'access-control-allow-origin': '*' } });
      });
      // Unreachable: a clear message, and the lab keeps its model.
      await page.getByTestId('hub-id').fill('offline/model');
      await page.getByTestId('hub-load').click();
      await page.getByTestId('hub-error').filter({ hasText: 'could not be reached' }).waitFor({ timeout: 10_000 });
      assert.equal(await page.getByTestId('model-name').textContent(), 'sotu-llama');
      // Reachable: the size first, nothing large downloaded yet.
      await page.getByTestId('hub-id').fill(repo);
      await page.getByTestId('hub-load').click();
      const box = page.getByTestId('hub-confirm-box');
      await box.waitFor({ timeout: 10_000 });
      const total = Object.values(sizes).reduce((a, b) => a + b, 0);
      assert.equal(Number(await box.getAttribute('data-total-bytes')), total);
      assert.match(await page.getByTestId('hub-size').textContent(), /5\.\d MB/);
      assert.ok(!requested.some((p) => p.endsWith('model.safetensors')), 'no weights fetched before confirming');
      await page.getByTestId('hub-confirm').click();
      await waitModel(page, repo, 30_000);
      const cached = page.locator(`[data-testid=cached-model][data-id="${repo}@main"]`);
      await cached.waitFor({ state: 'attached', timeout: 10_000 });
      assert.equal(Number(await cached.getAttribute('data-bytes')), total, 'the cache lists the model with its size');
      await page.getByTestId('cached-models').locator('summary').click();
      await page.getByTestId('model-panel').evaluate((el) => el.scrollIntoView({ block: 'end' }));
      await page.screenshot({ path: join(screenshotDir, 'share-hub-cached.png') });
      await cached.getByTestId('cached-delete').click();
      await cached.waitFor({ state: 'detached', timeout: 10_000 });
    },
  },
  {
    name: 'share: no uncaught errors in the pages',
    async run({ pageErrors }) {
      assert.deepEqual(pageErrors, []);
    },
  },
];
