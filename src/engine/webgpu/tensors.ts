/**
 * Weight upload (at backend creation, or per block when streaming). Big matrices keep their checkpoint
 * bytes: F32 as f32, F16 and BF16 as raw pairs in u32 words, unpacked exactly in the shader (half the
 * memory of f32). Vectors (norms, biases, learned positions) are always f32.
 *
 * A matrix is a list of row chunks, each its own buffer no larger than the binding limit (one chunk
 * when the whole matrix fits, which is the usual case). Rows are the matrix's first dimension: vocab rows
 * of an embedding / lm head, output rows of a projection [out, in]. Only a single row larger than the
 * limit is refused.
 */
import { PruneLabError } from '../errors.ts';
import { decodeToF32, type HostTensor } from '../safetensors.ts';
import { type BindingLimit, checkFits, formatBytes, type GpuContext } from './device.ts';
import type { BlockWeights, Linear, ModelWeights, Norm } from '../weights.ts';
import type { BufferAllocator } from './meter.ts';
import { WEIGHT_ELEMENT_BYTES, type WeightFormat } from './kernels/common.ts';

/** Stored dtype → GPU format of a weight matrix: every supported dtype is uploaded as stored. */
const MATRIX_FORMATS: Record<string, WeightFormat | undefined> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

/** Rows [firstRow, firstRow + rows) of a matrix, in a buffer of their own (element 0 = firstRow's first). */
export interface MatrixChunk {
  buffer: GPUBuffer;
  firstRow: number;
  rows: number;
}

export interface GpuMatrix {
  chunks: MatrixChunk[];
  format: WeightFormat;
  rows: number;
  cols: number;
}

const BUFFER_USAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;

/** Buffer size for `bytes` of data: whole u32 words, at least 16 bytes. */
const bufferSize = (bytes: number) => Math.max(16, Math.ceil(bytes / 4) * 4);

function createFilled(ctx: GpuContext, alloc: BufferAllocator, bytes: Uint8Array, label: string, tensor = label): GPUBuffer {
  const size = bufferSize(bytes.byteLength);
  checkFits(ctx, size, { tensor });
  const buffer = alloc.create({ label, size, usage: BUFFER_USAGE(), mappedAtCreation: true });
  new Uint8Array(buffer.getMappedRange()).set(bytes);
  buffer.unmap();
  return buffer;
}

export function uploadF32Array(ctx: GpuContext, alloc: BufferAllocator, values: Float32Array, label: string): GPUBuffer {
  return createFilled(ctx, alloc, new Uint8Array(values.buffer, values.byteOffset, values.byteLength), label);
}

/** Any tensor as f32 (norm weights, biases, positions). */
export function uploadVector(ctx: GpuContext, alloc: BufferAllocator, t: HostTensor): GPUBuffer {
  if (t.dtype === 'F32') return createFilled(ctx, alloc, t.bytes, t.name);
  return uploadF32Array(ctx, alloc, decodeToF32(t), t.name);
}

/**
 * How `rows` rows of `rowBytes` bytes each are cut so that every chunk's buffer fits `limit`: as many
 * whole rows per chunk as fit, the last chunk holding the rest. Throws (naming the tensor and the limit)
 * when one row alone does not fit.
 */
export function planRowChunks(rows: number, rowBytes: number, limit: BindingLimit, tensor: string): { firstRow: number; rows: number }[] {
  const oneRow = bufferSize(rowBytes);
  if (oneRow > limit.bytes) {
    throw new PruneLabError(`one row needs a ${formatBytes(oneRow)} storage binding but ${limit.source} is ${formatBytes(limit.bytes)}`, { tensor });
  }
  if (bufferSize(rows * rowBytes) <= limit.bytes) return [{ firstRow: 0, rows }];
  const perChunk = Math.floor((Math.floor(limit.bytes / 4) * 4) / rowBytes);
  const chunks: { firstRow: number; rows: number }[] = [];
  for (let first = 0; first < rows; first += perChunk) chunks.push({ firstRow: first, rows: Math.min(perChunk, rows - first) });
  return chunks;
}

/**
 * A weight matrix as stored (F32 as f32, F16 and BF16 as packed pairs unpacked in the shader), split into
 * row chunks that fit `limit`. Every buffer comes from `alloc`, so a failure part-way leaves nothing
 * uncounted.
 */
export function uploadMatrix(ctx: GpuContext, t: HostTensor, limit: BindingLimit, alloc: BufferAllocator): GpuMatrix {
  const [rows, cols] = t.shape.length === 2 ? t.shape : [1, t.shape[0]];
  const format = MATRIX_FORMATS[t.dtype];
  if (!format) throw new PruneLabError(`dtype ${t.dtype} cannot be used as a weight (supported: F32, F16, BF16)`, { file: t.file, tensor: t.name });
  const rowBytes = cols * WEIGHT_ELEMENT_BYTES[format];
  const plan = planRowChunks(rows, rowBytes, limit, t.name);
  const chunks = plan.map(({ firstRow, rows: count }) => {
    const label = plan.length === 1 ? t.name : `${t.name}[rows ${firstRow}..${firstRow + count - 1}]`;
    const buffer = createFilled(ctx, alloc, t.bytes.subarray(firstRow * rowBytes, (firstRow + count) * rowBytes), label, t.name);
    return { buffer, firstRow, rows: count };
  });
  return { chunks, format, rows, cols };
}

