/**
 * The weights a recipe binds: every matrix in nn.Linear layout [out, in] (GPT-2's Conv1D [in, out] is
 * transposed at load), raw bytes in their stored dtype so each backend decodes or uploads as it likes.
 * Addressed per block, so a backend (or a future block-streamed scorer) can hold one block at a time.
 */
import { PruneLabError } from './errors.ts';
import type { HostTensor } from './safetensors.ts';

export interface Linear {
  weight: HostTensor;
  bias: HostTensor | null;
}

export interface Norm {
  weight: HostTensor;
  /** LayerNorm only. */
  bias: HostTensor | null;
}

/**
 * One block. Sequential blocks run x += post(attn(pre(x))); x += post(mlp(pre(x))) with any of the four
 * norms absent; parallel-residual blocks (spec.parallelResidual) add both halves, computed from the
 * block input.
 */
export interface BlockWeights {
  /** Norm before attention (null: olmo2 has none). */
  attnNorm: Norm | null;
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  /** RMSNorm applied to q / k before RoPE (per head, or over the projection: spec.qkNorm). */
  qNorm: HostTensor | null;
  kNorm: HostTensor | null;
  /** Norm of the attention output before the residual add (gemma, olmo2). */
  attnPostNorm: Norm | null;
  mlpNorm: Norm | null;
  /** Gated MLP's gate (act(gate) · up); null for GPT-2 / GPT-NeoX's plain MLP. */
  gate: Linear | null;
  up: Linear;
  down: Linear;
  mlpPostNorm: Norm | null;
}

/** Everything outside the blocks: what a block-streamed run keeps resident. */
export interface ModelEnds {
  embed: HostTensor;
  positions: HostTensor | null;
  finalNorm: Norm;
  lmHead: HostTensor;
}

export interface ModelWeights extends ModelEnds {
  blocks: BlockWeights[];
  /** Tensors in the checkpoint that no recipe step reads (reported, never silently relied on). */
  unused: string[];
}

/** Takes tensors by name, checking shapes, and remembers which were used. */
export class TensorStore {
  private readonly used = new Set<string>();
  constructor(
    readonly tensors: Map<string, HostTensor>,
    private readonly ignorable: (name: string) => boolean,
  ) {}

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  take(name: string, shape: number[]): HostTensor {
    const t = this.tensors.get(name);
    if (!t) throw new PruneLabError(`is missing from the checkpoint (the recipe needs shape [${shape.join(', ')}])`, { tensor: name });
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new PruneLabError(`has shape [${t.shape.join(', ')}] but config.json implies [${shape.join(', ')}]`, { file: t.file, tensor: name });
    }
    if (!['F32', 'F16', 'BF16'].includes(t.dtype)) {
      throw new PruneLabError(`has dtype ${t.dtype}; weights must be F32, F16 or BF16`, { file: t.file, tensor: name });
    }
    this.used.add(name);
    return t;
  }

  maybe(name: string, shape: number[]): HostTensor | null {
    return this.has(name) ? this.take(name, shape) : null;
  }

  unused(): string[] {
    return [...this.tensors.keys()].filter((n) => !this.used.has(n) && !this.ignorable(n));
  }
}

const ELEMENT_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

/** Transposes a 2-D tensor's raw bytes ([rows, cols] -> [cols, rows]), keeping the dtype. */
export function transposed(t: HostTensor, name = t.name): HostTensor {
  const [rows, cols] = t.shape;
  const size = ELEMENT_BYTES[t.dtype];
  const out = new Uint8Array(t.bytes.byteLength);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const from = (r * cols + c) * size;
      const to = (c * rows + r) * size;
      for (let b = 0; b < size; b++) out[to + b] = t.bytes[from + b];
    }
  }
  return { name, file: t.file, dtype: t.dtype, shape: [cols, rows], bytes: out };
}

/** Rows [begin, end) of a 2-D tensor (or elements of a 1-D one), as a view. */
export function rowSlice(t: HostTensor, begin: number, end: number, name: string): HostTensor {
  const rowElems = t.shape.length === 2 ? t.shape[1] : 1;
  const size = ELEMENT_BYTES[t.dtype];
  const shape = t.shape.length === 2 ? [end - begin, t.shape[1]] : [end - begin];
  return { name, file: t.file, dtype: t.dtype, shape, bytes: t.bytes.subarray(begin * rowElems * size, end * rowElems * size) };
}

/** Strips the first matching wrapper prefix (`model.`, `transformer.`, `gpt_neox.`). */
export function canonicalName(name: string, prefixes: readonly string[]): string {
  for (const prefix of prefixes) {
    if (name.startsWith(prefix)) return name.slice(prefix.length);
  }
  return name;
}

/** A new 2-D tensor made of the given rows of `t`, in that order (for interleaved fused layouts). */
export function gatherRows(t: HostTensor, rows: readonly number[], name: string): HostTensor {
  const rowElems = t.shape.length === 2 ? t.shape[1] : 1;
  const rowBytes = rowElems * ELEMENT_BYTES[t.dtype];
  const out = new Uint8Array(rows.length * rowBytes);
  for (const [k, r] of rows.entries()) out.set(t.bytes.subarray(r * rowBytes, (r + 1) * rowBytes), k * rowBytes);
  return { name, file: t.file, dtype: t.dtype, shape: t.shape.length === 2 ? [rows.length, rowElems] : [rows.length], bytes: out };
}
