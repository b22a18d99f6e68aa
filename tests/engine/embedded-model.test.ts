/** The shipped model (public/models/sotu-llama) against goldens from the float64 PyTorch reference. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blockScores } from '../../src/analysis/influence.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { type GoldenBlock, type GoldenNll, maxRelativeError } from './fixtures.ts';

const ROOT = join(import.meta.dirname, '..', '..');
interface EmbeddedGolden {
  tokenizer: { text: string; ids: number[] }[];
  calibration: { ids: number[][] };
  evaluation: { ids: number[][] };
  blocks: GoldenBlock[];
  logits: { sequence: number; positions: number[]; rows: number[][] };
  nll: GoldenNll;
  lowestBiRemoval: { removed: number[]; nll: GoldenNll };
  greedy: { prompt: string; promptIds: number[]; continuation: number[]; text: string }[];
}
const golden = JSON.parse(readFileSync(join(ROOT, 'tests', 'golden', 'sotu-llama.json'), 'utf8')) as EmbeddedGolden;
const modelPromise = Model.load(directorySource(join(ROOT, 'public', 'models', 'sotu-llama')), 'cpu');

describe('embedded model sotu-llama vs float64 PyTorch goldens', () => {
  it('the tokenizer produces the ids the Python BPE produced, and decodes back to the text', async () => {
    const tokenizer = (await modelPromise).requireTokenizer();
    for (const c of golden.tokenizer) {
      expect(tokenizer.encode(c.text), c.text).toEqual(c.ids);
      expect(tokenizer.decode(c.ids)).toBe(c.text);
    }
  });

  it('BI / angular / relMagnitude of all 12 blocks on the calibration slice match within 1e-4', async () => {
    const model = await modelPromise;
    const scores = blockScores(await model.score(golden.calibration.ids, makePlan(model.spec.layers)));
    expect(scores).toHaveLength(golden.blocks.length);
    scores.forEach((s, i) => {
      expect(Math.abs(s.bi - golden.blocks[i].bi), `BI ${i}`).toBeLessThanOrEqual(1e-4);
      expect(Math.abs(s.angular - golden.blocks[i].angular), `angular ${i}`).toBeLessThanOrEqual(1e-4);
      expect(Math.abs(s.relMagnitude - golden.blocks[i].relMagnitude), `relMag ${i}`).toBeLessThanOrEqual(1e-4);
    });
  });

  it('logits at chosen positions match within 1e-4 (relative to the row scale)', async () => {
    const model = await modelPromise;
    const { logits } = await model.backend.forward({ ids: golden.calibration.ids[golden.logits.sequence], plan: makePlan(model.spec.layers), logits: 'all' });
    const vocab = model.spec.vocabSize;
    golden.logits.positions.forEach((p, k) => {
      expect(maxRelativeError((logits as Float32Array).subarray(p * vocab, (p + 1) * vocab), golden.logits.rows[k]), `position ${p}`).toBeLessThanOrEqual(1e-4);
    });
  });

  it('held-out NLL with no removal and with the 25% lowest-BI blocks removed match within 1e-4', async () => {
    const model = await modelPromise;
    const full = await model.perplexity(golden.evaluation.ids, makePlan(model.spec.layers));
    expect(full.tokens).toBe(golden.nll.count);
    expect(Math.abs(full.nll - golden.nll.mean) / golden.nll.mean).toBeLessThanOrEqual(1e-4);
    const pruned = await model.perplexity(golden.evaluation.ids, makePlan(model.spec.layers, { blocks: golden.lowestBiRemoval.removed }));
    expect(Math.abs(pruned.nll - golden.lowestBiRemoval.nll.mean) / golden.lowestBiRemoval.nll.mean).toBeLessThanOrEqual(1e-4);
  });

  it('greedy generation reproduces the golden continuations token for token', async () => {
    const model = await modelPromise;
    const tokenizer = model.requireTokenizer();
    for (const g of golden.greedy) {
      expect(tokenizer.encode(g.prompt)).toEqual(g.promptIds);
      const ids = await model.generate(g.promptIds, makePlan(model.spec.layers), { maxNewTokens: g.continuation.length });
      expect(ids, g.prompt).toEqual(g.continuation);
    }
  });
});
