/** The default backend rule (CLI default, the lab's auto): WebGPU only on a hardware adapter. */
import { describe, expect, it } from 'vitest';
import { chooseDefaultBackend } from '../../src/engine/backend-choice.ts';

/** A stand-in GPU whose one adapter has the given info (or none / a failing request). */
function fakeGpu(adapter: { info: Record<string, unknown>; isFallbackAdapter?: boolean } | null | Error): GPU {
  return {
    requestAdapter: async () => {
      if (adapter instanceof Error) throw adapter;
      return adapter as unknown as GPUAdapter;
    },
  } as unknown as GPU;
}

describe('chooseDefaultBackend', () => {
  it('takes WebGPU on a hardware adapter and names it', async () => {
    const d = await chooseDefaultBackend(fakeGpu({ info: { vendor: 'nvidia', architecture: 'ada', isFallbackAdapter: false } }));
    expect(d).toEqual({ kind: 'webgpu', reason: 'hardware WebGPU adapter (nvidia ada)' });
  });

  it('passes over a software adapter (SwiftShader: isFallbackAdapter on the info, or on the adapter in older browsers)', async () => {
    const swiftshader = await chooseDefaultBackend(fakeGpu({ info: { vendor: 'google', architecture: 'swiftshader', isFallbackAdapter: true } }));
    expect(swiftshader.kind).toBe('cpu');
    expect(swiftshader.reason).toBe('the only WebGPU adapter is a software one (google swiftshader), slower than the CPU backend');
    const older = await chooseDefaultBackend(fakeGpu({ info: { vendor: 'microsoft', architecture: 'warp' }, isFallbackAdapter: true }));
    expect(older.kind).toBe('cpu');
  });

  it('falls to the CPU with the reason when there is no WebGPU, no adapter, or the request fails', async () => {
    expect(await chooseDefaultBackend(null, 'no navigator.gpu')).toEqual({ kind: 'cpu', reason: 'no navigator.gpu' });
    expect((await chooseDefaultBackend(fakeGpu(null))).reason).toMatch(/found no adapter/);
    expect((await chooseDefaultBackend(fakeGpu(new Error('driver crashed')))).reason).toMatch(/failed \(driver crashed\)/);
  });
});