export interface GpuLinear {
  w: GpuMatrix;
  b: GPUBuffer | null;
}

export interface GpuNorm {
  w: GPUBuffer;
  /** LayerNorm only. */
  b: GPUBuffer | null;
}

/** One block's buffers, shaped like weights.ts BlockWeights (a missing norm is null). */
export interface GpuBlock {
  attnNorm: GpuNorm | null;
  q: GpuLinear;
  k: GpuLinear;
  v: GpuLinear;
  o: GpuLinear;
  qNorm: GPUBuffer | null;
  kNorm: GPUBuffer | null;
  attnPostNorm: GpuNorm | null;
  mlpNorm: GpuNorm | null;
  gate: GpuLinear | null;
  up: GpuLinear;
  down: GpuLinear;
  mlpPostNorm: GpuNorm | null;
}

/** The ends: what a model needs besides its blocks. */
export interface GpuEnds {
  embed: GpuMatrix;
  positions: GPUBuffer | null;
  finalNorm: GpuNorm;
  lmHead: GpuMatrix;
}

export interface GpuModel extends GpuEnds {
  blocks: GpuBlock[];
  /** Every distinct matrix (a tied head is the embedding, a fused tensor's views are separate). */
  matrices: GpuMatrix[];
}

/**
 * Uploads tensors, each once (a tied lm head shares the embedding's buffers); every buffer comes from
 * `alloc`, so a failure part-way leaves nothing uncounted. One uploader per set of buffers that live
 * and die together (the resident model; one streamed block).
 */
export class Uploader {
  private readonly matrixOf = new Map<HostTensor, GpuMatrix>();
  private readonly vectorOf = new Map<HostTensor, GPUBuffer>();
  /** Every buffer made, a matrix's first chunks included when a later chunk failed. */
  private readonly made: GPUBuffer[] = [];
  private readonly alloc: BufferAllocator;
  constructor(
    private readonly ctx: GpuContext,
    private readonly limit: BindingLimit,
    alloc: BufferAllocator,
  ) {
    this.alloc = {
      create: (descriptor) => {
        const buffer = alloc.create(descriptor);
        this.made.push(buffer);
        return buffer;
      },
      destroy: (buffer) => alloc.destroy(buffer),
    };
  }

  matrix(t: HostTensor): GpuMatrix {
    let m = this.matrixOf.get(t);
    if (!m) this.matrixOf.set(t, (m = uploadMatrix(this.ctx, t, this.limit, this.alloc)));
    return m;
  }

  vector(t: HostTensor): GPUBuffer {
    let v = this.vectorOf.get(t);
    if (!v) this.vectorOf.set(t, (v = uploadVector(this.ctx, this.alloc, t)));
    return v;
  }

  linear(l: Linear): GpuLinear {
    return { w: this.matrix(l.weight), b: l.bias ? this.vector(l.bias) : null };
  }

  norm(n: Norm | null): GpuNorm | null {
    return n ? { w: this.vector(n.weight), b: n.bias ? this.vector(n.bias) : null } : null;
  }

  block(b: BlockWeights): GpuBlock {
    return {
      attnNorm: this.norm(b.attnNorm),
      q: this.linear(b.q),
      k: this.linear(b.k),
      v: this.linear(b.v),
      o: this.linear(b.o),
      qNorm: b.qNorm ? this.vector(b.qNorm) : null,
      kNorm: b.kNorm ? this.vector(b.kNorm) : null,
      attnPostNorm: this.norm(b.attnPostNorm),
      mlpNorm: this.norm(b.mlpNorm),
      gate: b.gate ? this.linear(b.gate) : null,
      up: this.linear(b.up),
      down: this.linear(b.down),
      mlpPostNorm: this.norm(b.mlpPostNorm),
    };
  }

  /** Every buffer this uploader made. */
  get buffers(): GPUBuffer[] {
    return [...this.made];
  }

  /** Destroys every buffer this uploader made (an upload that failed part-way). */
  release(): void {
    for (const buffer of this.made) this.alloc.destroy(buffer);
    this.made.length = 0;
    this.matrixOf.clear();
    this.vectorOf.clear();
  }

  get matrices(): GpuMatrix[] {
    return [...this.matrixOf.values()];
  }
}

/** Uploads a whole model (every block resident). */
export function uploadModel(ctx: GpuContext, weights: ModelWeights, limit: BindingLimit, alloc: BufferAllocator): GpuModel {
  const up = new Uploader(ctx, limit, alloc);
  const embed = up.matrix(weights.embed);
  const positions = weights.positions ? up.vector(weights.positions) : null;
  const blocks = weights.blocks.map((b) => up.block(b));
  const finalNorm = up.norm(weights.finalNorm) as GpuNorm;
  const lmHead = up.matrix(weights.lmHead);
  return { embed, positions, blocks, finalNorm, lmHead, matrices: up.matrices };
}
