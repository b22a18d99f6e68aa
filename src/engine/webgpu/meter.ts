/**
 * Every GPU buffer a backend makes goes through its meter: weights, workspace, uniforms, staging,
 * residual streams, KV caches. WebGPU has no memory-usage query, so the engine's own number is the sum
 * of the sizes of its live buffers (created − destroyed), measured as they come and go, and its peak;
 * driver-internal memory (pipelines, bind groups, upload staging) is not in it.
 */
import type { MemoryMeter } from '../backend.ts';

/** Where the engine's buffers come from and go: the meter, or (kernel tests) a plain list. */
export interface BufferAllocator {
  create(descriptor: GPUBufferDescriptor): GPUBuffer;
  destroy(buffer: GPUBuffer): void;
}

export class GpuBufferMeter implements MemoryMeter, BufferAllocator {
  liveBytes = 0;
  peakBytes = 0;
  private readonly live = new Map<GPUBuffer, number>();

  constructor(private readonly device: GPUDevice) {}

  create(descriptor: GPUBufferDescriptor): GPUBuffer {
    const buffer = this.device.createBuffer(descriptor);
    this.live.set(buffer, buffer.size);
    this.liveBytes += buffer.size;
    this.peakBytes = Math.max(this.peakBytes, this.liveBytes);
    return buffer;
  }

  /** Destroys a buffer this meter made (one it did not make is destroyed and not counted). */
  destroy(buffer: GPUBuffer): void {
    const size = this.live.get(buffer);
    if (size !== undefined) {
      this.live.delete(buffer);
      this.liveBytes -= size;
    }
    buffer.destroy();
  }

  /** Destroys every buffer still live (dispose, or a creation that failed part-way). */
  destroyAll(): void {
    for (const buffer of [...this.live.keys()]) this.destroy(buffer);
  }
}
