/**
 * Model = checkpoint (spec + weights) + backend + tokenizer. Everything the analysis layer, the worker and
 * the CLI need: score (block statistics), perplexity, next-token logits, generate with a KV cache.
 */
import type { Backend, BlockStatSums } from './backend.ts';
import { type Checkpoint, type LoadOptions, loadCheckpoint } from './checkpoint.ts';
import { PruneLabError } from './errors.ts';
import { assertFiniteWeights } from './finite.ts';
import { checkPrompt } from './limits.ts';
import { type Plan, withCapture } from './plan.ts';
import { type SamplingOptions, sampleToken, seededRandom } from './sampling.ts';
import type { ModelSource } from './sources.ts';
import { createTokenizer, type TextTokenizer } from './tokenizer.ts';

export type BackendKind = 'cpu' | 'webgpu';

export async function createBackend(kind: BackendKind, checkpoint: Checkpoint): Promise<Backend> {
  if (kind === 'webgpu') {
    const { createWebGpuBackend } = await import('./webgpu/backend.ts');
    return createWebGpuBackend(checkpoint.spec, checkpoint.weights);
  }
  const { createCpuBackend } = await import('./cpu/backend.ts');
  return createCpuBackend(checkpoint.spec, checkpoint.weights);
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

export class Model {
  readonly tokenizer: TextTokenizer | null;
  constructor(
    readonly checkpoint: Checkpoint,
    readonly backend: Backend,
  ) {
    this.tokenizer = checkpoint.tokenizer ? createTokenizer(checkpoint.tokenizer) : null;
  }

  static async load(source: ModelSource, backend: BackendKind = 'cpu', options: LoadOptions = {}): Promise<Model> {
    const checkpoint = await loadCheckpoint(source, options);
    assertFiniteWeights(checkpoint.weights);
    return new Model(checkpoint, await createBackend(backend, checkpoint));
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
    for (let s = 0; s < sequences.length; s++) {
      checkAborted(options.signal);
      const result = await this.backend.forward({ ids: sequences[s], plan: withCapture(plan, 'none'), logits: 'none', nll: true });
      nllSum += result.nllSum;
      tokens += result.nllCount;
      options.onProgress?.(s + 1, sequences.length, tokens);
    }
    if (tokens === 0) throw new PruneLabError('perplexity needs at least one sequence of two or more tokens', { field: 'ids' });
    return { nllSum, tokens, nll: nllSum / tokens, ppl: Math.exp(nllSum / tokens) };
  }

  async lastLogits(ids: readonly number[], plan: Plan): Promise<Float32Array> {
    const result = await this.backend.forward({ ids, plan: withCapture(plan, 'none'), logits: 'last' });
    return result.logits as Float32Array;
  }

  /** Autoregressive generation with a KV cache; returns the new token ids. */
  async generate(promptIds: readonly number[], plan: Plan, options: GenerateOptions): Promise<number[]> {
    const promptProblem = checkPrompt(promptIds.length, options.maxNewTokens, this.spec);
    if (promptProblem?.level === 'error') throw new PruneLabError(promptProblem.message, { field: 'prompt' });
    const runPlan = withCapture(plan, 'none');
    const capacity = Math.min(promptIds.length + options.maxNewTokens, this.spec.maxPositions);
    const cache = this.backend.createCache(capacity, runPlan);
    const random = seededRandom(options.seed ?? 0);
    const out: number[] = [];
    try {
      let input: readonly number[] = promptIds;
      while (out.length < options.maxNewTokens && cache.length + input.length <= capacity) {
        checkAborted(options.signal);
        const { logits } = await this.backend.forward({ ids: input, plan: runPlan, logits: 'last', cache });
        const row = logits as Float32Array;
        const next = sampleToken(row, options, random);
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

  dispose(): void {
    this.backend.dispose();
  }
}
