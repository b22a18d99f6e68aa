/**
 * Strategy sweep: held-out perplexity as blocks go, one line per way of choosing them. Calibration data
 * drives every choice; evaluation data only measures it (the calibration set when none is given).
 *
 * Step k of a strategy holds the full set of k removed blocks (ascending) and the evaluation perplexity
 * with exactly that set removed, for k = 0 … maxRemoved (default L − 1, so one block always remains).
 *
 *   bi       one-shot: rank blocks by the full model's BI (ShortGPT), step k removes the k lowest.
 *   bi-iter  iterative: re-score the pruned model on the calibration set after each removal and remove
 *            the remaining block with the lowest BI.
 *   angular  Gromov et al.: step k removes the k-block window [l, l + k) whose input and output states
 *            (on the full model) have the smallest mean arccos(cos)/π; windows of different k need not nest.
 *   relmag   one-shot by mean ‖f(x)‖ / ‖x + f(x)‖, smallest first.
 *   reverse  deepest first but keeping the last block (Gromov et al.'s simple baseline): the order is
 *            L−2, L−3, …, 0 and only then L−1, so step k removes blocks L−1−k … L−2 and the final block
 *            survives every step up to k = L − 1.
 *   random   per seed (0 … seeds−1) a seeded shuffle of the blocks, step k removes its first k. The
 *            reported step is the median seed's: ppl is the ⌈n/2⌉-th smallest of the seeds' ppl (the
 *            true median for an odd count; the lower middle one for an even count, so the number always
 *            belongs to a measured set), removed is that seed's set, pplMin / pplMax the range.
 *   sleb     SLEB-style greedy: at each step try every remaining block and remove the one whose
 *            removal gives the lowest calibration NLL (smallest index on ties).
 *   bi-attn  attention halves only, one-shot by the attention half's BI (He et al.); steps list
 *            removedAttention (removed stays empty). bi-mlp: the same for MLP halves.
 */
import type { Model } from '../engine/model.ts';
import type { Removal } from '../engine/plan.ts';
import { makePlan, normalizeRemoval } from '../engine/plan.ts';
import { seededRandom } from '../engine/sampling.ts';
import { type HalfBlockScore, halfBlockScores, rankHalves } from './half-blocks.ts';
import { type BlockScore, blockScores, rankBlocks } from './influence.ts';
import { PerplexityMeter } from './perplexity.ts';
import { bestWindow, layerSimilarity, type SimilarityMatrix } from './similarity.ts';

export const STRATEGIES = ['bi', 'bi-iter', 'angular', 'relmag', 'reverse', 'random', 'sleb', 'bi-attn', 'bi-mlp'] as const;
export type Strategy = (typeof STRATEGIES)[number];
/** The whole-block strategies (what `--strategies` defaults to). */
export const BLOCK_STRATEGIES: Strategy[] = ['bi', 'bi-iter', 'angular', 'relmag', 'reverse', 'random', 'sleb'];

export const STRATEGY_INFO: Record<Strategy, { label: string; description: string }> = {
  bi: { label: 'BI one-shot', description: 'lowest Block Influence of the full model first (ShortGPT)' },
  'bi-iter': { label: 'BI iterative', description: 're-score after each removal, remove the lowest BI' },
  angular: { label: 'Angular window', description: 'n contiguous blocks whose input and output are closest (Gromov et al.)' },
  relmag: { label: 'Relative magnitude', description: 'smallest ‖f(x)‖ / ‖x + f(x)‖ first' },
  reverse: { label: 'Reverse order', description: 'deepest first, the last block kept' },
  random: { label: 'Random', description: 'median and range over seeded shuffles' },
  sleb: { label: 'SLEB greedy', description: 'remove the block whose removal raises calibration NLL least' },
  'bi-attn': { label: 'Attention halves', description: 'attention sub-blocks only, by their BI (He et al.)' },
  'bi-mlp': { label: 'MLP halves', description: 'MLP sub-blocks only, by their BI' },
};

export function isStrategy(name: string): name is Strategy {
  return (STRATEGIES as readonly string[]).includes(name);
}

export interface SweepStep {
  /** Whole blocks removed, ascending. */
  removed: number[];
  /** bi-attn only: attention halves removed, ascending. */
  removedAttention?: number[];
  /** bi-mlp only: MLP halves removed, ascending. */
  removedMlp?: number[];
  /** Perplexity on the evaluation set with exactly this removal. */
  ppl: number;
  nll: number;
  /** angular: the window's mean angular distance between its input and output states. */
  distance?: number;
  /** sleb: the calibration NLL that made the choice. */
  calibrationNll?: number;
  /** random: the median seed, and the range over all seeds. */
  seed?: number;
  pplMin?: number;
  pplMax?: number;
}

export interface RandomSeedRun {
  seed: number;
  order: number[];
  steps: SweepStep[];
}

