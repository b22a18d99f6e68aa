/**
 * Error bars for block scores: how much would a score, and the ranking built on it, move with other
 * calibration text drawn the same way? Pure and engine-agnostic: it reads per-sequence block sums (the
 * engine's streaming sums kept per calibration sequence) and nothing else.
 *
 * - Bootstrap over sequences: a resample draws n sequences with replacement (seeded mulberry32, so the
 *   CLI and the lab get the same numbers) and takes token-weighted means exactly like the point estimate:
 *   BI = 1 − Σ cosSum / Σ tokens over the drawn sequences (a sequence drawn twice counts twice).
 * - Intervals: 95% percentile intervals of the resampled means (quantiles with linear interpolation
 *   between order statistics, numpy's default).
 * - Rank stability: from the same resamples, per block the share of resamples in which it is among the k
 *   lowest, and for the cut the share in which the k lowest are exactly the point estimate's k lowest.
 * - One sequence: refused with the reason; an interval needs the spread between sequences.
 * - Across calibration sets: Spearman's ρ between two orderings and the blocks that change places.
 */
import type { BlockStatSums } from '../engine/backend.ts';
import { PruneLabError } from '../engine/errors.ts';
import { seededRandom } from '../engine/sampling.ts';
import { type BlockScore, blockScores, lowestBlocks, METRICS, type Metric, rankBlocks } from './influence.ts';

export const DEFAULT_RESAMPLES = 1000;
export const DEFAULT_SEED = 0;
export const CONFIDENCE = 0.95;
/** A cut is called stable when the bootstrap's k lowest equal it in at least this share of resamples. */
export const STABLE_AT = 0.95;
/** Below this many sequences the intervals come with a caution (the bootstrap is then too narrow). */
export const FEW_SEQUENCES = 10;

export type Interval = [lo: number, hi: number];

export interface BlockIntervals {
  index: number;
  bi: Interval;
  angular: Interval;
  relMagnitude: Interval;
}

/** What a set of intervals is (enough to label them, and to carry them in a link). */
export interface IntervalsInfo {
  confidence: number;
  resamples: number;
  seed: number;
  sequences: number;
  blocks: BlockIntervals[];
}

export interface Bootstrap extends IntervalsInfo {
  ok: true;
  /** Block indices in the order of the sums (the plan's order). */
  indices: number[];
  /** The point estimate from the same sums (equal to blockScores of their totals). */
  point: BlockScore[];
  /** Resampled means: replicates[metric][r · blocks + b]. */
  replicates: Record<Metric, Float64Array>;
  /** Set when there are few sequences: the intervals are then rough (and tend to be too narrow). */
  caution: string | null;
}

/** Why no numbers were given (never invented ones). */
export interface Refusal {
  ok: false;
  reason: string;
}

export interface BootstrapOptions {
  resamples?: number;
  seed?: number;
}

/** The totals of per-sequence sums (what Model.score returns for the same sequences). */
export function totalSums(perSequence: readonly (readonly BlockStatSums[])[]): BlockStatSums[] {
  const first = perSequence[0] ?? [];
  return first.map((s, b) => {
    const t = { index: s.index, cosSum: 0, angularSum: 0, relMagnitudeSum: 0, tokens: 0 };
    for (const sequence of perSequence) {
      const x = sequence[b];
      t.cosSum += x.cosSum;
      t.angularSum += x.angularSum;
      t.relMagnitudeSum += x.relMagnitudeSum;
      t.tokens += x.tokens;
    }
    return t;
  });
}

