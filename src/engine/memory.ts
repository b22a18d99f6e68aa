/**
 * Resident or block-streamed: a model runs resident (every block on the backend) when its weights, as
 * the backend holds them, plus a working set fit the memory budget; otherwise its blocks stream (read,
 * run over every calibration sequence, released). The choice is made from the safetensors headers,
 * before any block is read.
 */
import type { Checkpoint } from './checkpoint.ts';
import { distinctRopes, type ModelSpec } from './config.ts';
import { PruneLabError } from './errors.ts';

export type MemoryMode = 'resident' | 'streamed';

/** The `memory` object of every --json output that ran the model. */
export interface MemoryReport {
  mode: MemoryMode;
  /** Peak of the engine's live GPU buffers, measured (0 on the CPU). */
  gpuPeakBytes: number;
  /** Checkpoint tensor bytes, as stored. */
  weightBytes: number;
}

export interface ModeChoice {
  /** WebGPU: device memory the engine may use, in bytes (CLI --gpu-memory); null = no budget given. */
  gpuMemoryBytes?: number | null;
  /** CPU: host bytes the backend may hold for weights; default half the machine's memory (Node) or 2 GiB (browser). */
  hostMemoryBytes?: number | null;
  /** 'auto' (default): resident when it fits; 'resident' / 'streamed' force a mode. */
  mode?: 'auto' | MemoryMode;
}

const MIB = 2 ** 20;
/** The f32 copies the fast CPU kernels make of a small model cost less than the runtime itself: only beyond this do passes stream. */
const WIDENING_SLACK = 128 * MIB;

/**
 * Whether a backend makes its own copy of every block's weights, so a block's stored bytes are not needed
 * once it is prepared: the fast CPU kernels ('cpu') hold f32 arrays that onnxruntime reads, WebGPU uploads
 * them to GPU buffers. Model.open then hands it the blocks one at a time (Checkpoint.forEachBlock) and the
 * checkpoint keeps none of them; the reference kernels ('cpu-reference', which decode stored bytes inside
 * their loops) read the checkpoint's own bytes.
 */
export function copiesWeights(backend: string): boolean {
  return backend === 'cpu' || backend === 'webgpu';
}

/** Whether the backend's copy of a block is f32 (the fast CPU kernels), not as stored (WebGPU packs F16 / BF16 pairs). */
function widensWeights(backend: string): boolean {
  return backend === 'cpu';
}

/**
 * Bytes of the weights as the backend will hold them. WebGPU and the reference CPU kernels: as stored (F16 /
 * BF16 packed). The fast CPU kernels: each block as its f32 copies only (4 bytes a parameter: twice a
 * 2-byte checkpoint; copiesWeights), the ends as stored (the CPU embeds a token by decoding its row) plus
 * the head's f32 copy.
 */
export function heldWeightBytes(checkpoint: Checkpoint, backend: string): { blocks: number[]; ends: number } {
  if (!widensWeights(backend)) return { blocks: checkpoint.blockBytes, ends: checkpoint.endsBytes };
  const stored = checkpoint.endsBytes + checkpoint.blockBytes.reduce((a, b) => a + b, 0);
  // f32 bytes per stored byte: 2 for F16 / BF16, 1 for F32, in between for a mixed checkpoint (F32 norms);
  // 2 where the parameters are not counted (a checkpoint made in memory).
  const widen = stored > 0 && checkpoint.parameters > 0 ? (4 * checkpoint.parameters) / stored : 2;
  return { blocks: checkpoint.blockBytes.map((b) => b * widen), ends: checkpoint.endsBytes + checkpoint.weights.lmHead.bytes.byteLength * widen };
}

/** A working set for activations: 256 positions of every intermediate a block and the head write, in f32. */
export function workingSetBytes(checkpoint: Checkpoint): number {
  const s = checkpoint.spec;
  const perRow = 4 * s.hidden + 3 * s.heads * s.headDim + 2 * s.intermediate + Math.min(s.vocabSize, 65536);
  return 256 * perRow * 4;
}

