/**
 * WebGPU in Node through the `webgpu` npm package (Dawn). Needs a Vulkan driver found through the
 * environment *before* the process starts; here: Chromium's SwiftShader ICD,
 *   LD_LIBRARY_PATH=/usr/lib/chromium VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
 * The GPU object is kept on globalThis: held only by a module-level binding it was garbage-collected
 * and the process crashed at the first dispatch.
 */
import { existsSync } from 'node:fs';

interface NodeGpuGlobals {
  navigator?: { gpu?: GPU };
  __prunelabDawnGpu?: GPU;
}

const ICD_HINT = 'set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json and LD_LIBRARY_PATH=/usr/lib/chromium (Debian chromium ships that SwiftShader driver)';

const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0];

/** What the environment says about the Vulkan driver, for the "no adapter" message. */
function driverHint(): string {
  const icd = process.env.VK_ICD_FILENAMES;
  if (!icd) return `VK_ICD_FILENAMES is not set: ${ICD_HINT}`;
  const missing = icd.split(':').filter((f) => f && !existsSync(f));
  if (missing.length > 0) return `VK_ICD_FILENAMES names ${missing.join(', ')}, which does not exist: ${ICD_HINT}`;
  return `the Vulkan driver in VK_ICD_FILENAMES (${icd}) gave no adapter; is its library on LD_LIBRARY_PATH?`;
}

async function adapterProblem(gpu: GPU): Promise<string | null> {
  try {
    return (await gpu.requestAdapter()) === null ? `Dawn found no WebGPU adapter (${driverHint()})` : null;
  } catch (e) {
    return `requestAdapter() failed: ${message(e)}`;
  }
}

/**
 * Installs navigator.gpu (and the WebGPU globals) in Node. Returns null when an adapter is there, else why
 * not: the binding failed to load (a missing or corrupt dawn.node), or Dawn found no adapter.
 */
export async function nodeWebGpuProblem(): Promise<string | null> {
  const g = globalThis as unknown as NodeGpuGlobals;
  if (g.navigator?.gpu) return adapterProblem(g.navigator.gpu);
  let mod: { create: (options: string[]) => GPU; globals: Record<string, unknown> };
  try {
    mod = (await import('webgpu')) as unknown as typeof mod;
  } catch (e) {
    return `the webgpu package's native binding (dawn.node) failed to load: ${message(e)}`;
  }
  let gpu: GPU;
  try {
    Object.assign(globalThis, mod.globals);
    gpu = mod.create([]);
  } catch (e) {
    return `the webgpu package's create() failed: ${message(e)}`;
  }
  g.__prunelabDawnGpu = gpu;
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  else if (!g.navigator.gpu) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  return adapterProblem(gpu);
}

/** Installs navigator.gpu in Node; false when there is no adapter (nodeWebGpuProblem says why). */
export async function installNodeWebGpu(): Promise<boolean> {
  return (await nodeWebGpuProblem()) === null;
}

/** Drops the Node GPU object so the process can exit. */
export function uninstallNodeWebGpu(): void {
  const g = globalThis as unknown as NodeGpuGlobals;
  if (g.navigator && g.navigator.gpu === g.__prunelabDawnGpu) delete g.navigator.gpu;
  delete g.__prunelabDawnGpu;
}
