/** Device acquisition, limits and loss: what a person sees when WebGPU cannot run the model. */
import { expect, test } from 'vitest';
import { createCpuBackend } from '../../src/engine/cpu/backend.ts';
import { PruneLabError } from '../../src/engine/errors.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { createWebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu } from '../../src/engine/webgpu/device.ts';
import { LOGITS_ABS, NLL_RELATIVE, STATS_PER_TOKEN } from './compare.ts';
import { maxAbsDiff } from './harness.ts';
import { randomCheckpoint } from './random-model.ts';
import { describeGpu } from './setup.ts';

// maxPositions 32 keeps its RoPE table (a vector, never split) at 2 KB, under the 4 KB binding limit below.
const small = randomCheckpoint({ modelType: 'llama', dtype: 'F32', hidden: 32, heads: 2, intermediate: 48, layers: 1, vocab: 40, maxPositions: 32 });

describeGpu('WebGPU device', () => {
  test("the device is created with the adapter's real limits, not the defaults", async () => {
    const ctx = await acquireGpu();
    const adapter = await navigator.gpu.requestAdapter();
    expect(ctx.limits.maxStorageBufferBindingSize).toBe(adapter?.limits.maxStorageBufferBindingSize);
    expect(ctx.limits.maxBufferSize).toBe(adapter?.limits.maxBufferSize);
    expect(ctx.limits.maxStorageBuffersPerShaderStage).toBe(adapter?.limits.maxStorageBuffersPerShaderStage);
    for (const f of ['shader-f16', 'subgroups', 'timestamp-query']) expect(ctx.features.has(f)).toBe(adapter?.features.has(f));
    ctx.device.destroy();
  });

  test('a tensor larger than a storage binding is split; only a row larger than the limit is refused, naming the tensor and the limit', async () => {
    const ctx = await acquireGpu();
    try {
      // embed_tokens is 40 × 32 f32 = 5120 bytes: with 4096-byte bindings it becomes chunks of 32 + 8 rows.
      const limits = { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 4096 } as GPUSupportedLimits;
      const split = await createWebGpuBackend(small.spec, small.weights, { context: { ...ctx, limits }, precompile: false });
      expect((split as unknown as { embed: { chunks: { rows: number }[] } }).embed.chunks.map((c) => c.rows)).toEqual([32, 8]);
      split.dispose();
      // One 128-byte row does not fit a 64-byte binding.
      const tiny = { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 64 } as GPUSupportedLimits;
      const attempt = createWebGpuBackend(small.spec, small.weights, { context: { ...ctx, limits: tiny }, precompile: false });
      await expect(attempt).rejects.toThrow(PruneLabError);
      await expect(attempt).rejects.toThrow(/tensor embed_tokens\.weight: one row needs a 128 bytes storage binding but this device's maxStorageBufferBindingSize is 64 bytes/);
      const smallBuffers = { maxBufferSize: 100, maxStorageBufferBindingSize: 2 ** 30 } as GPUSupportedLimits;
      await expect(createWebGpuBackend(small.spec, small.weights, { context: { ...ctx, limits: smallBuffers }, precompile: false })).rejects.toThrow(
        /tensor embed_tokens\.weight: one row needs a 128 bytes storage binding but this device's maxBufferSize is 100 bytes/,
      );
      await expect(createWebGpuBackend(small.spec, small.weights, { context: ctx, precompile: false, maxBindingBytes: 100 })).rejects.toThrow(
        /tensor embed_tokens\.weight: one row needs a 128 bytes storage binding but the maxBindingBytes override is 100 bytes/,
      );
    } finally {
      ctx.device.destroy();
    }
  });

  test('a backend that fails during creation frees every buffer it had already uploaded', async () => {
    // down_proj rows are 80 f32 = 320 bytes: with 256-byte bindings everything before layers.0.mlp.down_proj (embedding in 2-row chunks,
    // norms, q/k/v/o, gate, up) uploads, then creation fails.
    const model = randomCheckpoint({ modelType: 'llama', dtype: 'F32', hidden: 32, heads: 2, intermediate: 80, layers: 2, vocab: 40 });
    const ctx = await acquireGpu();
    const created: GPUBuffer[] = [];
    const destroyed = new Set<GPUBuffer>();
    const device = ctx.device;
    const createBuffer = device.createBuffer.bind(device);
    device.createBuffer = (descriptor: GPUBufferDescriptor) => {
      const buffer = createBuffer(descriptor);
      const destroy = buffer.destroy.bind(buffer);
      buffer.destroy = () => {
        destroyed.add(buffer);
        destroy();
      };
      created.push(buffer);
      return buffer;
    };
    try {
      await expect(createWebGpuBackend(model.spec, model.weights, { context: ctx, maxBindingBytes: 256 })).rejects.toThrow(
        /tensor layers\.0\.mlp\.down_proj\.weight: one row needs a 320 bytes storage binding but the maxBindingBytes override is 256 bytes/,
      );
      expect(created.length).toBeGreaterThan(20);
      expect(created.filter((b) => !destroyed.has(b)).map((b) => b.label)).toEqual([]);
      // The shared device is still usable: the same model with a workable limit loads and runs.
      created.length = 0;
      const backend = await createWebGpuBackend(model.spec, model.weights, { context: ctx, maxBindingBytes: 512, precompile: false });
      const result = await backend.forward({ ids: [1, 2, 3], plan: makePlan(2), logits: 'last' });
      expect(result.logits?.length).toBe(40);
      backend.dispose();
      expect(created.filter((b) => !destroyed.has(b)).map((b) => b.label)).toEqual([]);
    } finally {
      device.destroy();
    }
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
    backend.dispose();

    // Re-created in the same process: a new device is acquired and a forward runs and matches the CPU.
    const fresh = await createWebGpuBackend(small.spec, small.weights, { precompile: false });
    try {
      const freshDevice = (fresh as unknown as { ctx: { device: GPUDevice; lost: unknown } }).ctx;
      expect(freshDevice.device).not.toBe(device);
      expect(freshDevice.lost).toBeNull();
      const request = { ids: [1, 2, 3, 4], plan: makePlan(1, {}, 'stats'), logits: 'last' as const, nll: true };
      const cpu = await createCpuBackend(small.spec, small.weights);
      const [want, got] = [await cpu.forward(request), await fresh.forward(request)];
      expect(maxAbsDiff(got.logits as Float32Array, want.logits as Float32Array)).toBeLessThanOrEqual(LOGITS_ABS);
      expect(Math.abs(got.nllSum - want.nllSum) / want.nllSum).toBeLessThanOrEqual(NLL_RELATIVE);
      expect(Math.abs((got.stats?.[0].cosSum ?? Number.NaN) - (want.stats?.[0].cosSum ?? 0)) / 4).toBeLessThanOrEqual(STATS_PER_TOKEN);
    } finally {
      fresh.dispose();
    }
  });
});
