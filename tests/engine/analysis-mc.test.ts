/**
 * Multiple choice on a fixture: accuracies against log-likelihoods computed here by brute force
 * (NLL of context + continuation minus NLL of the context, from model.perplexity).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareMc, encodeMcItems, evaluateMc, mcAlongSweep, parseMcJsonl } from '../../src/analysis/mc.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan, type Plan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import type { TextTokenizer } from '../../src/engine/tokenizer.ts';
import { FIXTURES_DIR } from './fixtures.ts';

/** The fixtures ship no tokenizer: one token per ASCII character (ids < 128 fit every fixture vocabulary). */
const charTokenizer: TextTokenizer = {
  encode: (text) => Array.from(text, (c) => c.charCodeAt(0) % 128),
  decode: (ids) => String.fromCharCode(...Array.from(ids)),
  tokenText: (id) => String.fromCharCode(id),
};

const JSONL = `{"question": "The cat sat on the", "choices": ["mat", "moon", "xylophone"], "answer": 0}
{"question": "Two plus two is", "choices": ["four", "five"], "answer": 1}
{"question": "Call me", "choices": ["Ishmael", "Ahab", "Queequeg", "Starbuck"], "answer": 2}
{"question": "The sea is", "choices": ["blue", "grey"], "answer": 0}
{"question": "Whales are", "choices": ["big", "small", "huge"], "answer": 1}
`;

const modelPromise = Model.load(directorySource(join(FIXTURES_DIR, 'llama-gqa')), 'cpu-reference'); // brute force vs the oracle

async function bruteForce(model: Model, question: string, choices: string[], plan: Plan): Promise<number[]> {
  const context = charTokenizer.encode(question);
  const contextNll = (await model.perplexity([context], plan)).nllSum;
  const out: number[] = [];
  for (const choice of choices) out.push(contextNll - (await model.perplexity([[...context, ...charTokenizer.encode(` ${choice}`)]], plan)).nllSum);
  return out;
}

const argmax = (xs: number[]) => xs.indexOf(Math.max(...xs));

describe('multiple choice by per-choice log-likelihood (llama-gqa, character tokens)', () => {
  it('a hand-made 5-question JSONL: log-likelihoods, acc and acc_norm equal the brute-force ones, original and pruned', async () => {
    const model = await modelPromise;
    const items = parseMcJsonl(JSONL);
    const encoded = encodeMcItems(model, items, charTokenizer);
    const { original, pruned } = await compareMc(model, encoded, { blocks: [1, 2] });
    for (const [result, plan] of [
      [original, makePlan(4)],
      [pruned, makePlan(4, { blocks: [1, 2] })],
    ] as const) {
      let hits = 0;
      let normHits = 0;
      for (const [q, item] of items.entries()) {
        const lls = await bruteForce(model, item.question, item.choices, plan);
        result.items[q].logLikelihoods.forEach((ll, c) => {
          expect(ll).toBeCloseTo(lls[c], 8);
        });
        if (argmax(lls) === item.answer) hits++;
        if (argmax(lls.map((ll, c) => ll / item.choices[c].length)) === item.answer) normHits++;
      }
      expect(result.n).toBe(5);
      expect(result.accuracy).toBe(hits / 5);
      expect(result.accNorm).toBe(normHits / 5);
    }
    expect(pruned.items[0].logLikelihoods).not.toEqual(original.items[0].logLikelihoods);
  });

  it('with answers set to the model’s choice on questions 1–3 and against it on 4–5, accuracy is exactly 0.6', async () => {
    const model = await modelPromise;
    const plan = makePlan(4);
    const items = parseMcJsonl(JSONL);
    for (const [q, item] of items.entries()) {
      const lls = await bruteForce(model, item.question, item.choices, plan);
      const best = argmax(lls);
      item.answer = q < 3 ? best : (best + 1) % item.choices.length;
    }
    const result = await evaluateMc(model, encodeMcItems(model, items, charTokenizer), plan);
    expect(result.accuracy).toBe(0.6);
    expect(result.items.map((r) => r.predicted === r.answer)).toEqual([true, true, true, false, false]);
  });

  it('accuracy along a sweep gives one result per step', async () => {
    const model = await modelPromise;
    const encoded = encodeMcItems(model, parseMcJsonl(JSONL), charTokenizer);
    const results = await mcAlongSweep(model, encoded, [{ removed: [] }, { removed: [2] }, { removed: [], removedMlp: [0] }]);
    expect(results).toHaveLength(3);
    expect(results[1]).toEqual(await evaluateMc(model, encoded, makePlan(4, { blocks: [2] })));
  });
});
