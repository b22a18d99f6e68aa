/**
 * Error bars on the embedded model: the engine's per-sequence sums against Hugging Face transformers
 * (tests/golden/sotu-llama-per-sequence.json, tools/uncertainty/per_sequence_reference.py), and the
 * bootstrap's intervals against the normal approximation from those reference per-sequence means.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blockScores, type Metric } from '../../src/analysis/influence.ts';
import { bootstrapScores, rankStability, totalSums } from '../../src/analysis/uncertainty.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { windows } from '../../src/engine/tokenizer.ts';

const ROOT = join(import.meta.dirname, '..', '..');
interface Reference {
  seqLen: number;
  ids: number[][];
  perSequence: { index: number; tokens: number; bi: number; angular: number; relMagnitude: number }[][];
}
const reference = JSON.parse(readFileSync(join(ROOT, 'tests', 'golden', 'sotu-llama-per-sequence.json'), 'utf8')) as Reference;
const METRICS: Metric[] = ['bi', 'angular', 'relMagnitude'];

const modelPromise = Model.load(directorySource(join(ROOT, 'public', 'models', 'sotu-llama')), 'cpu');
const scoredPromise = modelPromise.then((model) => model.scoreSequences(reference.ids, makePlan(model.spec.layers)));

describe('error bars on the embedded model (16 calibration sequences of 128 tokens)', () => {
  it('the calibration windows are the ones the CLI scores (--text moby-dick.txt --seq-len 128 --max-sequences 16)', async () => {
    const model = await modelPromise;
    const text = readFileSync(join(ROOT, 'public', 'calibration', 'moby-dick.txt'), 'utf8');
    expect(windows(model.requireTokenizer().encode(text), 128, 16)).toEqual(reference.ids);
  }, 300_000);

  it('each sequence’s block means match Hugging Face transformers within 1e-4, and they add up to score()’s totals', async () => {
    const model = await modelPromise;
    const { total, perSequence } = await scoredPromise;
    expect(perSequence).toHaveLength(16);
    perSequence.forEach((sequence, s) => {
      blockScores(sequence).forEach((b, i) => {
        const ref = reference.perSequence[s][i];
        expect(b.index).toBe(ref.index);
        expect(b.tokens).toBe(ref.tokens);
        for (const m of METRICS) expect(Math.abs(b[m] - ref[m]), `sequence ${s} block ${i} ${m}`).toBeLessThanOrEqual(1e-4);
      });
    });
    // score() is the same loop: its totals are the per-sequence sums added up, to the last bit.
    const few = await model.scoreSequences(reference.ids.slice(0, 2), makePlan(model.spec.layers));
    expect(await model.score(reference.ids.slice(0, 2), makePlan(model.spec.layers))).toEqual(few.total);
    expect(totalSums(perSequence)).toEqual(total);
  }, 300_000);

  it('every 95% interval contains its point estimate, and its half-width is 1.96·sd(per-sequence means)/√n within 35%', async () => {
    const { total, perSequence } = await scoredPromise;
    const boot = bootstrapScores(perSequence);
    if (!boot.ok) throw new Error(boot.reason);
    expect(boot.resamples).toBe(1000);
    expect(boot.sequences).toBe(16);
    expect(boot.caution).toBeNull();
    const point = blockScores(total);
    expect(boot.point).toEqual(point);
    const n = reference.perSequence.length;
    const ratios: number[] = [];
    boot.blocks.forEach((interval, i) => {
      for (const m of METRICS) {
        const [lo, hi] = interval[m];
        expect(lo, `block ${i} ${m}`).toBeLessThanOrEqual(point[i][m]);
        expect(hi, `block ${i} ${m}`).toBeGreaterThanOrEqual(point[i][m]);
        // The normal approximation from the reference's per-sequence means (sample sd, n − 1).
        const means = reference.perSequence.map((sequence) => sequence[i][m]);
        const mean = means.reduce((a, v) => a + v, 0) / n;
        const sd = Math.sqrt(means.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1));
        const ratio = (hi - lo) / 2 / ((1.96 * sd) / Math.sqrt(n));
        ratios.push(ratio);
        expect(Math.abs(ratio - 1), `block ${i} ${m}: half-width ${(hi - lo) / 2} vs ${(1.96 * sd) / Math.sqrt(n)}`).toBeLessThan(0.35);
      }
    });
    // The bootstrap's plug-in sd is √((n−1)/n) of the sample sd: on average the ratio sits a little below 1.
    const meanRatio = ratios.reduce((a, r) => a + r, 0) / ratios.length;
    expect(meanRatio).toBeGreaterThan(0.85);
    expect(meanRatio).toBeLessThan(1.05);
  });

  it('the 3 lowest by BI: every block in the cut has P(lowest) ≥ the blocks outside it that are not in doubt', async () => {
    const { perSequence } = await scoredPromise;
    const boot = bootstrapScores(perSequence);
    if (!boot.ok) throw new Error(boot.reason);
    const stability = rankStability(boot, 'bi', 3);
    expect(stability.cut).toHaveLength(3);
    const sumP = stability.pLowest.reduce((a, b) => a + b.p, 0);
    // Each resample puts exactly 3 blocks among the 3 lowest.
    expect(sumP).toBeCloseTo(3, 9);
    expect(stability.cutStability).toBeLessThanOrEqual(Math.min(...stability.pLowest.filter((b) => stability.cut.includes(b.index)).map((b) => b.p)));
  });

  it('one sequence: no interval, and the reason says why', async () => {
    const { perSequence } = await scoredPromise;
    const one = bootstrapScores(perSequence.slice(0, 1));
    expect(one.ok).toBe(false);
    if (!one.ok) expect(one.reason).toMatch(/one calibration sequence/);
  });
});
