/**
 * Node WebGPU for the tests (Dawn via the `webgpu` package on Chromium's SwiftShader). The Vulkan ICD
 * must be in the environment before the process starts:
 *   LD_LIBRARY_PATH=/usr/lib/chromium VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
 * (tests/run-all.mjs sets it). Without an adapter every WebGPU suite fails with the reason; only an explicit
 * PRUNELAB_NO_WEBGPU=1 skips them, and tests/run-all.mjs then says so in its closing line.
 */
import { describe, test } from 'vitest';
import { nodeWebGpuProblem } from '../../src/engine/webgpu/node.ts';

/** The explicit opt-out for a machine with no WebGPU path at all. CI never sets it. */
export const webGpuOptedOut = process.env.PRUNELAB_NO_WEBGPU === '1';

/** Why this process has no WebGPU (binding failed to load, no adapter), or null when it has. */
export const gpuProblem: string | null = webGpuOptedOut
  ? 'PRUNELAB_NO_WEBGPU=1'
  : await nodeWebGpuProblem().catch((e: unknown) => `installing Node WebGPU threw: ${e instanceof Error ? e.message : String(e)}`);
export const gpuAvailable = gpuProblem === null;

/**
 * A suite that needs WebGPU. Without it the suite is one failing test naming the reason, so a broken
 * binding or a missing driver can never pass as "skipped"; with PRUNELAB_NO_WEBGPU=1 it is skipped (and counted).
 */
export function describeGpu(name: string, body: () => void): void {
  if (gpuAvailable) describe(name, body);
  else if (webGpuOptedOut) describe.skip(name, body);
  else
    describe(name, () => {
      test('needs WebGPU in Node', () => {
        throw new Error(`WebGPU suite cannot run: ${gpuProblem}. (Only on a machine with no WebGPU path at all, PRUNELAB_NO_WEBGPU=1 skips the WebGPU suites.)`);
      });
    });
}

/** Creating a backend compiles its kernels (seconds on SwiftShader, more on a loaded machine). */
export const HOOK_TIMEOUT_MS = 120_000;
