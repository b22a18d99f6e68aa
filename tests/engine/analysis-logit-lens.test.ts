/** Logit lens: the last state's row is the model's own prediction; the first is the embedding's, computed here. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { headTop, logitLens } from '../../src/analysis/logit-lens.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { decodeToF32 } from '../../src/engine/safetensors.ts';
import { argmax } from '../../src/engine/sampling.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { FIXTURES_DIR, fixtureNames, HF_FIXTURES_DIR, readGolden } from './fixtures.ts';

const load = (name: string) => Model.load(directorySource(join(FIXTURES_DIR, name)), 'cpu-reference'); // exact analysis vs the oracle's own forward

function softmaxProb(row: Float32Array, id: number): number {
  const max = Math.max(...row);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return Math.exp(row[id] - max) / sum;
}

describe.each(['llama-gqa', 'gpt2'])('logit lens on %s', (name) => {
  const modelPromise = load(name);
  const ids = readGolden(name).ids[0];

  it('the last layer row equals the model’s own next-token prediction (full and pruned), at every position', async () => {
    const model = await modelPromise;
    for (const plan of [makePlan(4), makePlan(4, { blocks: [1] }), makePlan(4, { attention: [0], mlp: [3] })]) {
      const lens = await logitLens(model, ids, plan, { top: 3 });
      expect(lens.rows).toHaveLength(plan.blocks.length + 1);
      expect(lens.rows.map((r) => r.afterBlock)).toEqual([null, ...plan.blocks]);
      const last = lens.rows[lens.rows.length - 1];
      const next = await model.lastLogits(ids, plan);
      const top = last.positions[ids.length - 1][0];
      expect(top.id).toBe(argmax(next));
      expect(top.prob).toBeCloseTo(softmaxProb(next, top.id), 12);
      const all = (await model.backend.forward({ ids, plan, logits: 'all' })).logits as Float32Array;
      const vocab = model.spec.vocabSize;
      ids.forEach((_, t) => {
        expect(last.positions[t][0].id).toBe(argmax(all.subarray(t * vocab, (t + 1) * vocab)));
      });
    }
  });
});

describe('logit lens of the embedding (llama-gqa)', () => {
  it('row 0 is final RMSNorm + tied head on the token embedding, computed here in float64', async () => {
    const model = await load('llama-gqa');
    const { hidden, vocabSize, normEps } = model.spec;
    const ids = readGolden('llama-gqa').ids[1];
    const lens = await logitLens(model, ids, makePlan(4), { positions: 'last' });
    expect(lens.positions).toEqual([ids.length - 1]);
    const embed = decodeToF32(model.checkpoint.weights.embed);
    const norm = decodeToF32(model.checkpoint.weights.finalNorm.weight);
    const head = decodeToF32(model.checkpoint.weights.lmHead);
    const x = embed.subarray(ids[ids.length - 1] * hidden, (ids[ids.length - 1] + 1) * hidden);
    const rms = Math.sqrt(x.reduce((a, v) => a + v * v, 0) / hidden + normEps);
    const logits = new Float32Array(vocabSize);
    for (let v = 0; v < vocabSize; v++) {
      let dot = 0;
      for (let k = 0; k < hidden; k++) dot += (x[k] / rms) * norm[k] * head[v * hidden + k];
      logits[v] = dot;
    }
    expect(lens.rows[0].positions[0][0].id).toBe(argmax(logits));
    expect(lens.rows[0].positions[0][0].prob).toBeCloseTo(softmaxProb(logits, argmax(logits)), 5);
  });
});

/** Top k of a float64 row: larger value first, lower id on ties, with softmax probabilities. */
function topOfReference(row: readonly number[], k: number): { id: number; prob: number }[] {
  const max = Math.max(...row);
  const sum = row.reduce((a, v) => a + Math.exp(v - max), 0);
  return [...row.keys()]
    .sort((a, b) => row[b] - row[a] || a - b)
    .slice(0, k)
    .map((id) => ({ id, prob: Math.exp(row[id] - max) / sum }));
}

describe.each(fixtureNames(HF_FIXTURES_DIR))('logit lens on %s (written by transformers)', (name) => {
  it("the last state's row at the last position is transformers' own next-token distribution (family norm offset, logit scale and soft cap included), full and pruned", async () => {
    const model = await Model.load(directorySource(join(HF_FIXTURES_DIR, name)), 'cpu-reference');
    const golden = readGolden(name, HF_FIXTURES_DIR);
    const L = model.spec.layers;
    const cases = [
      { plan: makePlan(L), logits: golden.lastLogits },
      { plan: makePlan(L, { blocks: golden.removal.removed }), logits: golden.removal.lastLogits },
    ];
    for (const { plan, logits } of cases) {
      for (const [s, ids] of golden.ids.entries()) {
        const lens = await logitLens(model, ids, plan, { top: 3, positions: 'last' });
        const got = lens.rows[lens.rows.length - 1].positions[0];
        const want = topOfReference(logits[s], 3);
        // float32 forward vs transformers' float64: probabilities agree to ~1e-7; 1e-5 leaves a margin
        expect(got.map((t) => t.id)).toEqual(want.map((t) => t.id));
        for (const [i, t] of got.entries()) expect(Math.abs(t.prob - want[i].prob)).toBeLessThan(1e-5);
      }
    }
    model.dispose();
  });

  it('reading the head in chunks of rows gives the same tokens and probabilities as one chunk', async () => {
    const model = await Model.load(directorySource(join(HF_FIXTURES_DIR, name)), 'cpu-reference');
    const { hidden } = model.spec;
    const ids = readGolden(name, HF_FIXTURES_DIR).ids[0];
    const states: Float32Array[] = [];
    await model.forEachState([ids], makePlan(model.spec.layers), (_, __, state) => void states.push(state.slice()));
    const last = states[states.length - 1];
    const rows = ids.length;
    const whole = headTop(model.checkpoint, last, rows, 5, Number.POSITIVE_INFINITY);
    const chunked = headTop(model.checkpoint, last, rows, 5, 7 * hidden * 4); // 7 vocabulary rows at a time
    expect(chunked.map((r) => r.map((t) => t.id))).toEqual(whole.map((r) => r.map((t) => t.id)));
    for (const [r, row] of chunked.entries()) for (const [i, t] of row.entries()) expect(Math.abs(t.prob - whole[r][i].prob)).toBeLessThan(1e-12);
    model.dispose();
  });
});
