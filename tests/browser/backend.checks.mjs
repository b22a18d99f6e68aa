// The default backend choice ("auto"): WebGPU on a hardware adapter, else the fast CPU backend (onnxruntime-web
// in the worker), with the reason and the thread count shown in the status bar.
import assert from 'node:assert/strict';

export async function setup({ browser, baseUrl }) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(baseUrl);
  return { context, page };
}

export async function teardown({ context }) {
  await context?.close();
}

export const checks = [
  {
    name: 'with backend "auto" a software adapter (SwiftShader) is passed over for the CPU backend on onnxruntime-web, with threads (the page is cross-origin isolated) and the reason shown',
    timeout: 120_000,
    async run({ page }) {
      const badge = page.getByTestId('backend-badge');
      await badge.waitFor({ timeout: 110_000 });
      const kind = await badge.getAttribute('data-backend');
      const text = (await badge.textContent()).trim();
      const reason = (await page.getByTestId('backend-reason').textContent()).trim();
      console.log(`#   auto -> ${kind}: ${text} — ${reason}`);
      const adapter = await page.evaluate(async () => {
        const a = await navigator.gpu?.requestAdapter();
        return a ? { fallback: a.info?.isFallbackAdapter ?? a.isFallbackAdapter ?? false } : null;
      });
      assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'the served page is cross-origin isolated');
      if (adapter && !adapter.fallback) {
        assert.equal(kind, 'webgpu', `a hardware adapter is present, yet the badge says ${text}`);
        assert.match(reason, /hardware WebGPU adapter/);
        return;
      }
      assert.equal(kind, 'cpu', `badge "${text}"`);
      assert.match(text, /^CPU ?onnxruntime-web [\d.]+ \(wasm\)(, \d+ threads)?$/, `the fast kernels: "${text}"`);
      assert.doesNotMatch(reason, /single-threaded/, 'cross-origin isolated, so WebAssembly threads are on');
      assert.match(reason, adapter ? /software one \(.*swiftshader/i : /no WebGPU/, reason);
    },
  },
];
