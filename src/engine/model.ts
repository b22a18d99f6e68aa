/**
 * Model = checkpoint (spec + weights) + backend + tokenizer. Everything the analysis layer, the worker and
 * the CLI need: score (block statistics), perplexity, next-token logits, generate with a KV cache.
 */
import type { Backend, BlockStatSums, BlockStreaming, ForwardRequest, ForwardResult, ResidualStream } from './backend.ts';
import type { BlockWeights } from './weights.ts';
import { type Checkpoint, type LoadOptions, loadCheckpoint } from './checkpoint.ts';
import type { CpuKernels } from './cpu/kernels.ts';
import { PruneLabError } from './errors.ts';
import { assertFiniteWeights } from './finite.ts';
import {
  type MemoryMode,
  type MemoryReport,
  type ModeChoice,
  type ModeDecision,
  chooseMemoryMode,
  copiesWeights,
  memoryBudget,
  planStreamBatches,
  residentNeed,
} from './memory.ts';
import { checkPrompt } from './limits.ts';
import { type Plan, withCapture } from './plan.ts';
import { drawPick, pickToken, type SamplingOptions, seededRandom } from './sampling.ts';
import type { ModelSource } from './sources.ts';
import { createTokenizer, type TextTokenizer } from './tokenizer.ts';
import type { WebGpuBackendOptions } from './webgpu/backend.ts';

/** 'cpu': the CPU forward on the fast kernels (onnxruntime); 'cpu-reference': the same forward on the TypeScript oracle. */
export type BackendKind = 'cpu' | 'cpu-reference' | 'webgpu';
export const BACKEND_KINDS: readonly BackendKind[] = ['cpu', 'cpu-reference', 'webgpu'];

/** What a caller may choose about the WebGPU backend: the CLI's --gpu-f16; a device to share (tests). */
export type WebGpuChoice = Pick<WebGpuBackendOptions, 'f16Math' | 'context'>;

/**
 * A backend for the checkpoint's weights: every block when they are in `weights.blocks`; none otherwise, and
 * then `handOver` says the model is resident and its blocks will be handed over by streaming.loadBlock and
 * kept (Model.open) rather than streamed (on the CPU the two are the same; WebGPU then uploads the ends whole).
 */
export async function createBackend(kind: BackendKind, checkpoint: Checkpoint, webgpu: WebGpuChoice = {}, handOver = false): Promise<Backend> {
  const { spec, weights } = checkpoint;
  if (kind === 'webgpu') {
    const { createWebGpuBackend } = await import('./webgpu/backend.ts');
    return createWebGpuBackend(spec, weights, { ...webgpu, blocksHandedOver: handOver });
  }
  const { createCpuBackend } = await import('./cpu/backend.ts');
  if (kind === 'cpu-reference') return createCpuBackend(spec, weights);
  const { loadFastKernels, FastKernelsUnavailable } = await import('./cpu/fast.ts');
  let reason: string;
  try {
    const kernels = await loadFastKernels();
    const backend = await createCpuBackend(spec, weights, kernels);
    try {
      await kernels.ready();
      return backend;
    } catch (e) {
      backend.dispose();
      reason = `onnxruntime could not create its sessions (${(e as Error).message.split('\n')[0]})`;
    }
  } catch (e) {
    if (!(e instanceof FastKernelsUnavailable)) throw e;
    reason = e.message;
  }
  // The runtime is missing or broken here: the oracle still gives the right numbers, slowly, and says why.
  const { referenceKernels } = await import('./cpu/kernels.ts');
  // The reference set with a description that says why (every other member inherited as is).
  const fallback: CpuKernels = Object.create(referenceKernels(), { description: { value: `TypeScript reference; fast kernels unavailable: ${reason}` } });
  return createCpuBackend(spec, weights, fallback);
}

/** Adds one sequence's block sums into running totals (matched by block index). */
export function accumulateStats(total: Map<number, BlockStatSums>, batch: readonly BlockStatSums[]): void {
  for (const s of batch) {
    const t = total.get(s.index);
    if (!t) total.set(s.index, { ...s });
    else {
      t.cosSum += s.cosSum;
      t.angularSum += s.angularSum;
      t.relMagnitudeSum += s.relMagnitudeSum;
      t.tokens += s.tokens;
    }
  }
}

