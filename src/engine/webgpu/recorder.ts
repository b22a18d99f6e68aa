/**
 * Records one forward: dispatches (pipeline + params + storage buffers + grid) and buffer copies, in
 * order. `submit` writes every dispatch's params into one uniform buffer at aligned offsets, encodes the
 * whole list into one command encoder (compute passes split only around copies) and submits once.
 * A dispatch's params are the bytes its kernel's UniformLayout packed (kernels/common.ts).
 */
import type { PipelineCache } from './kernels/common.ts';
import type { BufferAllocator } from './meter.ts';

/** A whole buffer, or a byte range of one. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset: number; size: number };

type Op =
  | {
      kind: 'dispatch';
      pipeline: GPUComputePipeline;
      paramsOffset: number;
      paramsSize: number;
      buffers: Binding[];
      groups: [number, number, number];
      scope: string;
      weightBytes: number;
    }
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

  /** What the next dispatches belong to, for profiles: 'embed', 'block', 'head' (the backend sets it). */
  scope = 'other';
  /**
   * Profiling (timestamp-query): each dispatch in its own compute pass with begin/end timestamps into this
   * query set (2 per dispatch), resolved into `resolve` at the end of the forward's encoder.
   */
  timestamps: { querySet: GPUQuerySet; resolve: GPUBuffer; read: GPUBuffer } | null = null;

  /** `weightBytes`: the weight bytes the dispatch reads (matmuls), for achieved bandwidth in profiles. */
  dispatch(pipeline: GPUComputePipeline, params: Uint8Array, buffers: Binding[], groups: [number, number?, number?], weightBytes = 0): void {
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
    this.ops.push({ kind: 'dispatch', pipeline, paramsOffset: offset, paramsSize: size, buffers, groups: [x, y, z], scope: this.scope, weightBytes });
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    if (size > 0) this.ops.push({ kind: 'copy', src, srcOffset, dst, dstOffset, size });
  }

  /** Each dispatch's kernel (pipeline label), scope and weight bytes, in order (what a profile's timestamps refer to). */
  get dispatches(): { kernel: string; scope: string; weightBytes: number }[] {
    return this.ops.flatMap((o) => (o.kind === 'dispatch' ? [{ kernel: o.pipeline.label, scope: o.scope, weightBytes: o.weightBytes }] : []));
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
    let timed = 0;
    for (const op of this.ops) {
      if (op.kind === 'copy') {
        pass?.end();
        pass = null;
        encoder.copyBufferToBuffer(op.src, op.srcOffset, op.dst, op.dstOffset, op.size);
        continue;
      }
      if (this.timestamps) {
        pass?.end();
        const { querySet } = this.timestamps;
        pass = encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * timed, endOfPassWriteIndex: 2 * timed + 1 } });
        timed++;
      }
      pass ??= encoder.beginComputePass();
      const bindGroup = bindGroupFor(this.device, op.pipeline, uniform, op);
      pass.setPipeline(op.pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...op.groups);
    }
    pass?.end();
    if (this.timestamps && timed > 0) {
      encoder.resolveQuerySet(this.timestamps.querySet, 0, 2 * timed, this.timestamps.resolve, 0);
      encoder.copyBufferToBuffer(this.timestamps.resolve, 0, this.timestamps.read, 0, 16 * timed);
    }
    this.device.queue.submit([encoder.finish()]);
  }
}

/**
 * Bind groups made once and reused: a forward with the same plan and shapes binds the same buffers at the
 * same uniform offsets (only the uniform bytes differ), so every decode step after the first creates no
 * bind group. Keyed by the identity of the pipeline and of every bound buffer (ids never reused, so a
 * destroyed buffer's entries are never hit again); the cache is cleared when it grows past MAX_BIND_GROUPS.
 */
const MAX_BIND_GROUPS = 8192;
const bindGroupCaches = new WeakMap<GPUDevice, Map<string, GPUBindGroup>>();
const objectIds = new WeakMap<object, number>();
let nextObjectId = 1;
function idOf(o: object): number {
  let id = objectIds.get(o);
  if (id === undefined) objectIds.set(o, (id = nextObjectId++));
  return id;
}
/** Bind groups created so far (tests and the bench check that steady decode steps create none). */
export let bindGroupsCreated = 0;

function bindGroupFor(device: GPUDevice, pipeline: GPUComputePipeline, uniform: GPUBuffer, op: { paramsOffset: number; paramsSize: number; buffers: Binding[] }): GPUBindGroup {
  let cache = bindGroupCaches.get(device);
  if (!cache) bindGroupCaches.set(device, (cache = new Map()));
  let key = `${idOf(pipeline)}:${idOf(uniform)}@${op.paramsOffset}+${op.paramsSize}`;
  for (const b of op.buffers) key += 'buffer' in b ? `|${idOf(b.buffer)}@${b.offset}+${b.size}` : `|${idOf(b)}`;
  let group = cache.get(key);
  if (!group) {
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: uniform, offset: op.paramsOffset, size: op.paramsSize } }];
    op.buffers.forEach((b, i) => {
      entries.push({ binding: i + 1, resource: 'buffer' in b ? { buffer: b.buffer, offset: b.offset, size: b.size } : { buffer: b } });
    });
    group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    bindGroupsCreated++;
    if (cache.size >= MAX_BIND_GROUPS) cache.clear();
    cache.set(key, group);
  }
  return group;
}

/** The uniform buffer all dispatches of a forward share (grown as needed, reused across forwards). */
export class UniformArena {
  private buffer: GPUBuffer | null = null;
  constructor(private readonly alloc: BufferAllocator) {}
  ensure(bytes: number): GPUBuffer {
    const need = Math.max(256, bytes);
    if (!this.buffer || this.buffer.size < need) {
      if (this.buffer) this.alloc.destroy(this.buffer);
      this.buffer = this.alloc.create({ label: 'params', size: Math.ceil((need * 1.5) / 256) * 256, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    }
    return this.buffer;
  }
  destroy(): void {
    if (this.buffer) this.alloc.destroy(this.buffer);
    this.buffer = null;
  }
}

/** Named activation buffers, grown on demand and kept across forwards. */
export class Workspace {
  private readonly buffers = new Map<string, GPUBuffer>();
  constructor(private readonly alloc: BufferAllocator) {}
  get(name: string, bytes: number, usage: number = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST): GPUBuffer {
    const need = Math.max(16, Math.ceil(bytes / 16) * 16);
    let b = this.buffers.get(name);
    if (!b || b.size < need) {
      if (b) this.alloc.destroy(b);
      b = this.alloc.create({ label: name, size: need, usage });
      this.buffers.set(name, b);
    }
    return b;
  }
  destroy(): void {
    for (const b of this.buffers.values()) this.alloc.destroy(b);
    this.buffers.clear();
  }
}
