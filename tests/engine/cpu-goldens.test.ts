import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blockScores } from '../../src/analysis/influence.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan, type Removal } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { allFixtures, type GoldenBlock, type GoldenNll, maxRelativeError, readGolden } from './fixtures.ts';

// tests/fixtures: goldens of our float64 reference (itself checked against PyTorch); tests/fixtures-hf:
// checkpoints written by transformers and goldens from transformers' own float64 forward.
describe.each(allFixtures())('CPU backend vs float64 goldens: $label', ({ name, dir }) => {
  const golden = readGolden(name, dir);
  const modelPromise = Model.load(directorySource(join(dir, name)), 'cpu');

  async function check(removal: Removal, blocks: GoldenBlock[], nll: GoldenNll, lastLogits: number[][]) {
    const model = await modelPromise;
    const plan = makePlan(model.spec.layers, removal);
    const scores = blockScores(await model.score(golden.ids, plan));
    expect(scores.map((s) => s.index)).toEqual(blocks.map((b) => b.index));
    scores.forEach((s, k) => {
      expect(s.tokens).toBe(blocks[k].tokens);
      expect(Math.abs(s.bi - blocks[k].bi), `BI of block ${s.index}`).toBeLessThanOrEqual(1e-4);
      expect(Math.abs(s.angular - blocks[k].angular), `angular of block ${s.index}`).toBeLessThanOrEqual(1e-4);
      expect(Math.abs(s.relMagnitude - blocks[k].relMagnitude), `relMagnitude of block ${s.index}`).toBeLessThanOrEqual(1e-4);
    });
    const ppl = await model.perplexity(golden.ids, plan);
    expect(ppl.tokens).toBe(nll.count);
    expect(Math.abs(ppl.nll - nll.mean) / nll.mean).toBeLessThanOrEqual(1e-4);
    for (let s = 0; s < golden.ids.length; s++) {
      const logits = await model.lastLogits(golden.ids[s], plan);
      expect(maxRelativeError(logits, lastLogits[s]), `last logits of sequence ${s}`).toBeLessThanOrEqual(1e-4);
    }
  }

  it(`BI/angular/relMagnitude of every block, NLL and last logits of ${name} match within 1e-4`, async () => {
    await check({}, golden.blocks, golden.nll, golden.lastLogits);
  });

  it(`removing blocks ${golden.removal.removed.join(',')} of ${name} changes stats, NLL and logits exactly as the golden says`, async () => {
    await check({ blocks: golden.removal.removed }, golden.removal.blocks, golden.removal.nll, golden.removal.lastLogits);
  });

  it(`attention-only and MLP-only removal of ${name} match the goldens`, async () => {
    const a = golden.attnOnlyRemoval;
    await check({ attention: a.removedAttention }, a.blocks, a.nll, a.lastLogits);
    const m = golden.mlpOnlyRemoval;
    await check({ mlp: m.removedMlp }, m.blocks, m.nll, m.lastLogits);
  });

  it(`KV-cached decoding of ${name} gives the same last logits as a full forward`, async () => {
    const model = await modelPromise;
    const plan = makePlan(model.spec.layers, { blocks: golden.removal.removed });
    const ids = golden.ids[0];
    const cache = model.backend.createCache(ids.length, plan);
    let last: Float32Array | null = null;
    await model.backend.forward({ ids: ids.slice(0, 10), plan, logits: 'none', cache });
    for (const id of ids.slice(10)) last = (await model.backend.forward({ ids: [id], plan, logits: 'last', cache })).logits;
    expect(maxRelativeError(last as Float32Array, golden.removal.lastLogits[0])).toBeLessThanOrEqual(1e-4);
  });
});
