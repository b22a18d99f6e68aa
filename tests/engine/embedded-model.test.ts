/** The shipped model (public/models/sotu-llama) against goldens from the float64 PyTorch reference. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blockScores, lowestBlocks } from '../../src/analysis/influence.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { windows } from '../../src/engine/tokenizer.ts';
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

/**
 * The model card's headline numbers, read from public/models/sotu-llama/README.md and recomputed on the
 * evaluation it describes (its texts, chapters, windows and removal sets) with the CPU backend: each printed
 * value must be the measured one rounded to the digits printed.
 */
describe('the model card (public/models/sotu-llama/README.md) states what the shipped model and texts give', () => {
  const card = readFileSync(join(ROOT, 'public', 'models', 'sotu-llama', 'README.md'), 'utf8');
  const match = (pattern: RegExp, what: string): RegExpMatchArray => {
    const m = card.match(pattern);
    if (!m) throw new Error(`the model card has no ${what} (${pattern})`);
    return m;
  };
  const list = (text: string) => text.split(',').map((x) => Number(x.trim()));
  const number = (text: string) => ({ value: Number(text), half: 0.5 * 10 ** -(text.split('.')[1]?.length ?? 0) });
  const expectPrinted = (printed: string, measured: number, what: string) => {
    const { value, half } = number(printed);
    expect(Math.abs(measured - value), `${what}: card ${printed}, measured ${measured}`).toBeLessThanOrEqual(half + 1e-9);
  };
  const evalHeader = match(/\| measure \(Moby-Dick ch\. (\d+)–(\d+), the first (\d+) × (\d+) tokens of `([\w.-]+)`/, 'evaluation header in the table');
  const calibration = match(/BI per block on the calibration text \(chapters (\d+)–(\d+), the first (\d+) × (\d+) tokens of `([\w.-]+)`\): ([^\n]+(?:\n[^\n]+)*?)\.\n/, 'BI line');
  const full = match(/\| held-out PPL, full model \| \*\*([\d.]+)\*\* \|/, 'held-out perplexity row');
  const lowest = match(/\| PPL with the (\d+) lowest-BI blocks removed \[([\d, ]+)\] \([^)]*\) \| \*\*([\d.]+)\*\* \|/, '3 lowest-BI row');
  const last = match(/\| PPL with the last (\d+) blocks removed \[([\d, ]+)\] \(reverse order\) \| ([\d.]+) \|/, 'last-blocks row');
  const random = match(/\| PPL with (\d+) random blocks removed, median of (\d+) sets \(min–max\) \| ([\d.]+) \(([\d.]+)–([\d.]+)\) \|/, 'random-sets row');
  const randomSets = [...match(/The \d+ random sets[^:]*:((?:\s*\[[\d, ]+\],?)+)\./, 'list of random sets')[1].matchAll(/\[([\d, ]+)\]/g)].map((m) => list(m[1]));
  const modelPromise = Model.load(directorySource(join(ROOT, 'public', 'models', 'sotu-llama')), 'cpu');

  const textWindows = async (file: string, seqLen: string, count: string) => {
    const tokenizer = (await modelPromise).requireTokenizer();
    return windows(tokenizer.encode(readFileSync(join(ROOT, 'public', 'calibration', file), 'utf8')), Number(seqLen), Number(count));
  };
  const ppl = async (sequences: number[][], blocks: number[]) => {
    const model = await modelPromise;
    return (await model.perplexity(sequences, makePlan(model.spec.layers, { blocks }))).ppl;
  };

  it('the chapter ranges it names are the chapters in the shipped texts', () => {
    for (const [, first, lastChapter, , , file] of [evalHeader, calibration]) {
      const chapters = [...readFileSync(join(ROOT, 'public', 'calibration', file), 'utf8').matchAll(/^CHAPTER (\d+)\./gm)].map((m) => Number(m[1]));
      expect(chapters, file).toEqual(Array.from({ length: Number(lastChapter) - Number(first) + 1 }, (_, i) => Number(first) + i));
    }
  });

  it('BI per block on its calibration windows, and the 3 lowest-BI blocks it removes', async () => {
    const model = await modelPromise;
    const [, , , count, seqLen, file, values] = calibration;
    const scores = blockScores(await model.score(await textWindows(file, seqLen, count), makePlan(model.spec.layers)));
    const printed = [...values.matchAll(/(\d+): ([\d.]+)/g)];
    expect(printed.map((m) => Number(m[1]))).toEqual(scores.map((s) => s.index));
    for (const [, index, value] of printed) expectPrinted(value, scores[Number(index)].bi, `BI of block ${index}`);
    expect(lowestBlocks(scores, 'bi', Number(lowest[1]))).toEqual(list(lowest[2]));
  });

  it('held-out perplexity: full, 3 lowest-BI removed, last 3 removed, median (min–max) of its random sets', { timeout: 300_000 }, async () => {
    const model = await modelPromise;
    const [, , , count, seqLen, file] = evalHeader;
    const sequences = await textWindows(file, seqLen, count);
    expect(sequences.length).toBe(Number(count));
    expectPrinted(full[1], await ppl(sequences, []), 'full model');
    expectPrinted(lowest[3], await ppl(sequences, list(lowest[2])), `removed [${lowest[2]}]`);
    const layers = model.spec.layers;
    expect(list(last[2])).toEqual(Array.from({ length: Number(last[1]) }, (_, i) => layers - Number(last[1]) + i));
    expectPrinted(last[3], await ppl(sequences, list(last[2])), `removed [${last[2]}]`);
    expect(randomSets).toHaveLength(Number(random[2]));
    for (const set of randomSets) expect(set, 'each random set').toHaveLength(Number(random[1]));
    const values = [];
    for (const set of randomSets) values.push(await ppl(sequences, set));
    values.sort((a, b) => a - b);
    const median = values.length % 2 ? values[(values.length - 1) / 2] : (values[values.length / 2 - 1] + values[values.length / 2]) / 2;
    expectPrinted(random[3], median, 'median of the random sets');
    expectPrinted(random[4], values[0], 'lowest of the random sets');
    expectPrinted(random[5], values.at(-1) as number, 'highest of the random sets');
  });
});
