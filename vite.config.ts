/// <reference types="vitest/config" />
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

export default defineConfig({
  plugins: [svelte()],
  // No SPA fallback: a missing file must be a 404 (the model loader probes optional files such as
  // model.safetensors.index.json), not index.html with status 200.
  appType: 'mpa',
  worker: { format: 'es' },
  server: { host: '127.0.0.1' },
  test: {
    include: ['tests/unit/**/*.test.ts', 'tests/engine/**/*.test.ts', 'tests/webgpu/**/*.test.ts'],
    testTimeout: 60_000,
  },
});
