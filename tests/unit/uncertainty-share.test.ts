/** Error bars leave the lab: in the share link (quantised, versioned within v1) and in the JSON / CSV export. */
import { describe, expect, it } from 'vitest';
import type { BlockScore } from '../../src/analysis/influence.ts';
import { bootstrapScores, type IntervalsInfo, intervalsInfo, rankStability } from '../../src/analysis/uncertainty.ts';
import type { BlockStatSums } from '../../src/engine/backend.ts';
import { CSV_HEADER, resultsCsv, resultsJson } from '../../src/export/results.ts';
import { base64urlToJson, jsonToBase64url } from '../../src/share/codec.ts';
import { decodeState, defaultState, type ExperimentState, encodeState, validateForModel } from '../../src/share/url-state.ts';

/** Twelve sequences over six blocks with a known spread: real bootstrap output to carry around. */
function bootstrapOfSix() {
  const perSequence: BlockStatSums[][] = Array.from({ length: 12 }, (_, s) =>
    [0.3, 0.012, 0.05, 0.011, 0.2, 0.0125].map((bi, index) => {
      const value = bi * (1 + 0.15 * Math.sin(3 * s + index));
      return { index, cosSum: (1 - value) * 64, angularSum: (value / 2) * 64, relMagnitudeSum: value * 3 * 64, tokens: 64 };
    }),
  );
  const boot = bootstrapScores(perSequence, { resamples: 300, seed: 4 });
  if (!boot.ok) throw new Error(boot.reason);
  return boot;
}

const boot = bootstrapOfSix();
const scores: BlockScore[] = boot.point;
const intervals: IntervalsInfo = intervalsInfo(boot);
const state: ExperimentState = { ...defaultState(), scores, intervals };

/** The largest quantisation error a link may add to a bound: half a step of the metric's range of bounds. */
function step(metric: 'bi' | 'angular' | 'relMagnitude'): number {
  const all = intervals.blocks.flatMap((b) => b[metric]);
  return (Math.max(...all) - Math.min(...all)) / (2 * 65534) + 1e-15;
}

