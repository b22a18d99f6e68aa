import { describe, expect, it } from 'vitest';
import type { BlockScore } from '../../src/analysis/influence.ts';
import { type Bootstrap, bootstrapScores, compareRankings, quantileSorted, rankStability, stabilitySentence, totalSums } from '../../src/analysis/uncertainty.ts';
import type { BlockStatSums } from '../../src/engine/backend.ts';

/** One sequence's sums for one block whose per-token BI, angular and relMagnitude means are given. */
function sums(index: number, tokens: number, bi: number, angular = bi / 2, relMagnitude = bi * 3): BlockStatSums {
  return { index, cosSum: (1 - bi) * tokens, angularSum: angular * tokens, relMagnitudeSum: relMagnitude * tokens, tokens };
}

function expectOk(result: ReturnType<typeof bootstrapScores>): Bootstrap {
  if (!result.ok) throw new Error(result.reason);
  return result;
}

/**
 * The exact bootstrap distribution of a token-weighted mean by enumerating every ordered draw of n
 * sequences out of n (n^n equally likely draws): value -> probability.
 */
function exactBootstrap(values: number[], tokens: number[]): Map<number, number> {
  const n = values.length;
  const out = new Map<number, number>();
  const draw = new Array<number>(n).fill(0);
  const total = n ** n;
  for (let code = 0; code < total; code++) {
    let c = code;
    for (let i = 0; i < n; i++) {
      draw[i] = c % n;
      c = Math.floor(c / n);
    }
    // Sum in sequence order, the order the implementation sums in (so equal draws give equal doubles).
    const counts = new Array<number>(n).fill(0);
    for (const s of draw) counts[s]++;
    let sum = 0;
    let weight = 0;
    for (let s = 0; s < n; s++) {
      sum += counts[s] * values[s] * tokens[s];
      weight += counts[s] * tokens[s];
    }
    const mean = sum / weight;
    out.set(mean, (out.get(mean) ?? 0) + 1 / total);
  }
  return out;
}

/** The p-quantile of a discrete distribution (smallest atom with CDF ≥ p) and the CDF margin around p. */
function discreteQuantile(distribution: Map<number, number>, p: number): { value: number; below: number; at: number } {
  const atoms = [...distribution.entries()].sort((a, b) => a[0] - b[0]);
  let cdf = 0;
  for (const [value, probability] of atoms) {
    const below = cdf;
    cdf += probability;
    if (cdf >= p) return { value, below, at: cdf };
  }
  throw new Error('unreachable');
}

