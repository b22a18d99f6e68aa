/**
 * The block-streamed row of `npm run bench` (issue 12), in its own Node process:
 *   node --import tsx bench/streaming-bench.ts '<json: { dir, budgetMiB, sequences, tokens }>'
 * Scores a Llama-3.2-1B-shaped random BF16 checkpoint (written here once, by the tests' random-model
 * writer, into bench/.models/llama-3.2-1b-shape) with `--gpu-memory 512` on a few tokens, the WebGPU
 * backend block-streamed: time per block, bytes read per second (host reads timed on their own), peak GPU
 * memory (the engine's meter and the device-level count of bench/gpu-meter.ts), peak RSS of this process;
 * then a projection, with its arithmetic, for Llama-3.1-8B in 4 GiB. Prints one line `RESULT <json>`.
 * Needs the SwiftShader ICD in the environment (run.mjs sets it).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { planStreamBatches, streamBytes, streamedWorkspaceBytes } from '../src/engine/memory.ts';
import { Model } from '../src/engine/model.ts';
import { makePlan } from '../src/engine/plan.ts';
import { directorySource, type ModelSource, type ReadStats } from '../src/engine/sources.ts';
import { nodeWebGpuProblem, uninstallNodeWebGpu } from '../src/engine/webgpu/node.ts';
import { randomIds, type RandomModelOptions, writeRandomCheckpoint } from '../tests/webgpu/random-model.ts';
import { meterGpu } from './gpu-meter.ts';

const MIB = 2 ** 20;
const GB = 1e9;

/** Llama-3.2-1B's shape (config.json of meta-llama/Llama-3.2-1B): tied embeddings, BF16, llama3 RoPE scaling. */
export const LLAMA_1B_SHAPE: RandomModelOptions = {
  modelType: 'llama',
  dtype: 'BF16',
  hidden: 2048,
  heads: 32,
  kvHeads: 8,
  headDim: 64,
  intermediate: 8192,
  layers: 16,
  vocab: 128256,
  tie: true,
  maxPositions: 131072,
  seed: 12,
  config: {
    rope_theta: 500000,
    rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    rms_norm_eps: 1e-5,
  },
};

/** Llama-3.1-8B (config.json of meta-llama/Llama-3.1-8B), for the projection only. */
const LLAMA_8B = { hidden: 4096, intermediate: 14336, heads: 32, kvHeads: 8, headDim: 128, layers: 32, vocab: 128256, bytesPerWeight: 2 };

export interface StreamingBenchConfig {
  dir: string;
  budgetMiB: number;
  sequences: number;
  tokens: number;
}

const shapeMarker = (dir: string) => join(dir, '.bench-shape.json');

/** Writes the random checkpoint (in a process of its own, so the scoring process's peak RSS is the scoring's). */
async function writeCheckpoint(dir: string): Promise<void> {
  await writeRandomCheckpoint(dir, LLAMA_1B_SHAPE, 256 * MIB);
  const { writeFile } = await import('node:fs/promises');
  await writeFile(shapeMarker(dir), JSON.stringify(LLAMA_1B_SHAPE));
}

/** Writes the random checkpoint unless a complete one with the same shape is there. */
async function ensureCheckpoint(dir: string, log: (line: string) => void): Promise<void> {
  if (existsSync(shapeMarker(dir)) && readFileSync(shapeMarker(dir), 'utf8') === JSON.stringify(LLAMA_1B_SHAPE)) return;
  log(`writing a random ${LLAMA_1B_SHAPE.dtype} Llama-3.2-1B-shaped checkpoint to ${dir} (minutes, once)`);
  const t = performance.now();
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--write', dir], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`writing the random checkpoint failed (exit ${r.status})`);
  log(`  written in ${((performance.now() - t) / 1000).toFixed(0)} s`);
}

/** A source whose range reads are timed (the disk / network side of a block, apart from upload and compute). */
function timedSource(source: ModelSource, timing: { readMs: number }): ModelSource {
  const readRange = source.readRange;
  if (!readRange) return source;
  return {
    ...source,
    readRange: async (name, begin, end, signal) => {
      const t = performance.now();
      try {
        return await readRange.call(source, name, begin, end, signal);
      } finally {
        timing.readMs += performance.now() - t;
      }
    },
  };
}

