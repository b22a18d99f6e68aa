/**
 * The numbers behind the charts as data: per-block scores, ranks and the removal as JSON (with the
 * experiment that produced them) and as CSV (RFC 4180: header row, CRLF line ends, quoted when needed).
 * Numbers are written with JavaScript's shortest round-trip form, so a reader gets back the same doubles.
 */
import { type BlockScore, type Metric, METRICS, rankBlocks } from '../analysis/influence.ts';
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
}

/** Per-block rows in block order: scores (null when not finite), 1-based ranks by every metric, removed. */
export function blockResults(scores: readonly BlockScore[], removed: readonly number[]): BlockResult[] {
  const gone = new Set(removed);
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
    }));
}

/**
 * The results file: `{ format, version, createdAt, experiment, metric, removed, blocks, extras }`.
 * `experiment` is the share state (scores left out: they are in `blocks` at full precision); `extras`
 * holds whatever the caller adds (model facts, perplexities, the share link, …) as given.
 */
export function resultsJson(state: ExperimentState | null, scores: readonly BlockScore[], removed: readonly number[], extras: Record<string, unknown> = {}): string {
  let experiment: Omit<ExperimentState, 'scores'> | null = null;
  if (state) {
    const { scores: _dropped, ...rest } = state;
    experiment = rest;
  }
  const createdAt = typeof extras.createdAt === 'string' ? extras.createdAt : new Date().toISOString();
  const out = {
    format: 'prunelab-results',
    version: 1,
    createdAt,
    experiment,
    metric: state?.metric ?? null,
    removed: [...new Set(removed)].sort((a, b) => a - b),
    blocks: blockResults(scores, removed),
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

export const CSV_HEADER = ['index', 'bi', 'angular', 'relMagnitude', 'tokens', 'rank_bi', 'rank_angular', 'rank_relMagnitude', 'rank', 'removed'] as const;

/**
 * Per block, in block order: index, the three scores, tokens, the 1-based rank by each metric, `rank` by
 * the chosen `metric` (1 = first to remove), and removed (true/false). Non-finite scores are empty fields.
 */
export function resultsCsv(scores: readonly BlockScore[], removed: readonly number[], metric: Metric): string {
  const rows = blockResults(scores, removed).map((b) => [
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
  ]);
  return toCsv([[...CSV_HEADER], ...rows]);
}
