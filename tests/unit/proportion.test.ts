import { describe, expect, it } from 'vitest';
import { wilsonInterval } from '../../src/analysis/proportion.ts';

describe('wilsonInterval (95% score interval of an accuracy)', () => {
  it('matches published values: 3 of 8 → [0.137, 0.694]; 81 of 263 → [0.2553, 0.3662] (Newcombe 1998)', () => {
    const [lo, hi] = wilsonInterval(3, 8);
    expect(lo).toBeCloseTo(0.1368, 4);
    expect(hi).toBeCloseTo(0.6943, 4);
    const [lo2, hi2] = wilsonInterval(81, 263);
    expect(lo2).toBeCloseTo(0.2553, 4);
    expect(hi2).toBeCloseTo(0.3662, 4);
  });

  it('stays inside [0, 1] at the edges and narrows with n', () => {
    expect(wilsonInterval(0, 8)[0]).toBe(0);
    expect(wilsonInterval(8, 8)[1]).toBeCloseTo(1, 12);
    const width = (n: number) => {
      const [lo, hi] = wilsonInterval(n / 4, n);
      return hi - lo;
    };
    expect(width(800)).toBeLessThan(width(80));
    expect(width(80)).toBeLessThan(width(8));
    expect(wilsonInterval(0, 0)).toEqual([0, 1]);
  });
});
