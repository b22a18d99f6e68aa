import { describe, expect, it } from 'vitest';
import type { SweepStep } from '../../src/analysis/sweep.ts';
import { comparePair, finishedCliff, formatPpl, ranges } from '../../src/ui/strategies/series.ts';

const steps = (ppls: number[]): SweepStep[] => ppls.map((ppl, k) => ({ removed: Array.from({ length: k }, (_, i) => i), ppl, nll: Math.log(ppl) }));

describe('reading a sweep', () => {
  it('the pair summary lists the k where each strategy is lower, ties apart, k = 0 left out', () => {
    const bi = steps([10, 11, 13, 12, 40]);
    const reverse = steps([10, 12, 12, 12, 30]);
    expect(comparePair(bi, reverse)).toEqual({ aLower: [1], bLower: [2, 4], tie: [3] });
    expect(comparePair(bi, undefined)).toEqual({ aLower: [], bLower: [], tie: [] });
  });

  it('a cliff is marked only on a finished series whose perplexity rises there', () => {
    expect(finishedCliff(steps([10, 11, 12, 40, 60]), 4)).toBe(3);
    expect(finishedCliff(steps([10, 11, 12]), 4)).toBeNull(); // still streaming
    expect(finishedCliff(steps([10, 9, 8.9, 8]), 3)).toBeNull(); // never rises: no cliff
  });

  it('k lists read as ranges', () => {
    expect(ranges([1, 2, 3, 5, 7, 8])).toBe('1–3, 5, 7–8');
    expect(ranges([])).toBe('');
  });

  it('perplexity keeps enough digits to tell close strategies apart', () => {
    expect(formatPpl(1135.56)).toBe('1135.6');
    expect(formatPpl(1136)).toBe('1136.0');
    expect(formatPpl(12.3456)).toBe('12.346');
    expect(formatPpl(65242)).toBe('65.2k');
  });
});
