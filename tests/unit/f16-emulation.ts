/**
 * A CPU model of the WebGPU f16-arithmetic path (kernels/common.ts WeightMath 'f16'): each activation is
 * rounded to f16, multiplied by the f16 weight with the product rounded to f16, and the products are added
 * in f32. Used by tests/unit/f16-math.test.ts (the numerics, here) and tests/f16-hardware (the same path on
 * an adapter with shader-f16, against the tolerances derived here).
 *
 * WGSL fixes no f16 rounding mode (either neighbour of an inexact value is allowed) and may flush f16
 * subnormals, so the model has the two extremes: round to nearest even, and toward zero; subnormals kept
 * or flushed.
 */
import type { CpuKernels, PreparedLinear } from '../../src/engine/cpu/kernels.ts';
import { referenceKernels } from '../../src/engine/cpu/kernels.ts';
import { ACTIVATIONS, gated } from '../../src/engine/cpu/ops.ts';
import { decodeToF32, type HostTensor } from '../../src/engine/safetensors.ts';

export interface F16Rounding {
  mode: 'nearest' | 'zero';
  /** Subnormal inputs and results become ±0. */
  ftz: boolean;
}
export const NEAREST: F16Rounding = { mode: 'nearest', ftz: false };

/** The per-rounding bounds of common.ts WeightMath: u relative (one ulp: WGSL allows either neighbour), η absolute below 2⁻¹⁴ (flushing). */
export const WGSL_U = 2 ** -10;
export const FLUSH_ETA = 2 ** -14;
/** The same for round to nearest with subnormals (what the emulation with NEAREST does). */
export const NEAREST_U = 2 ** -11;
export const NEAREST_ETA = 2 ** -25;

const f32 = new Float32Array(1);
const bits = new Uint32Array(f32.buffer);

/**
 * v (an f32 value: activations, and products of two f16, which are exact in f32) rounded to f16. Beyond
 * the range: ±Infinity to nearest, ±65504 toward zero.
 */
export function roundF16(v: number, r: F16Rounding = NEAREST): number {
  f32[0] = v;
  if (f32[0] !== v && !Number.isNaN(v)) throw new Error(`roundF16 takes f32 values, got ${v}`);
  const sign = bits[0] & 0x80000000;
  const a = bits[0] & 0x7fffffff;
  if (a >= 0x7f800000 || a === 0) return v;
  if (a < 0x38800000) {
    // below 2⁻¹⁴: f16 subnormals, multiples of 2⁻²⁴ (q is exact: a power-of-two scaling)
    if (r.ftz) return sign ? -0 : 0;
    const q = Math.abs(v) * 2 ** 24;
    let n = Math.floor(q);
    const rest = q - n;
    if (r.mode === 'nearest' && (rest > 0.5 || (rest === 0.5 && n % 2 === 1))) n++;
    const out = n * 2 ** -24;
    return sign ? -out : out;
  }
  // normal: drop the 13 low bits of f32's 23-bit mantissa (a carry moves into the exponent)
  const rest = a & 0x1fff;
  let t = a - rest;
  if (r.mode === 'nearest' && (rest > 0x1000 || (rest === 0x1000 && (t & 0x2000) !== 0))) t += 0x2000;
  if (t >= 0x47800000) return (sign ? -1 : 1) * (r.mode === 'nearest' ? Number.POSITIVE_INFINITY : 65504);
  bits[0] = (t | sign) >>> 0;
  return f32[0];
}

/** Activations as the kernels stage them: each rounded to f16 once. */
export function roundAllF16(x: ArrayLike<number>, r: F16Rounding = NEAREST): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = roundF16(x[i], r);
  return out;
}

/** Σ x_i·w_i in float64 (the exact value up to 2⁻⁵³ relative: the reference). */
export function exactDot(x: ArrayLike<number>, w: ArrayLike<number>, wOffset = 0, k = x.length): number {
  let s = 0;
  for (let i = 0; i < k; i++) s += x[i] * w[wOffset + i];
  return s;
}

/** Σ |x_i·w_i|: the scale of a dot product's rounding errors. */
export function absDot(x: ArrayLike<number>, w: ArrayLike<number>, wOffset = 0, k = x.length): number {
  let s = 0;
  for (let i = 0; i < k; i++) s += Math.abs(x[i] * w[wOffset + i]);
  return s;
}

/**
 * The bound of common.ts WeightMath on |f16-math dot − exact| for one output: Σ (2u + u²)|x·w| + η(1 + 2|w|)
 * over the terms, plus the f32 sum's own error k·2⁻²⁴·Σ|terms| (terms ≤ (1 + 2u + u²)|x·w| + η(1 + 2|w|)).
 */
export function dotBound(x: ArrayLike<number>, w: ArrayLike<number>, wOffset: number, k: number, u: number, eta: number): number {
  let perTerm = 0;
  let magnitude = 0;
  for (let i = 0; i < k; i++) {
    const xw = Math.abs(x[i] * w[wOffset + i]);
    const e = (2 * u + u * u) * xw + eta * (1 + 2 * Math.abs(w[wOffset + i]));
    perTerm += e;
    magnitude += xw + e;
  }
  return perTerm + k * 2 ** -24 * magnitude;
}

const fround = Math.fround;

/**
 * The matmul.ts GEMV kernel's f16 path for one output, operation by operation: 8 lanes, lane l takes the
 * runs of four i = 4q (q ≡ l mod 8) into a vec4<f32> of products, then the k mod 4 tail, then
 * (a.x + a.y) + (a.z + a.w), then the lanes' tree sum; every add in f32. x16: the activations already
 * rounded to f16 (roundAllF16, as the kernel rounds each on reading it).
 */