async function defaultHostBudget(): Promise<number> {
  if (typeof process !== 'undefined' && process.versions?.node) {
    const { totalmem } = await import('node:os');
    return totalmem() / 2;
  }
  return 2 * 1024 * MIB;
}

/** The budget a backend runs under: the GPU budget on WebGPU (null = none given), host memory on the CPU. */
export async function memoryBudget(backend: string, choice: ModeChoice): Promise<number | null> {
  return backend === 'webgpu' ? (choice.gpuMemoryBytes ?? null) : (choice.hostMemoryBytes ?? (await defaultHostBudget()));
}

/** What running resident needs: the ends and the given blocks as the backend holds them, the working set, and a KV cache (f32 keys and values of those blocks). */
export interface ResidentNeed {
  bytes: number;
  weightBytes: number;
  cacheBytes: number;
  workingBytes: number;
}

/**
 * Bytes to run `blocks` resident (every block when omitted) with a KV cache of `cachePositions`: the load
 * rule (chooseMemoryMode, no cache) and decoding a pruned model of a streamed checkpoint (Model.decodeRun) both ask this.
 */
export function residentNeed(checkpoint: Checkpoint, backend: string, blocks: readonly number[] | null = null, cachePositions = 0): ResidentNeed {
  const held = heldWeightBytes(checkpoint, backend);
  const kept = blocks ?? held.blocks.map((_, i) => i);
  const weightBytes = held.ends + kept.reduce((a, i) => a + held.blocks[i], 0);
  const { kvHeads, headDim } = checkpoint.spec;
  const cacheBytes = kept.length * 2 * cachePositions * kvHeads * headDim * 4;
  const workingBytes = workingSetBytes(checkpoint);
  return { bytes: weightBytes + cacheBytes + workingBytes, weightBytes, cacheBytes, workingBytes };
}

export interface ModeDecision {
  mode: MemoryMode;
  reason: string;
  /** Whether every block would fit the budget resident (a streamed model may then load them all to decode). */
  residentFits: boolean;
}

export async function chooseMemoryMode(checkpoint: Checkpoint, backend: string, choice: ModeChoice): Promise<ModeDecision> {
  const need = residentNeed(checkpoint, backend).bytes;
  const budget = await memoryBudget(backend, choice);
  const residentFits = budget === null || need <= budget;
  if (choice.mode === 'resident' || choice.mode === 'streamed') return { mode: choice.mode, reason: `${choice.mode} mode was asked for`, residentFits };
  const mib = (b: number) => `${(b / MIB).toFixed(0)} MiB`;
  if (budget === null) return { mode: 'resident', reason: 'no memory budget given', residentFits };
  if (!residentFits) return { mode: 'streamed', reason: `the model needs about ${mib(need)} resident, more than the ${mib(budget)} budget`, residentFits };
  // The fast CPU kernels widen F16 / BF16 to f32 and keep only those copies of the blocks (heldWeightBytes):
  // resident, a 2-byte checkpoint of S stored bytes with a head of H holds 2 (S − E) + E + 2 H ≈ 2 S. Streamed,
  // a pass holds E + 2 H, one block's f32 copies and the next block read ahead: near the checkpoint's size.
  // Scoring and perplexity read each block once per pass anyway, so where the f32 copies would exceed
  // 1.2 S by more than WIDENING_SLACK (F16 / BF16 checkpoints beyond ~160 MiB) they stream; decoding loads
  // every block when it first needs them (it fits).
  const stored = checkpoint.endsBytes + checkpoint.blockBytes.reduce((a, b) => a + b, 0);
  if (widensWeights(backend) && need - (1.2 * stored + workingSetBytes(checkpoint)) > WIDENING_SLACK) {
    return {
      mode: 'streamed',
      reason: `the fast CPU kernels hold these ${checkpoint.dtypes.join('/')} weights as f32 (${mib(need)}, about twice the checkpoint): passes stream the blocks`,
      residentFits,
    };
  }
  return { mode: 'resident', reason: `the model needs about ${mib(need)}, within the ${mib(budget)} budget`, residentFits };
}

