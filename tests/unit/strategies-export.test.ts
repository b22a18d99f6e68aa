import { describe, expect, it } from 'vitest';
import type { SweepStep } from '../../src/analysis/sweep.ts';
import { STRATEGIES_CSV_HEADER, type StrategiesData, strategiesCsv, strategiesValue } from '../../src/export/strategies-results.ts';

const step = (removed: number[], ppl: number, extra: Partial<SweepStep> = {}): SweepStep => ({ removed, ppl, nll: Math.log(ppl), ...extra });

const DATA: StrategiesData = {
  sweep: {
    layers: 4,
    maxRemoved: 2,
    seeds: 3,
    calibrationWindows: { maxSequences: 2, seqLen: 64 },
    evaluation: 'moby-dick-eval',
    evaluationWindows: { maxSequences: 2, seqLen: 64 },
    evaluationTokens: 126,
    fromLink: false,
    steps: {
      bi: [step([], 20), step([2], 22.5), step([1, 2], 40)],
      random: [step([], 20, { pplMin: 20, pplMax: 20 }), step([0], 30, { pplMin: 25, pplMax: 90 })],
      'bi-attn': [step([], 20), step([], 21, { removedAttention: [3] })],
    },
  },
  mc: {
    source: 'cloze',
    removal: { blocks: [1, 2], attention: [], mlp: [] },
    original: { accuracy: 0.25, accNorm: 0.25, n: 8, meanChoices: 4 },
    pruned: { accuracy: 0.375, accNorm: 0.5, n: 8, meanChoices: 4 },
  },
  mcAlong: { strategy: 'bi', steps: [step([], 20), step([2], 22.5)], points: [{ accuracy: 0.5, accNorm: 0.5, n: 8, meanChoices: 4 }, undefined] },
  speed: {
    layers: 4,
    orderLabel: 'BI',
    points: [
      { k: 0, removed: [], msPerToken: 4, tokensPerSecond: 250 },
      { k: 1, removed: [2], msPerToken: 3.1, tokensPerSecond: 1000 / 3.1 },
      { k: 2, removed: [1, 2], msPerToken: 2, tokensPerSecond: 500 },
    ],
  },
};

/** Parses the CSV this module writes (no quoted commas in it) into objects by header. */
function rows(csv: string): Record<string, string>[] {
  const [header, ...lines] = csv
    .trimEnd()
    .split('\r\n')
    .map((l) => l.split(','));
  return lines.map((cells) => Object.fromEntries(header.map((h, i) => [h, cells[i]])));
}

describe('strategies export', () => {
  it('CSV: one row per sweep step, MC side, MC-along point and speed point, with the same numbers', () => {
    const csv = strategiesCsv(DATA);
    expect(csv.split('\r\n')[0]).toBe(STRATEGIES_CSV_HEADER.join(','));
    const all = rows(csv);
    const sweep = all.filter((r) => r.table === 'sweep');
    expect(sweep.length).toBe(3 + 2 + 2);
    expect(sweep.find((r) => r.strategy === 'bi' && r.k === '2')).toMatchObject({ removed: '1 2', ppl: '40' });
    expect(sweep.find((r) => r.strategy === 'random' && r.k === '1')).toMatchObject({ ppl_min: '25', ppl_max: '90' });
    expect(sweep.find((r) => r.strategy === 'bi-attn' && r.k === '1')).toMatchObject({ removed: '', removed_attention: '3' });
    const mc = all.filter((r) => r.table === 'mc');
    expect(mc.map((r) => [r.model, r.accuracy, r.n, r.chance])).toEqual([
      ['original', '0.25', '8', '0.25'],
      ['pruned', '0.375', '8', '0.25'],
    ]);
    for (const r of mc) expect(Number(r.accuracy_lo) <= Number(r.accuracy) && Number(r.accuracy) <= Number(r.accuracy_hi)).toBe(true);
    expect(all.filter((r) => r.table === 'mc-along').map((r) => r.k)).toEqual(['0']);
    expect(all.filter((r) => r.table === 'speed').map((r) => Number(r.ms_per_token))).toEqual([4, 3.1, 2]);
  });

  it('JSON: sweep steps numbered by k, MC with intervals and chance, speed with its fit', () => {
    const value = strategiesValue(DATA);
    expect(value.sweep?.steps.bi?.[2]).toMatchObject({ k: 2, removed: [1, 2], ppl: 40 });
    expect(value.mc?.pruned.chance).toBe(0.25);
    expect(value.mc?.pruned.accuracyInterval[0]).toBeGreaterThan(0.1);
    expect(value.speed?.fit?.perBlockMs).toBeGreaterThan(0);
    expect(strategiesValue({ sweep: null, mc: null, mcAlong: null, speed: null })).toEqual({ sweep: null, mc: null, mcAlong: null, speed: null });
  });
});
