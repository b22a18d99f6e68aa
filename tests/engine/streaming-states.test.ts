/**
 * The state-reading analyses on block-streamed CPU models (issue 12): the layer × layer similarity
 * heatmap (pairs accumulated as states stream by) and the logit lens read every residual state through
 * Model.forEachState, so a streamed model gives the resident numbers: cos / angular cells within 1e-6,
 * the same top tokens. The heatmap's j = i + 1 cells are also checked against the streamed score's own
 * per-block sums (computed by the backend, not from the states read back).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { logitLens } from '../../src/analysis/logit-lens.ts';
import { accumulateStatePairs, accumulateStatePairsOf, emptyPairSums, layerSimilarity } from '../../src/analysis/similarity.ts';
import { type BackendKind, Model } from '../../src/engine/model.ts';
import { makePlan, type Removal } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { fixtureNames, HF_FIXTURES_DIR, readGolden } from './fixtures.ts';
import { expectDiagonalMatchesScore, lensDifference, matrixDifference } from './state-compare.ts';

const names = fixtureNames(HF_FIXTURES_DIR);

describe.each(names)('similarity and logit lens of the block-streamed CPU model hf/%s', (name) => {
  it('equal the resident ones (1e-6, same top tokens), with and without removal, with per-block progress', async () => {
    const golden = readGolden(name, HF_FIXTURES_DIR);
    const source = () => directorySource(join(HF_FIXTURES_DIR, name));
    const backend: BackendKind = 'cpu-reference';
    const resident = await Model.load(source(), backend, { mode: 'resident' });
    const progress: [number, number][] = [];
    const streamed = await Model.load(source(), backend, { mode: 'streamed', onBlock: (done, total) => progress.push([done, total]) });
    try {
      expect(streamed.mode).toBe('streamed');
      const removals: Removal[] = [{}, { blocks: golden.removal.removed }, { attention: golden.attnOnlyRemoval.removedAttention }];
      for (const removal of removals) {
        const plan = makePlan(resident.spec.layers, removal);
        progress.length = 0;
        const a = await layerSimilarity(resident, golden.ids, plan);
        const b = await layerSimilarity(streamed, golden.ids, plan);
        expect(matrixDifference(a, b), JSON.stringify(removal)).toBeLessThanOrEqual(1e-6);
        // One block-major pass: every kept block once, reported as it finishes.
        expect(progress).toEqual(plan.blocks.map((_, k) => [k + 1, plan.blocks.length]));
        await expectDiagonalMatchesScore(streamed, golden.ids, plan, b);

        const prompt = golden.ids[golden.ids.length - 1];
        const la = await logitLens(resident, prompt, plan, { top: 3 });
        const lb = await logitLens(streamed, prompt, plan, { top: 3 });
        expect(lensDifference(la, lb), JSON.stringify(removal)).toBeLessThanOrEqual(1e-6);
      }
      // Nothing made it resident on the way (the CPU rule loads every block only for decoding).
      expect(streamed.mode).toBe('streamed');
      expect(streamed.checkpoint.weights.blocks).toEqual([]);
    } finally {
      resident.dispose();
      streamed.dispose();
    }
  });
});

describe('the fast CPU kernels (onnxruntime), streamed', () => {
  it('give the resident heatmap and lens too (llama3-v5)', async () => {
    const name = 'llama3-v5';
    const golden = readGolden(name, HF_FIXTURES_DIR);
    const resident = await Model.load(directorySource(join(HF_FIXTURES_DIR, name)), 'cpu', { mode: 'resident' });
    const streamed = await Model.load(directorySource(join(HF_FIXTURES_DIR, name)), 'cpu', { mode: 'streamed' });
    try {
      const plan = makePlan(resident.spec.layers, { blocks: golden.removal.removed });
      expect(matrixDifference(await layerSimilarity(resident, golden.ids, plan), await layerSimilarity(streamed, golden.ids, plan))).toBeLessThanOrEqual(1e-6);
      expect(lensDifference(await logitLens(resident, golden.ids[0], plan, { top: 2 }), await logitLens(streamed, golden.ids[0], plan, { top: 2 }))).toBeLessThanOrEqual(1e-6);
    } finally {
      resident.dispose();
      streamed.dispose();
    }
  });
});

describe('accumulateStatePairsOf (states one at a time)', () => {
  it('gives the pairwise cos / angular sums computed here directly, and accumulateStatePairs over whole sequences bit for bit', () => {
    const hidden = 5;
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    const sequences = [3, 6].map((tokens) => Array.from({ length: 4 }, () => Float32Array.from({ length: tokens * hidden }, random)));
    // Block-major, as a streamed pass delivers them: state j of every sequence before state j + 1.
    const incremental = emptyPairSums(4);
    for (let j = 0; j < 4; j++) for (const states of sequences) accumulateStatePairsOf(incremental, states.slice(0, j), states[j], hidden);
    expect(incremental.tokens).toBe(9);
    for (let i = 0; i < 4; i++) {
      for (let j = 0; j < 4; j++) {
        let cos = 0;
        let angular = 0;
        for (const states of sequences) {
          for (let t = 0; t < states[0].length / hidden; t++) {
            const a = states[i].subarray(t * hidden, (t + 1) * hidden);
            const b = states[j].subarray(t * hidden, (t + 1) * hidden);
            const c = a.reduce((s, v, k) => s + v * b[k], 0) / Math.hypot(...a) / Math.hypot(...b);
            cos += c;
            angular += Math.acos(Math.min(1, c)) / Math.PI;
          }
        }
        expect(incremental.cosSum[i * 4 + j]).toBeCloseTo(j > i ? cos : 0, 12);
        expect(incremental.angularSum[i * 4 + j]).toBeCloseTo(j > i ? angular : 0, 12);
      }
    }
    const whole = emptyPairSums(4);
    for (const states of sequences) accumulateStatePairs(whole, states, hidden);
    expect(Array.from(whole.cosSum)).toEqual(Array.from(incremental.cosSum));
    expect(Array.from(whole.angularSum)).toEqual(Array.from(incremental.angularSum));
    expect(() => accumulateStatePairsOf(incremental, sequences[0], sequences[0][0], hidden)).toThrow(/expected 4 states, got a state 4/);
  });
});