export interface RunOptions {
  signal?: AbortSignal;
  /** Called after each sequence with the running totals. */
  onProgress?: (done: number, total: number, doneTokens: number) => void;
}

export interface NllResult {
  nllSum: number;
  tokens: number;
  nll: number;
  ppl: number;
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  stopAtEos?: boolean;
  signal?: AbortSignal;
  onToken?: (id: number, logits: Float32Array) => void;
  /** A plan whose blocks do not fit the budget runs one block-streamed pass per token instead of being refused (slow: see decodeRun). */
  allowStreamed?: boolean;
  /** Told how this generation runs, before the first token. */
  onRun?: (run: DecodeRun) => void;
}

/**
 * How next-token work on a plan runs (Model.decodeRun): 'resident' (the model holds every block),
 * 'kept-blocks-resident' (a block-streamed model loads only the plan's blocks, which fit the budget with
 * the ends, a KV cache and the working set) or 'streamed' (one block-streamed pass per token, asked for).
 */
export type DecodeMode = 'resident' | 'kept-blocks-resident' | 'streamed';

export interface DecodeRun {
  mode: DecodeMode;
  /** Bytes to run the plan's blocks resident and to run every block, each with a KV cache for the positions (memory.ts residentNeed). */
  needBytes: number;
  fullNeedBytes: number;
  /** The budget they are held against; null = none given. */
  budgetBytes: number | null;
  /** Weight bytes (as stored) one streamed token reads: the plan's blocks, once per token. */
  bytesPerToken: number;
  /** Time per streamed token at the last streamed pass's read rate; null before any streamed pass. */
  msPerTokenEstimate: number | null;
  /** One sentence: what fits or not, and the cost. */
  reason: string;
}

/** Next-token work on a plan that does not fit the budget, not asked to stream (or unable to); `run` says what it needs. */
export class StreamedRunRefused extends PruneLabError {
  constructor(
    what: string,
    readonly run: DecodeRun,
    canStream: boolean,
  ) {
    super(`${what} ${run.reason}; ${canStream ? 'it streams only when asked to, else ' : ''}remove more blocks or raise the budget`, { field: 'gpu-memory' });
  }
}

/** One holder at a time, in call order; a waiter whose signal aborts leaves the line (those behind it still wait for the holder). */
class Turns {
  private tail: Promise<void> = Promise.resolve();
  async take(signal?: AbortSignal): Promise<() => void> {
    checkAborted(signal);
    const before = this.tail;
    let release = () => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.tail = Promise.all([before, mine]).then(() => undefined);
    try {
      await new Promise<void>((resolve, reject) => {
        const abort = () => reject(new DOMException('cancelled', 'AbortError'));
        signal?.addEventListener('abort', abort, { once: true });
        void before.then(() => {
          signal?.removeEventListener('abort', abort);
          resolve();
        });
      });
    } catch (e) {
      release();
      throw e;
    }
    return release;
  }
}

const MIB = 2 ** 20;
const mib = (bytes: number) => `${(bytes / MIB).toFixed(bytes < 10 * MIB ? 1 : 0)} MiB`;

function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new DOMException('cancelled', 'AbortError');
}

export interface ModelLoadOptions extends Omit<LoadOptions, 'blocks'>, ModeChoice {
  /** Told the mode and why (e.g. for a stderr note or the status bar). */
  onMode?: (mode: MemoryMode, reason: string) => void;
  /** Told per block while a streamed pass runs: block k of n (blocks × batches), bytes read, time. */
  onBlock?: BlockProgressHook;
  /** WebGPU backend choices (ignored by the CPU backends). */
  webgpu?: WebGpuChoice;
}

/** Where a streamed pass is, after each block: for "block 17 / 32 · 1.2 GB read · 40 s left". */
export interface BlockProgress {
  /** Stored bytes of the blocks read so far in this pass. */
  bytesRead: number;
  /** Milliseconds since the pass began. */
  elapsedMs: number;
  /** Batch of sequences (0-based) and how many: every kept block is read once per batch. */
  batch: number;
  batches: number;
}
export type BlockProgressHook = (done: number, total: number, progress: BlockProgress) => void;

