/**
 * tests/f16-hardware: the f16-arithmetic path (backend option f16Math, CLI --gpu-f16) on an adapter that
 * offers shader-f16. Not part of npm test: run where such an adapter exists, with
 *   PRUNELAB_F16_ADAPTER=1 npx vitest run tests/f16-hardware
 * (vite.config.ts includes the folder only then). Every test asks for the adapter first, so without the
 * variable, without WebGPU, or on an adapter without shader-f16 (SwiftShader) each test fails saying which.
 */
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import { gpuProblem } from '../webgpu/setup.ts';

let context: Promise<GpuContext> | null = null;

async function acquireF16(): Promise<GpuContext> {
  if (process.env.PRUNELAB_F16_ADAPTER !== '1') {
    throw new Error('tests/f16-hardware needs an adapter with shader-f16: run it there as PRUNELAB_F16_ADAPTER=1 npx vitest run tests/f16-hardware');
  }
  if (gpuProblem) throw new Error(`PRUNELAB_F16_ADAPTER=1 but this process has no WebGPU: ${gpuProblem}`);
  const ctx = await acquireGpu();
  if (!ctx.features.has('shader-f16')) {
    ctx.device.destroy();
    throw new Error(`PRUNELAB_F16_ADAPTER=1 but this adapter (${ctx.adapterDescription}) does not offer shader-f16; the f16-arithmetic tests need one that does`);
  }
  return ctx;
}

/** The shared device of an adapter with shader-f16 (asked for once; every test that calls it fails with the reason when there is none). */
export function f16Adapter(): Promise<GpuContext> {
  context ??= acquireF16();
  return context;
}

/** Destroys the shared device, if one was made. */
export async function releaseF16Adapter(): Promise<void> {
  const ctx = await context?.catch(() => null);
  ctx?.device.destroy();
  context = null;
}

/** Long enough to compile every variant of a backend on a real driver, with room. */
export const F16_TEST_MS = 180_000;
