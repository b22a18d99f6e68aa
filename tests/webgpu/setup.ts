/**
 * Node WebGPU for the tests (Dawn via the `webgpu` package on Chromium's SwiftShader). The Vulkan ICD
 * must be in the environment before the process starts:
 *   LD_LIBRARY_PATH=/usr/lib/chromium VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
 * Without it there is no adapter and the WebGPU tests skip with a message saying so.
 */
import { installNodeWebGpu } from '../../src/engine/webgpu/node.ts';

export const gpuAvailable: boolean = await installNodeWebGpu().catch(() => false);

if (!gpuAvailable) {
  console.warn(
    '[tests/webgpu] SKIPPED: no WebGPU adapter in this process. Run with ' +
      'LD_LIBRARY_PATH=/usr/lib/chromium VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json (Chromium SwiftShader ICD).',
  );
}

/** Creating a backend compiles its kernels (seconds on SwiftShader, more on a loaded machine). */
export const HOOK_TIMEOUT_MS = 120_000;
