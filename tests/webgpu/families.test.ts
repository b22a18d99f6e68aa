/**
 * Whole forward, CPU reference vs WebGPU, on random-weight models of every family the registry adds
 * (built through each family's own config parser and weight binding, tests/webgpu/random-model.ts): the
 * feature each needs is switched on with values that make it matter (soft-caps that bind, windows
 * shorter than the sequence, residual / embedding / logit multipliers far from 1, NoPE layers, partial
 * rotary with longrope's attention factor, parallel and sequential GPT-NeoX). Prefill over 24 tokens,
 * a plan with removed and half-skipped blocks, and decode one token at a time through the KV cache past
 * the window; precompile covers every kernel variant those forwards use.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Backend, ForwardResult } from '../../src/engine/backend.ts';
import { distinctRopes } from '../../src/engine/config.ts';
import { createCpuBackend } from '../../src/engine/cpu/backend.ts';
import { makePlan, type Plan } from '../../src/engine/plan.ts';
import { createWebGpuBackend, type WebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import type { PipelineCache } from '../../src/engine/webgpu/kernels/common.ts';
import { maxAbsDiff } from './harness.ts';
import { randomCheckpoint, randomIds, type RandomModelOptions } from './random-model.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

/**
 * Both sides read the same stored weights (f16 and bf16 unpacked exactly in the shader), so what differs is
 * f32 arithmetic order: tolerances sit ~10-20× above the measured errors (stats ≤ 3e-7 per token, NLL ≤
 * 2e-7 relative, logits ≤ 3e-6) and well below what a wrong formula gives (gelu_new for exact gelu moves
 * the statistics by ~1e-5 per token).
 */
const STAT_TOLERANCE = 5e-6;
const NLL_RELATIVE = 1e-5;
const LOGITS_ABS = 3e-5;
const SEQ = 24;

interface FamilyCase extends RandomModelOptions {
  name: string;
  /** What the spec must say, so the case cannot silently test less than its name claims. */
  expectSpec: (spec: ReturnType<typeof randomCheckpoint>['spec']) => void;
}

const longrope = (pairs: number) => ({
  rope_type: 'longrope',
  short_factor: Array.from({ length: pairs }, (_, i) => 1 + i * 0.25),
  long_factor: Array.from({ length: pairs }, (_, i) => 2 + i),
  original_max_position_embeddings: 64,
});