export interface SweepResult {
  layers: number;
  maxRemoved: number;
  /** Calibration tokens scored (Σ sequence lengths, as `score` counts them). */
  calibrationTokens: number;
  /** Evaluation tokens predicted (Σ (length − 1), as `ppl` counts them). */
  evaluationTokens: number;
  strategies: Partial<Record<Strategy, SweepStep[]>>;
  /** Removal order of the nested strategies (every one but angular and random). */
  orders: Partial<Record<Strategy, number[]>>;
  randomSeeds?: RandomSeedRun[];
}

export interface SweepProgress {
  strategy: Strategy;
  /** What is running, for a status line. */
  label: string;
  /** Passes over a sequence set so far and in all (cached ones count, they just take no time). */
  done: number;
  total: number;
}

export interface SweepStepEvent {
  strategy: Strategy;
  k: number;
  step: SweepStep;
  /** Set for one random seed's own step; absent for the aggregated random step. */
  seed?: number;
}

export interface SweepOptions {
  strategies?: readonly Strategy[];
  /** Measures the choices; defaults to the calibration sequences. */
  evaluation?: readonly (readonly number[])[];
  /** Largest k; default L − 1. */
  maxRemoved?: number;
  /** Number of random seeds (0 … n − 1); default 5. */
  seeds?: number;
  signal?: AbortSignal;
  onProgress?: (progress: SweepProgress) => void;
  /** Each step as soon as it is measured. */
  onStep?: (event: SweepStepEvent) => void;
}

/** Deepest first, the last block kept until the end: L−2, L−3, …, 0, L−1. */
export function reverseOrder(layers: number): number[] {
  return [...Array.from({ length: layers - 1 }, (_, i) => layers - 2 - i), layers - 1];
}