// ---- block-streamed WebGPU: what a pass holds, and batches of sequences that fit ----

/** A streamed head computes logits in groups of rows of at most this many bytes (rows are independent). */
export const STREAMED_LOGITS_BYTES = 16 * MIB;
/** Uniforms (256 bytes per dispatch of one block or head step, × 1.5 headroom), stats staging, the final norm: a bound for the small buffers. */
const STREAMED_SMALL_BYTES = 256 * 1024;

/** What one block's norms and biases grow by on the GPU (stored 2-byte, held f32): a bound from the block's widest vectors. */
function blockVectorBytes(spec: ModelSpec): number {
  const { hidden, intermediate, heads, kvHeads, headDim } = spec;
  return 4 * (8 * hidden + 2 * intermediate + 3 * heads * headDim + 2 * kvHeads * headDim) + 16 * 16;
}

const f32Bytes = (n: number) => Math.max(16, Math.ceil((n * 4) / 16) * 16);

/** One sequence's residual stream on the GPU: x (rows × hidden, f32) and its token ids. */
export function streamBytes(spec: ModelSpec, rows: number): number {
  return Math.max(16, rows * spec.hidden * 4) + Math.max(16, rows * 4);
}

/**
 * The activation buffers of one block (and of the embedding and the head) over `rows` tokens, as the
 * WebGPU workspace sizes them: kept between blocks, sized by the longest sequence.
 */
export function streamedWorkspaceBytes(spec: ModelSpec, rows: number): number {
  const { hidden, heads, kvHeads, headDim, intermediate, vocabSize } = spec;
  // xIn, xn, xn2, branch; q, attended, qRaw; k, v, kRaw; up, gate; per-token stats.
  const block =
    4 * f32Bytes(rows * hidden) + 3 * f32Bytes(rows * heads * headDim) + 3 * f32Bytes(rows * kvHeads * headDim) + 2 * f32Bytes(rows * intermediate) + f32Bytes(rows * 3);
  const groupRows = Math.max(1, Math.min(rows, Math.floor(STREAMED_LOGITS_BYTES / (vocabSize * 4))));
  // headIn, logits, per-token NLL, staging of one logits row; the embedding rows of one sequence (f32 at most) and their ids.
  const head = f32Bytes(groupRows * hidden) + f32Bytes(groupRows * vocabSize) + f32Bytes(rows) + f32Bytes(vocabSize + 4);
  const embed = f32Bytes(rows * hidden) + f32Bytes(rows);
  return block + head + embed;
}

/** Bytes of the f32 RoPE tables (2048 positions, or the model's maximum if smaller). */
function ropeTableBytes(spec: ModelSpec): number {
  return distinctRopes(spec).reduce((a, r) => a + Math.min(spec.maxPositions, 2048) * r.rotaryDim * 4, 0);
}

export interface StreamBatches {
  /** Sequence indices per batch, in order. */
  batches: number[][];
  /** For a notice: what the pass holds and why it batches. */
  reason: string;
}

/**
 * Sequences per batch for a block-streamed WebGPU pass under a budget. A pass holds, besides the
 * streams of its batch: two blocks (the one running and the next one uploading) or, when it needs
 * the head (perplexity), the lm head (the head step comes after the blocks are released), the workspace,
 * RoPE tables and small buffers. When not every stream fits beside them, the sequences go in batches
 * and every kept block is read once per batch. A pass that reads the residual states back (`withStates`:
 * the similarity heatmap, the logit lens) grows the staging buffer to one state of the longest sequence.
 */
