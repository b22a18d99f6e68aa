import { describe, expect, it } from 'vitest';
import { normalizeRemoval, removalKey } from '../../src/engine/plan.ts';
import { accumulateStatePairs, bestWindow, cellRemoval, emptyPairSums, similarityFromSums } from '../../src/analysis/similarity.ts';
import { cliffStep, prefixSet, randomOrder, reverseOrder } from '../../src/analysis/sweep.ts';

describe('sweep orderings', () => {
  it('reverse order removes the deepest blocks first and the last block only at the very end', () => {
    expect(reverseOrder(4)).toEqual([2, 1, 0, 3]);
    expect(reverseOrder(12).slice(0, 3)).toEqual([10, 9, 8]);
    expect([1, 2, 3].map((k) => prefixSet(reverseOrder(4), k))).toEqual([[2], [1, 2], [0, 1, 2]]);
  });

  it('a random order is a seeded permutation: the same seed gives the same order, seeds differ', () => {
    const a = randomOrder(12, 3);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(randomOrder(12, 3)).toEqual(a);
    const distinct = new Set([0, 1, 2, 3, 4].map((seed) => randomOrder(12, seed).join(',')));
    expect(distinct.size).toBe(5);
  });

  it('the cliff is the step with the largest rise in log perplexity', () => {
    const steps = [10, 11, 12, 40, 60].map((ppl) => ({ removed: [], ppl, nll: Math.log(ppl) }));
    expect(cliffStep(steps)).toBe(3);
    expect(cliffStep(steps.slice(0, 1))).toBeNull();
  });

  it('removal keys ignore order and duplicates', () => {
    expect(removalKey({ blocks: [3, 1, 3] })).toBe(removalKey({ blocks: [1, 3], attention: [] }));
    expect(removalKey({ attention: [1] })).not.toBe(removalKey({ mlp: [1] }));
    expect(normalizeRemoval({ mlp: [5, 2] })).toEqual({ blocks: [], attention: [], mlp: [2, 5] });
  });
});

describe('layer × layer similarity', () => {
  // Three states of two tokens in 2-D: x0 = (1,0),(0,1); x1 rotates token 0 by 90°; x2 = x0 scaled.
  const x0 = new Float32Array([1, 0, 0, 1]);
  const x1 = new Float32Array([0, 1, 0, 1]);
  const x2 = new Float32Array([2, 0, 0, 3]);

  it('pools cos and arccos/π over every token of every sequence', () => {
    const sums = emptyPairSums(3);
    accumulateStatePairs(sums, [x0, x1, x2], 2);
    accumulateStatePairs(sums, [x0, x0, x0], 2);
    const m = similarityFromSums(sums, [4, 7]);
    expect(m.tokens).toBe(4);
    // (0,1): token cosines 0, 1 (first sequence) and 1, 1 (second) -> mean 0.75; angles 1/2, 0, 0, 0.
    expect(m.cos[0][1]).toBeCloseTo(0.75, 12);
    expect(m.angular[0][1]).toBeCloseTo(0.125, 12);
    expect(m.cos[0][2]).toBeCloseTo(1, 12);
    expect(m.angular[1][2]).toBeCloseTo(0.125, 12);
    expect(Number.isNaN(m.cos[1][0])).toBe(true);
  });

  it('a clicked cell (i, j) removes blocks i … j−1 (in original indices), and the best window is the argmin', () => {
    const blocks = [0, 1, 2, 3];
    expect(cellRemoval({ blocks }, 1, 3)).toEqual([1, 2]);
    expect(cellRemoval({ blocks: [0, 2, 5] }, 1, 3)).toEqual([2, 5]);
    expect(() => cellRemoval({ blocks }, 2, 2)).toThrow(RangeError);
    const angular = Array.from({ length: 5 }, (_, i) => Array.from({ length: 5 }, (_, j) => (j > i ? 0.1 * (j - i) + (i === 2 ? -0.05 : 0) : Number.NaN)));
    const matrix = { blocks, cos: angular, angular, tokens: 1 };
    expect(bestWindow(matrix, 1)).toMatchObject({ start: 2, removed: [2] });
    expect(bestWindow(matrix, 2)).toMatchObject({ start: 2, removed: [2, 3] });
    expect(bestWindow(matrix, 3)).toMatchObject({ start: 0, removed: [0, 1, 2] });
  });
});
