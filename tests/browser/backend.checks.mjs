// The default backend choice ("auto"): WebGPU when the browser and the engine can, else the CPU backend with
// the reason shown in the status bar badge.
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
    name: 'with backend "auto" the badge names the WebGPU adapter, or says "CPU fallback" with the reason',
    timeout: 120_000,
    async run({ page }) {
      const badge = page.getByTestId('backend-badge');
      await badge.waitFor({ timeout: 110_000 });
      const kind = await badge.getAttribute('data-backend');
      const text = await badge.textContent();
      if (kind === 'webgpu') assert.match(text, /WebGPU/);
      else assert.match(text, /CPU fallback.+\S/, `badge "${text}"`);
      console.log(`#   auto -> ${kind}: ${text.trim()}`);
    },
  },
];
