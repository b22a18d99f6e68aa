/**
 * A GPU object that counts what the engine asks of the device, for the benchmark only: live and peak
 * buffer bytes (createBuffer − destroy), pipelines and shader modules created, and the time of every
 * queue.submit. WebGPU has no memory-usage API, so "peak GPU memory" here is the peak of the bytes of
 * live buffers the engine created on its device (weights, activations, KV cache, uniforms, staging);
 * driver-internal allocations (pipelines, bind groups, command buffers) are not included.
 *
 * It patches methods on the adapter / device / queue instances it hands out (works with Dawn in Node
 * and with Chromium's objects); the engine is passed the wrapped GPU through DeviceOptions.gpu.
 */

export interface GpuMeter {
  liveBytes: number;
  peakBytes: number;
  buffersCreated: number;
  pipelinesCreated: number;
  shaderModulesCreated: number;
  /** performance.now() of each queue.submit, in order. */
  submits: number[];
  /** The device the engine got (for queue.onSubmittedWorkDone in timings). */
  device: GPUDevice | null;
  /** Starts a new peak window at the current live bytes. */
  resetPeak(): void;
  /** Counters at this moment (for before/after deltas). */
  snapshot(): { buffersCreated: number; pipelinesCreated: number; shaderModulesCreated: number; submits: number };
}

type Fn = (...args: never[]) => unknown;

function patch<T extends object>(target: T, name: string, wrap: (original: Fn) => Fn): void {
  const original = (target as Record<string, Fn>)[name].bind(target) as Fn;
  Object.defineProperty(target, name, { value: wrap(original), configurable: true, writable: true });
}

export function meterGpu(gpu: GPU): { gpu: GPU; meter: GpuMeter } {
  const meter: GpuMeter = {
    liveBytes: 0,
    peakBytes: 0,
    buffersCreated: 0,
    pipelinesCreated: 0,
    shaderModulesCreated: 0,
    submits: [],
    device: null,
    resetPeak() {
      meter.peakBytes = meter.liveBytes;
    },
    snapshot() {
      return { buffersCreated: meter.buffersCreated, pipelinesCreated: meter.pipelinesCreated, shaderModulesCreated: meter.shaderModulesCreated, submits: meter.submits.length };
    },
  };
  const instrumentDevice = (device: GPUDevice) => {
    meter.device = device;
    patch(device, 'createBuffer', (original) => (...args) => {
      const buffer = original(...args) as GPUBuffer;
      const size = buffer.size;
      let alive = true;
      meter.buffersCreated++;
      meter.liveBytes += size;
      meter.peakBytes = Math.max(meter.peakBytes, meter.liveBytes);
      patch(buffer, 'destroy', (destroy) => () => {
        if (alive) {
          alive = false;
          meter.liveBytes -= size;
        }
        return destroy();
      });
      return buffer;
    });
    for (const name of ['createComputePipeline', 'createComputePipelineAsync']) {
      patch(device, name, (original) => (...args) => {
        meter.pipelinesCreated++;
        return original(...args);
      });
    }
    patch(device, 'createShaderModule', (original) => (...args) => {
      meter.shaderModulesCreated++;
      return original(...args);
    });
    patch(device.queue, 'submit', (original) => (...args) => {
      meter.submits.push(performance.now());
      return original(...args);
    });
    patch(device, 'destroy', (original) => () => {
      meter.liveBytes = 0;
      return original();
    });
  };
  const wrapped = {
    requestAdapter: async (options?: GPURequestAdapterOptions) => {
      const adapter = await gpu.requestAdapter(options);
      if (!adapter) return null;
      patch(adapter, 'requestDevice', (original) => async (...args) => {
        const device = (await original(...args)) as GPUDevice;
        instrumentDevice(device);
        return device;
      });
      return adapter;
    },
    getPreferredCanvasFormat: () => gpu.getPreferredCanvasFormat(),
    get wgslLanguageFeatures() {
      return gpu.wgslLanguageFeatures;
    },
  } as unknown as GPU;
  return { gpu: wrapped, meter };
}
