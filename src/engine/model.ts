/**
 * Model = checkpoint (spec + weights) + backend + tokenizer. Everything the analysis layer, the worker and
 * the CLI need: score (block statistics), perplexity, next-token logits, generate with a KV cache.
 */
import type { Backend, BlockStatSums, ForwardRequest, ForwardResult, ResidualStream } from './backend.ts';
import type { BlockWeights } from './weights.ts';
import { type Checkpoint, type LoadOptions, loadCheckpoint } from './checkpoint.ts';
import type { CpuKernels } from './cpu/kernels.ts';
import { PruneLabError } from './errors.ts';
import { assertFiniteWeights } from './finite.ts';
import { type MemoryMode, type MemoryReport, type ModeChoice, chooseMemoryMode, planStreamBatches } from './memory.ts';
import { checkPrompt } from './limits.ts';
import { type Plan, withCapture } from './plan.ts';
import { type SamplingOptions, sampleToken, seededRandom } from './sampling.ts';
import type { ModelSource } from './sources.ts';
import { createTokenizer, type TextTokenizer } from './tokenizer.ts';

/** 'cpu': the CPU forward on the fast kernels (onnxruntime); 'cpu-reference': the same forward on the TypeScript oracle. */
export type BackendKind = 'cpu' | 'cpu-reference' | 'webgpu';
export const BACKEND_KINDS: readonly BackendKind[] = ['cpu', 'cpu-reference', 'webgpu'];

export async function createBackend(kind: BackendKind, checkpoint: Checkpoint): Promise<Backend> {
  const { spec, weights } = checkpoint;
  if (kind === 'webgpu') {
    const { createWebGpuBackend } = await import('./webgpu/backend.ts');
    return createWebGpuBackend(spec, weights);
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
}

function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new DOMException('cancelled', 'AbortError');
}

export interface ModelLoadOptions extends Omit<LoadOptions, 'blocks'>, ModeChoice {
  /** Told the mode and why (e.g. for a stderr note or the status bar). */
  onMode?: (mode: MemoryMode, reason: string) => void;
  /** Told per block while a streamed pass runs: block k of n (blocks × batches), bytes read, time. */
  onBlock?: BlockProgressHook;
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
  constructor(
    readonly checkpoint: Checkpoint,
    readonly backend: Backend,
    /** 'resident': every block on the backend; 'streamed': blocks read, run over all sequences and released one at a time. */
    private modeNow: MemoryMode = 'resident',
    /** A streamed model whose blocks would fit resident loads them all when decoding first needs them. */
    private readonly residentFits = false,
  ) {
    this.tokenizer = checkpoint.tokenizer ? createTokenizer(checkpoint.tokenizer) : null;
  }

