/**
 * WebGPU in Node through the `webgpu` npm package (Dawn). Needs a Vulkan driver found through the
 * environment *before* the process starts; here: Chromium's SwiftShader ICD,
 *   LD_LIBRARY_PATH=/usr/lib/chromium VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
 * The GPU object is kept on globalThis: held only by a module-level binding it was garbage-collected
 * and the process crashed at the first dispatch.
 */

interface NodeGpuGlobals {
  navigator?: { gpu?: GPU };
  __prunelabDawnGpu?: GPU;
}

/** Installs navigator.gpu (and the WebGPU globals) in Node; returns false when no adapter can be found. */
export async function installNodeWebGpu(): Promise<boolean> {
  const g = globalThis as unknown as NodeGpuGlobals;
  if (g.navigator?.gpu) return (await g.navigator.gpu.requestAdapter()) !== null;
  let mod: { create: (options: string[]) => GPU; globals: Record<string, unknown> };
  try {
    mod = (await import('webgpu')) as unknown as typeof mod;
  } catch {
    return false;
  }
  Object.assign(globalThis, mod.globals);
  const gpu = mod.create([]);
  g.__prunelabDawnGpu = gpu;
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  else if (!g.navigator.gpu) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  return (await gpu.requestAdapter()) !== null;
}

/** Drops the Node GPU object so the process can exit. */
export function uninstallNodeWebGpu(): void {
  const g = globalThis as unknown as NodeGpuGlobals;
  if (g.navigator && g.navigator.gpu === g.__prunelabDawnGpu) delete g.navigator.gpu;
  delete g.__prunelabDawnGpu;
}
