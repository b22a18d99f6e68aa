// Block-streamed scoring in the lab (issue 12): with a GPU budget smaller than the checkpoint (?gpu-memory=4 MiB
// against sotu-llama's 5.4 MB of weights) the lab loads only the headers and the ends, shows "streamed" and the
// budget in the status bar, scores block by block with per-block progress ("block 7 / 12 · … read · … s left"),
// cancels, and its chart equals `prunelab score --backend webgpu --gpu-memory 4 --json` — from a picked folder
// (File.slice) and from a stand-in hub that answers HTTP Range requests (only the ranges asked for are served).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { assertBackend, newLabPage, setNumber, waitForModel } from './lab-page.mjs';

export const backends = ['webgpu'];

const MODEL = 'public/models/sotu-llama';
const CALIBRATION = 'public/calibration/moby-dick.txt';
const SCORE = { seqLen: 64, maxSequences: 4 };
const BUDGET_MIB = 4;
const BLOCKS = 12;
/** Page vs CLI on WebGPU (Chromium's Dawn vs the webgpu package's, both SwiftShader): as lab.checks.mjs. */
const TOLERANCE = 1e-5;
const REPO = 'prunelab-test/sotu-llama-streamed';
/** The Strategies section's default heatmap windows: 2 × 64 tokens of the built-in calibration text. */
const HEAT_SEQUENCES = 2;

const files = () => readdirSync(MODEL).filter((f) => f.endsWith('.json') || f.endsWith('.safetensors'));

export async function prepare({ run }) {
  const args = ['cli/bin.mjs', 'score', '--model', MODEL, '--text', CALIBRATION, '--seq-len', String(SCORE.seqLen), '--max-sequences', String(SCORE.maxSequences)];
  const r = await run(process.execPath, [...args, '--backend', 'webgpu', '--gpu-memory', String(BUDGET_MIB), '--json']);
  if (r.code !== 0) throw new Error(`prunelab score failed: ${r.stderr}`);
  const score = JSON.parse(r.stdout);
  if (score.memory?.mode !== 'streamed') throw new Error(`the CLI ran ${score.memory?.mode}, not streamed, under --gpu-memory ${BUDGET_MIB}`);
  // The heatmap's windows (the Strategies section's default 2 × 64): its neighbour cells (i, i + 1) are this score's BI and angular.
  const h = await run(process.execPath, [...args.slice(0, -2), '--max-sequences', String(HEAT_SEQUENCES), '--backend', 'webgpu', '--gpu-memory', String(BUDGET_MIB), '--json']);
  if (h.code !== 0) throw new Error(`prunelab score failed: ${h.stderr}`);
  return { score, heatScore: JSON.parse(h.stdout) };
}

export async function setup({ browser, baseUrl }) {
  const { context, page, pageErrors } = await newLabPage(browser);
  // The stand-in hub: the tree API and resolve URLs, answering Range requests with 206 as huggingface.co does.
  const served = { bytes: 0, wholeFiles: [], ranges: 0 };
  await context.route('https://huggingface.co/**', async (route) => {
    const url = new URL(route.request().url());
    const headers = { 'access-control-allow-origin': '*', 'access-control-expose-headers': 'content-range, content-length' };
    if (url.pathname === `/api/models/${REPO}/tree/main`) {
      return route.fulfill({
        headers,
        json: files().map((path) => {
          const size = statSync(join(MODEL, path)).size;
          return { type: 'file', path, size, ...(path.endsWith('.safetensors') ? { lfs: { size } } : {}) };
        }),
      });
    }
    const prefix = `/${REPO}/resolve/main/`;
    const file = url.pathname.startsWith(prefix) ? url.pathname.slice(prefix.length) : null;
    if (!file || !files().includes(file)) return route.fulfill({ status: 404, body: 'Entry not found', headers });
    const body = readFileSync(join(MODEL, file));
    const range = /^bytes=(\d+)-(\d+)$/.exec(route.request().headers().range ?? '');
    if (!range) {
      served.wholeFiles.push(file);
      served.bytes += body.length;
      return route.fulfill({ body, headers: { ...headers, 'content-type': 'application/octet-stream' } });
    }
    const [begin, end] = [Number(range[1]), Math.min(Number(range[2]), body.length - 1)];
    served.ranges++;
    served.bytes += end - begin + 1;
    return route.fulfill({
      status: 206,
      body: body.subarray(begin, end + 1),
      headers: { ...headers, 'content-type': 'application/octet-stream', 'content-range': `bytes ${begin}-${end}/${body.length}` },
    });
  });
  await page.goto(`${baseUrl}?backend=webgpu&gpu-memory=${BUDGET_MIB}`);
  return { context, page, pageErrors, served };
}