const CASES: FamilyCase[] = [
  {
    name: 'gemma2: (1 + w) sandwich norms, √hidden embeddings, query_pre_attn_scalar, both soft-caps, alternating 6-key windows',
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
    expectSpec: (s) => {
      expect([s.normOffset, s.attnSoftcap, s.finalSoftcap, s.activation, s.attnScale]).toEqual([1, 5, 3, 'gelu_new', 1 / Math.sqrt(24)]);
      expect(s.layerKinds.map((k) => k.window)).toEqual([6, null, 6, null]);
    },
  },
  {
    name: 'gemma3_text: per-head (1 + w) q/k norm, local RoPE base on sliding layers, global base + linear scaling on full ones (BF16)',
    modelType: 'gemma3_text',
    dtype: 'BF16',
    hidden: 48,
    heads: 4,
    kvHeads: 1,
    headDim: 16,
    intermediate: 64,
    layers: 3,
    vocab: 90,
    config: {
      layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'],
      sliding_window: 5,
      rope_theta: 1e6,
      rope_local_base_freq: 1e4,
      rope_scaling: { rope_type: 'linear', factor: 4 },
      query_pre_attn_scalar: 16,
    },
    expectSpec: (s) => {
      expect([s.qkNorm, s.normOffset]).toEqual(['head', 1]);
      expect(distinctRopes(s).map((r) => r.theta)).toEqual([1e4, 1e6]);
      expect(s.layerKinds.map((k) => k.window)).toEqual([5, null, 5]);
    },
  },
  {
    name: 'phi3: fused qkv / gate_up, partial rotary (8 of 16 dims) with longrope factors and attention factor, 9-key window (F16)',
    modelType: 'phi3',
    dtype: 'F16',
    hidden: 64,
    heads: 4,
    kvHeads: 2,
    intermediate: 96,
    layers: 3,
    vocab: 100,
    config: { partial_rotary_factor: 0.5, rope_scaling: longrope(4), sliding_window: 9 },
    expectSpec: (s) => {
      const rope = s.layerKinds[0].rope;
      expect([rope?.rotaryDim, s.headDim, s.layerKinds[0].window]).toEqual([8, 16, 9]);
      expect(rope?.attentionFactor).toBeGreaterThan(1.1);
    },
  },
  {
    name: 'olmo2: no pre-norms, post-norms before the residual add, q/k RMSNorm over the whole projection',
    modelType: 'olmo2',
    dtype: 'F32',
    hidden: 48,
    heads: 4,
    kvHeads: 2,
    intermediate: 80,
    layers: 3,
    vocab: 88,
    expectSpec: (s) => expect(s.qkNorm).toBe('projection'),
  },
  {
    name: 'granite: embedding, residual and attention multipliers, logits scaling',
    modelType: 'granite',
    dtype: 'F32',
    hidden: 48,
    heads: 4,
    kvHeads: 2,
    intermediate: 80,
    layers: 3,
    vocab: 88,
    config: { embedding_multiplier: 12, residual_multiplier: 0.22, attention_multiplier: 0.3, logits_scaling: 6 },
    expectSpec: (s) => expect([s.embedScale, s.residualScale, s.attnScale, s.logitScale]).toEqual([12, 0.22, 0.3, 1 / 6]),
  },
  {
    name: 'smollm3: layers without RoPE (no_rope_layers)',
    modelType: 'smollm3',
    dtype: 'F32',
    hidden: 48,
    heads: 4,
    kvHeads: 2,
    intermediate: 80,
    layers: 4,
    vocab: 88,
    config: { no_rope_layers: [1, 0, 1, 0] },
    expectSpec: (s) => expect(s.layerKinds.map((k) => k.rope !== null)).toEqual([true, false, true, false]),
  },
  {
    name: 'gpt_neox (Pythia): parallel residual, LayerNorm with bias, interleaved fused qkv, 4 of 16 dims rotated, exact gelu, untied embed_out',
    modelType: 'gpt_neox',
    dtype: 'F32',
    hidden: 64,
    heads: 4,
    intermediate: 128,
    layers: 3,
    vocab: 90,
    expectSpec: (s) => {
      expect([s.parallelResidual, s.norm, s.activation, s.gatedMlp, s.tieEmbeddings, s.layerKinds[0].rope?.rotaryDim]).toEqual([true, 'layer', 'gelu', false, false, 4]);
    },
  },
  {
    name: 'gpt_neox with use_parallel_residual false (sequential) (F16)',
    modelType: 'gpt_neox',
    dtype: 'F16',
    hidden: 64,
    heads: 4,
    intermediate: 128,
    layers: 3,
    vocab: 90,
    config: { use_parallel_residual: false },
    expectSpec: (s) => expect(s.parallelResidual).toBe(false),
  },
  {
    name: 'mistral: a 7-key sliding window on every layer',
    modelType: 'mistral',
    dtype: 'F32',
    hidden: 32,
    heads: 4,
    kvHeads: 2,
    intermediate: 64,
    layers: 2,
    vocab: 70,
    config: { sliding_window: 7 },
    expectSpec: (s) => expect(s.layerKinds.map((k) => k.window)).toEqual([7, 7]),
  },
  {
    name: 'qwen2: use_sliding_window with max_window_layers 1 (5-key windows from layer 1), qkv bias',
    modelType: 'qwen2',
    dtype: 'F32',
    hidden: 32,
    heads: 4,
    kvHeads: 2,
    intermediate: 64,
    layers: 3,
    vocab: 70,
    config: { use_sliding_window: true, sliding_window: 5, max_window_layers: 1 },
    expectSpec: (s) => expect(s.layerKinds.map((k) => k.window)).toEqual([null, 5, 5]),
  },
];

const measured: Record<string, Record<string, number>> = {};
function note(model: string, what: string, value: number): number {
  const m = (measured[model] ??= {});
  m[what] = Math.max(m[what] ?? 0, Number(value.toExponential(2)));
  return value;
}

