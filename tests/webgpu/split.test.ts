/**
 * Tensors larger than one storage binding are split, not refused. The backend is created with an
 * artificially low `maxBindingBytes` (a few KB) on tiny random models, so the embedding / lm head are cut
 * into row chunks mid-vocabulary (chunk counts that do not divide the rows, one model with a one-row last
 * chunk), every projection into output-row chunks, and the head runs in groups of logits rows. The whole
 * forward must equal the unsplit backend and the CPU reference within the whole-forward tolerances.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Backend, ForwardResult } from '../../src/engine/backend.ts';
import { createCpuBackend } from '../../src/engine/cpu/backend.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan, type Plan } from '../../src/engine/plan.ts';
import { createWebGpuBackend, type WebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import type { GpuMatrix } from '../../src/engine/webgpu/tensors.ts';
import { LOGITS_ABS, NLL_RELATIVE, STATES_ABS, STATS_PER_TOKEN } from './compare.ts';
import { maxAbsDiff } from './harness.ts';
import { randomCheckpoint, randomIds, type RandomModelOptions } from './random-model.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

interface SplitCase extends RandomModelOptions {
  name: string;
  maxBindingBytes: number;
  /** Expected row-chunk sizes of the embedding (= lm head when tied) and of the lm head. */
  embedChunks: number[];
  headChunks: number[];
}

const CASES: SplitCase[] = [
  {
    // 256-byte rows: 15 per 4000-byte binding → vocab 97 = 6×15 + 7; q 64 rows = 4×15 + 4 (mid-head); down (384-byte rows) 64 = 6×10 + 4;
    // logits rows 388 bytes → groups of 10 rows.
    name: 'llama GQA 2, qkv bias, untied (F32), 4000-byte bindings',
    modelType: 'llama',
    dtype: 'F32',
    hidden: 64,
    heads: 4,
    kvHeads: 2,
    intermediate: 96,
    layers: 2,
    vocab: 97,
    qkvBias: true,
    maxBindingBytes: 4000,
    embedChunks: [15, 15, 15, 15, 15, 15, 7],
    headChunks: [15, 15, 15, 15, 15, 15, 7],
  },
  {
    // Packed f16, tied: 96-byte rows, 20 per 2000-byte binding → vocab 101 = 5×20 + 1 (a one-row last chunk), shared by gather and head.
    name: 'qwen3 qk-norm, GQA 2, head_dim 32, tied (F16), 2000-byte bindings',
    modelType: 'qwen3',
    dtype: 'F16',
    hidden: 48,
    heads: 2,
    kvHeads: 1,
    headDim: 32,
    intermediate: 80,
    layers: 2,
    vocab: 101,
    tie: true,
    maxBindingBytes: 2000,
    embedChunks: [20, 20, 20, 20, 20, 1],
    headChunks: [20, 20, 20, 20, 20, 1],
  },
  {
    // Biases on every projection (split bias ranges), learned positions. 192-byte rows: 15 per 3000 bytes → vocab 80 = 5×15 + 5.
    name: 'gpt2 (F32), 3000-byte bindings',
    modelType: 'gpt2',
    dtype: 'F32',
    hidden: 48,
    heads: 4,
    intermediate: 96,
    layers: 2,
    vocab: 80,
    maxBindingBytes: 3000,
    embedChunks: [15, 15, 15, 15, 15, 5],
    headChunks: [15, 15, 15, 15, 15, 5],
  },
];

const measured: Record<string, Record<string, number>> = {};
function note(model: string, what: string, value: number): number {
  const m = (measured[model] ??= {});
  m[what] = Math.max(m[what] ?? 0, Number(value.toExponential(2)));
  return value;
}

type Internals = {
  embed: GpuMatrix;
  lmHead: GpuMatrix;
  blocks: { q: { w: GpuMatrix }; up: { w: GpuMatrix }; down: { w: GpuMatrix } }[];
  workspace: { buffers: Map<string, GPUBuffer> };
};
const internals = (b: Backend) => b as unknown as Internals;