export async function teardown({ context }) {
  await context?.close();
}

/** Records every text the status bar's block progress shows (a MutationObserver), from now on. */
async function recordProgress(page) {
  await page.evaluate(() => {
    window.__blockProgress = [];
    const seen = () => {
      const text = document.querySelector('[data-testid=block-progress]')?.textContent?.trim();
      if (text && window.__blockProgress.at(-1) !== text) window.__blockProgress.push(text);
    };
    window.__progressObserver?.disconnect();
    window.__progressObserver = new MutationObserver(seen);
    window.__progressObserver.observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

/** Scores with the check's windows, then reads the bars; asserts per-block progress on the way. */
async function scoreStreamed(page, screenshotDir, shot) {
  await setNumber(page, 'cal-sequences', SCORE.maxSequences);
  await setNumber(page, 'cal-seqlen', SCORE.seqLen);
  await recordProgress(page);
  await page.getByTestId('score-button').click();
  const progress = page.getByTestId('block-progress');
  await progress.waitFor({ timeout: 60_000 });
  await page.waitForFunction(() => /block [3-9] \//.test(document.querySelector('[data-testid=block-progress]')?.textContent ?? ''), null, { timeout: 120_000 });
  await page.screenshot({ path: join(screenshotDir, `${shot}-progress.png`) });
  await page.waitForSelector('[data-testid=score-controls][data-state=done]', { timeout: 200_000 });
  const seen = await page.evaluate(() => window.__blockProgress);
  for (const text of seen) assert.match(text, new RegExp(`^block \\d+ / ${BLOCKS} · [\\d.]+ (KB|MB) read( · \\d+ s left)?$`), `progress text "${text}"`);
  const steps = new Set(seen.map((t) => Number(/^block (\d+)/.exec(t)[1])));
  assert.ok(steps.size >= 4, `per-block progress: saw ${[...steps].join(', ')}`);
  assert.ok([...steps].every((k) => k >= 1 && k <= BLOCKS));
  await page.screenshot({ path: join(screenshotDir, `${shot}-done.png`) });
  return page.$$eval('[data-testid=bar]', (els) =>
    els.map((e) => ({ index: Number(e.dataset.index), bi: Number(e.dataset.bi), angular: Number(e.dataset.angular), relMagnitude: Number(e.dataset.relMagnitude) })),
  );
}

function assertEqualsCli(bars, cli) {
  assert.equal(bars.length, cli.blocks.length, 'one bar per block');
  let worst = 0;
  for (const expected of cli.blocks) {
    const bar = bars.find((b) => b.index === expected.index);
    for (const metric of ['bi', 'angular', 'relMagnitude']) {
      const diff = Math.abs(bar[metric] - expected[metric]);
      worst = Math.max(worst, diff);
      assert.ok(diff <= TOLERANCE, `block ${expected.index} ${metric}: page ${bar[metric]} vs CLI ${expected[metric]}`);
    }
  }
  return worst;
}

async function assertStreamed(page) {
  const mode = page.getByTestId('memory-mode');
  assert.equal(await mode.getAttribute('data-mode'), 'streamed', `status bar: ${await mode.textContent()}`);
  assert.match(await mode.textContent(), new RegExp(`streamed · budget ${BUDGET_MIB}\\.0 MB`));
  assert.match(await page.getByTestId('loaded-memory').textContent(), /^Streamed: the model needs about \d+ MiB resident, more than the 4 MiB budget/);
}

export const checks = [
  {
    name: 'the budget from the address is the Model panel’s, with the reason WebGPU gives no memory size',
    timeout: 120_000,
    async run({ page }) {
      await waitForModel(page);
      assert.equal(await page.getByTestId('gpu-budget').inputValue(), String(BUDGET_MIB));
      // The embedded model is larger than 4 MiB too: it already streams.
      await assertStreamed(page);
      console.log(`#   ${await assertBackend(page, 'webgpu')}; ${await page.getByTestId('memory-mode').textContent()}`);
    },
  },
  {
    name: 'the similarity heatmap of a streamed model: computed when asked (no pass by itself), per-block progress, cancel, then its neighbour cells equal `prunelab score --gpu-memory 4 --json`',
    timeout: 300_000,
    async run({ page, prepared, screenshotDir }) {
      if (prepared?.error) throw prepared.error;
      const heatmap = page.getByTestId('similarity-heatmap');
      const compute = page.getByTestId('heat-compute');
      await compute.waitFor({ timeout: 30_000 });
      assert.match(await heatmap.textContent(), /This model streams its blocks: the heatmap is one pass that reads all 12 of them/);
      assert.equal(await page.getByTestId('heat-cell').count(), 0, 'no pass ran by itself');
      const progressText = () => page.getByTestId('heat-progress').textContent();
      // Cancel between blocks: no matrix, the button back.
      await compute.click();
      await page.waitForFunction(() => /^block [2-9] \/ 12 /.test(document.querySelector('[data-testid=heat-progress]')?.textContent ?? ''), null, { timeout: 120_000 });
      await page.getByTestId('heat-cancel').click();
      await compute.waitFor({ timeout: 30_000 });
      assert.equal(await page.getByTestId('heat-cell').count(), 0, 'a cancelled pass leaves no matrix');
      // The whole pass, its progress recorded as it goes.
      await compute.click();
      const seen = new Set();
      while ((await page.getByTestId('heat-cell').count()) === 0) {
        const text = await progressText().catch(() => null);
        if (text) seen.add(text.trim());
        await page.waitForTimeout(100);
      }
      const blocks = [...seen].filter((t) => t.startsWith('block'));
      for (const text of blocks) assert.match(text, /^block \d+ \/ 12 · [\d.]+ (KB|MB) read( · \d+ s left)?$/, `progress text "${text}"`);
      assert.ok(new Set(blocks.map((t) => /^block (\d+)/.exec(t)[1])).size >= 3, `per-block progress: saw ${blocks.join(' | ')}`);
      await heatmap.scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(screenshotDir, 'streaming-heatmap.png') });
      const cells = await page.$$eval('[data-testid=heat-cell]', (els) =>
        els.map((e) => ({ i: Number(e.dataset.i), j: Number(e.dataset.j), cos: Number(e.dataset.cos), angular: Number(e.dataset.angular) })),
      );
      assert.equal(cells.length, (BLOCKS * (BLOCKS + 1)) / 2, 'one cell per pair i < j of states 0 … 12');
      let worst = 0;
      for (const block of prepared.heatScore.blocks) {
        const cell = cells.find((c) => c.i === block.index && c.j === block.index + 1);
        for (const [page_, cli] of [
          [1 - cell.cos, block.bi],
          [cell.angular, block.angular],
        ]) {
          worst = Math.max(worst, Math.abs(page_ - cli));
          assert.ok(Math.abs(page_ - cli) <= TOLERANCE, `cell (${cell.i}, ${cell.j}): ${page_} vs CLI ${cli}`);
        }
      }
      assert.equal(await compute.count(), 0, 'an up-to-date matrix needs no button');
      console.log(`#   heatmap: ${cells.length} cells after ${blocks.length} progress steps; neighbour cells vs the CLI's streamed score: max |diff| = ${worst.toExponential(2)}`);
    },
  },
  {
    name: 'a picked model folder larger than the budget: streamed, per-block progress in the status bar, the chart equals `prunelab score --gpu-memory 4 --json`',
    timeout: 300_000,
    async run({ page, prepared, screenshotDir }) {
      if (prepared?.error) throw prepared.error;
      await page.getByTestId('files-input').setInputFiles(files().map((f) => join(MODEL, f)));
      await waitForModel(page, 'local files');
      await assertStreamed(page);
      const bars = await scoreStreamed(page, screenshotDir, 'streaming-folder');
      const worst = assertEqualsCli(bars, prepared.score);
      console.log(`#   folder: ${bars.length} bars, max |page − CLI| = ${worst.toExponential(2)}`);
    },
  },
  {
    name: 'cancel stops a streamed scoring between blocks and keeps the last complete scores',
    timeout: 200_000,
    async run({ page }) {
      const before = await page.$$eval('[data-testid=bar]', (els) => els.map((e) => e.dataset.bi));
      await page.getByTestId('score-button').click();
      await page.waitForFunction(() => /block [1-9] \//.test(document.querySelector('[data-testid=block-progress]')?.textContent ?? ''), null, { timeout: 120_000 });
      await page.getByTestId('score-cancel').click();
      await page.waitForFunction(() => document.querySelector('[data-testid=score-controls]')?.getAttribute('data-state') !== 'running', null, { timeout: 30_000 });
      assert.equal(await page.getByTestId('block-progress').count(), 0, 'no block progress after cancel');
      assert.deepEqual(await page.$$eval('[data-testid=bar]', (els) => els.map((e) => e.dataset.bi)), before);
    },
  },
  {
    name: 'the stand-in hub: the listing says it will stream before any download; loaded by Range requests (headers and ends only), scored per block, the chart equals the CLI’s',
    timeout: 300_000,
    async run({ page, prepared, served, screenshotDir }) {
      if (prepared?.error) throw prepared.error;
      const weights = statSync(join(MODEL, 'model.safetensors')).size;
      await page.getByTestId('hub-id').fill(REPO);
      await page.getByTestId('hub-load').click();
      await page.getByTestId('hub-confirm-box').waitFor({ timeout: 20_000 });
      const plan = page.getByTestId('listed-plan');
      assert.equal(await plan.getAttribute('data-resident'), 'false', await plan.textContent());
      assert.match(await plan.textContent(), /larger than the budget, so its blocks will stream/);
      await page.getByTestId('model-panel').evaluate((el) => el.scrollIntoView({ block: 'start' }));
      await page.screenshot({ path: join(screenshotDir, 'streaming-hub-listing.png') });
      assert.equal(served.bytes, 0, 'nothing downloaded before confirming');
      await page.getByTestId('hub-confirm').click();
      await waitForModel(page, REPO);
      await assertStreamed(page);
      assert.deepEqual(
        served.wholeFiles.filter((f) => f.endsWith('.safetensors')),
        [],
        'the weights were read by range, not whole',
      );
      const atLoad = served.bytes;
      assert.ok(atLoad < weights / 2, `at load only headers and ends were read: ${atLoad} of ${weights} bytes of weights (+ json)`);
      await page.evaluate(() => window.scrollTo(0, 0));
      const bars = await scoreStreamed(page, screenshotDir, 'streaming-hub');
      const worst = assertEqualsCli(bars, prepared.score);
      console.log(
        `#   hub: read ${(atLoad / 1e6).toFixed(2)} MB at load, ${((served.bytes - atLoad) / 1e6).toFixed(2)} MB while scoring (${served.ranges} ranges); max |page − CLI| = ${worst.toExponential(2)}`,
      );
    },
  },
  {
    name: 'the compare panel on a streamed model: what the full model needs resident, nothing streamed until asked, "Generate streamed anyway" with its cost, Stop cancels, the text equals `prunelab generate --allow-streamed`',
    timeout: 300_000,
    async run({ page, run, screenshotDir }) {
      await page.getByTestId('model-name').waitFor({ timeout: 110_000 });
      const panel = page.getByTestId('compare-panel');
      const memory = page.getByTestId('compare-memory');
      await setNumber(page, 'max-tokens', 24);
      await page.getByTestId('generate').click();
      await page.waitForSelector('[data-testid=compare-memory][data-original=streamed] [data-testid=generate-streamed]', { timeout: 60_000 });
      await page.waitForSelector('[data-testid=output-original][data-busy=false]', { timeout: 60_000 });
      assert.match(
        await memory.textContent(),
        /^\s*Block-streamed model \(budget 4\.0 MB\): the full model needs [\d.]+ MB to run resident, more than the budget;\s+nothing is cut\.\s+Generate streamed anyway\s+each token is one block-streamed pass that re-reads 4\.5 MB of weights( \(about [\d.]+ s per token at the last pass's read rate\))?; or cut more blocks, or raise the GPU budget in the Model panel\.\s*$/,
      );
      assert.match(await page.getByTestId('note-original').textContent(), /not generated: it would stream, re-reading 4\.5 MB of weights per token/);
      assert.equal(await page.getByTestId('generated-original').textContent(), '');
      // Never the engine's raw text ("field gpu-memory: …"): 128-token perplexity windows do not fit 4 MiB streamed either, said as such.
      assert.doesNotMatch(await panel.textContent(), /field gpu-memory|needs the model resident/);
      await page.waitForSelector('[data-testid=ppl-original][data-busy=false]', { timeout: 60_000 });
      assert.match(await page.getByTestId('ppl-original').textContent(), /over the GPU budget: a block-streamed pass needs at least/);
      await panel.scrollIntoViewIfNeeded();
      await panel.screenshot({ path: join(screenshotDir, 'streaming-compare-offer.png') });
      // Asked: both sides (nothing cut) generate block-streamed; Stop ends them between blocks.
      await page.getByTestId('generate-streamed').click();
      await page.waitForFunction(() => (document.querySelector('[data-testid=generated-original]')?.textContent ?? '').length > 0, null, { timeout: 120_000 });
      await panel.getByRole('button', { name: 'Stop' }).click();
      await page.waitForSelector('[data-testid=output-original][data-busy=false]', { timeout: 30_000 });
      await page.waitForSelector('[data-testid=output-pruned][data-busy=false]', { timeout: 30_000 });
      const stopped = Number(/^(\d+) tokens/.exec((await page.locator('[data-testid=output-original] .meta').textContent()).trim())[1]);
      assert.ok(stopped >= 1 && stopped < 24, `Stop ended the streamed generation after ${stopped} of 24 tokens`);
      // From now on this model generates streamed without asking; the text is the CLI's.
      await setNumber(page, 'max-tokens', 4);
      await page.getByTestId('generate').click();
      await page.waitForFunction(() => /^4 tokens/.test(document.querySelector('[data-testid=output-original] .meta')?.textContent.trim() ?? ''), null, { timeout: 120_000 });
      await page.waitForSelector('[data-testid=output-original][data-busy=false]', { timeout: 60_000 });
      assert.match(await page.getByTestId('streamed-cost').textContent(), /^Generating streamed: each token re-reads 4\.5 MB of weights\.$/);
      const prompt = await page.getByTestId('prompt').inputValue();
      const r = await run(process.execPath, [
        'cli/bin.mjs',
        'generate',
        '--model',
        MODEL,
        '--prompt',
        prompt,
        '--max-new-tokens',
        '4',
        '--backend',
        'webgpu',
        '--gpu-memory',
        String(BUDGET_MIB),
        '--allow-streamed',
        '--json',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const cli = JSON.parse(r.stdout);
      assert.equal(cli.generation.mode, 'streamed');
      assert.equal(await page.getByTestId('generated-original').textContent(), cli.text);
      console.log(`#   stopped after ${stopped} streamed tokens; 4 streamed tokens "${cli.text}" as the CLI's`);
    },
  },
  {
    name: 'the compare panel runs a pruned model that fits the budget resident (only its blocks loaded) while the full one would stream: the text equals the CLI’s',
    timeout: 300_000,
    async run({ page, baseUrl, run, screenshotDir }) {
      const budget = 8;
      const removed = [0, 1, 2, 3, 4, 5, 6, 7, 8];
      await page.goto(`${baseUrl}?backend=webgpu&gpu-memory=${budget}`);
      await waitForModel(page);
      await page.waitForSelector('[data-testid=compare-memory][data-original=streamed]', { timeout: 60_000 });
      for (const index of removed) await page.locator(`[data-testid=block-cell][data-index="${index}"]`).click();
      await page.waitForSelector('[data-testid=compare-memory][data-pruned=kept-blocks-resident]', { timeout: 60_000 });
      await page.waitForFunction(() => /^32 tokens/.test(document.querySelector('[data-testid=output-pruned] .meta')?.textContent.trim() ?? ''), null, { timeout: 120_000 });
      const memory = page.getByTestId('compare-memory');
      assert.match(
        await memory.textContent(),
        /the full model needs [\d.]+ MB to run resident, more than the budget;\s+the pruned model \(3 of 12 blocks\) needs [\d.]+ MB: it fits, so it runs resident with only its blocks loaded\.\s+Generate streamed anyway\s+the original: each token is one block-streamed pass that re-reads 4\.5 MB of weights/,
      );
      assert.match(await page.getByTestId('note-original').textContent(), /not generated: it would stream/);
      const panel = page.getByTestId('compare-panel');
      assert.doesNotMatch(await panel.textContent(), /field gpu-memory|needs the model resident/);
      await panel.scrollIntoViewIfNeeded();
      await panel.screenshot({ path: join(screenshotDir, 'streaming-compare-pruned-resident.png') });
      const prompt = await page.getByTestId('prompt').inputValue();
      const cliArgs = ['cli/bin.mjs', 'generate', '--model', MODEL, '--prompt', prompt, '--max-new-tokens', '32', '--remove', removed.join(','), '--backend', 'webgpu', '--json'];
      const r = await run(process.execPath, [...cliArgs, '--gpu-memory', String(budget)]);
      assert.equal(r.code, 0, r.stderr);
      const cli = JSON.parse(r.stdout);
      assert.equal(cli.generation.mode, 'kept-blocks-resident');
      assert.equal(await page.getByTestId('generated-pruned').textContent(), cli.text);
      console.log(`#   pruned (3 of 12 blocks) resident under ${budget} MiB: "${cli.text.slice(0, 40)}…" as the CLI's`);
    },
  },
  {
    name: 'streaming: no uncaught errors in the page',
    async run({ pageErrors }) {
      assert.deepEqual(pageErrors, []);
    },
  },
];
