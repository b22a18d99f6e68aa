/**
 * Records one forward: dispatches (pipeline + params + storage buffers + grid) and buffer copies, in
 * order. `submit` writes every dispatch's params into one uniform buffer at aligned offsets, encodes the
 * whole list into one command encoder (compute passes split only around copies) and submits once.
 * A dispatch's params are the bytes its kernel's UniformLayout packed (kernels/common.ts).
 */
import type { PipelineCache } from './kernels/common.ts';

/** A whole buffer, or a byte range of one. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset: number; size: number };

type Op =
  | { kind: 'dispatch'; pipeline: GPUComputePipeline; paramsOffset: number; paramsSize: number; buffers: Binding[]; groups: [number, number, number] }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number };

export class Recorder {
  private readonly ops: Op[] = [];
  private paramBytes = new ArrayBuffer(4096);
  private paramEnd = 0;
  private readonly align: number;

  constructor(
    readonly device: GPUDevice,
    readonly pipelines: PipelineCache,
    private readonly uniforms: UniformArena,
  ) {
    this.align = device.limits.minUniformBufferOffsetAlignment;
  }

  dispatch(pipeline: GPUComputePipeline, params: Uint8Array, buffers: Binding[], groups: [number, number?, number?]): void {
    const size = Math.max(16, Math.ceil(params.byteLength / 16) * 16);
    const offset = Math.ceil(this.paramEnd / this.align) * this.align;
    if (offset + size > this.paramBytes.byteLength) {
      const grown = new ArrayBuffer(Math.max(this.paramBytes.byteLength * 2, offset + size));
      new Uint8Array(grown).set(new Uint8Array(this.paramBytes));
      this.paramBytes = grown;
    }
    new Uint8Array(this.paramBytes, offset, size).set(params);
    this.paramEnd = offset + size;
    const [x, y = 1, z = 1] = groups;
    if (x === 0 || y === 0 || z === 0) return;
    this.ops.push({ kind: 'dispatch', pipeline, paramsOffset: offset, paramsSize: size, buffers, groups: [x, y, z] });
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    if (size > 0) this.ops.push({ kind: 'copy', src, srcOffset, dst, dstOffset, size });
  }

  /** Number of dispatches recorded (skipped blocks add none). */
  get dispatchCount(): number {
    return this.ops.filter((o) => o.kind === 'dispatch').length;
  }

  submit(): void {
    const uniform = this.uniforms.ensure(this.paramEnd);
    if (this.paramEnd > 0) this.device.queue.writeBuffer(uniform, 0, this.paramBytes, 0, Math.ceil(this.paramEnd / 4) * 4);
    const encoder = this.device.createCommandEncoder({ label: 'prunelab forward' });
    let pass: GPUComputePassEncoder | null = null;
    for (const op of this.ops) {
      if (op.kind === 'copy') {
        pass?.end();
        pass = null;
        encoder.copyBufferToBuffer(op.src, op.srcOffset, op.dst, op.dstOffset, op.size);
        continue;
      }
      pass ??= encoder.beginComputePass();
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: uniform, offset: op.paramsOffset, size: op.paramsSize } }];
      op.buffers.forEach((b, i) => {
        entries.push({ binding: i + 1, resource: 'buffer' in b ? { buffer: b.buffer, offset: b.offset, size: b.size } : { buffer: b } });
      });
      const bindGroup = this.device.createBindGroup({ layout: op.pipeline.getBindGroupLayout(0), entries });
      pass.setPipeline(op.pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...op.groups);
    }
    pass?.end();
    this.device.queue.submit([encoder.finish()]);
  }
}

/** The uniform buffer all dispatches of a forward share (grown as needed, reused across forwards). */
export class UniformArena {
  private buffer: GPUBuffer | null = null;
  constructor(private readonly device: GPUDevice) {}
  ensure(bytes: number): GPUBuffer {
    const need = Math.max(256, bytes);
    if (!this.buffer || this.buffer.size < need) {
      this.buffer?.destroy();
      this.buffer = this.device.createBuffer({ label: 'params', size: Math.ceil((need * 1.5) / 256) * 256, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    }
    return this.buffer;
  }
  destroy(): void {
    this.buffer?.destroy();
    this.buffer = null;
  }
}

/** Named activation buffers, grown on demand and kept across forwards. */
export class Workspace {
  private readonly buffers = new Map<string, GPUBuffer>();
  constructor(private readonly device: GPUDevice) {}
  get(name: string, bytes: number, usage: number = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST): GPUBuffer {
    const need = Math.max(16, Math.ceil(bytes / 16) * 16);
    let b = this.buffers.get(name);
    if (!b || b.size < need) {
      b?.destroy();
      b = this.device.createBuffer({ label: name, size: need, usage });
      this.buffers.set(name, b);
    }
    return b;
  }
  destroy(): void {
    for (const b of this.buffers.values()) b.destroy();
    this.buffers.clear();
  }
}
