/**
 * The numbers behind the charts as data: per-block scores, ranks and the removal as JSON (with the
 * experiment that produced them) and as CSV (RFC 4180: header row, CRLF line ends, quoted when needed).
 * Numbers are written with JavaScript's shortest round-trip form, so a reader gets back the same doubles.
 */
import { type BlockScore, type Metric, METRICS, rankBlocks } from '../analysis/influence.ts';
import { type BlockIntervals, type IntervalsInfo, intervalsByIndex, type RankStability } from '../analysis/uncertainty.ts';
import type { ExperimentState } from '../share/url-state.ts';

const METRIC_IDS: Metric[] = METRICS.map((m) => m.id);

export interface BlockResult {
  index: number;
  bi: number | null;
  angular: number | null;
  relMagnitude: number | null;
  tokens: number;
  /** 1 = least influential (first to remove) by each metric. */
  rank: Record<Metric, number>;
  removed: boolean;
  /** 95% bootstrap intervals per metric; null without error bars. */
  ci: Record<Metric, [number, number]> | null;
  /** P(among the k lowest) for the slider's cut; null without one. */
  pLowest: number | null;
}

/** The error bars that go with a set of scores (src/analysis/uncertainty.ts). */
export interface ErrorBars {
  intervals: IntervalsInfo | null;
  stability: RankStability | null;
}

const ciOf = (b: BlockIntervals | undefined) => (b ? { bi: b.bi, angular: b.angular, relMagnitude: b.relMagnitude } : null);

/** Per-block rows in block order: scores (null when not finite), 1-based ranks by every metric, removed, error bars. */
export function blockResults(scores: readonly BlockScore[], removed: readonly number[], errorBars: ErrorBars | null = null): BlockResult[] {
  const gone = new Set(removed);
  const intervalOf = intervalsByIndex(errorBars?.intervals ?? null);
  const pLowestOf = new Map((errorBars?.stability?.pLowest ?? []).map((b) => [b.index, b.p]));
  const ranks = Object.fromEntries(METRIC_IDS.map((m) => [m, new Map(rankBlocks(scores, m).map((index, r) => [index, r + 1]))])) as Record<Metric, Map<number, number>>;
  const finite = (v: number) => (Number.isFinite(v) ? v : null);
  return [...scores]
    .sort((a, b) => a.index - b.index)
    .map((s) => ({
      index: s.index,
      bi: finite(s.bi),
      angular: finite(s.angular),
      relMagnitude: finite(s.relMagnitude),
      tokens: s.tokens,
      rank: { bi: ranks.bi.get(s.index) as number, angular: ranks.angular.get(s.index) as number, relMagnitude: ranks.relMagnitude.get(s.index) as number },
      removed: gone.has(s.index),
      ci: ciOf(intervalOf.get(s.index)),
      pLowest: pLowestOf.get(s.index) ?? null,
    }));
}

/**
 * The results file: `{ format, version, createdAt, experiment, metric, removed, blocks, errorBars, extras }`.
 * `experiment` is the share state (scores and intervals left out: they are in `blocks` at full precision);
 * `errorBars` says how the intervals and P(lowest) were made (null without them); `extras` holds whatever
 * the caller adds (model facts, perplexities, the share link, …) as given.
 */
export function resultsJson(
  state: ExperimentState | null,
  scores: readonly BlockScore[],
  removed: readonly number[],
  extras: Record<string, unknown> = {},
  errorBars: ErrorBars | null = null,
): string {
  let experiment: Omit<ExperimentState, 'scores' | 'intervals'> | null = null;
  if (state) {
    const { scores: _dropped, intervals: _alsoDropped, ...rest } = state;
    experiment = rest;
  }
  const intervals = errorBars?.intervals;
  const stability = errorBars?.stability;
  const createdAt = typeof extras.createdAt === 'string' ? extras.createdAt : new Date().toISOString();
  const out = {
    format: 'prunelab-results',
    version: 1,
    createdAt,
    experiment,
    metric: state?.metric ?? null,
    removed: [...new Set(removed)].sort((a, b) => a - b),
    blocks: blockResults(scores, removed, errorBars),
    errorBars: intervals
      ? {
          method: 'percentile bootstrap over calibration sequences, token-weighted means',
          confidence: intervals.confidence,
          resamples: intervals.resamples,
          seed: intervals.seed,
          sequences: intervals.sequences,
          ...(stability ? { k: stability.k, metric: stability.metric, cut: stability.cut, cutStability: stability.cutStability, stable: stability.stable } : {}),
        }
      : null,
    extras,
  };
  return `${JSON.stringify(out, null, 2)}\n`;
}

/** One CSV field per RFC 4180: quoted when it holds a comma, a quote, CR or LF; quotes doubled. */
export function csvField(value: string | number | boolean | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(rows: readonly (readonly (string | number | boolean | null | undefined)[])[]): string {
  return rows.map((row) => row.map(csvField).join(',')).join('\r\n') + '\r\n';
}

export const CSV_HEADER = [
  'index',
  'bi',
  'angular',
  'relMagnitude',
  'tokens',
  'rank_bi',
  'rank_angular',
  'rank_relMagnitude',
  'rank',
  'removed',
  // Error bars last, so the columns before them keep their places; empty without error bars.
  'bi_ci_lo',
  'bi_ci_hi',
  'angular_ci_lo',
  'angular_ci_hi',
  'relMagnitude_ci_lo',
  'relMagnitude_ci_hi',
  'p_lowest',
] as const;

/**
 * Per block, in block order: index, the three scores, tokens, the 1-based rank by each metric, `rank` by
 * the chosen `metric` (1 = first to remove), removed (true/false), the 95% interval of each metric and
 * P(among the k lowest) (empty without error bars). Non-finite scores are empty fields.
 */
export function resultsCsv(scores: readonly BlockScore[], removed: readonly number[], metric: Metric, errorBars: ErrorBars | null = null): string {
  const rows = blockResults(scores, removed, errorBars).map((b) => [
    b.index,
    b.bi,
    b.angular,
    b.relMagnitude,
    b.tokens,
    b.rank.bi,
    b.rank.angular,
    b.rank.relMagnitude,
    b.rank[metric],
    b.removed,
    ...METRIC_IDS.flatMap((m) => b.ci?.[m] ?? [null, null]),
    b.pLowest,
  ]);
  return toCsv([[...CSV_HEADER], ...rows]);
}