/**
 * Told one residual state of one sequence (Model.forEachState): state 0 is x_0 (the embedding), state j the
 * output of the plan's j-th active block; tokens × hidden, f32, the visitor's to keep.
 */
export type StateVisitor = (sequence: number, state: number, x: Float32Array) => void | Promise<void>;

export class Model {
  readonly tokenizer: TextTokenizer | null;
  /** Called per block in streamed passes (progress). */
  onBlock: BlockProgressHook | null = null;
  /** The GPU budget a streamed pass batches its sequences under (WebGPU); null = none given. */
  gpuBudgetBytes: number | null = null;
  /** The host budget on the CPU backends; null = memory.ts's default. */
  hostBudgetBytes: number | null = null;
  /** How the backend holds weights (memory.ts heldWeightBytes): load() knows it; 'cpu' (the fast kernels, f32) is the conservative default. */
  backendKind: BackendKind;
  // Mutated in place, never reassigned: per-job views (Object.create(model), the lab's worker) share them.
  /** Blocks a streamed model holds loaded to decode a plan whose blocks fit the budget. */
  private readonly held = new Set<number>();
  /** Streamed passes and decoding over held blocks take turns: they use the same block slots of the backend. */
  private readonly turns = new Turns();
  /** Bytes read and time of the last streamed pass: the rate behind a streamed token's time estimate. */
  private readonly lastPass = { bytes: 0, ms: 0 };
  constructor(
    readonly checkpoint: Checkpoint,
    readonly backend: Backend,
    /** 'resident': every block on the backend; 'streamed': blocks read, run over all sequences and released one at a time. */
    private modeNow: MemoryMode = 'resident',
    /** A streamed model whose blocks would fit resident loads them all when decoding first needs them. */
    private readonly residentFits = false,
  ) {
    this.tokenizer = checkpoint.tokenizer ? createTokenizer(checkpoint.tokenizer) : null;
    this.backendKind = backend.info.kind;
  }

  /**
   * Reads the headers and the ends first, then decides: every block resident when the weights fit the
   * budget (memory.ts), else block-streamed (blocks are read when a pass reaches them).
   */
  static async load(source: ModelSource, backend: BackendKind = 'cpu', options: ModelLoadOptions = {}): Promise<Model> {
    const checkpoint = await loadCheckpoint(source, { ...options, blocks: 'on-demand' });
    const choice = await chooseMemoryMode(checkpoint, backend, options);
    options.onMode?.(choice.mode, choice.reason);
    const model = await Model.open(checkpoint, backend, choice, options);
    model.onBlock = options.onBlock ?? null;
    model.gpuBudgetBytes = options.gpuMemoryBytes ?? null;
    model.hostBudgetBytes = options.hostMemoryBytes ?? null;
    return model;
  }

  /**
   * A model on a new `kind` backend for a checkpoint whose blocks are not read yet, in the mode `choice`
   * gives (memory.ts chooseMemoryMode). Streamed: the backend holds the ends. Resident on a backend that
   * copies the weights (memory.ts copiesWeights: the fast CPU kernels, WebGPU): each block is read, handed
   * over and dropped, the next one read ahead (Checkpoint.forEachBlock), so the checkpoint keeps none of
   * their stored bytes (export, pruning and healing read them again: makeResident); `onBlockLoaded` is told
   * each one. Resident on the reference kernels: every block is read and kept first.
   */
  static async open(
    checkpoint: Checkpoint,
    kind: BackendKind,
    choice: Pick<ModeDecision, 'mode' | 'reason' | 'residentFits'>,
    options: { signal?: AbortSignal; webgpu?: WebGpuChoice; onBlockLoaded?: (index: number, block: BlockWeights) => void } = {},
  ): Promise<Model> {
    const { mode, reason, residentFits } = choice;
    const handOver = mode === 'resident' && copiesWeights(kind) && !checkpoint.resident;
    if (mode === 'resident' && !handOver) await checkpoint.makeResident(options.signal);
    assertFiniteWeights(checkpoint.weights);
    const model = new Model(checkpoint, await createBackend(kind, checkpoint, options.webgpu, handOver), mode, residentFits);
    model.backendKind = kind;
    if ((mode === 'streamed' || handOver) && !model.backend.streaming) {
      model.dispose();
      throw new PruneLabError(`${reason}, and the ${kind} backend cannot stream blocks`, { field: 'gpu-memory' });
    }
    if (handOver) {
      try {
        await model.loadEveryBlock(options.signal, options.onBlockLoaded);
      } catch (e) {
        model.dispose();
        throw e;
      }
    }
    return model;
  }