describe('bootstrap confidence intervals over calibration sequences', () => {
  it('with 4 sequences of unequal length, the interval is the exact bootstrap distribution’s 2.5% and 97.5% quantiles (enumerated over all 256 draws)', () => {
    // Per-sequence mean relMagnitude and token counts: the token-weighted mean is what gets resampled.
    const means = [0.3, 0.5, 0.45, 0.9];
    const tokens = [100, 60, 128, 20];
    const perSequence = means.map((m, s) => [sums(0, tokens[s], 0.1, 0.05, m)]);
    const exact = exactBootstrap(means, tokens);
    const lo = discreteQuantile(exact, 0.025);
    const hi = discreteQuantile(exact, 0.975);
    // The quantiles sit well inside an atom, so 40 000 resamples cannot land on a neighbouring one.
    expect(0.025 - lo.below).toBeGreaterThan(0.005);
    expect(lo.at - 0.025).toBeGreaterThan(0.005);
    expect(0.975 - hi.below).toBeGreaterThan(0.005);
    expect(hi.at - 0.975).toBeGreaterThan(0.005);
    const boot = expectOk(bootstrapScores(perSequence, { resamples: 40_000, seed: 11 }));
    const [low, high] = boot.blocks[0].relMagnitude;
    expect(low).toBeCloseTo(lo.value, 12);
    expect(high).toBeCloseTo(hi.value, 12);
    // The point estimate is the token-weighted mean (not the mean of the sequence means).
    const weighted = means.reduce((a, m, s) => a + m * tokens[s], 0) / tokens.reduce((a, t) => a + t, 0);
    expect(boot.point[0].relMagnitude).toBeCloseTo(weighted, 12);
    expect(weighted).not.toBeCloseTo(means.reduce((a, m) => a + m, 0) / means.length, 3);
  });

  it('with 3 equal sequences, BI’s interval is [min, max] of the sequence means (each all-one-sequence draw has probability 1/27 > 2.5%)', () => {
    const bis = [0.02, 0.035, 0.011];
    const boot = expectOk(
      bootstrapScores(
        bis.map((bi) => [sums(7, 128, bi)]),
        { resamples: 20_000, seed: 3 },
      ),
    );
    expect(boot.blocks[0].index).toBe(7);
    expect(boot.blocks[0].bi[0]).toBeCloseTo(0.011, 12);
    expect(boot.blocks[0].bi[1]).toBeCloseTo(0.035, 12);
  });

  it('with 400 sequences the 95% half-width matches the normal approximation 1.96·σ/√n within 8%', () => {
    // Per-sequence BI from a seeded uniform(0.01, 0.05): σ = 0.04/√12.
    let a = 12345;
    const uniform = () => {
      a = (a * 1103515245 + 12345) % 2147483648;
      return a / 2147483648;
    };
    const n = 400;
    const values = Array.from({ length: n }, () => 0.01 + 0.04 * uniform());
    const mean = values.reduce((x, v) => x + v, 0) / n;
    const sd = Math.sqrt(values.reduce((x, v) => x + (v - mean) ** 2, 0) / (n - 1));
    const boot = expectOk(
      bootstrapScores(
        values.map((bi) => [sums(0, 64, bi)]),
        { resamples: 4000, seed: 1 },
      ),
    );
    const [lo, hi] = boot.blocks[0].bi;
    const halfWidth = (hi - lo) / 2;
    expect(Math.abs(halfWidth / ((1.96 * sd) / Math.sqrt(n)) - 1)).toBeLessThan(0.08);
    expect(lo).toBeLessThan(boot.point[0].bi);
    expect(hi).toBeGreaterThan(boot.point[0].bi);
    expect(Math.abs((lo + hi) / 2 - mean)).toBeLessThan(halfWidth * 0.15);
  });

  it('is reproducible from its seed, and another seed gives other resamples', () => {
    const perSequence = [0.1, 0.2, 0.15, 0.3, 0.12].map((bi) => [sums(0, 10, bi), sums(1, 10, bi / 2)]);
    const a = expectOk(bootstrapScores(perSequence, { resamples: 500, seed: 9 }));
    const b = expectOk(bootstrapScores(perSequence, { resamples: 500, seed: 9 }));
    const c = expectOk(bootstrapScores(perSequence, { resamples: 500, seed: 10 }));
    expect(b.blocks).toEqual(a.blocks);
    expect([...c.replicates.bi]).not.toEqual([...a.replicates.bi]);
    expect(a.resamples).toBe(500);
    expect(a.seed).toBe(9);
    expect(a.confidence).toBe(0.95);
    expect(a.caution).toMatch(/only 5 calibration sequences/);
  });

  it('refuses one sequence with the reason, and never invents an interval', () => {
    const one = bootstrapScores([[sums(0, 128, 0.1)]]);
    expect(one.ok).toBe(false);
    if (!one.ok) expect(one.reason).toMatch(/one calibration sequence.*spread between sequences/);
    expect(bootstrapScores([]).ok).toBe(false);
  });

  it('rejects per-sequence sums for different blocks, and bad resample counts, naming the field', () => {
    expect(() => bootstrapScores([[sums(0, 8, 0.1)], [sums(1, 8, 0.1)]])).toThrow(/perSequence: sequence 1 has sums for blocks \[1\], the first has \[0\]/);
    expect(() => bootstrapScores([[sums(0, 8, 0.1)], [sums(0, 8, 0.1)]], { resamples: 1 })).toThrow(/resamples/);
  });

  it('quantiles interpolate linearly between order statistics (numpy’s default)', () => {
    expect(quantileSorted([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantileSorted([0, 10], 0.025)).toBeCloseTo(0.25, 12);
    expect(quantileSorted([5], 0.975)).toBe(5);
  });
});

describe('rank stability from the resamples', () => {
  it('two blocks whose order flips in exactly one of four equally likely draws give P(lowest) = 3/4 for the lower, and the cut’s stability 3/4', () => {
    // Sequence 0: block 0 BI 0.25, block 1 0.5; sequence 1: 0.75 and 0.5. Block 0 is among the 1 lowest unless
    // both draws are sequence 1 (a mean of 0.5 ties with block 1 and ties go to the lower index): 3/4.
    const perSequence = [
      [sums(0, 1, 0.25), sums(1, 1, 0.5)],
      [sums(0, 1, 0.75), sums(1, 1, 0.5)],
    ];
    const boot = expectOk(bootstrapScores(perSequence, { resamples: 40_000, seed: 5 }));
    const stability = rankStability(boot, 'bi', 1);
    expect(stability.cut).toEqual([0]);
    expect(stability.pLowest[0].p).toBeCloseTo(0.75, 1);
    expect(Math.abs(stability.pLowest[0].p - 0.75)).toBeLessThan(0.01);
    expect(stability.pLowest[1].p).toBeCloseTo(1 - stability.pLowest[0].p, 12);
    expect(stability.cutStability).toBe(stability.pLowest[0].p);
    expect(stability.stable).toBe(false);
    expect(stabilitySentence(stability, boot.resamples)).toMatch(
      /^unstable: the bootstrap's lowest block by Block Influence is block 0 in 7[45]\.\d% of 40000 resamples; in doubt: block 0 \(7[45]\.\d%\), block 1 \(2[45]\.\d%\)$/,
    );
  });

  it('well separated blocks: the cut is stable (probability 1) and each block is in or out with certainty', () => {
    const perSequence = Array.from({ length: 12 }, (_, s) => [0.3, 0.01, 0.2, 0.02, 0.5].map((bi, i) => sums(i, 50, bi + 0.001 * Math.sin(s + i))));
    const boot = expectOk(bootstrapScores(perSequence));
    const stability = rankStability(boot, 'bi', 2);
    expect(stability.cut).toEqual([1, 3]);
    expect(stability.cutStability).toBe(1);
    expect(stability.pLowest.map((b) => b.p)).toEqual([0, 1, 0, 1, 0]);
    expect(stability.stable).toBe(true);
    expect(stabilitySentence(stability, boot.resamples)).toBe("stable: the bootstrap's 2 lowest by Block Influence are {1, 3} in 100% of 1000 resamples");
    expect(rankStability(boot, 'bi', 0).cutStability).toBe(1);
    expect(() => rankStability(boot, 'bi', 6)).toThrow(/k must be a whole number from 0 to 5/);
  });

  it('the point estimate in the bootstrap equals the totals the engine would report', () => {
    const perSequence = [
      [sums(2, 10, 0.1), sums(5, 10, 0.2)],
      [sums(2, 30, 0.3), sums(5, 30, 0.4)],
    ];
    const total = totalSums(perSequence);
    expect(total.map((t) => [t.index, t.tokens])).toEqual([
      [2, 40],
      [5, 40],
    ]);
    const boot = expectOk(bootstrapScores(perSequence));
    expect(boot.point[0].bi).toBeCloseTo((0.1 * 10 + 0.3 * 30) / 40, 12);
    expect(boot.indices).toEqual([2, 5]);
  });
});

describe('rank correlation across calibration sets', () => {
  const score = (index: number, bi: number): BlockScore => ({ index, bi, angular: bi, relMagnitude: bi, tokens: 1 });

  it('Spearman’s ρ equals 1 − 6Σd²/(n(n²−1)) without ties and names the blocks that change places', () => {
    const a = [0.5, 0.1, 0.3, 0.2, 0.9, 0.7].map((v, i) => score(i, v));
    const b = [0.5, 0.3, 0.1, 0.2, 0.95, 0.6].map((v, i) => score(i, v));
    const result = compareRankings(a, b, 'bi');
    if (!result.ok) throw new Error(result.reason);
    // Ranks (1 = lowest): a = [4,1,3,2,6,5], b = [4,3,1,2,6,5]: d = [0,-2,2,0,0,0], Σd² = 8.
    expect(result.rho).toBeCloseTo(1 - (6 * 8) / (6 * 35), 12);
    expect(result.moved).toEqual([
      { index: 1, rankA: 1, rankB: 3 },
      { index: 2, rankA: 3, rankB: 1 },
    ]);
  });

  it('ties get average ranks (x = 1..5, y = 5,6,7,8,7 gives 8/√95) and reversed orders give −1', () => {
    const a = [1, 2, 3, 4, 5].map((v, i) => score(i, v));
    const b = [5, 6, 7, 8, 7].map((v, i) => score(i, v));
    const tied = compareRankings(a, b, 'bi');
    expect(tied.ok && tied.rho).toBeCloseTo(8 / Math.sqrt(95), 12);
    const reversed = compareRankings(
      a,
      a.map((s) => score(s.index, -s.bi)),
      'bi',
    );
    expect(reversed.ok && reversed.rho).toBeCloseTo(-1, 12);
  });

  it('refuses blocks that differ, one block, or an ordering with no spread', () => {
    expect(compareRankings([score(0, 1), score(1, 2)], [score(0, 1), score(2, 2)], 'bi').ok).toBe(false);
    expect(compareRankings([score(0, 1)], [score(0, 1)], 'bi').ok).toBe(false);
    const flat = compareRankings([score(0, 1), score(1, 1)], [score(0, 1), score(1, 2)], 'bi');
    expect(flat.ok === false && flat.reason).toMatch(/same score/);
  });
});
