/**
 * The CPU reference's steps, one small function each, reading like the math. Float32 storage, float64
 * accumulation where a sum runs long (norms, dot products, softmax, statistics).
 */

/** y[t] = x[t] · W^T + b  with W [out, in] (nn.Linear layout). x is [rows, in]. */
export function matmul(x: Float32Array, rows: number, w: Float32Array, out: number, inp: number, bias: Float32Array | null): Float32Array {
  const y = new Float32Array(rows * out);
  for (let r = 0; r < rows; r++) {
    const xo = r * inp;
    for (let o = 0; o < out; o++) {
      const wo = o * inp;
      let acc = 0;
      for (let i = 0; i < inp; i++) acc += x[xo + i] * w[wo + i];
      y[r * out + o] = bias ? acc + bias[o] : acc;
    }
  }
  return y;
}

/** RMSNorm over groups of `width`: x · rsqrt(mean(x²) + eps) · (offset + w); Gemma's offset is 1. */
export function rmsNorm(x: Float32Array, width: number, w: Float32Array, eps: number, offset = 0): Float32Array {
  const y = new Float32Array(x.length);
  for (let r = 0; r < x.length / width; r++) {
    let ss = 0;
    for (let i = 0; i < width; i++) ss += x[r * width + i] * x[r * width + i];
    const scale = 1 / Math.sqrt(ss / width + eps);
    for (let i = 0; i < width; i++) y[r * width + i] = x[r * width + i] * scale * (offset + w[i]);
  }
  return y;
}

/** LayerNorm: (x − mean) / sqrt(var + eps) · w + b. */
export function layerNorm(x: Float32Array, width: number, w: Float32Array, b: Float32Array, eps: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let r = 0; r < x.length / width; r++) {
    let mean = 0;
    for (let i = 0; i < width; i++) mean += x[r * width + i];
    mean /= width;
    let v = 0;
    for (let i = 0; i < width; i++) v += (x[r * width + i] - mean) ** 2;
    const scale = 1 / Math.sqrt(v / width + eps);
    for (let i = 0; i < width; i++) y[r * width + i] = (x[r * width + i] - mean) * scale * w[i] + b[i];
  }
  return y;
}

/**
 * rotate_half RoPE in place on [rows, heads, headDim] over the first `rotaryDim` dims of each head (the
 * rest pass through): the pair (i, i + rotaryDim/2) rotates by angle position · invFreq[i]; cos and sin
 * are scaled by `attentionFactor` (longrope). Angles in float64 (SwiftShader's sin/cos are too coarse;
 * so are float32's).
 */
export function rope(
  x: Float32Array,
  rows: number,
  heads: number,
  headDim: number,
  rotaryDim: number,
  invFreq: Float64Array,
  attentionFactor: number,
  firstPosition: number,
): void {
  const half = rotaryDim / 2;
  for (let r = 0; r < rows; r++) {
    const pos = firstPosition + r;
    for (let i = 0; i < half; i++) {
      const angle = pos * invFreq[i];
      const cos = Math.cos(angle) * attentionFactor;
      const sin = Math.sin(angle) * attentionFactor;
      for (let h = 0; h < heads; h++) {
        const base = (r * heads + h) * headDim;
        const a = x[base + i];
        const b = x[base + i + half];
        x[base + i] = a * cos - b * sin;
        x[base + i + half] = b * cos + a * sin;
      }
    }
  }
}

export interface AttentionShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Score scale (1/√head_dim unless the family says otherwise). */
  scale: number;
  /** cap · tanh(score / cap) before the mask (Gemma 2), or null. */
  softcap: number | null;
  /** Sliding window: query at position q sees keys q − window < k ≤ q; null = all earlier keys. */
  window: number | null;
}

/**
 * Causal attention with GQA. q [rows, heads, d]; keys/values [positions, kvHeads, d] where the query row r
 * sits at absolute position firstPosition + r and sees keys up to that position (within the window).
 * Query head h reads KV head h / (heads / kvHeads).
 */
