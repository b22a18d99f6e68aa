// transformers.js in Node (onnxruntime-node, CPU) for one model, in its own process (run by bench/run.mjs):
//   node bench/tjs-node.mjs '<json: { modelsDir, config }>'
// Prints progress to stderr and one line `RESULT <json>` to stdout.
import { runTjsBench } from './tjs-bench.mjs';

const { modelsDir, config } = JSON.parse(process.argv[2] ?? '{}');
let result;
try {
  const tjs = await import('@huggingface/transformers');
  tjs.env.allowRemoteModels = false;
  tjs.env.allowLocalModels = true;
  tjs.env.localModelPath = modelsDir.endsWith('/') ? modelsDir : `${modelsDir}/`;
  result = await runTjsBench(tjs, config, (line) => console.error(`  [tjs ${config.device}] ${line}`));
} catch (e) {
  result = { error: e?.message ?? String(e) };
}
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(0);