export function planStreamBatches(checkpoint: Checkpoint, lengths: readonly number[], budgetBytes: number | null, withHead: boolean, withStates = false): StreamBatches {
  const all = lengths.map((_, s) => s);
  if (budgetBytes === null || lengths.length === 0) return { batches: [all], reason: 'no GPU memory budget given: every sequence in one batch' };
  const { spec } = checkpoint;
  const held = heldWeightBytes(checkpoint, 'webgpu');
  const twoBlocks = 2 * (Math.max(0, ...held.blocks) + blockVectorBytes(spec));
  const head = withHead ? checkpoint.weights.lmHead.bytes.byteLength : 0;
  const longest = Math.max(...lengths);
  const positions = checkpoint.weights.positions ? checkpoint.weights.positions.shape.reduce((a, b) => a * b, 4) : 0;
  // The workspace counts a staging buffer of one logits row; a state readback shares that buffer, grown to a state.
  const stateStaging = withStates ? Math.max(0, f32Bytes(longest * spec.hidden) - f32Bytes(spec.vocabSize + 4)) : 0;
  const fixed = Math.max(twoBlocks, head) + streamedWorkspaceBytes(spec, longest) + ropeTableBytes(spec) + positions + STREAMED_SMALL_BYTES + stateStaging;
  const mib = (b: number) => `${(b / MIB).toFixed(1)} MiB`;
  const room = budgetBytes - fixed;
  const need = lengths.map((n) => streamBytes(spec, n));
  const smallest = Math.max(...need);
  if (room < smallest) {
    throw new PruneLabError(
      `a block-streamed pass needs at least ${mib(fixed + smallest)} (${head > twoBlocks ? `the lm head: ${mib(head)}` : `two blocks: ${mib(twoBlocks)}`}, working set for ${longest} tokens and one residual stream) but the budget is ${mib(budgetBytes)}`,
      { field: 'gpu-memory' },
    );
  }
  const batches: number[][] = [];
  let used = Number.POSITIVE_INFINITY;
  for (const s of all) {
    if (used + need[s] > room) {
      batches.push([]);
      used = 0;
    }
    batches[batches.length - 1].push(s);
    used += need[s];
  }
  const reason =
    batches.length === 1
      ? `all ${lengths.length} residual streams fit beside ${mib(fixed)} of weights and working set`
      : `${lengths.length} residual streams do not fit beside ${mib(fixed)} of weights and working set in ${mib(budgetBytes)}: ${batches.length} batches, each reading every kept block again`;
  return { batches, reason };
}

// ---- the lab's default GPU budget ----

/** The lab's GPU budget when nothing better is known: WebGPU tells a page nothing about the GPU's memory. */
export const FALLBACK_GPU_BUDGET = 1024 * MIB;

/**
 * The lab's default GPU budget from what WebGPU exposes. maxBufferSize / maxStorageBufferBindingSize
 * cap one buffer, not the device's memory (an 8 GiB card and a 24 GiB card both report 2–4 GiB), so the
 * default is the stated 1 GiB fallback, lowered to maxBufferSize on an adapter whose single buffers are
 * smaller (a sign of a small device); a person with a larger GPU raises it.
 */
export function defaultGpuBudget(maxBufferSize: number | null): { bytes: number; why: string } {
  const fallback = 'WebGPU does not report how much memory the GPU has, so the default is a conservative 1 GiB; raise it if your GPU has more';
  if (maxBufferSize === null || !Number.isFinite(maxBufferSize)) return { bytes: FALLBACK_GPU_BUDGET, why: fallback };
  if (maxBufferSize >= FALLBACK_GPU_BUDGET) return { bytes: FALLBACK_GPU_BUDGET, why: fallback };
  const bytes = Math.max(64 * MIB, Math.floor(maxBufferSize / MIB) * MIB);
  return {
    bytes,
    why: `WebGPU does not report how much memory the GPU has; this adapter's largest buffer is ${(maxBufferSize / MIB).toFixed(0)} MiB, so the default is that, below the 1 GiB fallback`,
  };
}
