/**
 * `node --import tsx bench/decode-interleaved.ts [--model smollm2-135m] [--prompt 32] [--steps 16] [--rounds 3]`:
 * our fast CPU backend vs onnxruntime-node running the bench's ONNX export of the same weights (the
 * engine inside transformers.js' Node row, without its JS around it), **interleaved step by step** in one
 * process, so a shared machine's load hits both alike: per round a prefill each, then decode steps
 * alternating ours / theirs. Same intra-op thread count on both sides. Prints medians and the ratio.
 * Needs bench/.models/<model>/onnx/model.onnx (npm run bench makes it).
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadCheckpoint } from '../src/engine/checkpoint.ts';
import { createBackend } from '../src/engine/model.ts';
import { makePlan } from '../src/engine/plan.ts';
import { argmax } from '../src/engine/sampling.ts';
import { directorySource } from '../src/engine/sources.ts';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const dir = join(import.meta.dirname, '.models', flag('model', 'smollm2-135m'));
const promptLength = Number(flag('prompt', '32'));
const steps = Number(flag('steps', '16'));
const rounds = Number(flag('rounds', '3'));
const threads = availableParallelism();

const checkpoint = await loadCheckpoint(directorySource(dir));
const ours = await createBackend('cpu', checkpoint);
const { layers, kvHeads, headDim, vocabSize } = checkpoint.spec;
const session = await ort.InferenceSession.create(join(dir, 'onnx', 'model.onnx'), { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
const plan = makePlan(layers);
const prompt = Array.from({ length: promptLength }, (_, i) => (i * 7919 + 13) % vocabSize);

/** One ONNX forward of `ids` after `past` positions; returns the greedy next id and the new cache. */
async function theirStep(ids: number[], past: Record<string, ort.Tensor>, pastLength: number) {
  const total = pastLength + ids.length;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from(ids, (_, i) => BigInt(pastLength + i)), [1, ids.length]),
    ...past,
  };
  const out = await session.run(feeds);
  const logits = out.logits.data as Float32Array;
  const next: Record<string, ort.Tensor> = {};
  for (let i = 0; i < layers; i++) for (const kind of ['key', 'value']) next[`past_key_values.${i}.${kind}`] = out[`present.${i}.${kind}`];
  return { id: argmax(logits.subarray((ids.length - 1) * vocabSize, ids.length * vocabSize)), past: next };
}
const emptyPast = () => {
  const past: Record<string, ort.Tensor> = {};
  for (let i = 0; i < layers; i++) for (const kind of ['key', 'value']) past[`past_key_values.${i}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, kvHeads, 0, headDim]);
  return past;
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const time = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
  const t = performance.now();
  const r = await f();
  return [r, performance.now() - t];
};
const prefill: Record<'ours' | 'theirs', number[]> = { ours: [], theirs: [] };
const decode: Record<'ours' | 'theirs', number[]> = { ours: [], theirs: [] };
let same = true;
for (let round = 0; round <= rounds; round++) {
  const cache = ours.createCache(promptLength + steps + 1, plan);
  const [first, pOurs] = await time(() => ours.forward({ ids: prompt, plan, logits: 'last', cache }));
  const [theirFirst, pTheirs] = await time(() => theirStep(prompt, emptyPast(), 0));
  let a = argmax(first.logits as Float32Array);
  let b = theirFirst.id;
  let past = theirFirst.past;
  const oursSteps: number[] = [];
  const theirSteps: number[] = [];
  for (let s = 0; s < steps; s++) {
    same &&= a === b;
    const [r, tOurs] = await time(() => ours.forward({ ids: [a], plan, logits: 'last', cache }));
    const [t, tTheirs] = await time(() => theirStep([b], past, promptLength + s));
    a = argmax(r.logits as Float32Array);
    b = t.id;
    past = t.past;
    oursSteps.push(tOurs);
    theirSteps.push(tTheirs);
  }
  cache.dispose();
  if (round === 0) continue; // warm-up
  prefill.ours.push(pOurs);
  prefill.theirs.push(pTheirs);
  decode.ours.push(median(oursSteps));
  decode.theirs.push(median(theirSteps));
  console.error(`round ${round}: prefill ${pOurs.toFixed(1)} / ${pTheirs.toFixed(1)} ms, decode ${median(oursSteps).toFixed(2)} / ${median(theirSteps).toFixed(2)} ms/token (ours / onnxruntime-node)`);
}
const result = {
  model: checkpoint.label,
  ours: ours.info.description,
  theirs: `onnxruntime-node ${ort.env.versions.node}, ${threads} intra-op threads, the bench's ONNX export`,
  promptLength,
  steps,
  prefillMs: { ours: median(prefill.ours), theirs: median(prefill.theirs), ratio: median(prefill.ours) / median(prefill.theirs) },
  decodeMsPerToken: { ours: median(decode.ours), theirs: median(decode.theirs), ratio: median(decode.ours) / median(decode.theirs) },
  sameGreedyTokens: same,
};
console.log(JSON.stringify(result, null, 2));
ours.dispose();
