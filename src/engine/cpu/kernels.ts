/**
 * The CPU backend's heavy operations, behind one seam: the forward (cpu/backend.ts) is written once and
 * calls `linear` for every matrix product; a kernel set decides how that runs. The reference set is the
 * plain TypeScript loop of ops.ts (the oracle); a fast set (e.g. onnxruntime) prepares each weight once
 * at load and runs the same call.
 */
import { decodeRow, decodeToF32, type HostTensor } from '../safetensors.ts';
import type { Linear } from '../weights.ts';
import { ACTIVATIONS, type AttentionShape, causalAttention, gated, mapInPlace, matmul } from './ops.ts';

export type Activation = keyof typeof ACTIVATIONS;

/** A weight [out, in] (nn.Linear layout) plus optional bias, prepared once by a kernel set. */
export interface PreparedLinear {
  readonly out: number;
  readonly inp: number;
}

export interface CpuKernels {
  /** For the status bar / --json: e.g. "TypeScript reference" or "onnxruntime-node, 2 threads". */
  readonly description: string;
  readonly threads: number;
  /** Called once per distinct weight at load. With an activation, `linear` returns act(x·Wᵀ + b) (a plain MLP's up projection). */
  prepareLinear(weight: HostTensor, bias: HostTensor | null, activation?: Activation): PreparedLinear;
  /** A gated MLP's first half as one call: `linear` returns act(x·Gᵀ + b_g) ⊙ (x·Uᵀ + b_u), [rows, ffn]. */
  prepareGated(gate: Linear, up: Linear, activation: Activation): PreparedLinear;
  /** y = x · Wᵀ + b for x [rows, in]; returns [rows, out]. */
  linear(x: Float32Array, rows: number, l: PreparedLinear): Promise<Float32Array> | Float32Array;
  /** Lets go of a prepared weight (block streaming releases each block after its pass). */
  releaseLinear?(l: PreparedLinear): void;
  /** ops.ts causalAttention's contract: q [rows, heads·d], keys/values [≥ firstPosition + rows, kvHeads·d]. */
  attention(q: Float32Array, rows: number, keys: Float32Array, values: Float32Array, firstPosition: number, shape: AttentionShape): Promise<Float32Array> | Float32Array;
  /** log Σ_j exp(x[r, j]) per row of x [rows, width]: the NLL is lse_t − logit[t, target]. */
  logSumExp(x: Float32Array, rows: number, width: number): Promise<ArrayLike<number>> | ArrayLike<number>;
  /** Resolves once every prepared weight is usable (a runtime builds its sessions asynchronously); rejects with its error. */
  ready(): Promise<void>;
  /** Host bytes the prepared weights hold. */
  readonly weightBytes: number;
  dispose(): void;
}

interface ReferenceLinear extends PreparedLinear {
  /** The weight as stored (F16 / BF16 stay 2 bytes: host memory stays near the checkpoint's size). */
  w: HostTensor;
  b: Float32Array | null;
  act: ((v: number) => number) | null;
  /** Gated: act(x·Wᵀ + b) ⊙ (x·Uᵀ + b_u). */
  up?: ReferenceLinear;
}

/**
 * The oracle: ops.ts's matmul, one weight row decoded at a time from the stored bytes, so no f32 copy of
 * the model is held; each dot product sums in the same order as a matmul over decoded weights.
 */
export function referenceKernels(): CpuKernels {
  let held = 0;
  return {
    description: 'TypeScript reference',
    threads: 1,
    prepareLinear(weight, bias, activation): ReferenceLinear {
      held += weight.bytes.byteLength + (bias ? bias.shape[0] * 4 : 0);
      return { w: weight, b: bias ? decodeToF32(bias) : null, out: weight.shape[0], inp: weight.shape[1], act: activation ? ACTIVATIONS[activation] : null };
    },
    prepareGated(gate, up, activation): ReferenceLinear {
      const plain = (l: Linear): ReferenceLinear => {
        held += l.weight.bytes.byteLength + (l.bias ? l.bias.shape[0] * 4 : 0);
        return { w: l.weight, b: l.bias ? decodeToF32(l.bias) : null, out: l.weight.shape[0], inp: l.weight.shape[1], act: null };
      };
      return { ...plain(gate), act: ACTIVATIONS[activation], up: plain(up) };
    },
    linear(x, rows, l) {
      const r = l as ReferenceLinear;
      const y = matmulStored(x, rows, r.w, r.out, r.inp, r.b);
      if (r.up) return gated(y, matmulStored(x, rows, r.up.w, r.up.out, r.up.inp, r.up.b), r.act as (v: number) => number);
      return r.act ? mapInPlace(y, r.act) : y;
    },
    releaseLinear(l) {
      for (const r of [l as ReferenceLinear, (l as ReferenceLinear).up]) if (r) held -= r.w.bytes.byteLength + (r.b ? r.b.byteLength : 0);
    },
    attention: causalAttention,
    logSumExp(x, rows, width) {
      // float64, as ops.ts's nll
      const out = new Float64Array(rows);
      for (let r = 0; r < rows; r++) {
        let max = Number.NEGATIVE_INFINITY;
        for (let i = 0; i < width; i++) if (x[r * width + i] > max) max = x[r * width + i];
        let sum = 0;
        for (let i = 0; i < width; i++) sum += Math.exp(x[r * width + i] - max);
        out[r] = max + Math.log(sum);
      }
      return out;
    },
    async ready() {},
    get weightBytes() {
      return held;
    },
    dispose() {
      held = 0;
    },
  };
}

/** y = x · Wᵀ + b over a stored weight [out, in]: rows of W decoded one at a time. */
function matmulStored(x: Float32Array, rows: number, w: HostTensor, out: number, inp: number, bias: Float32Array | null): Float32Array {
  if (w.dtype === 'F32' && w.bytes.byteOffset % 4 === 0) return matmul(x, rows, new Float32Array(w.bytes.buffer, w.bytes.byteOffset, out * inp), out, inp, bias);
  const y = new Float32Array(rows * out);
  const row = new Float32Array(inp);
  for (let o = 0; o < out; o++) {
    decodeRow(w, o, inp, row);
    for (let r = 0; r < rows; r++) {
      const xo = r * inp;
      let acc = 0;
      for (let i = 0; i < inp; i++) acc += x[xo + i] * row[i];
      y[r * out + o] = bias ? acc + bias[o] : acc;
    }
  }
  return y;
}
