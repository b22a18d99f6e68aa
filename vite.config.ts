/// <reference types="vitest/config" />
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

/**
 * Cross-origin isolation: without it browsers withhold SharedArrayBuffer, and onnxruntime-web (the CPU
 * backend's kernels) runs on one WebAssembly thread. Any static host of dist/ should send the same two
 * headers (tests/browser/serve.mjs does); cross-origin fetches (the Hugging Face hub) are CORS requests,
 * which require-corp allows.
 */
const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

export default defineConfig({
  plugins: [svelte()],
  // No SPA fallback: a missing file must be a 404 (the model loader probes optional files such as
  // model.safetensors.index.json), not index.html with status 200.
  appType: 'mpa',
  worker: { format: 'es' },
  // Pre-bundle what the app imports, found from index.html alone: the default scan also reads bench/page/*.html,
  // whose transformers.js import is installed only in bench/node_modules, and fails with "(!) Failed to run
  // dependency scan".
  optimizeDeps: { entries: ['index.html'] },
  server: { host: '127.0.0.1', headers: isolation },
  preview: { headers: isolation },
  test: {
    // tests/python (real transformers, dev time) runs only when named: `npx vitest run tests/python`; npm test needs no Python.
    // tests/f16-hardware (f16 arithmetic on an adapter with shader-f16) only when named or with PRUNELAB_F16_ADAPTER=1.
    include: [
      'tests/unit/**/*.test.ts',
      'tests/engine/**/*.test.ts',
      'tests/webgpu/**/*.test.ts',
      ...(process.argv.includes('tests/python') ? ['tests/python/**/*.test.ts'] : []),
      ...(process.argv.includes('tests/f16-hardware') || process.env.PRUNELAB_F16_ADAPTER === '1' ? ['tests/f16-hardware/**/*.test.ts'] : []),
    ],
    testTimeout: 60_000,
  },
});