describeGpu('every family: WebGPU matches the CPU reference', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await acquireGpu();
  }, HOOK_TIMEOUT_MS);
  afterAll(() => {
    console.log('[tests/webgpu] family max errors (stats: per-token mean abs; nll: relative; logits / states: abs):', JSON.stringify(measured, null, 1));
    ctx?.device.destroy();
  });

  for (const c of CASES) {
    describe(c.name, () => {
      const checkpoint = randomCheckpoint(c);
      const { spec } = checkpoint;
      const key = `${c.modelType}${c.config?.use_parallel_residual === false ? ' sequential' : ''}`;
      const ids = randomIds(SEQ, spec.vocabSize, 17);
      let cpu: Backend;
      let gpu: WebGpuBackend;
      // The pipeline cache is shared by every backend on the device, so a variant compiled for an earlier
      // model would hide a gap in this one's precompile: record the keys each side asks for instead.
      const requested = { precompile: new Set<string>(), forward: new Set<string>() };
      let cache: PipelineCache;
      beforeAll(async () => {
        cpu = await createCpuBackend(spec, checkpoint.weights);
        gpu = (await createWebGpuBackend(spec, checkpoint.weights, { context: ctx, precompile: false })) as WebGpuBackend;
        cache = (gpu as unknown as { pipelines: PipelineCache }).pipelines;
        const get = cache.get.bind(cache);
        let phase: keyof typeof requested = 'precompile';
        cache.get = (key, code) => {
          requested[phase].add(key);
          return get(key, code);
        };
        gpu.precompile();
        phase = 'forward';
      }, HOOK_TIMEOUT_MS);
      afterAll(() => {
        // Back to the prototype's get for the next model.
        if (cache) delete (cache as Partial<PipelineCache>).get;
        gpu?.dispose();
      });

      const compare = (cpuResult: ForwardResult, gpuResult: ForwardResult) => {
        expect(gpuResult.stats?.map((s) => s.index)).toEqual(cpuResult.stats?.map((s) => s.index));
        cpuResult.stats?.forEach((want, k) => {
          for (const stat of ['cosSum', 'angularSum', 'relMagnitudeSum'] as const) {
            const got = gpuResult.stats?.[k][stat] ?? Number.NaN;
            expect(note(key, stat, Math.abs(got - want[stat]) / want.tokens), `${stat} of block ${want.index}`).toBeLessThanOrEqual(STAT_TOLERANCE);
          }
        });
        expect(gpuResult.nllCount).toBe(cpuResult.nllCount);
        if (cpuResult.nllCount > 0) expect(note(key, 'nll', Math.abs(gpuResult.nllSum - cpuResult.nllSum) / cpuResult.nllSum)).toBeLessThanOrEqual(NLL_RELATIVE);
        expect(gpuResult.logits === null).toBe(cpuResult.logits === null);
        if (cpuResult.logits) expect(note(key, 'logits', maxAbsDiff(gpuResult.logits as Float32Array, cpuResult.logits))).toBeLessThanOrEqual(LOGITS_ABS);
      };

      test('the spec has the features the case is named for', () => c.expectSpec(spec));

      test(`prefill of ${SEQ} tokens: per-token block statistics, NLL and every row's logits match`, async () => {
        const request = { ids, plan: makePlan(spec.layers, {}, 'stats'), logits: 'all' as const, nll: true };
        compare(await cpu.forward(request), await gpu.forward(request));
      });

      test('a plan with a removed block, a skipped attention and a skipped MLP: stats, NLL, all logits and every state match', async () => {
        const last = spec.layers - 1;
        const plan: Plan = { ...makePlan(spec.layers, { blocks: [1] }, 'states'), skipAttention: [0], skipMlp: [last] };
        const request = { ids: ids.slice(0, 19), plan, logits: 'all' as const, nll: true };
        const [want, got] = [await cpu.forward(request), await gpu.forward(request)];
        compare(want, got);
        expect(got.states?.length).toBe(plan.blocks.length + 1);
        want.states?.forEach((state, s) => {
          expect(note(key, 'states', maxAbsDiff(got.states?.[s] as Float32Array, state))).toBeLessThanOrEqual(2e-5 * Math.max(1, spec.embedScale));
        });
      });

      test(`decode through the KV cache one token at a time up to ${SEQ} positions (past every window): each step's logits and stats match`, async () => {
        const plan = makePlan(spec.layers, {}, 'stats');
        const cpuCache = cpu.createCache(SEQ, plan);
        const gpuCache = gpu.createCache(SEQ, plan);
        const prompt = 5;
        let lastStep: ForwardResult | null = null;
        for (const [from, to] of [[0, prompt], ...Array.from({ length: SEQ - prompt }, (_, k) => [prompt + k, prompt + k + 1])]) {
          const request = { ids: ids.slice(from, to), plan, logits: 'last' as const };
          lastStep = await gpu.forward({ ...request, cache: gpuCache });
          compare(await cpu.forward({ ...request, cache: cpuCache }), lastStep);
        }
        expect(gpuCache.length).toBe(SEQ);
        cpuCache.dispose();
        gpuCache.dispose();
        // The last decode step equals the last row of one whole forward over the same tokens.
        const whole = await gpu.forward({ ids, plan: makePlan(spec.layers), logits: 'last' });
        expect(note(key, 'decode vs whole', maxAbsDiff(lastStep?.logits as Float32Array, whole.logits as Float32Array))).toBeLessThanOrEqual(1e-4);
      });

      test('precompile asked for every kernel variant the forwards above used', () => {
        expect(requested.forward.size).toBeGreaterThan(5);
        expect([...requested.forward].filter((k) => !requested.precompile.has(k))).toEqual([]);
      });
    });
  }
});
