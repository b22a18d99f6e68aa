/** The WebGPU KV cache: per block, key and value buffers [capacity, kvHeads, headDim], made on first use. */
import type { KVCache } from '../backend.ts';
import { checkFits, type GpuContext } from './device.ts';
import type { BufferAllocator } from './meter.ts';

const F32 = 4;

export class WebGpuCache implements KVCache {
  length = 0;
  private readonly layers = new Map<number, { keys: GPUBuffer; values: GPUBuffer }>();
  constructor(
    private readonly ctx: GpuContext,
    readonly capacity: number,
    readonly planKey: string,
    private readonly rowWidth: number,
    private readonly alloc: BufferAllocator,
  ) {}

  /** The block's key and value buffers, made on first use. */
  layer(i: number): { keys: GPUBuffer; values: GPUBuffer } {
    let l = this.layers.get(i);
    if (!l) {
      const bytes = this.capacity * this.rowWidth * F32;
      checkFits(this.ctx, bytes, { field: `KV cache of block ${i}` });
      const make = (label: string) => this.alloc.create({ label, size: Math.max(16, bytes), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      l = { keys: make(`cache.${i}.keys`), values: make(`cache.${i}.values`) };
      this.layers.set(i, l);
    }
    return l;
  }

  dispose(): void {
    for (const l of this.layers.values()) {
      this.alloc.destroy(l.keys);
      this.alloc.destroy(l.values);
    }
    this.layers.clear();
  }
}
