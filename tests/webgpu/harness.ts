/** Runs single kernels on small arrays and reads the results back, for kernel-vs-CPU tests. */
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import { PipelineCache } from '../../src/engine/webgpu/kernels/common.ts';
import { Recorder, UniformArena } from '../../src/engine/webgpu/recorder.ts';
import { encodeBF16, encodeF16 } from '../../src/engine/safetensors.ts';
import type { WeightFormat } from '../../src/engine/webgpu/kernels/common.ts';
import { type GpuMatrix, uploadMatrix } from '../../src/engine/webgpu/tensors.ts';
import { tensorOf } from './random-model.ts';

export class KernelHarness {
  readonly pipelines: PipelineCache;
  private readonly uniforms: UniformArena;
  private readonly buffers: GPUBuffer[] = [];
  constructor(readonly ctx: GpuContext) {
    this.pipelines = new PipelineCache(ctx.device);
    this.uniforms = new UniformArena(this.alloc);
  }
  /** Buffers the harness makes are kept in its list and destroyed with it. */
  readonly alloc = {
    create: (descriptor: GPUBufferDescriptor) => {
      const b = this.device.createBuffer(descriptor);
      this.buffers.push(b);
      return b;
    },
    destroy: (b: GPUBuffer) => b.destroy(),
  };
  static async create(): Promise<KernelHarness> {
    return new KernelHarness(await acquireGpu());
  }
  get device(): GPUDevice {
    return this.ctx.device;
  }
  /** A storage buffer holding `data` (or `bytes` zero bytes). */
  buffer(data: Float32Array | Uint32Array | Uint8Array | number): GPUBuffer {
    const bytes = typeof data === 'number' ? data : data.byteLength;
    const b = this.device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 4) * 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    if (typeof data !== 'number') {
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.device.queue.writeBuffer(b, 0, padded);
    }
    this.buffers.push(b);
    return b;
  }
  /** A weight matrix in the given upload format (f16 / bf16: the values rounded to it, packed in u32). */
  weights(values: Float32Array, format: WeightFormat): GPUBuffer {
    return format === 'f32' ? this.buffer(values) : this.buffer(format === 'f16' ? encodeF16(values) : encodeBF16(values));
  }
  /** A [rows, cols] weight matrix uploaded as the backend uploads it, split into row chunks of at most `maxBindingBytes`. */
  matrix(values: Float32Array, rows: number, cols: number, format: WeightFormat, maxBindingBytes = 2 ** 30): GpuMatrix {
    const tensor = tensorOf('w', [rows, cols], values, format === 'f32' ? 'F32' : format === 'f16' ? 'F16' : 'BF16');
    return uploadMatrix(this.ctx, tensor, { bytes: maxBindingBytes, source: 'the test limit' }, this.alloc);
  }
  /** Records, submits and checks for validation errors; returns the number of dispatches recorded. */
  async run(record: (rec: Recorder) => void): Promise<number> {
    const rec = new Recorder(this.device, this.pipelines, this.uniforms);
    record(rec);
    this.device.pushErrorScope('validation');
    rec.submit();
    const error = await this.device.popErrorScope();
    if (error) throw new Error(error.message);
    return rec.dispatchCount;
  }
  async read(buffer: GPUBuffer, count: number, offsetFloats = 0): Promise<Float32Array> {
    const staging = this.device.createBuffer({ size: Math.max(16, count * 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, offsetFloats * 4, staging, 0, count * 4);
    this.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(staging.getMappedRange().slice(0, count * 4));
    staging.destroy();
    return out;
  }
  destroy(): void {
    for (const b of this.buffers) b.destroy();
    this.uniforms.destroy();
    this.device.destroy();
  }
}

/** max |a − b| */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return Number.isNaN(m) ? Number.POSITIVE_INFINITY : m;
}

/** Values rounded through f16, so the CPU reference sees the same weights as the packed-f16 kernel. */
export function roundF16(values: Float32Array): Float32Array {
  const bytes = encodeF16(values);
  const view = new DataView(bytes.buffer);
  const out = new Float32Array(values.length);
  for (let i = 0; i < out.length; i++) {
    const h = view.getUint16(i * 2, true);
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    const sign = h & 0x8000 ? -1 : 1;
    out[i] = exp === 0 ? sign * 2 ** -14 * (frac / 1024) : sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return out;
}

/** Values rounded through bf16 (round to nearest even, as encodeBF16 stores them). */
export function roundBF16(values: Float32Array): Float32Array {
  const bytes = encodeBF16(values);
  const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, values.length);
  const out = new Uint32Array(values.length);
  for (let i = 0; i < out.length; i++) out[i] = halves[i] << 16;
  return new Float32Array(out.buffer);
}

/** What the CPU reference must see for weights uploaded in `format`. */
export function roundAs(values: Float32Array, format: WeightFormat): Float32Array {
  return format === 'f16' ? roundF16(values) : format === 'bf16' ? roundBF16(values) : values;
}
