/**
 * Loads the fast CPU kernels for this environment: onnxruntime-node (native, multi-threaded) in Node,
 * onnxruntime-web's wasm build in a browser or worker. Throws a FastKernelsUnavailable whose message says
 * why (the caller falls back to the TypeScript reference and shows it).
 */
import type { OrtKernels, OrtModule } from './ort-kernels.ts';
import { ortKernels } from './ort-kernels.ts';
import { browserThreadLimit } from './threads.ts';

export class FastKernelsUnavailable extends Error {}

export interface FastKernelOptions {
  /** Intra-op threads (default: every core in Node; in a browser, up to 4 when cross-origin isolated, else 1). */
  threads?: number;
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string' && typeof (globalThis as { window?: unknown }).window === 'undefined';

async function nodeKernels(options: FastKernelOptions): Promise<OrtKernels> {
  // A non-literal specifier keeps bundlers (the lab's vite build) from pulling the native addon in.
  const specifier = 'onnxruntime-node';
  let ort: OrtModule & { env?: { versions?: { common?: string } } };
  try {
    ort = (await import(/* @vite-ignore */ specifier)) as typeof ort;
  } catch (e) {
    throw new FastKernelsUnavailable(`onnxruntime-node did not load (${(e as Error).message.split('\n')[0]})`);
  }
  const os = 'node:os';
  const { availableParallelism } = (await import(/* @vite-ignore */ os)) as typeof import('node:os');
  const threads = options.threads ?? availableParallelism();
  return ortKernels(ort, { threads, runtime: `onnxruntime-node ${ort.env?.versions?.common ?? ''}`.trim(), weights: 'input' });
}

async function browserKernels(options: FastKernelOptions): Promise<OrtKernels> {
  let ort: OrtModule & { env: { wasm: { numThreads?: number; wasmPaths?: unknown; proxy?: boolean }; versions?: { common?: string } } };
  let paths: { mjs: string; wasm: string };
  try {
    ort = (await import('onnxruntime-web/wasm')) as unknown as typeof ort;
    // The runtime's glue script and binary as bundler assets, served from our origin (never a CDN). The glue
    // is loaded as its own file, not from the bundle: its WebAssembly threads start workers from its URL.
    const [mjs, wasm] = await Promise.all([import('onnxruntime-web/ort-wasm-simd-threaded.mjs?url'), import('onnxruntime-web/ort-wasm-simd-threaded.wasm?url')]);
    paths = { mjs: mjs.default, wasm: wasm.default };
  } catch (e) {
    throw new FastKernelsUnavailable(`onnxruntime-web did not load (${(e as Error).message.split('\n')[0]})`);
  }
  const cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
  const threads = options.threads ?? (browserThreadLimit() ? 1 : Math.max(1, Math.min(4, cores)));
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.wasmPaths = paths;
  // Sessions run on the calling thread (the engine worker already keeps the UI free).
  ort.env.wasm.proxy = false;
  return ortKernels(ort, { threads, runtime: `onnxruntime-web ${ort.env.versions?.common ?? ''} (wasm)`.trim(), executionProviders: ['wasm'], weights: 'initializer' });
}

/** The fast kernels, with their sessions still to be created (call `ready()` after preparing the weights). */
export async function loadFastKernels(options: FastKernelOptions = {}): Promise<OrtKernels> {
  return isNode ? nodeKernels(options) : browserKernels(options);
}
