/**
 * Weight upload, once, at backend creation. Big matrices keep their checkpoint precision: F32 as f32,
 * F16 as raw f16 pairs in u32 words (unpacked in the shader, half the memory), BF16 widened to f32
 * (exact; bf16 → f16 would lose range). Vectors (norms, biases, learned positions) are always f32.
 */
import { decodeToF32, type HostTensor } from '../safetensors.ts';
import { checkFits, type GpuContext } from './device.ts';
import type { WeightFormat } from './kernels/common.ts';

export interface GpuMatrix {
  buffer: GPUBuffer;
  format: WeightFormat;
  rows: number;
  cols: number;
}

function createFilled(ctx: GpuContext, bytes: Uint8Array, label: string): GPUBuffer {
  const size = Math.max(16, Math.ceil(bytes.byteLength / 4) * 4);
  checkFits(ctx, size, { tensor: label });
  const buffer = ctx.device.createBuffer({ label, size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC, mappedAtCreation: true });
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

/** A weight matrix in its upload format: F16 stays f16 (packed), F32 and BF16 become f32. */
export function uploadMatrix(ctx: GpuContext, t: HostTensor): GpuMatrix {
  const [rows, cols] = t.shape.length === 2 ? t.shape : [1, t.shape[0]];
  if (t.dtype === 'F16') return { buffer: createFilled(ctx, t.bytes, t.name), format: 'f16', rows, cols };
  return { buffer: uploadVector(ctx, t), format: 'f32', rows, cols };
}
