/**
 * Asking for f16 arithmetic (backend option f16Math, CLI --gpu-f16) on this adapter. Where it lacks
 * shader-f16 (SwiftShader, which npm test runs on) it is refused before any upload, naming the flag and the
 * adapter, and a shared device stays usable; where it has the feature the flag runs and says what ran in
 * f16 (the numbers are tests/f16-hardware's). The CPU backends ignore the flag and say so.
 */
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { createWebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu, F16MathUnavailable } from '../../src/engine/webgpu/device.ts';
import { cli, EMBEDDED } from '../engine/cli-run.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

const EVAL_TEXT = join(import.meta.dirname, '..', '..', 'public', 'calibration', 'moby-dick-eval.txt');
const PPL = ['ppl', '--model', EMBEDDED, '--text', EVAL_TEXT, '--seq-len', '16', '--max-sequences', '1'];

describeGpu('--gpu-f16 (f16 arithmetic) on this adapter', () => {
  test(
    'without shader-f16: ppl --backend webgpu --gpu-f16 fails naming the flag and the adapter; with it: runs and says what runs in f16',
    async () => {
      const ctx = await acquireGpu();
      const offered = ctx.features.has('shader-f16');
      const adapter = ctx.adapterDescription;
      ctx.device.destroy();
      const r = await cli([...PPL, '--backend', 'webgpu', '--gpu-f16']);
      if (!offered) {
        expect(r.code).not.toBe(0);
        expect(r.stderr).toContain(`--gpu-f16: this adapter (${adapter}) does not offer shader-f16`);
        expect(r.stdout).toEqual([]);
      } else {
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toMatch(/--gpu-f16: f16 arithmetic/);
      }
    },
    HOOK_TIMEOUT_MS,
  );

  test(
    'createWebGpuBackend with f16Math on an adapter without shader-f16 throws F16MathUnavailable before uploading, and the shared device still runs a backend',
    async () => {
      const ctx = await acquireGpu();
      try {
        const { spec, weights } = await loadCheckpoint(directorySource(EMBEDDED));
        if (ctx.features.has('shader-f16')) {
          const backend = await createWebGpuBackend(spec, weights, { context: ctx, f16Math: true, precompile: false });
          expect(backend.info.description).toContain('f16 arithmetic');
          backend.dispose();
          return;
        }
        const attempt = createWebGpuBackend(spec, weights, { context: ctx, f16Math: true });
        await expect(attempt).rejects.toBeInstanceOf(F16MathUnavailable);
        await expect(attempt).rejects.toThrow(`this adapter (${ctx.adapterDescription}) does not offer shader-f16`);
        const backend = await createWebGpuBackend(spec, weights, { context: ctx, precompile: false });
        const result = await backend.forward({ ids: [1, 2, 3], plan: makePlan(spec.layers), logits: 'last' });
        expect(result.logits?.length).toBe(spec.vocabSize);
        expect(backend.info.description).not.toContain('f16 arithmetic');
        backend.dispose();
      } finally {
        ctx.device.destroy();
      }
    },
    HOOK_TIMEOUT_MS,
  );

  test('the CPU backend ignores --gpu-f16 and says so', async () => {
    const r = await cli([...PPL, '--backend', 'cpu', '--gpu-f16']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('--gpu-f16 is f16 arithmetic on the WebGPU backend; the cpu backend ignores it');
  });
});
