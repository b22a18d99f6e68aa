// The browser path of the WebGPU backend: the lab's worker runs the embedded model on WebGPU in Chromium
// (SwiftShader here) and its block statistics equal the CPU backend's (the CLI) for the same calibration.
import assert from 'node:assert/strict';

const MODEL = 'public/models/sotu-llama';
const CALIBRATION = 'public/calibration/moby-dick.txt';
/** Tiny: every dispatch is software-rendered. */
const SCORE = { seqLen: 32, maxSequences: 2 };

export async function prepare({ run }) {
  const r = await run(process.execPath, [
    'cli/bin.mjs',
    'score',
    '--model',
    MODEL,
    '--text',
    CALIBRATION,
    '--seq-len',
    String(SCORE.seqLen),
    '--max-sequences',
    String(SCORE.maxSequences),
    '--json',
  ]);
  if (r.code !== 0) throw new Error(`prunelab score failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export async function setup({ browser, baseUrl }) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(`${baseUrl}?backend=webgpu`);
  return { context, page };
}

export async function teardown({ context }) {
  await context?.close();
}

async function setNumber(page, testId, value) {
  const input = page.getByTestId(testId);
  await input.fill(String(value));
  await input.press('Tab');
}

export const checks = [
  {
    name: 'in Chromium the worker runs the model on WebGPU and its BI/angular/relMagnitude equal the CPU backend (CLI) within 2e-3',
    timeout: 240_000,
    async run({ page, prepared }) {
      if (prepared?.error) throw prepared.error;
      await page.waitForFunction(() => document.querySelector('[data-testid=model-name]')?.textContent === 'sotu-llama', null, { timeout: 200_000 });
      const badge = page.getByTestId('backend-badge');
      assert.equal(await badge.getAttribute('data-backend'), 'webgpu', `badge: ${await badge.textContent()}`);
      await setNumber(page, 'cal-sequences', SCORE.maxSequences);
      await setNumber(page, 'cal-seqlen', SCORE.seqLen);
      await page.getByTestId('score-button').click();
      await page.waitForSelector('[data-testid=score-controls][data-state=done]', { timeout: 200_000 });
      const bars = await page.$$eval('[data-testid=bar]', (els) =>
        els.map((e) => ({ index: Number(e.dataset.index), bi: Number(e.dataset.bi), angular: Number(e.dataset.angular), relMagnitude: Number(e.dataset.relMagnitude) })),
      );
      assert.equal(bars.length, prepared.blocks.length);
      let worst = 0;
      for (const expected of prepared.blocks) {
        const bar = bars.find((b) => b.index === expected.index);
        for (const metric of ['bi', 'angular', 'relMagnitude']) {
          const diff = Math.abs(bar[metric] - expected[metric]);
          worst = Math.max(worst, diff);
          assert.ok(diff <= 2e-3, `block ${expected.index} ${metric}: WebGPU ${bar[metric]} vs CPU ${expected[metric]}`);
        }
      }
      console.log(`#   WebGPU in Chromium vs CPU: worst abs difference ${worst.toExponential(2)}`);
    },
  },
];
