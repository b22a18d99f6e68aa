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