  /** What the `memory` object of every --json output reports. */
  memoryReport(): MemoryReport {
    const weightBytes = this.checkpoint.endsBytes + this.checkpoint.blockBytes.reduce((a, b) => a + b, 0);
    return { mode: this.mode, gpuPeakBytes: this.backend.memory?.peakBytes ?? 0, weightBytes };
  }

  /**
   * Block-major pass (streamed mode): the residual streams of a batch of sequences stay on the backend;
   * each block of the plan is read (the next one prefetched while this one runs; on WebGPU also uploaded),
   * run over the batch's streams and released; removed blocks are never read. When the GPU budget
   * cannot hold every stream beside two blocks (memory.ts planStreamBatches), sequences go in batches
   * and every kept block is read once per batch. Returns per-sequence block sums and, when asked, Σ NLL
   * per sequence; `want.states` is told each stream's state after embed and after each block.
   */
  private async streamedPass(
    sequences: readonly (readonly number[])[],
    plan: Plan,
    want: { stats: boolean; nll: boolean; states?: StateVisitor; lastLogits?: boolean },
    options: RunOptions,
  ) {
    const streaming = this.backend.streaming;
    if (!streaming) throw new PruneLabError('this backend cannot stream blocks');
    const gpu = this.backend.info.kind === 'webgpu';
    const { batches } = gpu
      ? planStreamBatches(
          this.checkpoint,
          sequences.map((s) => s.length),
          this.gpuBudgetBytes,
          want.nll || want.lastLogits === true,
          want.states !== undefined,
        )
      : { batches: [sequences.map((_, s) => s)] };
    const perSequence: BlockStatSums[][] = sequences.map(() => []);
    const nll: { nllSum: number; nllCount: number }[] = sequences.map(() => ({ nllSum: 0, nllCount: 0 }));
    const lastLogits: (Float32Array | null)[] = sequences.map(() => null);
    const runPlan = withCapture(plan, want.stats ? 'stats' : 'none');
    const blocks = plan.blocks;
    const n = blocks.length;
    const total = n * batches.length;
    const started = performance.now();
    let bytesRead = 0;
    let done = 0;
    const loaded = new Set<number>();
    // Step k is block blocks[k % n] of batch ⌊k / n⌋; a read that is abandoned (cancel, error) must not surface as unhandled.
    const readStep = (k: number): Promise<BlockWeights> | null => {
      if (k >= total) return null;
      const read = this.checkpoint.loadBlock(blocks[k % n], options.signal);
      read.catch(() => undefined);
      return read;
    };
    const upload = async (k: number, read: Promise<BlockWeights> | null) => {
      const i = blocks[k % n];
      const weights = await (read as Promise<BlockWeights>);
      assertFiniteWeights({ ...this.checkpoint.weights, blocks: [weights] });
      await streaming.loadBlock(i, weights);
      loaded.add(i);
      bytesRead += this.checkpoint.blockBytes[i];
    };
    // Held blocks (a pruned model decoding) and a pass share the backend's block slots: the pass waits its turn and frees them.
    const endTurn = await this.takeSlots(options.signal);
    let streams: ResidualStream[] = [];
    let uploading: Promise<void> | null = null;
    let read = readStep(0);
    try {
      for (const [b, batch] of batches.entries()) {
        checkAborted(options.signal);
        for (const s of batch) {
          const stream = await streaming.embed(sequences[s]);
          streams.push(stream);
          await want.states?.(s, 0, await streaming.readState(stream));
        }
        if (n > 0) {
          uploading = upload(b * n, read);
          read = readStep(b * n + 1);
        }
        for (const [j, i] of blocks.entries()) {
          const k = b * n + j;
          checkAborted(options.signal);
          await uploading;
          uploading = null;
          const running = (async () => {
            for (const [t, stream] of streams.entries()) {
              const stats = await streaming.runBlock(stream, i, runPlan);
              if (stats) perSequence[batch[t]].push(stats);
              await want.states?.(batch[t], j + 1, await streaming.readState(stream));
            }
          })();
          // On the GPU the next block of the batch uploads while this one runs: two blocks held, as budgeted.
          if (j + 1 < n && gpu) {
            uploading = upload(k + 1, read);
            uploading.catch(() => undefined);
            read = readStep(k + 2);
          }
          await running;
          streaming.releaseBlock(i);
          loaded.delete(i);
          if (j + 1 < n && !gpu) {
            uploading = upload(k + 1, read);
            read = readStep(k + 2);
          }
          done++;
          this.onBlock?.(done, total, { bytesRead, elapsedMs: performance.now() - started, batch: b, batches: batches.length });
        }
        if (want.nll || want.lastLogits) {
          for (const [t, stream] of streams.entries()) {
            const head = await streaming.head(stream, { nll: want.nll, lastLogits: want.lastLogits === true });
            nll[batch[t]] = { nllSum: head.nllSum, nllCount: head.nllCount };
            lastLogits[batch[t]] = head.lastLogits;
          }
        }
        for (const stream of streams) stream.dispose();
        streams = [];
      }
    } finally {
      await uploading?.catch(() => undefined);
      for (const stream of streams) stream.dispose();
      for (const i of loaded) streaming.releaseBlock(i);
      endTurn();
    }
    // The read rate, for the time a streamed token will take (decodeRun).
    if (bytesRead > 0) Object.assign(this.lastPass, { bytes: bytesRead, ms: performance.now() - started });
    return { perSequence, nll, lastLogits };
  }

