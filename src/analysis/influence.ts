/** Block Influence and its neighbours from the engine's streaming sums; rankings for pruning. */
import type { BlockStatSums } from '../engine/backend.ts';

export type Metric = 'bi' | 'angular' | 'relMagnitude';

export const METRICS: { id: Metric; label: string; description: string }[] = [
  { id: 'bi', label: 'Block Influence', description: '1 − mean cos(x_in, x_out) (ShortGPT)' },
  { id: 'angular', label: 'Angular distance', description: 'mean arccos(cos)/π between x_in and x_out (Gromov et al., n = 1)' },
  { id: 'relMagnitude', label: 'Relative magnitude', description: 'mean ‖f(x)‖ / ‖x + f(x)‖' },
];

export interface BlockScore {
  index: number;
  bi: number;
  angular: number;
  relMagnitude: number;
  tokens: number;
}

export function blockScores(sums: readonly BlockStatSums[]): BlockScore[] {
  return sums.map((s) => ({
    index: s.index,
    bi: 1 - s.cosSum / s.tokens,
    angular: s.angularSum / s.tokens,
    relMagnitude: s.relMagnitudeSum / s.tokens,
    tokens: s.tokens,
  }));
}

/** Block indices from least to most important by a metric (ties broken by index). */
export function rankBlocks(scores: readonly BlockScore[], metric: Metric): number[] {
  return [...scores].sort((a, b) => a[metric] - b[metric] || a.index - b.index).map((s) => s.index);
}

/** The n lowest-scoring blocks, ascending by index. */
export function lowestBlocks(scores: readonly BlockScore[], metric: Metric, n: number): number[] {
  return rankBlocks(scores, metric)
    .slice(0, n)
    .sort((a, b) => a - b);
}