/** A seeded Fisher–Yates shuffle of 0 … L−1 (mulberry32, reproducible everywhere). */
export function randomOrder(layers: number, seed: number): number[] {
  const random = seededRandom(seed);
  const order = Array.from({ length: layers }, (_, i) => i);
  for (let i = layers - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Step k of a nested order: its first k entries, ascending. */
export function prefixSet(order: readonly number[], k: number): number[] {
  return order.slice(0, k).sort((a, b) => a - b);
}

/** The step with the largest rise in log perplexity over the step before it (the cliff), or null. */
export function cliffStep(steps: readonly SweepStep[]): number | null {
  let best: number | null = null;
  let bestRise = Number.NEGATIVE_INFINITY;
  for (let k = 1; k < steps.length; k++) {
    const rise = Math.log(steps[k].ppl) - Math.log(steps[k - 1].ppl);
    if (rise > bestRise) {
      bestRise = rise;
      best = k;
    }
  }
  return best;
}

export interface SlebChoice {
  block: number;
  nll: number;
  /** Calibration NLL with each remaining block additionally removed. */
  candidates: { block: number; nll: number }[];
}

/** One SLEB step: the remaining block whose removal gives the lowest calibration NLL. */
export async function slebChoice(
  calibration: PerplexityMeter,
  removed: readonly number[],
  options: { signal?: AbortSignal; onCandidate?: (block: number) => void } = {},
): Promise<SlebChoice> {
  const gone = new Set(removed);
  const candidates: { block: number; nll: number }[] = [];
  for (let block = 0; block < calibration.model.spec.layers; block++) {
    if (gone.has(block)) continue;
    const { nll } = await calibration.measure({ blocks: [...removed, block] }, { signal: options.signal });
    candidates.push({ block, nll });
    options.onCandidate?.(block);
  }
  if (candidates.length === 0) throw new RangeError('no block left to remove');
  const best = candidates.reduce((a, b) => (b.nll < a.nll ? b : a));
  return { block: best.block, nll: best.nll, candidates };
}

/** Everything the strategy runners share: meters, memoised full-model analyses, progress, streaming. */
class SweepContext {
  readonly layers: number;
  readonly maxRemoved: number;
  readonly seeds: number[];
  readonly calibration: PerplexityMeter;
  readonly evaluation: PerplexityMeter;
  done = 0;
  total = 0;
  private fullScoresMemo: Promise<BlockScore[]> | null = null;
  private similarityMemo: Promise<SimilarityMatrix> | null = null;
  private halvesMemo: Promise<HalfBlockScore[]> | null = null;

  constructor(
    readonly model: Model,
    calibration: readonly (readonly number[])[],
    readonly options: SweepOptions,
  ) {
    this.layers = model.spec.layers;
    this.maxRemoved = options.maxRemoved ?? this.layers - 1;
    if (!Number.isInteger(this.maxRemoved) || this.maxRemoved < 0 || this.maxRemoved > this.layers - 1) {
      throw new RangeError(`maxRemoved must be an integer 0 … ${this.layers - 1} (one block must remain), got ${options.maxRemoved}`);
    }
    const seedCount = options.seeds ?? 5;
    if (!Number.isInteger(seedCount) || seedCount < 1) throw new RangeError(`seeds must be a positive integer, got ${options.seeds}`);
    this.seeds = Array.from({ length: seedCount }, (_, i) => i);
    this.calibration = new PerplexityMeter(model, calibration);
    this.evaluation = options.evaluation && options.evaluation !== calibration ? new PerplexityMeter(model, options.evaluation) : this.calibration;
  }

  get signal() {
    return this.options.signal;
  }

  checkAborted(): void {
    if (this.signal?.aborted) throw new DOMException('cancelled', 'AbortError');
  }

  /** Passes each strategy will make, so progress has a denominator. */
  passes(strategy: Strategy): number {
    const K = this.maxRemoved;
    const measured = K + 1;
    switch (strategy) {
      case 'bi':
      case 'relmag':
      case 'angular':
      case 'bi-attn':
      case 'bi-mlp':
        return 1 + measured;
      case 'bi-iter':
        return K + measured;
      case 'reverse':
        return measured;
      case 'random':
        return this.seeds.length * measured;
      case 'sleb': {
        let tries = 0;
        for (let k = 0; k < K; k++) tries += this.layers - k;
        return tries + measured;
      }
    }
  }

  tick(strategy: Strategy, label: string): void {
    this.done++;
    this.options.onProgress?.({ strategy, label, done: this.done, total: this.total });
  }

  fullScores(): Promise<BlockScore[]> {
    this.fullScoresMemo ??= this.model.score(this.calibration.sequences, makePlan(this.layers), { signal: this.signal }).then(blockScores);
    this.fullScoresMemo.catch(() => (this.fullScoresMemo = null));
    return this.fullScoresMemo;
  }

  similarity(): Promise<SimilarityMatrix> {
    this.similarityMemo ??= layerSimilarity(this.model, this.calibration.sequences, makePlan(this.layers), { signal: this.signal });
    this.similarityMemo.catch(() => (this.similarityMemo = null));
    return this.similarityMemo;
  }

  halves(): Promise<HalfBlockScore[]> {
    this.halvesMemo ??= halfBlockScores(this.model, this.calibration.sequences, { signal: this.signal });
    this.halvesMemo.catch(() => (this.halvesMemo = null));
    return this.halvesMemo;
  }

  /** Evaluation perplexity of one removal, as a step (halves listed only when present). */
  async measure(strategy: Strategy, removal: Removal): Promise<SweepStep> {
    this.checkAborted();
    const r = normalizeRemoval(removal);
    const { ppl, nll } = await this.evaluation.measure(r, { signal: this.signal });
    this.tick(strategy, `${strategy}: measuring ${r.blocks.length + r.attention.length + r.mlp.length} removed`);
    const step: SweepStep = { removed: r.blocks, ppl, nll };
    if (strategy === 'bi-attn') step.removedAttention = r.attention;
    if (strategy === 'bi-mlp') step.removedMlp = r.mlp;
    return step;
  }

  emit(strategy: Strategy, k: number, step: SweepStep, seed?: number): void {
    this.options.onStep?.(seed === undefined ? { strategy, k, step } : { strategy, k, step, seed });
  }

  /** Measures every prefix of a nested order, streaming each step. */
  async nested(strategy: Strategy, order: readonly number[], half?: 'attention' | 'mlp'): Promise<SweepStep[]> {
    const steps: SweepStep[] = [];
    for (let k = 0; k <= this.maxRemoved; k++) {
      const set = prefixSet(order, k);
      const step = await this.measure(strategy, half === 'attention' ? { attention: set } : half === 'mlp' ? { mlp: set } : { blocks: set });
      steps.push(step);
      this.emit(strategy, k, step);
    }
    return steps;
  }
}

type Runner = (ctx: SweepContext, result: SweepResult) => Promise<SweepStep[]>;

const RUNNERS: Record<Strategy, Runner> = {
  async bi(ctx, result) {
    const scores = await ctx.fullScores();
    ctx.tick('bi', 'bi: scoring the full model');
    const order = rankBlocks(scores, 'bi');
    result.orders.bi = order;
    return ctx.nested('bi', order);
  },

  async relmag(ctx, result) {
    const scores = await ctx.fullScores();
    ctx.tick('relmag', 'relmag: scoring the full model');
    const order = rankBlocks(scores, 'relMagnitude');
    result.orders.relmag = order;
    return ctx.nested('relmag', order);
  },

  async 'bi-iter'(ctx, result) {
    const order: number[] = [];
    const steps = [await ctx.measure('bi-iter', {})];
    ctx.emit('bi-iter', 0, steps[0]);
    for (let k = 1; k <= ctx.maxRemoved; k++) {
      ctx.checkAborted();
      const scores =
        order.length === 0
          ? await ctx.fullScores()
          : blockScores(await ctx.model.score(ctx.calibration.sequences, makePlan(ctx.layers, { blocks: order }), { signal: ctx.signal }));
      ctx.tick('bi-iter', `bi-iter: re-scoring with ${k - 1} removed`);
      order.push(rankBlocks(scores, 'bi')[0]);
      const step = await ctx.measure('bi-iter', { blocks: order });
      steps.push(step);
      ctx.emit('bi-iter', k, step);
    }
    result.orders['bi-iter'] = order;
    return steps;
  },

  async angular(ctx) {
    const matrix = await ctx.similarity();
    ctx.tick('angular', 'angular: layer × layer distances');
    const steps = [await ctx.measure('angular', {})];
    ctx.emit('angular', 0, steps[0]);
    for (let n = 1; n <= ctx.maxRemoved; n++) {
      const window = bestWindow(matrix, n);
      const step = { ...(await ctx.measure('angular', { blocks: window.removed })), distance: window.distance };
      steps.push(step);
      ctx.emit('angular', n, step);
    }
    return steps;
  },

  async reverse(ctx, result) {
    const order = reverseOrder(ctx.layers);
    result.orders.reverse = order;
    return ctx.nested('reverse', order);
  },

  async random(ctx, result) {
    const runs: RandomSeedRun[] = ctx.seeds.map((seed) => ({ seed, order: randomOrder(ctx.layers, seed), steps: [] }));
    const steps: SweepStep[] = [];
    for (let k = 0; k <= ctx.maxRemoved; k++) {
      for (const run of runs) {
        const step = await ctx.measure('random', { blocks: prefixSet(run.order, k) });
        run.steps.push(step);
        ctx.emit('random', k, step, run.seed);
      }
      const byPpl = [...runs].sort((a, b) => a.steps[k].ppl - b.steps[k].ppl || a.seed - b.seed);
      const median = byPpl[Math.floor((byPpl.length - 1) / 2)];
      const step: SweepStep = { ...median.steps[k], seed: median.seed, pplMin: byPpl[0].steps[k].ppl, pplMax: byPpl[byPpl.length - 1].steps[k].ppl };
      steps.push(step);
      ctx.emit('random', k, step);
    }
    result.randomSeeds = runs;
    return steps;
  },

  async sleb(ctx, result) {
    const order: number[] = [];
    const steps = [await ctx.measure('sleb', {})];
    ctx.emit('sleb', 0, steps[0]);
    for (let k = 1; k <= ctx.maxRemoved; k++) {
      const choice = await slebChoice(ctx.calibration, order, { signal: ctx.signal, onCandidate: (block) => ctx.tick('sleb', `sleb: step ${k}, trying block ${block}`) });
      order.push(choice.block);
      const step = { ...(await ctx.measure('sleb', { blocks: order })), calibrationNll: choice.nll };
      steps.push(step);
      ctx.emit('sleb', k, step);
    }
    result.orders.sleb = order;
    return steps;
  },

  async 'bi-attn'(ctx, result) {
    const scores = await ctx.halves();
    ctx.tick('bi-attn', 'bi-attn: scoring attention halves');
    const order = rankHalves(scores, 'attention');
    result.orders['bi-attn'] = order;
    return ctx.nested('bi-attn', order, 'attention');
  },

  async 'bi-mlp'(ctx, result) {
    const scores = await ctx.halves();
    ctx.tick('bi-mlp', 'bi-mlp: scoring MLP halves');
    const order = rankHalves(scores, 'mlp');
    result.orders['bi-mlp'] = order;
    return ctx.nested('bi-mlp', order, 'mlp');
  },
};

/** Runs the chosen strategies one after another over the calibration (and evaluation) sequences. */
export async function runSweep(model: Model, calibration: readonly (readonly number[])[], options: SweepOptions = {}): Promise<SweepResult> {
  const strategies = [...new Set(options.strategies ?? BLOCK_STRATEGIES)];
  for (const s of strategies) if (!isStrategy(s)) throw new RangeError(`unknown strategy "${s}" (known: ${STRATEGIES.join(', ')})`);
  const ctx = new SweepContext(model, calibration, options);
  ctx.total = strategies.reduce((a, s) => a + ctx.passes(s), 0);
  const result: SweepResult = {
    layers: ctx.layers,
    maxRemoved: ctx.maxRemoved,
    calibrationTokens: calibration.reduce((a, s) => a + s.length, 0),
    evaluationTokens: ctx.evaluation.predictedTokens,
    strategies: {},
    orders: {},
  };
  for (const strategy of strategies) {
    ctx.checkAborted();
    result.strategies[strategy] = await RUNNERS[strategy](ctx, result);
  }
  return result;
}