  get spec() {
    return this.checkpoint.spec;
  }

  requireTokenizer(): TextTokenizer {
    if (!this.tokenizer) throw new PruneLabError(`no tokenizer.json in ${this.checkpoint.label}; pass token ids instead`, { file: 'tokenizer.json' });
    return this.tokenizer;
  }

  /** Per-block statistic sums over all sequences, for the plan's active blocks (ordered by the plan). */
  async score(sequences: readonly (readonly number[])[], plan: Plan, options: RunOptions = {}): Promise<BlockStatSums[]> {
    return (await this.scoreSequences(sequences, plan, options)).total;
  }

  /**
   * The totals of score() and each sequence's own sums (same order), which the bootstrap of
   * analysis/uncertainty.ts resamples: a few numbers per block per sequence.
   */
  async scoreSequences(sequences: readonly (readonly number[])[], plan: Plan, options: RunOptions = {}): Promise<{ total: BlockStatSums[]; perSequence: BlockStatSums[][] }> {
    if (this.mode === 'streamed') {
      const { perSequence } = await this.streamedPass(sequences, plan, { stats: true, nll: false }, options);
      const total = new Map<number, BlockStatSums>();
      for (const own of perSequence) accumulateStats(total, own);
      options.onProgress?.(
        sequences.length,
        sequences.length,
        sequences.reduce((a, s) => a + s.length, 0),
      );
      return { total: plan.blocks.map((i) => total.get(i) as BlockStatSums), perSequence };
    }
    const total = new Map<number, BlockStatSums>();
    const perSequence: BlockStatSums[][] = [];
    const statsPlan = withCapture(plan, 'stats');
    let tokens = 0;
    for (let s = 0; s < sequences.length; s++) {
      checkAborted(options.signal);
      const result = await this.backend.forward({ ids: sequences[s], plan: statsPlan, logits: 'none' });
      const own = new Map<number, BlockStatSums>();
      accumulateStats(own, result.stats ?? []);
      perSequence.push(plan.blocks.map((i) => own.get(i) as BlockStatSums));
      accumulateStats(total, result.stats ?? []);
      tokens += sequences[s].length;
      options.onProgress?.(s + 1, sequences.length, tokens);
    }
    return { total: plan.blocks.map((i) => total.get(i) as BlockStatSums), perSequence };
  }

