// The transformers.js peer's side of `npm run bench`, the same code in Node (onnxruntime-node CPU) and in
// the Chromium bench page (onnxruntime-web, WebGPU or wasm EP). It receives the transformers.js module
// (its only other import is measure.mjs, shared with engine-bench.ts: the same prompt ids and throughput
// rule). Greedy generate() with a KV cache, D + 1 new tokens; prefill = start → first new token, decode = each
// later token. Timestamps come from a streamer, whose put() generate() calls with the prompt and then after
// every sampled token.
import { measureThroughput, round, syntheticIds } from './measure.mjs';

async function generateTimed(tjs, model, ids, steps) {
  const input_ids = new tjs.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
  const attention_mask = new tjs.Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]);
  const stamps = [];
  const streamer = { put: () => stamps.push(performance.now()), end: () => {} };
  const t0 = performance.now();
  const out = await model.generate({ input_ids, attention_mask, max_new_tokens: steps + 1, min_new_tokens: steps + 1, do_sample: false, streamer });
  // stamps[0]: the prompt (before the first forward); stamps[1]: the first new token; then one per step
  const prefillMs = stamps[1] - t0;
  const stepMs = stamps.slice(2).map((s, i) => s - stamps[i + 1]);
  const tokens = out.tolist()[0].slice(ids.length).map(Number);
  return { prefillMs, stepMs, tokens };
}

/**
 * config: { model (id under env.localModelPath), device ('webgpu' | 'wasm' | 'cpu'), dtype (default 'fp32'), vocab, prompt, decode,
 * reps, warmup ('full' | 'prompt' | 'short' | 'minimal') }
 */
export async function runTjsBench(tjs, config, log = () => {}) {
  const out = { runtime: `transformers.js ${tjs.env.version} (${config.device})`, wasmThreads: tjs.env.backends?.onnx?.wasm?.numThreads ?? null };
  let t = performance.now();
  // dtype picks the variant file: fp32 → onnx/model.onnx, fp16 → model_fp16.onnx, q4 → model_q4.onnx, q4f16 → model_q4f16.onnx
  const dtype = config.dtype ?? 'fp32';
  const halfPrecision = dtype === 'fp16' || dtype === 'q4f16';
  // transformers.js refuses fp16 models on an adapter without shader-f16 (SwiftShader has none): a stated skip, not a failure
  if (config.device === 'webgpu' && halfPrecision && globalThis.navigator?.gpu) {
    const adapter = await globalThis.navigator.gpu.requestAdapter();
    if (adapter && !adapter.features.has('shader-f16')) return { skipped: `the ${dtype} variant needs the adapter feature shader-f16, which this adapter (${adapter.info?.architecture || adapter.info?.vendor || 'WebGPU'}) lacks` };
  }
  let model;
  try {
    model = await tjs.AutoModelForCausalLM.from_pretrained(config.model, { device: config.device, dtype });
  } catch (e) {
    // the same refusal, when it comes from transformers.js itself (its own adapter check)
    if (halfPrecision && /support fp16|requires f16/i.test(String(e?.message ?? e))) return { skipped: `the ${dtype} variant cannot run on this adapter: ${e.message}` };
    throw e;
  }
  out.dtype = dtype;
  out.load = { loadMs: round(performance.now() - t, 1) };
  log(`loaded ${config.model} on ${config.device} in ${(performance.now() - t).toFixed(0)} ms`);
  try {
    const prompt = syntheticIds(config.prompt, config.vocab, 1);
    t = performance.now();
    // the same warm-up sizes as warmupSize in engine-bench.ts
    const sizes = { full: [config.prompt, config.decode], prompt: [config.prompt, 1], short: [Math.min(4, config.prompt), 2], minimal: [Math.min(2, config.prompt), 1] };
    const [warmPrompt, warmSteps] = sizes[config.warmup];
    await generateTimed(tjs, model, prompt.slice(0, warmPrompt), warmSteps);
    out.warmupMs = round(performance.now() - t, 1);
    log(`warm-up ${(performance.now() - t).toFixed(0)} ms`);
    const { prefillMs, stepMs, throughput } = await measureThroughput(() => generateTimed(tjs, model, prompt, config.decode), config);
    out.throughput = throughput;
    log(`throughput: prefill ${config.prompt} tok ${prefillMs.toFixed(1)} ms, decode ${stepMs.toFixed(1)} ms/token`);
  } finally {
    await model.dispose?.();
  }
  return out;
}
