/** Device acquisition, limits and loss: what a person sees when WebGPU cannot run the model. */
import { describe, expect, test } from 'vitest';
import { PruneLabError } from '../../src/engine/errors.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { createWebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu } from '../../src/engine/webgpu/device.ts';
import { randomCheckpoint } from './random-model.ts';
import { gpuAvailable } from './setup.ts';

const small = randomCheckpoint({ family: 'llama', dtype: 'F32', hidden: 32, heads: 2, intermediate: 48, layers: 1, vocab: 40 });

describe.skipIf(!gpuAvailable)('WebGPU device', () => {
  test("the device is created with the adapter's real limits, not the defaults", async () => {
    const ctx = await acquireGpu();
    const adapter = await navigator.gpu.requestAdapter();
    expect(ctx.limits.maxStorageBufferBindingSize).toBe(adapter?.limits.maxStorageBufferBindingSize);
    expect(ctx.limits.maxBufferSize).toBe(adapter?.limits.maxBufferSize);
    expect(ctx.limits.maxStorageBuffersPerShaderStage).toBe(adapter?.limits.maxStorageBuffersPerShaderStage);
    for (const f of ['shader-f16', 'subgroups', 'timestamp-query']) expect(ctx.features.has(f)).toBe(adapter?.features.has(f));
    ctx.device.destroy();
  });

  test('a tensor larger than a storage binding is refused with its name and the limit', async () => {
    const ctx = await acquireGpu();
    const limits = { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 4096 } as GPUSupportedLimits;
    const attempt = createWebGpuBackend(small.spec, small.weights, { context: { ...ctx, limits }, precompile: false });
    await expect(attempt).rejects.toThrow(PruneLabError);
    await expect(createWebGpuBackend(small.spec, small.weights, { context: { ...ctx, limits }, precompile: false })).rejects.toThrow(
      /tensor wte: needs a 5120 bytes storage binding but this device's maxStorageBufferBindingSize is 4096 bytes/,
    );
    ctx.device.destroy();
  });

  test('device loss is reported with its reason and later forwards say so', async () => {
    const lost: string[] = [];
    const backend = await createWebGpuBackend(small.spec, small.weights, { precompile: false, onDeviceLost: (reason) => lost.push(reason) });
    const device = (backend as unknown as { ctx: { device: GPUDevice } }).ctx.device;
    device.destroy();
    await device.lost;
    await new Promise((r) => setTimeout(r, 0));
    expect(lost).toEqual(['destroyed']);
    await expect(backend.forward({ ids: [1, 2], plan: makePlan(1), logits: 'last' })).rejects.toThrow(/GPU device was lost \(destroyed/);
  });
});