/** Linear interpolation between order statistics of a sorted sample (numpy's default quantile). */
export function quantileSorted(sorted: ArrayLike<number>, p: number): number {
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

function checkShape(perSequence: readonly (readonly BlockStatSums[])[]): number[] {
  const indices = (perSequence[0] ?? []).map((s) => s.index);
  perSequence.forEach((sequence, s) => {
    if (sequence.length !== indices.length || sequence.some((x, b) => x.index !== indices[b])) {
      throw new PruneLabError(`sequence ${s} has sums for blocks [${sequence.map((x) => x.index).join(', ')}], the first has [${indices.join(', ')}]`, { field: 'perSequence' });
    }
    for (const x of sequence) if (!(x.tokens > 0)) throw new PruneLabError(`sequence ${s} has no tokens for block ${x.index}`, { field: 'perSequence' });
  });
  return indices;
}

/**
 * Bootstrap over calibration sequences: intervals for every block and metric, and the resampled means
 * that rankStability reads. Refuses (with the reason) for fewer than two sequences.
 */
export function bootstrapScores(perSequence: readonly (readonly BlockStatSums[])[], options: BootstrapOptions = {}): Bootstrap | Refusal {
  const resamples = options.resamples ?? DEFAULT_RESAMPLES;
  const seed = options.seed ?? DEFAULT_SEED;
  if (!Number.isInteger(resamples) || resamples < 2) throw new PruneLabError(`the number of resamples must be a whole number ≥ 2, got ${resamples}`, { field: 'resamples' });
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new PruneLabError(`the seed must be a whole number from 0 to ${0xffffffff}, got ${seed}`, { field: 'seed' });
  const n = perSequence.length;
  if (n < 2) {
    return {
      ok: false,
      reason: `no intervals from ${n === 1 ? 'one calibration sequence' : 'no calibration sequences'}: they measure the spread between sequences, so score at least 2 (10 or more for useful intervals)`,
    };
  }
  const indices = checkShape(perSequence);
  const blocks = indices.length;
  // Flat per-sequence sums: column s · blocks + b.
  const cos = new Float64Array(n * blocks);
  const angular = new Float64Array(n * blocks);
  const relMagnitude = new Float64Array(n * blocks);
  const tokens = new Float64Array(n * blocks);
  for (let s = 0; s < n; s++) {
    perSequence[s].forEach((x, b) => {
      cos[s * blocks + b] = x.cosSum;
      angular[s * blocks + b] = x.angularSum;
      relMagnitude[s * blocks + b] = x.relMagnitudeSum;
      tokens[s * blocks + b] = x.tokens;
    });
  }
  const replicates: Record<Metric, Float64Array> = {
    bi: new Float64Array(resamples * blocks),
    angular: new Float64Array(resamples * blocks),
    relMagnitude: new Float64Array(resamples * blocks),
  };
  const random = seededRandom(seed);
  const counts = new Int32Array(n);
  // Weighted sums per block for one resample; sequences outer, blocks inner (contiguous in memory).
  const c = new Float64Array(blocks);
  const a = new Float64Array(blocks);
  const m = new Float64Array(blocks);
  const t = new Float64Array(blocks);
  for (let r = 0; r < resamples; r++) {
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[Math.floor(random() * n)]++;
    c.fill(0);
    a.fill(0);
    m.fill(0);
    t.fill(0);
    for (let s = 0; s < n; s++) {
      const w = counts[s];
      if (w === 0) continue;
      const row = s * blocks;
      for (let b = 0; b < blocks; b++) {
        c[b] += w * cos[row + b];
        a[b] += w * angular[row + b];
        m[b] += w * relMagnitude[row + b];
        t[b] += w * tokens[row + b];
      }
    }
    for (let b = 0; b < blocks; b++) {
      replicates.bi[r * blocks + b] = 1 - c[b] / t[b];
      replicates.angular[r * blocks + b] = a[b] / t[b];
      replicates.relMagnitude[r * blocks + b] = m[b] / t[b];
    }
  }
  const tail = (1 - CONFIDENCE) / 2;
  const column = new Float64Array(resamples);
  const intervalOf = (metric: Metric, b: number): Interval => {
    for (let r = 0; r < resamples; r++) column[r] = replicates[metric][r * blocks + b];
    column.sort();
    return [quantileSorted(column, tail), quantileSorted(column, 1 - tail)];
  };
  const intervals = indices.map((index, b) => ({ index, bi: intervalOf('bi', b), angular: intervalOf('angular', b), relMagnitude: intervalOf('relMagnitude', b) }));
  return {
    ok: true,
    confidence: CONFIDENCE,
    resamples,
    seed,
    sequences: n,
    indices,
    point: blockScores(totalSums(perSequence)),
    replicates,
    blocks: intervals,
    caution: n < FEW_SEQUENCES ? `only ${n} calibration sequences: bootstrap intervals from so few are rough and tend to be too narrow (score ${FEW_SEQUENCES} or more)` : null,
  };
}

/** The cut size the rank stability uses unless told: a quarter of the blocks, rounded (ShortGPT's usual cut). */
export function defaultCutSize(blocks: number): number {
  return Math.round(blocks * 0.25);
}

export interface RankStability {
  metric: Metric;
  k: number;
  /** The point estimate's k lowest, ascending by index. */
  cut: number[];
  /** Per block (the bootstrap's order): the share of resamples in which it is among the k lowest. */
  pLowest: { index: number; p: number }[];
  /** The share of resamples whose k lowest are exactly `cut`. */
  cutStability: number;
  stable: boolean;
}

/** How often each block is among the k lowest by `metric`, and how often the cut is the same, over the resamples. */
export function rankStability(boot: Bootstrap, metric: Metric, k: number): RankStability {
  const blocks = boot.indices.length;
  if (!Number.isInteger(k) || k < 0 || k > blocks) throw new PruneLabError(`the cut size k must be a whole number from 0 to ${blocks}, got ${k}`, { field: 'k' });
  const cut = lowestBlocks(boot.point, metric, k);
  const inCut = new Set(cut);
  const hits = new Int32Array(blocks);
  let same = 0;
  const order = Array.from({ length: blocks }, (_, b) => b);
  const values = boot.replicates[metric];
  for (let r = 0; r < boot.resamples; r++) {
    const row = r * blocks;
    // Ties broken by block index, as rankBlocks does for the point estimate.
    order.sort((a, b) => values[row + a] - values[row + b] || boot.indices[a] - boot.indices[b]);
    let matches = 0;
    for (let j = 0; j < k; j++) {
      hits[order[j]]++;
      if (inCut.has(boot.indices[order[j]])) matches++;
    }
    if (matches === k) same++;
  }
  const cutStability = same / boot.resamples;
  return {
    metric,
    k,
    cut,
    pLowest: boot.indices.map((index, b) => ({ index, p: hits[b] / boot.resamples })),
    cutStability,
    stable: cutStability >= STABLE_AT,
  };
}

/** One decimal, so a share just under the threshold never reads as the threshold itself. */
export const percent = (p: number) => `${(p * 100).toFixed(1).replace(/\.0$/, '')}%`;

/** The stability of a cut in words, with the number: what the lab shows by the slider and the CLI prints. */
export function stabilitySentence(stability: RankStability, resamples: number): string {
  const { k, cut, cutStability, pLowest, metric } = stability;
  if (k === 0) return 'no cut: nothing to be stable';
  const label = METRICS.find((m) => m.id === metric)?.label ?? metric;
  const which = k === 1 ? `lowest block by ${label} is block ${cut[0]}` : `${k} lowest by ${label} are {${cut.join(', ')}}`;
  const head = `${stability.stable ? 'stable' : 'unstable'}: the bootstrap's ${which} in ${percent(cutStability)} of ${resamples} resamples`;
  // The blocks whose membership is in doubt, most doubtful first.
  const doubtful = pLowest
    .filter((b) => b.p > 1 - STABLE_AT && b.p < STABLE_AT)
    .sort((a, b) => Math.abs(a.p - 0.5) - Math.abs(b.p - 0.5) || a.index - b.index)
    .slice(0, 4);
  if (stability.stable || doubtful.length === 0) return head;
  return `${head}; in doubt: ${doubtful.map((b) => `block ${b.index} (${percent(b.p)})`).join(', ')}`;
}

// ---------------------------------------------------------------- across calibration sets

export interface RankComparison {
  ok: true;
  metric: Metric;
  /** Spearman's rank correlation of the two orderings (average ranks for ties). */
  rho: number;
  /** Blocks whose rank (1 = lowest, ties by index as rankBlocks) differs, by how far they move. */
  moved: { index: number; rankA: number; rankB: number }[];
}

function averageRanks(values: readonly number[]): number[] {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const ranks = new Array<number>(values.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    for (let t = i; t <= j; t++) ranks[order[t][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return ranks;
}

/** Spearman's ρ between two scorings of the same blocks by `metric`, and which blocks change places. */
export function compareRankings(a: readonly BlockScore[], b: readonly BlockScore[], metric: Metric): RankComparison | Refusal {
  const indices = a.map((s) => s.index).sort((x, y) => x - y);
  const other = b.map((s) => s.index).sort((x, y) => x - y);
  if (indices.join(',') !== other.join(',')) return { ok: false, reason: 'the two scorings cover different blocks' };
  if (indices.length < 2) return { ok: false, reason: 'a rank correlation needs at least two blocks' };
  const byA = new Map(a.map((s) => [s.index, s[metric]]));
  const byB = new Map(b.map((s) => [s.index, s[metric]]));
  const ra = averageRanks(indices.map((i) => byA.get(i) as number));
  const rb = averageRanks(indices.map((i) => byB.get(i) as number));
  const mean = (indices.length + 1) / 2;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < indices.length; i++) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) ** 2;
    sbb += (rb[i] - mean) ** 2;
  }
  if (saa === 0 || sbb === 0) return { ok: false, reason: 'every block has the same score in one of the scorings, so there is no ordering to correlate' };
  const rankA = new Map(rankBlocks(a, metric).map((index, r) => [index, r + 1]));
  const rankB = new Map(rankBlocks(b, metric).map((index, r) => [index, r + 1]));
  const moved = indices
    .map((index) => ({ index, rankA: rankA.get(index) as number, rankB: rankB.get(index) as number }))
    .filter((m) => m.rankA !== m.rankB)
    .sort((x, y) => Math.abs(y.rankA - y.rankB) - Math.abs(x.rankA - x.rankB) || x.rankA - y.rankA);
  return { ok: true, metric, rho: sab / Math.sqrt(saa * sbb), moved };
}

/** Intervals by block index, for drawing and tables. */
export function intervalsByIndex(info: IntervalsInfo | null): Map<number, BlockIntervals> {
  return new Map((info?.blocks ?? []).map((b) => [b.index, b]));
}

/** Strips a bootstrap to what labels and links need (no replicates). */
export function intervalsInfo(boot: Bootstrap): IntervalsInfo {
  return { confidence: boot.confidence, resamples: boot.resamples, seed: boot.seed, sequences: boot.sequences, blocks: boot.blocks };
}
