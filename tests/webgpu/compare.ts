/**
 * How closely the WebGPU backend must match the CPU reference, one set of limits for every suite.
 *
 * Both backends decode the same stored bits (F32, F16 or BF16) to f32 and compute in f32, so the dtype does
 * not matter; what differs is summation order. Measured on SwiftShader (Node, Dawn) over 21 checkpoints —
 * tests/fixtures (7), tests/fixtures-hf (13), the embedded sotu-llama — and the random models of
 * forward.test.ts and split.test.ts, with and without removed blocks (2026-11-30):
 *   block statistics, |Δ sum| / tokens   worst 9.0e-8 (split llama F32; F16 worst 6.8e-8, BF16 6.2e-8)
 *   NLL, relative                        worst 1.4e-7 (split llama F32)
 *   last-position logits, absolute       worst 1.5e-5 (random qwen3 F16; embedded model 9.5e-6)
 *   hidden states, absolute              worst 1.9e-6
 * Each limit below is about 10× the worst measured value, so a wrong kernel (off by a whole term, not by
 * rounding) cannot pass.
 */
import { expect } from 'vitest';

/** |Δ statistic sum| / tokens, per sequence: 11× the worst measured 9.0e-8. */
export const STATS_PER_TOKEN = 1e-6;
/** The block averages users see (BI, angular distance, relative magnitude over all windows). */
export const BLOCK_AVERAGE = 1e-5;
/** Relative NLL: 7× the worst measured 1.4e-7. */
export const NLL_RELATIVE = 1e-6;
/** Absolute logits: 6.5× the worst measured 1.5e-5. */
export const LOGITS_ABS = 1e-4;
/** Absolute hidden states: 5× the worst measured 1.9e-6. */
export const STATES_ABS = 1e-5;

/**
 * Both backends order the blocks the same wherever the order is decided by more than rounding: at every
 * cut k where the k-th and (k+1)-th lowest reference values differ by more than 10 × `tolerance`, the k
 * lowest blocks are the same set on both sides (within a closer cluster the order may flip).
 */
export function expectSameRanking(reference: readonly number[], other: readonly number[], tolerance: number, what: string): number {
  const order = (values: readonly number[]) => values.map((_, i) => i).sort((a, b) => values[a] - values[b] || a - b);
  const want = order(reference);
  const got = order(other);
  let cuts = 0;
  for (let k = 1; k < want.length; k++) {
    if (reference[want[k]] - reference[want[k - 1]] <= 10 * tolerance) continue;
    cuts++;
    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
    expect(sorted(got.slice(0, k)), `${what}: the ${k} lowest blocks`).toEqual(sorted(want.slice(0, k)));
  }
  return cuts;
}