  /** exp(mean NLL of predicting token t+1 from tokens ≤ t), all sequences pooled. */
  async perplexity(sequences: readonly (readonly number[])[], plan: Plan, options: RunOptions = {}): Promise<NllResult> {
    let nllSum = 0;
    let tokens = 0;
    if (this.mode === 'streamed') {
      for (const r of (await this.streamedPass(sequences, plan, { stats: false, nll: true }, options)).nll) {
        nllSum += r.nllSum;
        tokens += r.nllCount;
      }
      options.onProgress?.(sequences.length, sequences.length, tokens);
    }
    for (let s = 0; this.mode === 'resident' && s < sequences.length; s++) {
      checkAborted(options.signal);
      const result = await this.backend.forward({ ids: sequences[s], plan: withCapture(plan, 'none'), logits: 'none', nll: true });
      nllSum += result.nllSum;
      tokens += result.nllCount;
      options.onProgress?.(s + 1, sequences.length, tokens);
    }
    if (tokens === 0) throw new PruneLabError('perplexity needs at least one sequence of two or more tokens', { field: 'ids' });
    return { nllSum, tokens, nll: nllSum / tokens, ppl: Math.exp(nllSum / tokens) };
  }

  /**
   * Visits every residual state of the plan for each sequence, in either mode: x_0, then the output of each
   * active block, as `visit(sequence, state, x)`; for each sequence the states come in order 0 … A (A = active
   * blocks). Resident: one forward per sequence with capture 'states'. Streamed: the block-major pass reads
   * each stream's state back after embed and after each block (per-block progress as for scoring), so the
   * visits are block-major — state j of every sequence of a batch before state j + 1 — and a visitor that
   * pairs states keeps the earlier ones itself: at most (A + 1) × tokens × hidden × 4 bytes of host memory
   * for the sequences of one batch (on the CPU every sequence is one batch), where resident mode holds it
   * for one sequence at a time.
   */
  async forEachState(sequences: readonly (readonly number[])[], plan: Plan, visit: StateVisitor, options: RunOptions = {}): Promise<void> {
    if (sequences.length === 0) return;
    if (this.mode === 'streamed') {
      await this.streamedPass(sequences, plan, { stats: false, nll: false, states: visit }, options);
      options.onProgress?.(
        sequences.length,
        sequences.length,
        sequences.reduce((a, s) => a + s.length, 0),
      );
      return;
    }
    const statesPlan = withCapture(plan, 'states');
    let tokens = 0;
    for (let s = 0; s < sequences.length; s++) {
      checkAborted(options.signal);
      const { states } = await this.backend.forward({ ids: sequences[s], plan: statesPlan, logits: 'none' });
      for (const [j, x] of (states as Float32Array[]).entries()) await visit(s, j, x);
      tokens += sequences[s].length;
      options.onProgress?.(s + 1, sequences.length, tokens);
    }
  }

  /**
   * A whole forward (states, all logits) over the plan's blocks: a streamed model loads them when they fit
   * the budget (decodeRun), else says why not.
   */
  async forward(request: ForwardRequest): Promise<ForwardResult> {
    const { done } = await this.prepareDecode('this analysis (a whole forward per sequence)', request.plan, request.ids.length, { canStream: false });
    try {
      return await this.backend.forward(request);
    } finally {
      done();
    }
  }

  /** The last position's logits; on a plan that does not fit, one block-streamed pass when `allowStreamed`. */
  async lastLogits(ids: readonly number[], plan: Plan, options: { allowStreamed?: boolean; signal?: AbortSignal } = {}): Promise<Float32Array> {
    const { run, done } = await this.prepareDecode('next-token logits', plan, ids.length, options);
    try {
      if (run.mode === 'streamed')
        return (await this.streamedPass([ids], plan, { stats: false, nll: false, lastLogits: true }, { signal: options.signal })).lastLogits[0] as Float32Array;
      const result = await this.backend.forward({ ids, plan: withCapture(plan, 'none'), logits: 'last' });
      return result.logits as Float32Array;
    } finally {
      done();
    }
  }

