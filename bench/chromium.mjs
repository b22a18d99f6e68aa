// Headless Debian Chromium through playwright-core (never a downloaded browser), WebGPU on.
import { chromium } from 'playwright-core';

export const CHROME_ARGS = ['--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

export async function launchChromium(executablePath) {
  return chromium.launch({ executablePath, args: CHROME_ARGS });
}

/**
 * Opens `url` in a fresh context, waits for window.benchReady, calls window[fn](...args) and returns its
 * result; page console lines go to `log`. Rejects after timeoutMs (the context is closed, which stops
 * the page's work).
 */
export async function runInPage(browser, url, fn, args, { timeoutMs, log }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  // (the engine probes optional files such as model.safetensors.index.json: those 404s are expected)
  page.on('console', (m) => {
    if (!m.text().startsWith('Failed to load resource')) log(`  ${m.text()}`);
  });
  page.on('pageerror', (e) => log(`  page error: ${e.message}`));
  let timer;
  try {
    const work = (async () => {
      await page.goto(url);
      await page.waitForFunction(() => globalThis.benchReady === true, null, { timeout: 60_000 });
      return page.evaluate(([name, a]) => globalThis[name](...a).catch((e) => ({ error: String(e?.message ?? e) })), [fn, args]);
    })();
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    });
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
    await context.close().catch(() => {});
  }
}
