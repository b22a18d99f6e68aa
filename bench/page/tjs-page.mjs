// The bench page for the transformers.js peer in Chromium (onnxruntime-web, WebGPU or wasm EP). Model
// folders are served under /models/, onnxruntime-web's wasm files under /ort/ (nothing from a CDN).
import * as tjs from '@huggingface/transformers';
import { runTjsBench } from '../tjs-bench.mjs';

tjs.env.allowRemoteModels = false;
tjs.env.allowLocalModels = true;
tjs.env.localModelPath = '/models/';
tjs.env.useBrowserCache = false;
tjs.env.backends.onnx.wasm.wasmPaths = '/ort/';
// 2 threads where the page is cross-origin isolated (the bench server sends COOP/COEP)
tjs.env.backends.onnx.wasm.numThreads = globalThis.crossOriginIsolated ? Math.min(2, navigator.hardwareConcurrency || 1) : 1;

globalThis.runTjsBench = (config) => runTjsBench(tjs, config, (line) => console.log(`[tjs ${config.device}] ${line}`));
globalThis.benchReady = true;