describeGpu('tensors larger than one binding are split: split WebGPU = unsplit WebGPU = CPU', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await acquireGpu();
  }, HOOK_TIMEOUT_MS);
  afterAll(() => {
    console.log('[tests/webgpu] split max errors (stats: per-token mean abs; nll: relative; logits/states: abs):', JSON.stringify(measured, null, 1));
    ctx?.device.destroy();
  });

  for (const c of CASES) {
    describe(c.name, () => {
      const checkpoint = randomCheckpoint(c);
      const { spec } = checkpoint;
      const ids = randomIds(24, spec.vocabSize, 3);
      let cpu: Backend;
      let whole: WebGpuBackend;
      let split: WebGpuBackend;
      beforeAll(async () => {
        cpu = await createCpuBackend(spec, checkpoint.weights);
        whole = (await createWebGpuBackend(spec, checkpoint.weights, { context: ctx })) as WebGpuBackend;
        split = (await createWebGpuBackend(spec, checkpoint.weights, { context: ctx, maxBindingBytes: c.maxBindingBytes })) as WebGpuBackend;
      }, HOOK_TIMEOUT_MS);
      afterAll(() => {
        whole?.dispose();
        split?.dispose();
      });

      /** Split vs CPU within the tolerances, and split vs unsplit (same kernels) recorded. */
      const compare = (c0: ForwardResult, w: ForwardResult, s: ForwardResult) => {
        expect(s.stats?.map((x) => x.index)).toEqual(c0.stats?.map((x) => x.index));
        c0.stats?.forEach((want, k) => {
          for (const key of ['cosSum', 'angularSum', 'relMagnitudeSum'] as const) {
            const got = s.stats?.[k][key] ?? Number.NaN;
            expect(note(c.name, `${key} vs cpu`, Math.abs(got - want[key]) / want.tokens), `${key} of block ${want.index}`).toBeLessThanOrEqual(STATS_PER_TOKEN);
            expect(note(c.name, 'stats vs unsplit', Math.abs(got - (w.stats?.[k][key] ?? Number.NaN)) / want.tokens)).toBeLessThanOrEqual(1e-6);
          }
        });
        expect(s.nllCount).toBe(c0.nllCount);
        if (c0.nllCount > 0) {
          expect(note(c.name, 'nll vs cpu', Math.abs(s.nllSum - c0.nllSum) / c0.nllSum)).toBeLessThanOrEqual(NLL_RELATIVE);
          expect(note(c.name, 'nll vs unsplit', Math.abs(s.nllSum - w.nllSum) / w.nllSum)).toBeLessThanOrEqual(1e-6);
        }
        expect(s.logits === null).toBe(c0.logits === null);
        if (c0.logits) {
          expect(note(c.name, 'logits vs cpu', maxAbsDiff(s.logits as Float32Array, c0.logits))).toBeLessThanOrEqual(LOGITS_ABS);
          expect(note(c.name, 'logits vs unsplit', maxAbsDiff(s.logits as Float32Array, w.logits as Float32Array))).toBeLessThanOrEqual(1e-5);
        }
      };

      test('weights are uploaded as row chunks that each fit the binding limit', () => {
        const m = internals(split);
        expect(m.embed.chunks.map((x) => x.rows)).toEqual(c.embedChunks);
        expect(m.lmHead.chunks.map((x) => x.rows)).toEqual(c.headChunks);
        if (c.tie) expect(m.lmHead).toBe(m.embed);
        for (const w of [m.blocks[0].q.w, m.blocks[0].up.w, m.blocks[0].down.w, m.embed, m.lmHead]) {
          expect(w.chunks.length).toBeGreaterThan(1);
          expect(w.chunks.reduce((n, x) => n + x.rows, 0)).toBe(w.rows);
          for (const x of w.chunks) expect(x.buffer.size).toBeLessThanOrEqual(c.maxBindingBytes);
        }
        expect(internals(whole).embed.chunks.length).toBe(1);
        expect(split.info.description).toMatch(/split across bindings/);
        expect(split.info.weightBytes).toBeGreaterThanOrEqual(whole.info.weightBytes);
      });

      test('stats + NLL + last logits over 24 tokens (head in row groups) match', async () => {
        const request = { ids, plan: makePlan(spec.layers, {}, 'stats'), logits: 'last' as const, nll: true };
        const [c0, w, s] = [await cpu.forward(request), await whole.forward(request), await split.forward(request)];
        compare(c0, w, s);
        const logitsBuffer = internals(split).workspace.buffers.get('logits');
        expect(logitsBuffer?.size).toBeLessThanOrEqual(c.maxBindingBytes);
        expect(logitsBuffer?.size).toBeLessThan(24 * spec.vocabSize * 4);
      });

      test('all logits and every state under a plan with removed, reordered and half-skipped blocks match', async () => {
        const last = spec.layers - 1;
        const plan: Plan = { blocks: [last, 0], skipAttention: [0], skipMlp: [last], capture: 'states' };
        const request = { ids: ids.slice(0, 13), plan, logits: 'all' as const, nll: true };
        const [c0, w, s] = [await cpu.forward(request), await whole.forward(request), await split.forward(request)];
        compare(c0, w, s);
        c0.states?.forEach((state, k) => {
          expect(note(c.name, 'states vs cpu', maxAbsDiff(s.states?.[k] as Float32Array, state))).toBeLessThanOrEqual(STATES_ABS);
          expect(note(c.name, 'states vs unsplit', maxAbsDiff(s.states?.[k] as Float32Array, w.states?.[k] as Float32Array))).toBeLessThanOrEqual(1e-6);
        });
      });

      test('all logits without NLL, and logits of a single row, match', async () => {
        for (const request of [
          { ids: ids.slice(0, 11), plan: makePlan(spec.layers), logits: 'all' as const },
          { ids: ids.slice(0, 1), plan: makePlan(spec.layers), logits: 'last' as const, nll: true },
        ]) {
          const [c0, w, s] = [await cpu.forward(request), await whole.forward(request), await split.forward(request)];
          compare(c0, w, s);
        }
      });

      test('greedy generation with the KV cache: the same 16 tokens as unsplit and CPU', async () => {
        const plan = makePlan(spec.layers, { blocks: [1] });
        const prompt = ids.slice(0, 6);
        const want = await new Model(checkpoint, cpu).generate(prompt, plan, { maxNewTokens: 16 });
        const unsplit = await new Model(checkpoint, whole).generate(prompt, plan, { maxNewTokens: 16 });
        const got = await new Model(checkpoint, split).generate(prompt, plan, { maxNewTokens: 16 });
        expect(got).toEqual(want);
        expect(unsplit).toEqual(want);
        expect(got.length).toBe(16);
      });
    });
  }
});