export function gemvF16(x16: Float64Array, w: ArrayLike<number>, wOffset: number, k: number, r: F16Rounding = NEAREST): number {
  const lanes = 8;
  const term = (i: number) => roundF16(x16[i] * w[wOffset + i], r);
  const part = new Float64Array(lanes);
  for (let lane = 0; lane < lanes; lane++) {
    const a = [0, 0, 0, 0];
    for (let q = lane; q < Math.floor(k / 4); q += lanes) for (let j = 0; j < 4; j++) a[j] = fround(a[j] + term(4 * q + j));
    for (let i = (k & ~3) + lane; i < k; i += lanes) a[0] = fround(a[0] + term(i));
    part[lane] = fround(fround(a[0] + a[1]) + fround(a[2] + a[3]));
  }
  for (let s = lanes / 2; s > 0; s >>= 1) for (let l = 0; l < s; l++) part[l] = fround(part[l] + part[l + s]);
  return part[0];
}

/** The same GEMV's f32 path (what runs without f16 arithmetic): lane l fma-accumulates i ≡ l mod 8, then the tree. */
export function gemvF32(x: ArrayLike<number>, w: ArrayLike<number>, wOffset: number, k: number): number {
  const lanes = 8;
  const part = new Float64Array(lanes);
  for (let lane = 0; lane < lanes; lane++) {
    let acc = 0;
    // an f32 × f16 product is exact in float64, so fround(acc + x·w) is the fma's one rounding
    for (let i = lane; i < k; i += lanes) acc = fround(acc + x[i] * w[wOffset + i]);
    part[lane] = acc;
  }
  for (let s = lanes / 2; s > 0; s >>= 1) for (let l = 0; l < s; l++) part[l] = fround(part[l] + part[l + s]);
  return part[0];
}

interface EmulatedLinear extends PreparedLinear {
  w: Float32Array;
  b: Float32Array | null;
  act: ((v: number) => number) | null;
  up?: EmulatedLinear;
}

/** y = x·Wᵀ + b with f16 arithmetic: products f16(f16(x)·w), summed (float64, then f32: the kernels' f32 order changes it by ≤ k·2⁻²⁴·Σ|terms|). */
function f16Linear(x: Float32Array, rows: number, l: EmulatedLinear, r: F16Rounding): Float32Array {
  const { out, inp, w, b } = l;
  const y = new Float32Array(rows * out);
  for (let row = 0; row < rows; row++) {
    const x16 = roundAllF16(x.subarray(row * inp, (row + 1) * inp), r);
    for (let o = 0; o < out; o++) {
      let s = 0;
      const wo = o * inp;
      for (let i = 0; i < inp; i++) s += roundF16(x16[i] * w[wo + i], r);
      y[row * out + o] = b ? fround(s) + b[o] : s;
    }
  }
  return y;
}

/**
 * The CPU backend's kernel seam (cpu/kernels.ts) with the WebGPU f16 path's arithmetic: F16-stored matrices
 * of even width multiply as f16 (backend.ts mathOf), the rest (and attention, log-sum-exp) as the reference.
 */
export function f16MathKernels(r: F16Rounding): CpuKernels {
  const ref = referenceKernels();
  const emulated = new WeakSet<PreparedLinear>();
  const usesF16 = (t: HostTensor) => t.dtype === 'F16' && t.shape[1] % 2 === 0;
  const plain = (weight: HostTensor, bias: HostTensor | null): EmulatedLinear => ({
    w: decodeToF32(weight),
    b: bias ? decodeToF32(bias) : null,
    out: weight.shape[0],
    inp: weight.shape[1],
    act: null,
  });
  return {
    description: `f16-arithmetic emulation (${r.mode}${r.ftz ? ', subnormals flushed' : ''})`,
    threads: 1,
    prepareLinear(weight, bias, activation) {
      if (!usesF16(weight)) return ref.prepareLinear(weight, bias, activation);
      const l = { ...plain(weight, bias), act: activation ? ACTIVATIONS[activation] : null };
      emulated.add(l);
      return l;
    },
    prepareGated(gate, up, activation) {
      if (!usesF16(gate.weight) || !usesF16(up.weight)) return ref.prepareGated(gate, up, activation);
      const l = { ...plain(gate.weight, gate.bias), act: ACTIVATIONS[activation], up: plain(up.weight, up.bias) };
      emulated.add(l);
      return l;
    },
    linear(x, rows, l) {
      if (!emulated.has(l)) return ref.linear(x, rows, l);
      const e = l as EmulatedLinear;
      const y = f16Linear(x, rows, e, r);
      if (e.up) return gated(y, f16Linear(x, rows, e.up, r), e.act as (v: number) => number);
      if (e.act) for (let i = 0; i < y.length; i++) y[i] = e.act(y[i]);
      return y;
    },
    attention: ref.attention,
    logSumExp: ref.logSumExp,
    ready: async () => undefined,
    get weightBytes() {
      return ref.weightBytes;
    },
    dispose: () => ref.dispose(),
  };
}

/**
 * The whole-model tolerance for the f16 path on the embedded model (public/models/sotu-llama), 48 tokens of
 * the evaluation text: f16-arithmetic logits vs f32-arithmetic logits, max |Δ| over every position, and
 * |Δ mean NLL|. Derived in tests/unit/f16-math.test.ts: twice the largest deviation of the three emulations
 * (nearest; nearest with flushing; toward zero with flushing), which that test checks stays within half of
 * these; tests/f16-hardware/model.test.ts holds an adapter with shader-f16 to them.
 */
export const WHOLE_MODEL_TOLERANCE = { logitsAbs: 0.07, meanNll: 0.005 };
export const WHOLE_MODEL_TOKENS = 48;
