/**
 * The numerics of the WebGPU f16-arithmetic path (kernels/common.ts WeightMath 'f16'), emulated on the CPU
 * (tests/unit/f16-emulation.ts) because no adapter here offers shader-f16:
 *  - the f16 rounding helper agrees with the checkpoint writer's independent f16 encoder (safetensors.ts);
 *  - every GEMV of the embedded model (its real F16 weights, activations from its own forward) computed
 *    operation by operation as the kernel does stays within WeightMath's stated bound of the exact dot
 *    product, and within that bound plus the f32 path's own of the f32 path;
 *  - the whole model with f16 arithmetic (three roundings WGSL allows) stays within half of the whole-model
 *    tolerance tests/f16-hardware holds a real adapter to (WHOLE_MODEL_TOLERANCE), which is derived here.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ForwardResult } from '../../src/engine/backend.ts';
import { createCpuBackend } from '../../src/engine/cpu/backend.ts';
import { referenceKernels } from '../../src/engine/cpu/kernels.ts';
import { rmsNorm, silu } from '../../src/engine/cpu/ops.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { decodeToF32, encodeF16 } from '../../src/engine/safetensors.ts';
import { directorySource } from '../../src/engine/sources.ts';
import type { Linear, Norm } from '../../src/engine/weights.ts';
import {
  absDot,
  dotBound,
  exactDot,
  type F16Rounding,
  f16MathKernels,
  gemvF16,
  gemvF32,
  NEAREST,
  NEAREST_ETA,
  NEAREST_U,
  roundAllF16,
  roundF16,
  WGSL_U,
  FLUSH_ETA,
  WHOLE_MODEL_TOKENS,
  WHOLE_MODEL_TOLERANCE,
} from './f16-emulation.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const EMBEDDED = join(ROOT, 'public', 'models', 'sotu-llama');
const EVAL_TEXT = join(ROOT, 'public', 'calibration', 'moby-dick-eval.txt');
const SLOW_MS = 240_000;

/** f16 bits → value, written out from the IEEE layout (independent of both encoders under test). */
function f16Value(h: number): number {
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** safetensors.ts encodeF16 (round to nearest even) of f32 values, decoded. */
function encoderRound(values: Float32Array): number[] {
  const bytes = encodeF16(values);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from(values, (_, i) => f16Value(view.getUint16(2 * i, true)));
}

describe('roundF16 (the emulation’s f16 rounding)', () => {
  it('equals the checkpoint writer’s f16 encoder on every f16 value, every midpoint (ties to even) and 200k random f32 values', () => {
    const values: number[] = [];
    for (let h = 0; h < 0x7c00; h++) {
      const v = f16Value(h);
      values.push(v, -v);
      // the midpoint to the next f16 (exact in f32: 12 significant bits)
      if (h + 1 < 0x7c00) values.push((v + f16Value(h + 1)) / 2);
    }
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    for (let i = 0; i < 200_000; i++) values.push(Math.fround(rand() * 2 ** Math.round(rand() * 30 - 10)));
    values.push(65504, 65519.99609375, 65520, 1e6, 2 ** -25, 2 ** -26, 3 * 2 ** -26);
    const f32 = Float32Array.from(values);
    const want = encoderRound(f32);
    const got = Array.from(f32, (v) => roundF16(v));
    const differ = got.findIndex((g, i) => !Object.is(g, want[i]) && !(g === 0 && want[i] === 0));
    expect(differ, `first difference at ${f32[differ]}: ${got[differ]} vs ${want[differ]}`).toBe(-1);
  });

  it('toward zero never rounds up in magnitude, clamps to 65504, and flushing turns results below 2⁻¹⁴ into 0', () => {
    const zero: F16Rounding = { mode: 'zero', ftz: false };
    expect(roundF16(1 + 2 ** -11 + 2 ** -12, zero)).toBe(1);
    expect(roundF16(1 + 2 ** -11 + 2 ** -12)).toBe(1 + 2 ** -10);
    expect(roundF16(-70000, zero)).toBe(-65504);
    expect(roundF16(-70000)).toBe(Number.NEGATIVE_INFINITY);
    expect(roundF16(3 * 2 ** -24, zero)).toBe(3 * 2 ** -24);
    expect(roundF16(3 * 2 ** -24, { mode: 'nearest', ftz: true })).toBe(0);
    expect(roundF16(2 ** -14, { mode: 'zero', ftz: true })).toBe(2 ** -14);
  });
});

describe('f16 arithmetic on the embedded model (CPU emulation of the kernels)', () => {
  let model: Model;
  let ids: number[];
  let reference: ForwardResult;
  beforeAll(async () => {
    model = await Model.load(directorySource(EMBEDDED), 'cpu-reference');
    ids = model.requireTokenizer().encode(readFileSync(EVAL_TEXT, 'utf8')).slice(0, WHOLE_MODEL_TOKENS);
    const { spec, weights } = model.checkpoint;
    const cpu = await createCpuBackend(spec, weights, referenceKernels());
    reference = await cpu.forward({ ids, plan: makePlan(spec.layers, {}, 'states'), logits: 'all', nll: true });
    cpu.dispose();
  }, SLOW_MS);

  it(
    'every GEMV (q, k, v, o, gate, up, down of each block, and the lm head) stays within WeightMath’s bound of exact, and of the f32 path',
    () => {
      const { spec, weights } = model.checkpoint;
      expect(weights.blocks.every((b) => [b.q, b.k, b.v, b.o, b.gate, b.up, b.down].every((l) => l?.weight.dtype === 'F16'))).toBe(true);
      const states = reference.states as Float32Array[];
      const { hidden, normEps, heads, kvHeads, headDim } = spec;
      const positions = [0, 7, 19, 33, WHOLE_MODEL_TOKENS - 1];
      const stats = { outputs: 0, worstF16: 0, worstF32: 0, worstVsF32: 0, meanRelF16: 0 };
      /** One GEMV: all outputs of W·x, each checked (u, η of round to nearest: what the emulation does). */
      const check = (name: string, x: Float32Array, w: Float32Array, out: number, k: number) => {
        const x16 = roundAllF16(x);
        for (let o = 0; o < out; o++) {
          const exact = exactDot(x, w, o * k, k);
          const f16 = gemvF16(x16, w, o * k, k);
          const f32 = gemvF32(x, w, o * k, k);
          const bound = dotBound(x, w, o * k, k, NEAREST_U, NEAREST_ETA);
          // the f32 path: fma per term (one rounding each) and f32 adds: ≤ k·2⁻²⁴·Σ|x·w| (+ a term of its own)
          const scale = absDot(x, w, o * k, k);
          const bound32 = (k + 1) * 2 ** -24 * scale;
          const errF16 = Math.abs(f16 - exact);
          if (errF16 > bound) throw new Error(`${name} output ${o}: |f16 − exact| = ${errF16} > bound ${bound}`);
          expect(Math.abs(f32 - exact)).toBeLessThanOrEqual(bound32);
          expect(Math.abs(f16 - f32)).toBeLessThanOrEqual(bound + bound32);
          stats.outputs++;
          stats.worstF16 = Math.max(stats.worstF16, errF16 / bound);
          stats.worstF32 = Math.max(stats.worstF32, Math.abs(f32 - exact));
          stats.worstVsF32 = Math.max(stats.worstVsF32, Math.abs(f16 - f32));
          stats.meanRelF16 += errF16 / scale;
        }
      };
      const row = (s: Float32Array, t: number) => s.subarray(t * hidden, (t + 1) * hidden);
      for (const [l, b] of weights.blocks.entries()) {
        const [q, kk, v, o, gate, up, down] = [b.q, b.k, b.v, b.o, b.gate as Linear, b.up, b.down].map((t) => decodeToF32(t.weight));
        const ffn = b.up.weight.shape[0];
        for (const t of positions) {
          const x = row(states[l], t);
          const xa = rmsNorm(x, hidden, decodeToF32((b.attnNorm as Norm).weight), normEps);
          // the MLP's real input follows the attention half's residual add; the block input through its norm has the same scale
          const xm = rmsNorm(x, hidden, decodeToF32((b.mlpNorm as Norm).weight), normEps);
          check(`block ${l} q`, xa, q, heads * headDim, hidden);
          check(`block ${l} k`, xa, kk, kvHeads * headDim, hidden);
          check(`block ${l} v`, xa, v, kvHeads * headDim, hidden);
          // o's input: the attention output of a token attending only to itself (its value rows, one per q head)
          const values = Float32Array.from({ length: kvHeads * headDim }, (_, i) => exactDot(xa, v, i * hidden, hidden));
          const attended = Float32Array.from({ length: heads * headDim }, (_, i) => values[Math.floor(i / headDim / (heads / kvHeads)) * headDim + (i % headDim)]);
          check(`block ${l} o`, attended, o, hidden, heads * headDim);
          check(`block ${l} gate`, xm, gate, ffn, hidden);
          check(`block ${l} up`, xm, up, ffn, hidden);
          const act = Float32Array.from({ length: ffn }, (_, i) => silu(exactDot(xm, gate, i * hidden, hidden)) * exactDot(xm, up, i * hidden, hidden));
          check(`block ${l} down`, act, down, hidden, ffn);
        }
      }
      const head = decodeToF32(weights.lmHead);
      const last = states[states.length - 1];
      for (const t of positions) check('lm head', rmsNorm(row(last, t), hidden, decodeToF32(weights.finalNorm.weight), normEps), head, spec.vocabSize, hidden);
      stats.meanRelF16 /= stats.outputs;
      console.log('[f16 emulation] GEMV outputs checked:', stats.outputs, JSON.stringify(stats));
      const ffn = weights.blocks[0].up.weight.shape[0];
      expect(stats.outputs).toBe(positions.length * (spec.layers * (2 * heads * headDim + 2 * kvHeads * headDim + 2 * ffn + hidden) + spec.vocabSize));
      // the emulation is not the f32 path in disguise: its error is far above f32's, and uses a fair part of the bound
      expect(stats.worstVsF32).toBeGreaterThan(100 * stats.worstF32);
      expect(stats.worstF16).toBeGreaterThan(0.05);
      // WeightMath's stated bound (WGSL: u = 2⁻¹⁰, flushing η = 2⁻¹⁴) is looser than the one checked here
      expect(WGSL_U).toBe(2 * NEAREST_U);
      expect(FLUSH_ETA).toBeGreaterThan(NEAREST_ETA);
    },
    SLOW_MS,
  );

  it(
    `the whole model (${WHOLE_MODEL_TOKENS} tokens, every position's logits) with f16 arithmetic stays within half the hardware test's tolerance, under each rounding WGSL allows`,
    async () => {
      const { spec, weights } = model.checkpoint;
      const ref = reference.logits as Float32Array;
      const measured: Record<string, { logitsAbs: number; meanNll: number }> = {};
      for (const r of [NEAREST, { mode: 'nearest', ftz: true }, { mode: 'zero', ftz: true }] as F16Rounding[]) {
        const cpu = await createCpuBackend(spec, weights, f16MathKernels(r));
        const got = await cpu.forward({ ids, plan: makePlan(spec.layers), logits: 'all', nll: true });
        cpu.dispose();
        const logits = got.logits as Float32Array;
        let logitsAbs = 0;
        for (let i = 0; i < ref.length; i++) logitsAbs = Math.max(logitsAbs, Math.abs(logits[i] - ref[i]));
        const meanNll = Math.abs(got.nllSum / got.nllCount - reference.nllSum / reference.nllCount);
        measured[`${r.mode}${r.ftz ? '+ftz' : ''}`] = { logitsAbs, meanNll };
        expect(logitsAbs).toBeLessThanOrEqual(WHOLE_MODEL_TOLERANCE.logitsAbs / 2);
        expect(meanNll).toBeLessThanOrEqual(WHOLE_MODEL_TOLERANCE.meanNll / 2);
        // f16 arithmetic really ran (the logits moved) and the greedy choices held at every position
        expect(logitsAbs).toBeGreaterThan(1e-3);
        for (let t = 0; t < ids.length; t++) {
          const row = (a: Float32Array) => a.subarray(t * spec.vocabSize, (t + 1) * spec.vocabSize);
          const top = (a: Float32Array) => row(a).reduce((best, v, i, all) => (v > all[best] ? i : best), 0);
          const sorted = Array.from(row(ref)).sort((a, b) => b - a);
          if (sorted[0] - sorted[1] > 2 * WHOLE_MODEL_TOLERANCE.logitsAbs) expect(top(logits), `position ${t}`).toBe(top(ref));
        }
      }
      console.log('[f16 emulation] whole model vs f32 arithmetic:', JSON.stringify(measured), 'tolerance:', JSON.stringify(WHOLE_MODEL_TOLERANCE));
    },
    SLOW_MS,
  );
});
