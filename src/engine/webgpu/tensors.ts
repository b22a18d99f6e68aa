/**
 * Weight upload, once, at backend creation. Big matrices keep their checkpoint precision: F32 as f32,
 * F16 as raw f16 pairs in u32 words (unpacked in the shader, half the memory), BF16 widened to f32
 * (exact; bf16 → f16 would lose range). Vectors (norms, biases, learned positions) are always f32.
 *
 * A matrix is a list of row chunks, each its own buffer no larger than the binding limit (one chunk
 * when the whole matrix fits, which is the usual case). Rows are the matrix's first dimension: vocab rows
 * of an embedding / lm head, output rows of a projection [out, in]. Only a single row larger than the
 * limit is refused.
 */
import { PruneLabError } from '../errors.ts';
import { decodeToF32, type HostTensor } from '../safetensors.ts';
import { type BindingLimit, checkFits, formatBytes, type GpuContext } from './device.ts';
import type { Linear, ModelWeights, Norm } from '../weights.ts';
import type { WeightFormat } from './kernels/common.ts';

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

function createFilled(ctx: GpuContext, bytes: Uint8Array, label: string, tensor = label): GPUBuffer {
  const size = bufferSize(bytes.byteLength);
  checkFits(ctx, size, { tensor });
  const buffer = ctx.device.createBuffer({ label, size, usage: BUFFER_USAGE(), mappedAtCreation: true });
  new Uint8Array(buffer.getMappedRange()).set(bytes);
  buffer.unmap();
  return buffer;
}

export function uploadF32Array(ctx: GpuContext, values: Float32Array, label: string): GPUBuffer {
  return createFilled(ctx, new Uint8Array(values.buffer, values.byteOffset, values.byteLength), label);
}

/** Any tensor as f32 (norm weights, biases, positions). */
export function uploadVector(ctx: GpuContext, t: HostTensor): GPUBuffer {
  if (t.dtype === 'F32') return createFilled(ctx, t.bytes, t.name);
  return uploadF32Array(ctx, decodeToF32(t), t.name);
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
 * A weight matrix in its upload format (F16 stays f16, packed; F32 and BF16 become f32), split into row
 * chunks that fit `limit`. `track` receives every buffer as soon as it exists, so a failure part-way
 * leaves nothing unowned.
 */
export function uploadMatrix(ctx: GpuContext, t: HostTensor, limit: BindingLimit, track: (b: GPUBuffer) => void): GpuMatrix {
  const [rows, cols] = t.shape.length === 2 ? t.shape : [1, t.shape[0]];
  const format: WeightFormat = t.dtype === 'F16' ? 'f16' : 'f32';
  const elementBytes = format === 'f16' ? 2 : 4;
  const plan = planRowChunks(rows, cols * elementBytes, limit, t.name);
  let bytes: Uint8Array;
  if (t.dtype === 'F16' || t.dtype === 'F32') bytes = t.bytes;
  else {
    const values = decodeToF32(t);
    bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  }
  const rowBytes = cols * elementBytes;
  const chunks = plan.map(({ firstRow, rows: count }) => {
    const label = plan.length === 1 ? t.name : `${t.name}[rows ${firstRow}..${firstRow + count - 1}]`;
    const buffer = createFilled(ctx, bytes.subarray(firstRow * rowBytes, (firstRow + count) * rowBytes), label, t.name);
    track(buffer);
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

export interface GpuModel {
  embed: GpuMatrix;
  positions: GPUBuffer | null;
  blocks: GpuBlock[];
  finalNorm: GpuNorm;
  lmHead: GpuMatrix;
  /** Every distinct matrix (a tied head is the embedding, a fused tensor's views are separate). */
  matrices: GpuMatrix[];
}

/**
 * Uploads a model's weights, each tensor once (a tied lm head shares the embedding's buffers). `track`
 * receives every buffer as soon as it exists, so a failure part-way leaves nothing unowned.
 */
export function uploadModel(ctx: GpuContext, weights: ModelWeights, limit: BindingLimit, track: (b: GPUBuffer) => void): GpuModel {
  const matrices = new Map<HostTensor, GpuMatrix>();
  const vectors = new Map<HostTensor, GPUBuffer>();
  const matrix = (t: HostTensor) => {
    let m = matrices.get(t);
    if (!m) matrices.set(t, (m = uploadMatrix(ctx, t, limit, track)));
    return m;
  };
  const vector = (t: HostTensor) => {
    let v = vectors.get(t);
    if (!v) {
      vectors.set(t, (v = uploadVector(ctx, t)));
      track(v);
    }
    return v;
  };
  const lin = (l: Linear): GpuLinear => ({ w: matrix(l.weight), b: l.bias ? vector(l.bias) : null });
  const norm = (n: Norm | null): GpuNorm | null => (n ? { w: vector(n.weight), b: n.bias ? vector(n.bias) : null } : null);
  const embed = matrix(weights.embed);
  const positions = weights.positions ? vector(weights.positions) : null;
  const blocks = weights.blocks.map(
    (b): GpuBlock => ({
      attnNorm: norm(b.attnNorm),
      q: lin(b.q),
      k: lin(b.k),
      v: lin(b.v),
      o: lin(b.o),
      qNorm: b.qNorm ? vector(b.qNorm) : null,
      kNorm: b.kNorm ? vector(b.kNorm) : null,
      attnPostNorm: norm(b.attnPostNorm),
      mlpNorm: norm(b.mlpNorm),
      gate: b.gate ? lin(b.gate) : null,
      up: lin(b.up),
      down: lin(b.down),
      mlpPostNorm: norm(b.mlpPostNorm),
    }),
  );
  const finalNorm = norm(weights.finalNorm) as GpuNorm;
  const lmHead = matrix(weights.lmHead);
  return { embed, positions, blocks, finalNorm, lmHead, matrices: [...matrices.values()] };
}
