/**
 * The fused decode step (kernels/decode.ts wired in backend.ts) on whole random models vs the CPU
 * backend, with subgroup reductions on and forced off: decode through the KV cache, each step's logits
 * and statistics, the device-side greedy pick equal to argmax of the same step's logits, and the
 * dispatch count per block per decode step (5 where the block fuses; families that take the general
 * path — OLMo 2's whole-projection q/k norm, GPT-NeoX's parallel residual — still match), and no bind
 * group created by a steady decode step.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Backend, ForwardResult } from '../../src/engine/backend.ts';
import { createCpuBackend } from '../../src/engine/cpu/backend.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { argmax } from '../../src/engine/sampling.ts';
import { createWebGpuBackend, type WebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import * as recorder from '../../src/engine/webgpu/recorder.ts';
import { maxAbsDiff } from './harness.ts';
import { randomCheckpoint, randomIds, type RandomModelOptions } from './random-model.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

const LOGITS_ABS = 3e-5;
const STAT_TOLERANCE = 5e-6;
const STEPS = 14;

const CASES: (RandomModelOptions & { name: string; fusedPerBlock: number | null })[] = [
  { name: 'llama (F16, GQA, tied)', modelType: 'llama', dtype: 'F16', hidden: 64, heads: 4, kvHeads: 2, intermediate: 96, layers: 4, vocab: 90, tie: true, fusedPerBlock: 5 },
  {
    name: 'qwen2 (qkv bias, 5-key windows)',
    modelType: 'qwen2',
    dtype: 'F32',
    hidden: 32,
    heads: 4,
    kvHeads: 2,
    intermediate: 64,
    layers: 3,
    vocab: 70,
    config: { use_sliding_window: true, sliding_window: 5, max_window_layers: 1 },
    fusedPerBlock: 5,
  },
  {
    name: 'gemma2 (soft-caps, (1 + w) sandwich norms, 6-key windows)',
    modelType: 'gemma2',
    dtype: 'F32',
    hidden: 48,
    heads: 4,
    kvHeads: 2,
    headDim: 16,
    intermediate: 64,
    layers: 4,
    vocab: 96,
    config: { sliding_window: 6, attn_logit_softcapping: 5, final_logit_softcapping: 3, query_pre_attn_scalar: 24 },
    // + one post-norm dispatch per half
    fusedPerBlock: 7,
  },
  {
    name: 'gemma3_text (per-head (1 + w) q/k norm, BF16)',
    modelType: 'gemma3_text',
    dtype: 'BF16',
    hidden: 32,
    heads: 2,
    kvHeads: 1,
    headDim: 16,
    intermediate: 48,
    layers: 3,
    vocab: 64,
    config: { sliding_window: 4, sliding_window_pattern: 2 },
    fusedPerBlock: 7,
  },
  {
    name: 'olmo2 (whole-projection q/k norm: general attention path)',
    modelType: 'olmo2',
    dtype: 'F32',
    hidden: 32,
    heads: 4,
    kvHeads: 4,
    intermediate: 48,
    layers: 2,
    vocab: 64,
    fusedPerBlock: null,
  },
  {
    name: 'gpt_neox (parallel residual, LayerNorm: general path)',
    modelType: 'gpt_neox',
    dtype: 'F32',
    hidden: 32,
    heads: 2,
    kvHeads: 2,
    intermediate: 64,
    layers: 2,
    vocab: 64,
    fusedPerBlock: null,
  },
];

describeGpu('WebGPU fused decode step vs the CPU backend (subgroups on and off)', () => {
  let ctx: GpuContext;
  const backends: Backend[] = [];
  beforeAll(async () => {
    ctx = await acquireGpu();
  }, HOOK_TIMEOUT_MS);
  afterAll(() => {
    for (const b of backends) b.dispose();
    ctx?.device.destroy();
  });

  for (const c of CASES) {
    for (const subgroups of [true, false]) {
      test(`${c.name}, ${subgroups ? 'subgroup' : 'tree'} reductions: ${STEPS} decode steps match the CPU, the device pick = argmax of the step's logits`, async (t) => {
        if (subgroups && !ctx.features.has('subgroups')) t.skip();
        const checkpoint = randomCheckpoint(c);
        const { spec } = checkpoint;
        const cpu = await createCpuBackend(spec, checkpoint.weights);
        const gpu = (await createWebGpuBackend(spec, checkpoint.weights, { context: ctx, subgroups })) as WebGpuBackend;
        backends.push(cpu, gpu);
        expect(gpu.useSubgroups).toBe(subgroups);
        const ids = randomIds(STEPS + 4, spec.vocabSize, 3);
        const plan = makePlan(spec.layers, {}, 'stats');
        const cpuCache = cpu.createCache(ids.length, plan);
        const gpuCache = gpu.createCache(ids.length, plan);
        let step: ForwardResult | null = null;
        for (const [from, to] of [[0, 4], ...Array.from({ length: STEPS }, (_, k) => [4 + k, 5 + k])]) {
          const request = { ids: ids.slice(from, to), plan, logits: 'last' as const };
          const want = await cpu.forward({ ...request, cache: cpuCache });
          step = await gpu.forward({ ...request, cache: gpuCache, pick: 'argmax' });
          expect(maxAbsDiff(step.logits as Float32Array, want.logits as Float32Array)).toBeLessThanOrEqual(LOGITS_ABS);
          expect(step.picked).toBe(argmax(step.logits as Float32Array));
          want.stats?.forEach((s, i) => {
            const g = step?.stats?.[i];
            expect(Math.abs((g?.cosSum ?? Number.NaN) - s.cosSum)).toBeLessThanOrEqual(STAT_TOLERANCE);
            expect(Math.abs((g?.relMagnitudeSum ?? Number.NaN) - s.relMagnitudeSum)).toBeLessThanOrEqual(STAT_TOLERANCE);
          });
        }
        cpuCache.dispose();
        gpuCache.dispose();
        expect(step?.picked).toBeTypeOf('number');
      });
    }
    if (c.fusedPerBlock !== null) {
      test(`${c.name}: a decode step costs ${c.fusedPerBlock} dispatches per block, and reads back no logits row with logits 'none' + pick`, async () => {
        const checkpoint = randomCheckpoint(c);
        const { spec } = checkpoint;
        const gpu = (await createWebGpuBackend(spec, checkpoint.weights, { context: ctx })) as WebGpuBackend;
        backends.push(gpu);
        const ids = randomIds(6, spec.vocabSize, 4);
        const perStep = async (removed: number[]) => {
          const plan = makePlan(spec.layers, { blocks: removed });
          const cache = gpu.createCache(8, plan);
          await gpu.forward({ ids: ids.slice(0, 5), plan, logits: 'none', cache });
          const r = await gpu.forward({ ids: ids.slice(5, 6), plan, logits: 'none', cache, pick: 'argmax' });
          cache.dispose();
          expect(r.logits).toBeNull();
          expect(r.picked).toBeGreaterThanOrEqual(0);
          return gpu.lastDispatchCount;
        };
        const full = await perStep([]);
        const less = await perStep([1]);
        expect(full - less).toBe(c.fusedPerBlock);
        // bind groups are made once per plan and buffers: a steady decode step creates none
        const plan = makePlan(spec.layers);
        const cache = gpu.createCache(10, plan);
        await gpu.forward({ ids: ids.slice(0, 4), plan, logits: 'none', cache });
        await gpu.forward({ ids: ids.slice(4, 5), plan, logits: 'none', cache, pick: 'argmax' });
        const before = recorder.bindGroupsCreated;
        await gpu.forward({ ids: ids.slice(5, 6), plan, logits: 'none', cache, pick: 'argmax' });
        expect(recorder.bindGroupsCreated - before).toBe(0);
        cache.dispose();
      });
    }
  }
});