describe('error bars in the share link', () => {
  it('round-trip: every bound comes back within half a quantisation step, with resamples, sequences and seed', () => {
    const decoded = decodeState(encodeState(state));
    expect(decoded.notices).toEqual([]);
    const back = decoded.state.intervals;
    expect(back).toBeDefined();
    expect(back).toMatchObject({ confidence: 0.95, resamples: 300, sequences: 12, seed: 4 });
    back?.blocks.forEach((b, i) => {
      expect(b.index).toBe(intervals.blocks[i].index);
      for (const m of ['bi', 'angular', 'relMagnitude'] as const) {
        expect(Math.abs(b[m][0] - intervals.blocks[i][m][0])).toBeLessThanOrEqual(step(m));
        expect(Math.abs(b[m][1] - intervals.blocks[i][m][1])).toBeLessThanOrEqual(step(m));
      }
    });
  });

  it('a link made before error bars (no s.e) still opens, with its scores and no intervals', () => {
    const hash = encodeState({ ...state, intervals: undefined });
    const [, json] = hash.split('.');
    const wire = base64urlToJson(json);
    if (!wire) throw new Error('the link does not decode');
    expect((wire.value as { s: Record<string, unknown> }).s.e).toBeUndefined();
    const decoded = decodeState(hash);
    expect(decoded.notices).toEqual([]);
    expect(decoded.state.scores).toHaveLength(6);
    expect(decoded.state.intervals).toBeUndefined();
  });

  it('damaged or hostile error bars are dropped with a notice; the scores stay', () => {
    const hash = encodeState(state);
    const [version, json, segment] = hash.split('.');
    const wire = base64urlToJson(json)?.value as { s: { e: Record<string, unknown> } };
    const tamper = (patch: Record<string, unknown>) => {
      const copy = structuredClone(wire);
      Object.assign(copy.s.e, patch);
      return decodeState(`${version}.${jsonToBase64url(copy)}.${segment}`);
    };
    for (const [patch, why] of [
      [{ d: 'AAAA' }, /damaged, truncated or for another number of blocks/],
      [{ d: 12 }, /damaged/],
      [
        {
          q: [
            [0, 1],
            [0, 1],
          ],
        },
        /value ranges/,
      ],
      [
        {
          q: [
            [1, 0],
            [0, 1],
            [0, 1],
          ],
        },
        /value ranges/,
      ],
      [{ b: 1 }, /resample count/],
      [{ n: 1 }, /sequence count/],
      [{ r: -1 }, /seed/],
    ] as const) {
      const decoded = tamper(patch);
      expect(decoded.state.intervals, JSON.stringify(patch)).toBeUndefined();
      expect(decoded.state.scores).toHaveLength(6);
      expect(decoded.notices.join(' ')).toMatch(why);
    }
    // Upper bounds swapped with lower bounds: refused, never drawn upside down.
    const codes = Buffer.from(String(wire.s.e.d), 'base64url');
    const swapped = Buffer.alloc(codes.length);
    for (let k = 0; k < 3; k++) {
      codes.copy(swapped, k * 24, k * 24 + 12, k * 24 + 24);
      codes.copy(swapped, k * 24 + 12, k * 24, k * 24 + 12);
    }
    expect(tamper({ d: swapped.toString('base64url') }).notices.join(' ')).toMatch(/lower bound lies above its upper bound/);
  });

  it('intervals for other blocks than the scores are not written, and go when the scores go', () => {
    const partial = { ...state, intervals: { ...intervals, blocks: intervals.blocks.slice(1) } };
    expect(decodeState(encodeState(partial)).state.intervals).toBeUndefined();
    const checked = validateForModel(decodeState(encodeState(state)).state, 4);
    expect(checked.state.scores).toBeUndefined();
    expect(checked.state.intervals).toBeUndefined();
  });
});

describe('error bars in the exported results', () => {
  const stability = rankStability(boot, 'bi', 2);

  it('CSV: the bounds of every metric and P(lowest) in the last columns, exactly as computed', () => {
    const csv = resultsCsv(scores, [3], 'bi', { intervals, stability });
    const [header, ...rows] = csv.trimEnd().split('\r\n');
    expect(header).toBe(CSV_HEADER.join(','));
    expect(CSV_HEADER.slice(10)).toEqual(['bi_ci_lo', 'bi_ci_hi', 'angular_ci_lo', 'angular_ci_hi', 'relMagnitude_ci_lo', 'relMagnitude_ci_hi', 'p_lowest']);
    rows.forEach((line, i) => {
      const cells = line.split(',').map(Number);
      const b = intervals.blocks[i];
      expect(cells.slice(10, 16)).toEqual([...b.bi, ...b.angular, ...b.relMagnitude]);
      expect(cells[16]).toBe(stability.pLowest[i].p);
    });
  });

  it('JSON: per block ci and pLowest, and how they were made (method, resamples, seed, k, cut stability)', () => {
    const parsed = JSON.parse(resultsJson({ ...state }, scores, [3], { createdAt: 'x' }, { intervals, stability }));
    expect(parsed.experiment.intervals).toBeUndefined();
    expect(parsed.blocks[1].ci).toEqual({ bi: intervals.blocks[1].bi, angular: intervals.blocks[1].angular, relMagnitude: intervals.blocks[1].relMagnitude });
    expect(parsed.blocks[1].pLowest).toBe(stability.pLowest[1].p);
    expect(parsed.errorBars).toMatchObject({
      confidence: 0.95,
      resamples: 300,
      seed: 4,
      sequences: 12,
      k: 2,
      metric: 'bi',
      cut: stability.cut,
      cutStability: stability.cutStability,
    });
  });
});
