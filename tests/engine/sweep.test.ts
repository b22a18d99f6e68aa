/**
 * Each sweep strategy on a 4-block fixture against a brute-force computation done here, straight from
 * the engine (model.perplexity, model.score, captured states), never through src/analysis/sweep.ts.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { halfBlockScores } from '../../src/analysis/half-blocks.ts';
import { blockScores } from '../../src/analysis/influence.ts';
import { layerSimilarity } from '../../src/analysis/similarity.ts';
import { runSweep, STRATEGIES, type SweepProgress, type SweepResult, type SweepStepEvent } from '../../src/analysis/sweep.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan, type Plan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { FIXTURES_DIR, readGolden } from './fixtures.ts';

const NAME = 'llama-gqa';
const golden = readGolden(NAME);
const calibration = [golden.ids[0]];
const evaluation = [golden.ids[1]];
const L = golden.layers;
const ascending = (xs: number[]) => [...xs].sort((a, b) => a - b);

let model: Model;
let sweep: SweepResult;
const events: SweepStepEvent[] = [];
let lastProgress: SweepProgress | null = null;

beforeAll(async () => {
  model = await Model.load(directorySource(join(FIXTURES_DIR, NAME)), 'cpu');
  sweep = await runSweep(model, calibration, {
    strategies: STRATEGIES,
    evaluation,
    seeds: 5,
    onStep: (e) => events.push(e),
    onProgress: (p) => (lastProgress = p),
  });
});

/** Per-token cos of two tokens × hidden states, float64, written out here independently. */
function tokenCosines(a: Float32Array, b: Float32Array, hidden: number): number[] {
  const out: number[] = [];
  for (let t = 0; t < a.length / hidden; t++) {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let k = 0; k < hidden; k++) {
      const x = a[t * hidden + k];
      const y = b[t * hidden + k];
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    out.push(Math.max(-1, Math.min(1, ab / Math.sqrt(aa) / Math.sqrt(bb))));
  }
  return out;
}

async function states(ids: number[], plan: Plan): Promise<Float32Array[]> {
  return (await model.backend.forward({ ids, plan: { ...plan, capture: 'states' }, logits: 'none' })).states as Float32Array[];
}