export async function runStreamingBench(config: StreamingBenchConfig, log: (line: string) => void): Promise<Record<string, unknown>> {
  await ensureCheckpoint(config.dir, log);
  const problem = await nodeWebGpuProblem();
  if (problem) return { error: `no WebGPU in Node: ${problem}` };
  const nav = globalThis as unknown as { navigator: { gpu: GPU } };
  const { gpu, meter } = meterGpu(nav.navigator.gpu);
  Object.defineProperty(nav.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  const budget = config.budgetMiB * MIB;
  const stats: ReadStats = { bytesRead: 0, requests: 0 };
  const timing = { readMs: 0 };
  const blockEnds: number[] = [];
  const loadStart = performance.now();
  let mode = '';
  const model = await Model.load(timedSource(directorySource(config.dir, stats), timing), 'webgpu', {
    gpuMemoryBytes: budget,
    onMode: (m, why) => {
      mode = `${m}: ${why}`;
      log(`mode ${mode}`);
    },
    onBlock: (done, total, p) => {
      blockEnds.push(p.elapsedMs);
      log(`block ${done} / ${total} · ${(p.bytesRead / GB).toFixed(2)} GB read · ${(p.elapsedMs / 1000).toFixed(1)} s`);
    },
  });
  try {
    const loadMs = performance.now() - loadStart;
    const loadRead = stats.bytesRead;
    const ids = Array.from({ length: config.sequences }, (_, s) => randomIds(config.tokens, model.spec.vocabSize, 40 + s));
    timing.readMs = 0;
    const passStart = performance.now();
    const scores = await model.score(ids, makePlan(model.spec.layers));
    const passMs = performance.now() - passStart;
    const report = model.memoryReport();
    const blocks = model.checkpoint.blockBytes;
    const blockBytes = blocks.reduce((a, b) => a + b, 0);
    const perBlockMs = blockEnds.map((t, k) => t - (k === 0 ? 0 : blockEnds[k - 1]));
    const sorted = [...perBlockMs].sort((a, b) => a - b);
    const medianBlockMs = sorted[Math.floor(sorted.length / 2)];
    const passBytesPerS = blockBytes / (passMs / 1000);
    const rssBytes = process.resourceUsage().maxRSS * 1024;
    // After the pass (its peak RSS is taken above): the read rate alone, every block read and bound once with
    // nothing else running (the OS page cache may hold the files; reads inside the pass share the CPU with the compute).
    const readStart = performance.now();
    for (let i = 0; i < model.spec.layers; i++) await model.checkpoint.loadBlock(i);
    const readOnlyMs = performance.now() - readStart;
    const readBytesPerS = blockBytes / (readOnlyMs / 1000);

    // ---- projection: Llama-3.1-8B, BF16, in 4 GiB, scoring T tokens
    const s8 = LLAMA_8B;
    const block8 = (s8.hidden * s8.heads * s8.headDim * 2 + s8.hidden * s8.kvHeads * s8.headDim * 2 + 3 * s8.hidden * s8.intermediate) * s8.bytesPerWeight;
    const head8 = s8.vocab * s8.hidden * s8.bytesPerWeight;
    const spec8 = { ...model.spec, ...s8, vocabSize: s8.vocab };
    const T = 256;
    const work8 = streamedWorkspaceBytes(spec8, T);
    const stream8 = streamBytes(spec8, T);
    const budget8 = 4 * 1024 * MIB;
    const fixed8 = 2 * block8 + work8;
    const streams8 = Math.floor((budget8 - fixed8) / stream8);
    const pass8Bytes = s8.layers * block8;
    // Time per block here = reading it + uploading it + running the tokens; on this machine the projection scales
    // the measured per-byte cost of a block (read + upload + run on few tokens) to the 8B block.
    const msPerByte = medianBlockMs / (blockBytes / blocks.length);
    const projection = {
      model: 'Llama-3.1-8B (BF16)',
      budgetGiB: 4,
      blockBytes: block8,
      twoBlocksBytes: 2 * block8,
      headBytes: head8,
      workspaceBytesFor256Tokens: work8,
      streamBytesPer256TokenSequence: stream8,
      sequencesOf256PerBatch: streams8,
      bytesReadPerPass: pass8Bytes,
      secondsPerPassAtMeasuredReadRate: pass8Bytes / readBytesPerS,
      secondsPerPassAtMeasuredBlockRate: (pass8Bytes * msPerByte) / 1000,
      arithmetic: [
        `block = (4096·32·128·2 + 4096·8·128·2 + 3·4096·14336) weights × 2 bytes = ${(block8 / GB).toFixed(3)} GB; two blocks (running + uploading) = ${((2 * block8) / GB).toFixed(3)} GB`,
        `working set for ${T}-token sequences = ${(work8 / MIB).toFixed(0)} MiB; one residual stream = ${T} × 4096 × 4 bytes = ${(stream8 / MIB).toFixed(1)} MiB`,
        `4 GiB − two blocks − working set = ${((budget8 - fixed8) / GB).toFixed(2)} GB → ${streams8} sequences of ${T} tokens per batch (${streams8 * T} tokens); the head (${(head8 / GB).toFixed(2)} GB) fits after the blocks for perplexity`,
        `a pass reads 32 blocks = ${(pass8Bytes / GB).toFixed(1)} GB: at the measured read rate ${(readBytesPerS / GB).toFixed(2)} GB/s → ${(pass8Bytes / readBytesPerS).toFixed(0)} s; at this machine's measured whole-block rate (read + upload + run) ${((blocks.length * (blockBytes / blocks.length)) / (passMs / 1000) / GB).toFixed(3)} GB/s → ${((pass8Bytes * msPerByte) / 1000).toFixed(0)} s`,
      ],
    };
    return {
      model: 'Llama-3.2-1B shape, random BF16 (16 blocks × 2048, 32/8 heads, ffn 8192, vocab 128256, tied)',
      mode,
      budgetBytes: budget,
      tokens: { sequences: config.sequences, perSequence: config.tokens },
      weightBytes: report.weightBytes,
      blockBytes: blocks[0],
      loadSeconds: loadMs / 1000,
      loadBytesRead: loadRead,
      passSeconds: passMs / 1000,
      perBlockMs,
      medianBlockMs,
      readOnlySeconds: readOnlyMs / 1000,
      readBytesPerSecond: readBytesPerS,
      readSecondsInsidePass: timing.readMs / 1000,
      passBytesPerSecond: passBytesPerS,
      gpuPeakBytes: report.gpuPeakBytes,
      deviceLevelPeakBytes: meter.peakBytes,
      peakRssBytes: rssBytes,
      batches: planStreamBatches(model.checkpoint, ids.map((s) => s.length), budget, false).batches.length,
      firstBlockBi: scores[0] ? 1 - scores[0].cosSum / scores[0].tokens : null,
      projection,
    };
  } finally {
    model.dispose();
  }
}

/** The markdown section of bench/results/table.md. */
export function streamingTable(r: Record<string, unknown>): string {
  if (r.error) return `## Block-streamed scoring\n\nfailed: ${r.error}\n`;
  const n = (v: unknown, d = 1) => (typeof v === 'number' ? v.toFixed(d) : '—');
  const p = r.projection as { arithmetic: string[] };
  const tokens = r.tokens as { sequences: number; perSequence: number };
  return [
    '## Block-streamed scoring (issue 12)',
    '',
    `${r.model}, scored on ${tokens.sequences} × ${tokens.perSequence} tokens with a ${n((r.budgetBytes as number) / MIB, 0)} MiB GPU budget (WebGPU, Node, SwiftShader): ${r.mode}.`,
    '',
    '| weights | per block | median time per block | pass | read rate (reads alone) | bytes / s (whole pass) | peak GPU (engine meter) | peak GPU (device count) | peak RSS |',
    '|---|---|---|---|---|---|---|---|---|',
    `| ${n((r.weightBytes as number) / GB, 2)} GB | ${n((r.blockBytes as number) / MIB, 0)} MiB | ${n((r.medianBlockMs as number) / 1000, 2)} s | ${n(r.passSeconds, 1)} s | ${n((r.readBytesPerSecond as number) / GB, 2)} GB/s | ${n((r.passBytesPerSecond as number) / GB, 4)} GB/s | ${n((r.gpuPeakBytes as number) / MIB, 0)} MiB | ${n((r.deviceLevelPeakBytes as number) / MIB, 0)} MiB | ${n((r.peakRssBytes as number) / MIB, 0)} MiB |`,
    '',
    'Projection for Llama-3.1-8B in 4 GiB:',
    '',
    ...p.arithmetic.map((line) => `- ${line}`),
    '',
    'SwiftShader runs the kernels on the CPU, so the whole-block rate here is compute-bound; on a GPU a block of a few hundred tokens computes in milliseconds and the pass is bound by reading the weights (disk, network or cache) and uploading them.',
    '',
    "Peak RSS here holds the ends on the host (the tied embedding, 0.53 GB, which a streamed sequence gathers its rows from), SwiftShader's \"GPU\" buffers (host memory on this adapter: the peak GPU column), the upload staging of the block being uploaded, and the blocks read ahead (up to two, 116 MiB each) until the garbage collector frees them.",
    '',
  ].join('\n');
}

async function main(): Promise<number> {
  if (process.argv[2] === '--write') {
    await writeCheckpoint(process.argv[3]);
    return 0;
  }
  const config = JSON.parse(process.argv[2] ?? '{}') as StreamingBenchConfig;
  try {
    const result = await runStreamingBench(config, (line) => console.error(`  [streaming] ${line}`));
    // The markdown travels with the numbers: run.mjs (plain JavaScript) puts it into table.md as is.
    console.log(`RESULT ${JSON.stringify({ ...result, table: streamingTable(result) })}`);
  } catch (e) {
    console.log(`RESULT ${JSON.stringify({ error: (e as Error).message ?? String(e) })}`);
  } finally {
    uninstallNodeWebGpu();
  }
  return 0;
}

if (process.argv[1]?.endsWith('streaming-bench.ts')) process.exit(await main());
