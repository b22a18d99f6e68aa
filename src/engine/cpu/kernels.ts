/**
 * The CPU backend's heavy operations, behind one seam: the forward (cpu/backend.ts) is written once and
 * calls `linear` for every matrix product; a kernel set decides how that runs. The reference set is the
 * plain TypeScript loop of ops.ts (the oracle); a fast set (e.g. onnxruntime) prepares each weight once
 * at load and runs the same call.
 */
import { decodeToF32, type HostTensor } from '../safetensors.ts';
import { matmul } from './ops.ts';

/** A weight [out, in] (nn.Linear layout) plus optional bias, prepared once by a kernel set. */
export interface PreparedLinear {
  readonly out: number;
  readonly inp: number;
}

export interface CpuKernels {
  /** For the status bar / --json: e.g. "TypeScript reference" or "onnxruntime-node, 2 threads". */
  readonly description: string;
  readonly threads: number;
  /** Called once per distinct weight at load. */
  prepareLinear(weight: HostTensor, bias: HostTensor | null): PreparedLinear;
  /** y = x · Wᵀ + b for x [rows, in]; returns [rows, out]. */
  linear(x: Float32Array, rows: number, l: PreparedLinear): Promise<Float32Array> | Float32Array;
  /** Lets go of a prepared weight (block streaming releases each block after its pass). */
  releaseLinear?(l: PreparedLinear): void;
  /** Host bytes the prepared weights hold. */
  readonly weightBytes: number;
  dispose(): void;
}

interface ReferenceLinear extends PreparedLinear {
  w: Float32Array;
  b: Float32Array | null;
}

/** The oracle: weights decoded to f32 once, ops.ts's matmul. */
export function referenceKernels(): CpuKernels {
  const decoded = new Map<HostTensor, Float32Array>();
  const f32 = (t: HostTensor) => {
    let v = decoded.get(t);
    if (!v) decoded.set(t, (v = decodeToF32(t)));
    return v;
  };
  return {
    description: 'TypeScript reference',
    threads: 1,
    prepareLinear(weight, bias): ReferenceLinear {
      return { w: f32(weight), b: bias ? f32(bias) : null, out: weight.shape[0], inp: weight.shape[1] };
    },
    linear(x, rows, l) {
      const r = l as ReferenceLinear;
      return matmul(x, rows, r.w, r.out, r.inp, r.b);
    },
    get weightBytes() {
      let bytes = 0;
      for (const v of decoded.values()) bytes += v.byteLength;
      return bytes;
    },
    dispose() {
      decoded.clear();
    },
  };
}
