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

/** RMSNorm over groups of `width`: x · rsqrt(mean(x²) + eps) · w. */
export function rmsNorm(x: Float32Array, width: number, w: Float32Array, eps: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let r = 0; r < x.length / width; r++) {
    let ss = 0;
    for (let i = 0; i < width; i++) ss += x[r * width + i] * x[r * width + i];
    const scale = 1 / Math.sqrt(ss / width + eps);
    for (let i = 0; i < width; i++) y[r * width + i] = x[r * width + i] * scale * w[i];
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
 * rotate_half RoPE in place on [rows, heads, headDim]: the pair (i, i + d/2) rotates by angle
 * position · invFreq[i]. Angles in float64 (SwiftShader's sin/cos are too coarse; so are float32's).
 */
export function rope(x: Float32Array, rows: number, heads: number, headDim: number, invFreq: Float64Array, firstPosition: number): void {
  const half = headDim / 2;
  for (let r = 0; r < rows; r++) {
    const pos = firstPosition + r;
    for (let i = 0; i < half; i++) {
      const angle = pos * invFreq[i];
      const cos = Math.cos(angle);
      const sin = Math.sin(angle);
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

/**
 * Causal attention with GQA. q [rows, heads, d]; keys/values [positions, kvHeads, d] where the query row r
 * sits at absolute position firstPosition + r and sees keys 0..that position. Query head h reads KV head
 * h / (heads / kvHeads).
 */
export function causalAttention(
  q: Float32Array,
  rows: number,
  keys: Float32Array,
  values: Float32Array,
  firstPosition: number,
  heads: number,
  kvHeads: number,
  d: number,
): Float32Array {
  const out = new Float32Array(rows * heads * d);
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(d);
  const scores = new Float64Array(firstPosition + rows);
  for (let r = 0; r < rows; r++) {
    const visible = firstPosition + r + 1;
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      const qo = (r * heads + h) * d;
      let max = Number.NEGATIVE_INFINITY;
      for (let p = 0; p < visible; p++) {
        const ko = (p * kvHeads + kvh) * d;
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[qo + i] * keys[ko + i];
        scores[p] = dot * scale;
        if (scores[p] > max) max = scores[p];
      }
      let sum = 0;
      for (let p = 0; p < visible; p++) {
        scores[p] = Math.exp(scores[p] - max);
        sum += scores[p];
      }
      for (let i = 0; i < d; i++) {
        let acc = 0;
        for (let p = 0; p < visible; p++) acc += scores[p] * values[(p * kvHeads + kvh) * d + i];
        out[qo + i] = acc / sum;
      }
    }
  }
  return out;
}

export const silu = (x: number) => x / (1 + Math.exp(-x));

export function gelu_new(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

/** silu(gate) · up, elementwise. */
export function swiglu(gate: Float32Array, up: Float32Array): Float32Array {
  const y = new Float32Array(gate.length);
  for (let i = 0; i < y.length; i++) y[i] = silu(gate[i]) * up[i];
  return y;
}

export function mapInPlace(x: Float32Array, f: (v: number) => number): Float32Array {
  for (let i = 0; i < x.length; i++) x[i] = f(x[i]);
  return x;
}

export function addInPlace(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
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
