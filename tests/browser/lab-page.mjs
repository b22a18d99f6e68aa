// Helpers the lab checks share (not a checks module: run.mjs loads only *.checks.mjs).
import assert from 'node:assert/strict';

/** Waits for a model to load; an error notice instead (e.g. "the WebGPU backend could not start") fails with its text. */
export async function waitForModel(page, name = 'sotu-llama', timeout = 110_000) {
  const loaded = await page.waitForFunction(
    (name) => {
      if (document.querySelector('[data-testid=model-name]')?.textContent === name) return 'loaded';
      const error = document.querySelector('[data-testid=notice][data-level=error]');
      return error ? `error notice: ${error.textContent.trim()}` : null;
    },
    name,
    { timeout },
  );
  const outcome = await loaded.jsonValue();
  assert.equal(outcome, 'loaded', `model ${name} did not load`);
}

/**
 * The page runs on the backend the check asked for. For webgpu: while this browser has a WebGPU adapter, a
 * CPU badge is a failure (the lab fell back), and the badge must name the WebGPU backend.
 */
export async function assertBackend(page, wanted) {
  const badge = page.getByTestId('backend-badge');
  const kind = await badge.getAttribute('data-backend');
  const text = (await badge.textContent()).trim();
  if (wanted === 'webgpu') {
    const adapter = await page.evaluate(async () => !!(await navigator.gpu?.requestAdapter()));
    if (adapter) assert.equal(kind, 'webgpu', `WebGPU was requested and this browser has an adapter, yet the lab runs on "${text}"`);
    else assert.fail('WebGPU was requested but this browser has no WebGPU adapter (Chromium needs --enable-unsafe-webgpu)');
    assert.match(text, /WebGPU/, `badge "${text}"`);
  } else assert.equal(kind, wanted, `badge "${text}"`);
  return text;
}

/** A fresh browser context and page that records uncaught page errors (every check module starts with one). */
export async function newLabPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light', acceptDownloads: true, ...options });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  return { context, page, pageErrors };
}

/** Types a value into a number field and leaves it (Tab), as a person would: the field takes the value or puts it back on change. */
export async function setNumber(page, testId, value) {
  const input = page.getByTestId(testId);
  await input.fill(String(value));
  await input.press('Tab');
}
