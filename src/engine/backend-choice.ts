/**
 * The default backend rule, shared by the CLI (no --backend) and the lab's `auto`: WebGPU when a hardware
 * adapter is present, else the fast CPU backend. A software adapter (isFallbackAdapter: SwiftShader, WARP)
 * runs WGSL on the CPU and was measured 4× slower than the CPU backend (issue 16), so it does not count.
 */

export interface BackendDecision {
  kind: 'webgpu' | 'cpu';
  /** Why, in words for the status bar and --json. */
  reason: string;
}

/** The adapter's name from its info (vendor, architecture, device, description). */
export function adapterName(adapter: GPUAdapter): string {
  const info = adapter.info;
  return [info?.vendor, info?.architecture, info?.device, info?.description].filter((s) => s && s.length > 0).join(' ') || 'unnamed adapter';
}

/** isFallbackAdapter moved from GPUAdapter to GPUAdapterInfo in the spec; read either. */
export function isSoftwareAdapter(adapter: GPUAdapter): boolean {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  return info?.isFallbackAdapter ?? (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
}

/** Applies the rule to `gpu` (navigator.gpu, or null with the reason there is none). */
export async function chooseDefaultBackend(gpu: GPU | null | undefined, noGpuReason = 'no WebGPU here (navigator.gpu is missing)'): Promise<BackendDecision> {
  if (!gpu) return { kind: 'cpu', reason: noGpuReason };
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { kind: 'cpu', reason: `requesting a WebGPU adapter failed (${(e as Error).message})` };
  }
  if (!adapter) return { kind: 'cpu', reason: 'WebGPU found no adapter (no GPU, or the GPU is blocklisted)' };
  if (isSoftwareAdapter(adapter)) return { kind: 'cpu', reason: `the only WebGPU adapter is a software one (${adapterName(adapter)}), slower than the CPU backend` };
  return { kind: 'webgpu', reason: `hardware WebGPU adapter (${adapterName(adapter)})` };
}
