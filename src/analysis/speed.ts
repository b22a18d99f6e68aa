/**
 * Decode speed along a removal order: for k = 0 … L − 1 (the first k blocks of `order` removed), the time of a
 * one-token forward with the KV cache (the prompt pass is not timed). Per k the median over `tokens` forwards,
 * best of `rounds` rounds that each walk k = 0 … L − 1 after a warm-up walk, so a busy moment of the machine
 * or the JIT warming up does not land on one k.
 */
import type { Model } from '../engine/model.ts';
import { makePlan } from '../engine/plan.ts';
import { prefixSet } from './sweep.ts';

export interface SpeedPoint {
  k: number;
  removed: number[];
  /** 1 / median decode-forward time. */
  tokensPerSecond: number;
  msPerToken: number;
}

export interface SpeedOptions {
  /** Timed one-token forwards per k and round. */
  tokens: number;
  rounds?: number;
  signal?: AbortSignal;
  /** Called whenever a k's best time improves. */
  onPoint?: (point: SpeedPoint) => void;
}

/** A model whose every forward reports its wall time (e.g. the worker's per-job view). */
export type TimedModel = (onForward: (ms: number) => void) => Model;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export async function decodeSpeedAlong(timed: TimedModel, layers: number, order: readonly number[], promptIds: readonly number[], options: SpeedOptions): Promise<SpeedPoint[]> {
  const { signal } = options;
  const measure = async (removed: number[], tokens: number) => {
    const decodeMs: number[] = [];
    let forwards = 0;
    const model = timed((ms) => {
      if (forwards++ > 0) decodeMs.push(ms);
    });
    await model.generate(promptIds, makePlan(layers, { blocks: removed }), { maxNewTokens: tokens + 1, temperature: 0, stopAtEos: false, signal });
    return median(decodeMs);
  };
  const sets = Array.from({ length: layers }, (_, k) => prefixSet(order, k));
  for (const removed of sets) await measure(removed, Math.max(2, Math.ceil(options.tokens / 2)));
  const best = sets.map(() => Number.POSITIVE_INFINITY);
  const points: SpeedPoint[] = [];
  for (let round = 0; round < (options.rounds ?? 3); round++) {
    for (let k = 0; k < layers; k++) {
      best[k] = Math.min(best[k], await measure(sets[k], options.tokens));
      points[k] = { k, removed: sets[k], msPerToken: best[k], tokensPerSecond: 1000 / best[k] };
      options.onPoint?.(points[k]);
    }
  }
  return points;
}

/** Decode time per token as a fixed part (embedding, LM head, sampling, dispatch) plus a cost per block that runs. */
export interface SpeedFit {
  fixedMs: number;
  perBlockMs: number;
}

/**
 * Least-squares fit of ms per token against the number of blocks that run (L − k). Measured points scatter
 * around it on both sides, unlike a bound such as "time ∝ (L − k)/L of k = 0", which a noisy k = 0 makes
 * look beaten. A negative fixed part (noise on a model whose blocks are nearly all the time) is refitted
 * through the origin. Null with fewer than two different block counts.
 */
export function speedFit(points: readonly (Pick<SpeedPoint, 'k' | 'msPerToken'> | undefined)[], layers: number): SpeedFit | null {
  const xy = points.filter((p): p is Pick<SpeedPoint, 'k' | 'msPerToken'> => !!p && Number.isFinite(p.msPerToken)).map((p) => [layers - p.k, p.msPerToken] as const);
  if (new Set(xy.map(([x]) => x)).size < 2) return null;
  const n = xy.length;
  const mx = xy.reduce((a, [x]) => a + x, 0) / n;
  const my = xy.reduce((a, [, y]) => a + y, 0) / n;
  const sxy = xy.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const sxx = xy.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  const perBlockMs = sxy / sxx;
  const fixedMs = my - perBlockMs * mx;
  if (fixedMs >= 0) return { fixedMs, perBlockMs };
  return { fixedMs: 0, perBlockMs: xy.reduce((a, [x, y]) => a + x * y, 0) / xy.reduce((a, [x]) => a + x * x, 0) };
}