describe(`strategy sweep on ${NAME} (calibration drives, evaluation measures)`, () => {
  it('every step of every strategy (and every random seed) has k removed and the ppl model.perplexity gives for exactly that set on the evaluation data', async () => {
    const all = [...Object.entries(sweep.strategies), ...(sweep.randomSeeds ?? []).map((r) => [`random seed ${r.seed}`, r.steps] as const)];
    expect(Object.keys(sweep.strategies)).toEqual([...STRATEGIES]);
    for (const [name, steps] of all) {
      expect(steps, name).toHaveLength(L);
      for (const [k, step] of steps.entries()) {
        const removal = { blocks: step.removed, attention: step.removedAttention, mlp: step.removedMlp };
        expect(step.removed.length + (step.removedAttention?.length ?? 0) + (step.removedMlp?.length ?? 0), `${name} step ${k}`).toBe(k);
        expect(step.removed).toEqual(ascending(step.removed));
        const direct = await model.perplexity(evaluation, makePlan(L, removal));
        expect(step.ppl, `${name} step ${k}`).toBe(direct.ppl);
      }
    }
    expect(sweep.evaluationTokens).toBe(evaluation[0].length - 1);
  });

  it('bi one-shot removes blocks in ascending BI of the full model; relmag in ascending relative magnitude', async () => {
    const scores = blockScores(await model.score(calibration, makePlan(L)));
    const byBi = [...scores].sort((a, b) => a.bi - b.bi || a.index - b.index).map((s) => s.index);
    const byRel = [...scores].sort((a, b) => a.relMagnitude - b.relMagnitude || a.index - b.index).map((s) => s.index);
    expect(sweep.orders.bi).toEqual(byBi);
    expect(sweep.orders.relmag).toEqual(byRel);
    sweep.strategies.bi?.forEach((step, k) => {
      expect(step.removed).toEqual(ascending(byBi.slice(0, k)));
    });
    sweep.strategies.relmag?.forEach((step, k) => {
      expect(step.removed).toEqual(ascending(byRel.slice(0, k)));
    });
  });

  it("bi-iter's step k+1 adds the lowest-BI block of a fresh score of the model pruned to step k", async () => {
    const steps = sweep.strategies['bi-iter'] ?? [];
    for (let k = 0; k + 1 < steps.length; k++) {
      const fresh = blockScores(await model.score(calibration, makePlan(L, { blocks: steps[k].removed })));
      const lowest = fresh.reduce((a, b) => (b.bi < a.bi ? b : a)).index;
      expect(steps[k].removed).not.toContain(lowest);
      expect(steps[k + 1].removed).toEqual(ascending([...steps[k].removed, lowest]));
    }
  });

  it("SLEB's greedy choice at every step is the argmin of calibration NLL over all single additional removals", async () => {
    const steps = sweep.strategies.sleb ?? [];
    for (let k = 0; k + 1 < steps.length; k++) {
      let best = -1;
      let bestNll = Number.POSITIVE_INFINITY;
      for (let b = 0; b < L; b++) {
        if (steps[k].removed.includes(b)) continue;
        const { nll } = await model.perplexity(calibration, makePlan(L, { blocks: [...steps[k].removed, b] }));
        if (nll < bestNll) [best, bestNll] = [b, nll];
      }
      expect(steps[k + 1].removed).toEqual(ascending([...steps[k].removed, best]));
      expect(steps[k + 1].calibrationNll).toBe(bestNll);
    }
  });

  it('the angular window for each n is the argmin of mean arccos(cos)/π between x_l and x_l+n, as the similarity matrix says', async () => {
    const hidden = model.spec.hidden;
    const xs = await states(calibration[0], makePlan(L));
    const distance = (i: number, j: number) => {
      const cos = tokenCosines(xs[i], xs[j], hidden);
      return cos.reduce((a, c) => a + Math.acos(c) / Math.PI, 0) / cos.length;
    };
    const matrix = await layerSimilarity(model, calibration);
    for (let n = 1; n < L; n++) {
      let start = 0;
      for (let l = 1; l + n <= L; l++) if (distance(l, l + n) < distance(start, start + n)) start = l;
      const window = Array.from({ length: n }, (_, i) => start + i);
      expect(sweep.strategies.angular?.[n].removed, `n = ${n}`).toEqual(window);
      expect(sweep.strategies.angular?.[n].distance).toBeCloseTo(distance(start, start + n), 12);
      for (let l = 0; l + n <= L; l++) expect(matrix.angular[l][l + n]).toBeCloseTo(distance(l, l + n), 12);
    }
  });

  it('the similarity matrix next to its diagonal equals the engine’s own per-block BI and angular', async () => {
    const scores = blockScores(await model.score(golden.ids, makePlan(L)));
    const matrix = await layerSimilarity(model, golden.ids);
    expect(matrix.tokens).toBe(scores[0].tokens);
    for (const s of scores) {
      expect(1 - matrix.cos[s.index][s.index + 1]).toBeCloseTo(s.bi, 12);
      expect(matrix.angular[s.index][s.index + 1]).toBeCloseTo(s.angular, 12);
    }
  });

  it('reverse removes L−2, L−3, … and keeps the last block', () => {
    expect(sweep.strategies.reverse?.map((s) => s.removed)).toEqual([[], [2], [1, 2], [0, 1, 2]]);
  });

  it('random reports the median seed’s set and ppl with the min and max over 5 seeds', () => {
    const runs = sweep.randomSeeds ?? [];
    expect(runs.map((r) => r.seed)).toEqual([0, 1, 2, 3, 4]);
    for (const run of runs) {
      expect(ascending(run.order)).toEqual([0, 1, 2, 3]);
      run.steps.forEach((s, k) => {
        expect(s.removed).toEqual(ascending(run.order.slice(0, k)));
      });
    }
    sweep.strategies.random?.forEach((step, k) => {
      const ppls = runs.map((r) => r.steps[k].ppl).sort((a, b) => a - b);
      expect(step.ppl).toBe(ppls[2]);
      expect(step.pplMin).toBe(ppls[0]);
      expect(step.pplMax).toBe(ppls[4]);
      expect(runs[step.seed as number].steps[k].removed).toEqual(step.removed);
    });
  });

  it('attention and MLP halves are ranked by the cos across each half; the attention half matches the engine’s stats', async () => {
    const hidden = model.spec.hidden;
    const halves = await halfBlockScores(model, calibration);
    const full = await states(calibration[0], makePlan(L));
    for (let i = 0; i < L; i++) {
      const prefix: Plan = { blocks: Array.from({ length: i + 1 }, (_, b) => b), skipAttention: [], skipMlp: [i], capture: 'stats' };
      const [stats] = (await model.score(calibration, prefix)).slice(-1);
      expect(halves[i].attentionBi).toBeCloseTo(1 - stats.cosSum / stats.tokens, 12);
      const between = (await states(calibration[0], prefix)).at(-1) as Float32Array;
      const mlpCos = tokenCosines(between, full[i + 1], hidden);
      expect(halves[i].mlpBi).toBeCloseTo(1 - mlpCos.reduce((a, c) => a + c, 0) / mlpCos.length, 12);
    }
    const order = (key: 'attentionBi' | 'mlpBi') => [...halves].sort((a, b) => a[key] - b[key] || a.index - b.index).map((h) => h.index);
    sweep.strategies['bi-attn']?.forEach((s, k) => {
      expect(s.removed).toEqual([]);
      expect(s.removedAttention).toEqual(ascending(order('attentionBi').slice(0, k)));
    });
    sweep.strategies['bi-mlp']?.forEach((s, k) => {
      expect(s.removedMlp).toEqual(ascending(order('mlpBi').slice(0, k)));
    });
  });

  it('streams every step (and every random seed’s step) and ends its progress at done = total', () => {
    const stepCount = Object.values(sweep.strategies).reduce((a, s) => a + s.length, 0) + 5 * L;
    expect(events).toHaveLength(stepCount);
    expect(events[0]).toMatchObject({ strategy: 'bi', k: 0 });
    expect(lastProgress?.done).toBe(lastProgress?.total);
  });

  it('is cancellable, and refuses a max-removed that leaves no block', async () => {
    const controller = new AbortController();
    const run = runSweep(model, calibration, { strategies: ['sleb'], signal: controller.signal, onStep: () => controller.abort() });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    await expect(runSweep(model, calibration, { maxRemoved: L })).rejects.toThrow(/one block must remain/);
    const short = await runSweep(model, calibration, { strategies: ['bi'], maxRemoved: 1 });
    expect(short.strategies.bi).toHaveLength(2);
  });
});
