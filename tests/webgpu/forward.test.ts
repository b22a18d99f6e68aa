/**
 * Whole forward, CPU reference vs WebGPU, on random-weight models built in memory: llama-family (GQA 1/2/4,
 * qkv bias, qk-norm, explicit head_dim, llama3 rope scaling, tied / untied head) and GPT-2, stored as
 * F32, F16 and BF16. Same weights on both sides, so the differences are the GPU's f32 arithmetic.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Backend, ForwardResult } from '../../src/engine/backend.ts';
import { createCpuBackend } from '../../src/engine/cpu/backend.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan, type Plan } from '../../src/engine/plan.ts';
import { createWebGpuBackend, type WebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import { LOGITS_ABS, NLL_RELATIVE, STATES_ABS, STATS_PER_TOKEN } from './compare.ts';
import { maxAbsDiff } from './harness.ts';
import { randomCheckpoint, randomIds, type RandomModelOptions } from './random-model.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

const llama3Scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 };
const MODELS: (RandomModelOptions & { name: string })[] = [
  {
    name: 'llama GQA 2, qkv bias, llama3 rope scaling (F32)',
    modelType: 'llama',
    dtype: 'F32',
    hidden: 64,
    heads: 4,
    kvHeads: 2,
    intermediate: 96,
    layers: 3,
    vocab: 97,
    qkvBias: true,
    ropeScaling: llama3Scaling,
  },
  {
    name: 'qwen3 qk-norm, GQA 2, head_dim 32 ≠ hidden/heads, tied (F16)',
    modelType: 'qwen3',
    dtype: 'F16',
    hidden: 48,
    heads: 2,
    kvHeads: 1,
    headDim: 32,
    intermediate: 80,
    layers: 3,
    vocab: 101,
    tie: true,
  },
  { name: 'llama GQA 4, head_dim 64 (F16)', modelType: 'llama', dtype: 'F16', hidden: 64, heads: 4, kvHeads: 1, headDim: 64, intermediate: 72, layers: 2, vocab: 90 },
  { name: 'mistral MHA (BF16 packed)', modelType: 'mistral', dtype: 'BF16', hidden: 32, heads: 2, kvHeads: 2, intermediate: 64, layers: 2, vocab: 64 },
  { name: 'gpt2 (F32)', modelType: 'gpt2', dtype: 'F32', hidden: 48, heads: 4, intermediate: 96, layers: 3, vocab: 80 },
  { name: 'gpt2 (F16)', modelType: 'gpt2', dtype: 'F16', hidden: 32, heads: 2, intermediate: 64, layers: 2, vocab: 70 },
];

const measured: Record<string, Record<string, number>> = {};
function note(model: string, what: string, value: number): number {
  const m = (measured[model] ??= {});
  m[what] = Math.max(m[what] ?? 0, Number(value.toExponential(2)));
  return value;
}

function compareStats(model: string, cpu: ForwardResult, gpu: ForwardResult): void {
  expect(gpu.stats?.map((s) => s.index)).toEqual(cpu.stats?.map((s) => s.index));
  cpu.stats?.forEach((c, k) => {
    const g = gpu.stats?.[k];
    if (!g) throw new Error('missing stats');
    expect(g.tokens).toBe(c.tokens);
    for (const key of ['cosSum', 'angularSum', 'relMagnitudeSum'] as const) {
      expect(note(model, key, Math.abs(g[key] - c[key]) / c.tokens), `${key} of block ${c.index}`).toBeLessThanOrEqual(STATS_PER_TOKEN);
    }
  });
}

describeGpu('whole forward: WebGPU matches the CPU reference', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await acquireGpu();
  }, HOOK_TIMEOUT_MS);
  afterAll(() => {
    console.log('[tests/webgpu] forward max errors (stats: per-token mean abs; nll: relative; logits: abs):', JSON.stringify(measured, null, 1));
    ctx?.device.destroy();
  });

  for (const options of MODELS) {
    describe(options.name, () => {
      const checkpoint = randomCheckpoint(options);
      const { spec } = checkpoint;
      let cpu: Backend;
      let gpu: WebGpuBackend;
      const ids = randomIds(24, spec.vocabSize, 11);
      beforeAll(async () => {
        cpu = await createCpuBackend(spec, checkpoint.weights);
        gpu = (await createWebGpuBackend(spec, checkpoint.weights, { context: ctx })) as WebGpuBackend;
      }, HOOK_TIMEOUT_MS);
      afterAll(() => gpu?.dispose());

      test(`block statistics within ${STATS_PER_TOKEN.toExponential()} per token, NLL within ${NLL_RELATIVE.toExponential()} relative, last logits within ${LOGITS_ABS.toExponential()}`, async () => {
        const plan = makePlan(spec.layers, {}, 'stats');
        const request = { ids, plan, logits: 'last' as const, nll: true };
        const [c, g] = [await cpu.forward(request), await gpu.forward(request)];
        compareStats(options.name, c, g);
        expect(g.nllCount).toBe(c.nllCount);
        expect(note(options.name, 'nll', Math.abs(g.nllSum - c.nllSum) / c.nllSum)).toBeLessThanOrEqual(NLL_RELATIVE);
        expect(note(options.name, 'logits', maxAbsDiff(g.logits as Float32Array, c.logits as Float32Array))).toBeLessThanOrEqual(LOGITS_ABS);
      });

      test('a plan with removed, reordered and half-skipped blocks: stats, all logits and every state match', async () => {
        const last = spec.layers - 1;
        const plan: Plan = { blocks: [last, 0], skipAttention: [0], skipMlp: [last], capture: 'states' };
        const request = { ids: ids.slice(0, 13), plan, logits: 'all' as const };
        const [c, g] = [await cpu.forward(request), await gpu.forward(request)];
        compareStats(options.name, c, g);
        expect(note(options.name, 'logits', maxAbsDiff(g.logits as Float32Array, c.logits as Float32Array))).toBeLessThanOrEqual(LOGITS_ABS);
        expect(g.states?.length).toBe(3);
        c.states?.forEach((state, s) => {
          expect(note(options.name, 'states', maxAbsDiff(g.states?.[s] as Float32Array, state))).toBeLessThanOrEqual(STATES_ABS);
        });
      });

      test('a plan change needs no compilation, and skipped blocks record no dispatches', async () => {
        const pipelinesBefore = (gpu as unknown as { pipelines: { size: number } }).pipelines.size;
        const full = makePlan(spec.layers, {}, 'stats');
        await gpu.forward({ ids: ids.slice(0, 5), plan: full, logits: 'last', nll: true });
        const fullCount = gpu.lastDispatchCount;
        await gpu.forward({ ids: ids.slice(0, 5), plan: makePlan(spec.layers, { blocks: [0] }, 'stats'), logits: 'last', nll: true });
        const perBlock = fullCount - gpu.lastDispatchCount;
        expect(perBlock).toBeGreaterThan(0);
        await gpu.forward({ ids: ids.slice(0, 5), plan: makePlan(spec.layers, { blocks: Array.from({ length: spec.layers }, (_, i) => i) }, 'stats'), logits: 'last', nll: true });
        // minus the one reduction of the stats table, which a plan with no blocks does not record
        expect(gpu.lastDispatchCount).toBe(fullCount - spec.layers * perBlock - 1);
        expect((gpu as unknown as { pipelines: { size: number } }).pipelines.size).toBe(pipelinesBefore);
      });

      test('greedy generation with the KV cache gives the same 16 tokens as the CPU backend', async () => {
        const plan = makePlan(spec.layers, { blocks: spec.layers > 2 ? [1] : [] });
        const prompt = ids.slice(0, 6);
        const cpuTokens = await new Model(checkpoint, cpu).generate(prompt, plan, { maxNewTokens: 16 });
        const gpuTokens = await new Model(checkpoint, gpu).generate(prompt, plan, { maxNewTokens: 16 });
        expect(gpuTokens).toEqual(cpuTokens);
        expect(gpuTokens.length).toBe(16);
      });
    });
  }

  test('a KV cache made under another plan is refused, and prefill + decode equals one full forward', async () => {
    const checkpoint = randomCheckpoint(MODELS[0]);
    const gpu = await createWebGpuBackend(checkpoint.spec, checkpoint.weights, { context: ctx });
    try {
      const plan = makePlan(checkpoint.spec.layers);
      const ids = randomIds(9, checkpoint.spec.vocabSize, 5);
      const cache = gpu.createCache(16, plan);
      await expect(gpu.forward({ ids, plan: makePlan(checkpoint.spec.layers, { blocks: [0] }), logits: 'last', cache })).rejects.toThrow(/different plan/);
      await gpu.forward({ ids: ids.slice(0, 6), plan, logits: 'last', cache });
      const stepped = await gpu.forward({ ids: ids.slice(6), plan, logits: 'all', cache });
      const whole = await gpu.forward({ ids, plan, logits: 'all' });
      expect(cache.length).toBe(9);
      const vocab = checkpoint.spec.vocabSize;
      expect(maxAbsDiff(stepped.logits as Float32Array, (whole.logits as Float32Array).subarray(6 * vocab))).toBeLessThan(1e-4);
      cache.dispose();
    } finally {
      gpu.dispose();
    }
  });
});