  /**
   * How next-token work on `plan` with `positions` of context runs, from memory.ts's arithmetic: resident when
   * the model is; for a block-streamed model, its kept blocks loaded when they fit the budget with the ends,
   * a KV cache and the working set; else one block-streamed pass per token, re-reading the kept blocks.
   */
  async decodeRun(plan: Plan, positions: number): Promise<DecodeRun> {
    const kind = this.backendKind;
    const need = residentNeed(this.checkpoint, kind, plan.blocks, positions);
    const full = residentNeed(this.checkpoint, kind, null, positions);
    const budgetBytes = await memoryBudget(kind, { gpuMemoryBytes: this.gpuBudgetBytes, hostMemoryBytes: this.hostBudgetBytes });
    const bytesPerToken = plan.blocks.reduce((a, i) => a + this.checkpoint.blockBytes[i], 0);
    const msPerTokenEstimate = this.lastPass.bytes > 0 ? (bytesPerToken * this.lastPass.ms) / this.lastPass.bytes : null;
    const base = { needBytes: need.bytes, fullNeedBytes: full.bytes, budgetBytes, bytesPerToken, msPerTokenEstimate };
    const { layers } = this.spec;
    const kept = plan.blocks.length;
    const subject = kept < layers ? `the pruned model (${kept} of ${layers} blocks)` : 'the model';
    const cache = `a KV cache for ${positions} positions`;
    // The CPU path below (prepareDecode) makes a streamed model whose every block fits resident as a whole.
    if (this.modeNow === 'resident' || (this.residentFits && this.backend.info.kind === 'cpu' && this.backend.streaming)) {
      return { ...base, mode: 'resident', reason: 'runs resident: every block is held' };
    }
    const budget = budgetBytes === null ? 'no budget' : `the ${mib(budgetBytes)} budget`;
    if (budgetBytes === null || need.bytes <= budgetBytes) {
      return {
        ...base,
        mode: 'kept-blocks-resident',
        reason: `${subject} needs about ${mib(need.bytes)} resident with ${cache}, within ${budget}${kept < layers ? ` (all ${layers} blocks would need ${mib(full.bytes)})` : ''}: only its blocks are loaded`,
      };
    }
    const time = msPerTokenEstimate === null ? '' : ` (about ${(msPerTokenEstimate / 1000).toFixed(msPerTokenEstimate < 10_000 ? 1 : 0)} s per token at the last pass's read rate)`;
    return {
      ...base,
      mode: 'streamed',
      reason: `needs about ${mib(need.bytes)} to run ${subject} resident (weights, ${cache}, working set), more than ${budget}: each token is a block-streamed pass that re-reads ${mib(bytesPerToken)} of weights${time}`,
    };
  }

  /**
   * Autoregressive generation with a KV cache; returns the new token ids. A streamed model decodes with only
   * the plan's blocks loaded when they fit (decodeRun), else, when `allowStreamed`, one streamed pass per token.
   */
  async generate(promptIds: readonly number[], plan: Plan, options: GenerateOptions): Promise<number[]> {
    const promptProblem = checkPrompt(promptIds.length, options.maxNewTokens, this.spec);
    if (promptProblem?.level === 'error') throw new PruneLabError(promptProblem.message, { field: 'prompt' });
    const runPlan = withCapture(plan, 'none');
    const capacity = Math.min(promptIds.length + options.maxNewTokens, this.spec.maxPositions);
    const { run, done } = await this.prepareDecode('generation', plan, capacity, options);
    options.onRun?.(run);
    if (run.mode === 'streamed') return this.generateStreamed(promptIds, plan, capacity, options);
    const cache = this.backend.createCache(capacity, runPlan);
    const random = seededRandom(options.seed ?? 0);
    const out: number[] = [];
    try {
      let input: readonly number[] = promptIds;
      // With no per-token logits callback the backend picks where the logits are (WebGPU: argmax or the sampling
      // kernel on the device, one id read back per step); with one, the row comes back and is picked here. Either
      // way the step's uniform draw is made here, so the random stream is sampleToken's.
      const backendPicks = !options.onToken;
      while (out.length < options.maxNewTokens && cache.length + input.length <= capacity) {
        checkAborted(options.signal);
        const pick = drawPick(options, random);
        const result = await this.backend.forward({ ids: input, plan: runPlan, logits: backendPicks ? 'none' : 'last', cache, ...(backendPicks ? { pick } : {}) });
        const row = result.logits as Float32Array;
        const next = result.picked ?? pickToken(row, pick);
        out.push(next);
        options.onToken?.(next, row);
        if (options.stopAtEos && this.spec.eosTokenIds.includes(next)) break;
        input = [next];
      }
    } finally {
      cache.dispose();
      done();
    }
    return out;
  }