  /**
   * Reads the headers and the ends first, then decides: every block resident when the weights fit the
   * budget (memory.ts), else block-streamed (blocks are read when a pass reaches them).
   */
  static async load(source: ModelSource, backend: BackendKind = 'cpu', options: ModelLoadOptions = {}): Promise<Model> {
    const checkpoint = await loadCheckpoint(source, { ...options, blocks: 'on-demand' });
    const { mode, reason, residentFits } = await chooseMemoryMode(checkpoint, backend, options);
    options.onMode?.(mode, reason);
    if (mode === 'resident') await checkpoint.makeResident(options.signal);
    assertFiniteWeights(checkpoint.weights);
    const model = new Model(checkpoint, await createBackend(backend, checkpoint), mode, residentFits);
    model.onBlock = options.onBlock ?? null;
    model.gpuBudgetBytes = options.gpuMemoryBytes ?? null;
    if (mode === 'streamed' && !model.backend.streaming) {
      model.dispose();
      throw new PruneLabError(`${reason}, and the ${backend} backend cannot stream blocks`, { field: 'gpu-memory' });
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
  private async streamedPass(sequences: readonly (readonly number[])[], plan: Plan, want: { stats: boolean; nll: boolean; states?: StateVisitor }, options: RunOptions) {
    const streaming = this.backend.streaming;
    if (!streaming) throw new PruneLabError('this backend cannot stream blocks');
    const gpu = this.backend.info.kind === 'webgpu';
    const { batches } = gpu
      ? planStreamBatches(
          this.checkpoint,
          sequences.map((s) => s.length),
          this.gpuBudgetBytes,
          want.nll,
          want.states !== undefined,
        )
      : { batches: [sequences.map((_, s) => s)] };
    const perSequence: BlockStatSums[][] = sequences.map(() => []);
    const nll: { nllSum: number; nllCount: number }[] = sequences.map(() => ({ nllSum: 0, nllCount: 0 }));
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
        if (want.nll) for (const [t, stream] of streams.entries()) nll[batch[t]] = await streaming.head(stream, { nll: true, lastLogits: false });
        for (const stream of streams) stream.dispose();
        streams = [];
      }
    } finally {
      await uploading?.catch(() => undefined);
      for (const stream of streams) stream.dispose();
      for (const i of loaded) streaming.releaseBlock(i);
    }
    return { perSequence, nll };
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

  /** A whole forward (states, all logits): needs every block, so a streamed model becomes resident when it fits, else says why not. */
  async forward(request: ForwardRequest): Promise<ForwardResult> {
    await this.requireResident('this analysis (a whole forward per sequence)');
    return this.backend.forward(request);
  }

  async lastLogits(ids: readonly number[], plan: Plan): Promise<Float32Array> {
    await this.requireResident('next-token logits');
    const result = await this.backend.forward({ ids, plan: withCapture(plan, 'none'), logits: 'last' });
    return result.logits as Float32Array;
  }

  /** Autoregressive generation with a KV cache; returns the new token ids. */
  async generate(promptIds: readonly number[], plan: Plan, options: GenerateOptions): Promise<number[]> {
    await this.requireResident('generation');
    const promptProblem = checkPrompt(promptIds.length, options.maxNewTokens, this.spec);
    if (promptProblem?.level === 'error') throw new PruneLabError(promptProblem.message, { field: 'prompt' });
    const runPlan = withCapture(plan, 'none');
    const capacity = Math.min(promptIds.length + options.maxNewTokens, this.spec.maxPositions);
    const cache = this.backend.createCache(capacity, runPlan);
    const random = seededRandom(options.seed ?? 0);
    const out: number[] = [];
    try {
      let input: readonly number[] = promptIds;
      // greedy with no per-token logits callback: WebGPU picks on the device and reads back one id per step
      // (same first-maximum rule as sampling.ts); sampling with a temperature stays on the CPU (float64)
      const devicePick = (options.temperature ?? 0) <= 0 && !options.onToken && this.backend.info.kind === 'webgpu';
      while (out.length < options.maxNewTokens && cache.length + input.length <= capacity) {
        checkAborted(options.signal);
        const result = await this.backend.forward({ ids: input, plan: runPlan, logits: devicePick ? 'none' : 'last', cache, ...(devicePick ? { pick: 'argmax' as const } : {}) });
        const row = result.logits as Float32Array;
        const next = result.picked ?? sampleToken(row, options, random);
        out.push(next);
        options.onToken?.(next, row);
        if (options.stopAtEos && this.spec.eosTokenIds.includes(next)) break;
        input = [next];
      }
    } finally {
      cache.dispose();
    }
    return out;
  }

  /** Decoding re-reads every block per token when streamed: refused with the cost, not run silently. */
  /** 'resident': every block on the backend; 'streamed': blocks read, run over all sequences and released one at a time. */
  get mode(): MemoryMode {
    return this.modeNow;
  }

  private async requireResident(what: string): Promise<void> {
    if (this.modeNow === 'resident') return;
    const streaming = this.backend.streaming;
    // On the CPU the streamed blocks and forward share one table: loading them all makes the model resident.
    if (this.residentFits && streaming && this.backend.info.kind === 'cpu') {
      await this.checkpoint.makeResident();
      assertFiniteWeights(this.checkpoint.weights);
      for (const [i, block] of this.checkpoint.weights.blocks.entries()) await streaming.loadBlock(i, block);
      this.modeNow = 'resident';
      return;
    }
    const bytes = this.memoryReport().weightBytes;
    throw new PruneLabError(
      `${what} needs the model resident, but it runs block-streamed (its ${(bytes / 2 ** 20).toFixed(0)} MiB of weights exceed the memory budget): every token would re-read all weights; prune it first or raise the budget`,
      { field: 'gpu-memory' },
    );
  }

  dispose(): void {
    this.backend.dispose();
  }
}