export function causalAttention(q: Float32Array, rows: number, keys: Float32Array, values: Float32Array, firstPosition: number, shape: AttentionShape): Float32Array {
  const { heads, kvHeads, headDim: d, scale, softcap, window } = shape;
  const out = new Float32Array(rows * heads * d);
  const group = heads / kvHeads;
  const scores = new Float64Array(firstPosition + rows);
  for (let r = 0; r < rows; r++) {
    const last = firstPosition + r;
    const first = window === null ? 0 : Math.max(0, last - window + 1);
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      const qo = (r * heads + h) * d;
      let max = Number.NEGATIVE_INFINITY;
      for (let p = first; p <= last; p++) {
        const ko = (p * kvHeads + kvh) * d;
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[qo + i] * keys[ko + i];
        const s = dot * scale;
        scores[p] = softcap === null ? s : softcap * Math.tanh(s / softcap);
        if (scores[p] > max) max = scores[p];
      }
      let sum = 0;
      for (let p = first; p <= last; p++) {
        scores[p] = Math.exp(scores[p] - max);
        sum += scores[p];
      }
      for (let i = 0; i < d; i++) {
        let acc = 0;
        for (let p = first; p <= last; p++) acc += scores[p] * values[(p * kvHeads + kvh) * d + i];
        out[qo + i] = acc / sum;
      }
    }
  }
  return out;
}

export const silu = (x: number) => x / (1 + Math.exp(-x));

/** The tanh approximation (GPT-2's gelu_new, Gemma's gelu_pytorch_tanh). */
export function gelu_new(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

/** erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32's resolution of gelu's output). */
export function erf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return x >= 0 ? y : -y;
}

/** Exact gelu (GPT-NeoX's "gelu"): x · Φ(x). */
export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

export const ACTIVATIONS = { silu, gelu_new, gelu } as const;

/** act(gate) · up, elementwise (SwiGLU for silu, GeGLU for the gelus). */
export function gated(gate: Float32Array, up: Float32Array, act: (v: number) => number): Float32Array {
  const y = new Float32Array(gate.length);
  for (let i = 0; i < y.length; i++) y[i] = act(gate[i]) * up[i];
  return y;
}

export function mapInPlace(x: Float32Array, f: (v: number) => number): Float32Array {
  for (let i = 0; i < x.length; i++) x[i] = f(x[i]);
  return x;
}

/** x += scale · y (scale is Granite's residual_multiplier, else 1). */
export function addInPlace(x: Float32Array, y: Float32Array, scale = 1): void {
  for (let i = 0; i < x.length; i++) x[i] += scale * y[i];
}

/** Logits: × scale (Granite's 1/logits_scaling), then cap · tanh(z / cap) (Gemma 2) when capped. */
export function finalLogits(z: Float32Array, scale: number, softcap: number | null): Float32Array {
  if (scale === 1 && softcap === null) return z;
  for (let i = 0; i < z.length; i++) {
    const v = z[i] * scale;
    z[i] = softcap === null ? v : softcap * Math.tanh(v / softcap);
  }
  return z;
}

/** Per-token cos(a, b), arccos/π and ‖b − a‖/‖b‖, summed over rows. */
export function blockStatSums(a: Float32Array, b: Float32Array, width: number): { cosSum: number; angularSum: number; relMagnitudeSum: number } {
  let cosSum = 0;
  let angularSum = 0;
  let relMagnitudeSum = 0;
  for (let r = 0; r < a.length / width; r++) {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    let dd = 0;
    for (let i = 0; i < width; i++) {
      const x = a[r * width + i];
      const y = b[r * width + i];
      ab += x * y;
      aa += x * x;
      bb += y * y;
      dd += (y - x) * (y - x);
    }
    const cos = Math.min(1, Math.max(-1, ab / Math.sqrt(aa * bb)));
    cosSum += cos;
    angularSum += Math.acos(cos) / Math.PI;
    relMagnitudeSum += Math.sqrt(dd) / Math.sqrt(bb);
  }
  return { cosSum, angularSum, relMagnitudeSum };
}

/** −log softmax(logits)[target], in float64. */
export function nll(logits: Float32Array, offset: number, vocab: number, target: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < vocab; i++) if (logits[offset + i] > max) max = logits[offset + i];
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[offset + i] - max);
  return Math.log(sum) + max - logits[offset + target];
}