  /**
   * Streamed decoding (asked for): each token is one block-streamed pass over the sequence so far, its last
   * logits from the head; the same draws as generate's loop, so greedy and seeded sampling pick the same tokens.
   */
  private async generateStreamed(promptIds: readonly number[], plan: Plan, capacity: number, options: GenerateOptions): Promise<number[]> {
    const random = seededRandom(options.seed ?? 0);
    const ids = [...promptIds];
    const out: number[] = [];
    while (out.length < options.maxNewTokens && ids.length <= capacity) {
      checkAborted(options.signal);
      const pick = drawPick(options, random);
      const { lastLogits } = await this.streamedPass([ids], plan, { stats: false, nll: false, lastLogits: true }, { signal: options.signal });
      const row = lastLogits[0] as Float32Array;
      const next = pickToken(row, pick);
      out.push(next);
      ids.push(next);
      options.onToken?.(next, row);
      if (options.stopAtEos && this.spec.eosTokenIds.includes(next)) break;
    }
    return out;
  }

  /** 'resident': every block on the backend; 'streamed': blocks read, run over all sequences and released one at a time. */
  get mode(): MemoryMode {
    return this.modeNow;
  }

  /**
   * Readies next-token work on `plan` (decodeRun): a resident model as it is; a streamed CPU model whose every
   * block fits becomes resident; a plan whose blocks fit is loaded (others released) and holds the block slots
   * until `done`; a plan that must stream is refused unless `allowStreamed` (then nothing is held).
   */
  private async prepareDecode(
    what: string,
    plan: Plan,
    positions: number,
    options: { allowStreamed?: boolean; canStream?: boolean; signal?: AbortSignal },
  ): Promise<{ run: DecodeRun; done: () => void }> {
    const run = await this.decodeRun(plan, positions);
    const nothing = () => {};
    if (this.modeNow === 'resident') return { run, done: nothing };
    const streaming = this.backend.streaming as BlockStreaming;
    // On the CPU the streamed blocks and forward share one table: loading them all makes the model resident.
    if (run.mode === 'resident') {
      await this.loadEveryBlock(options.signal);
      return { run, done: nothing };
    }
    if (run.mode === 'streamed') {
      if (!options.allowStreamed) throw new StreamedRunRefused(what, run, options.canStream ?? true);
      return { run, done: nothing };
    }
    const done = await this.turns.take(options.signal);
    try {
      const wanted = new Set(plan.blocks);
      for (const i of [...this.held]) {
        if (wanted.has(i)) continue;
        streaming.releaseBlock(i);
        this.held.delete(i);
      }
      for (const i of plan.blocks) {
        if (this.held.has(i)) continue;
        const weights = await this.checkpoint.loadBlock(i, options.signal);
        assertFiniteWeights({ ...this.checkpoint.weights, blocks: [weights] });
        await streaming.loadBlock(i, weights);
        this.held.add(i);
      }
    } catch (e) {
      done();
      throw e;
    }
    return { run, done };
  }

  /**
   * Every block onto the backend, read one at a time (Checkpoint.forEachBlock: the checkpoint keeps none, the
   * backend holds what it made of them): the model is then resident.
   */
  private async loadEveryBlock(signal?: AbortSignal, onBlockLoaded?: (index: number, block: BlockWeights) => void): Promise<void> {
    const streaming = this.backend.streaming as BlockStreaming;
    await this.checkpoint.forEachBlock(async (i, block) => {
      assertFiniteWeights({ ...this.checkpoint.weights, blocks: [block] });
      await streaming.loadBlock(i, block);
      onBlockLoaded?.(i, block);
    }, signal);
    this.modeNow = 'resident';
  }

  /** A streamed pass's turn at the block slots: after any decoding over held blocks, which it then releases. */
  private async takeSlots(signal?: AbortSignal): Promise<() => void> {
    const done = await this.turns.take(signal);
    const streaming = this.backend.streaming;
    for (const i of this.held) streaming?.releaseBlock(i);
    this.held.clear();
    return done;
  }

  dispose(): void {
    this.backend.dispose();
  }
}
