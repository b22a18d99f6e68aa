import { describe, expect, it } from 'vitest';
import { topOfRow } from '../../src/analysis/logit-lens.ts';
import { clozeTasks, encodeMcItem, parseMcJsonl } from '../../src/analysis/mc.ts';
import { PruneLabError } from '../../src/engine/errors.ts';
import { topTokens } from '../../src/engine/sampling.ts';
import type { TextTokenizer } from '../../src/engine/tokenizer.ts';

/** Whole words with their leading space are one token (" mat"), so a space moved onto the continuation matters. */
function wordTokenizer(): TextTokenizer & { vocab: string[] } {
  const vocab: string[] = [];
  const id = (piece: string) => {
    let i = vocab.indexOf(piece);
    if (i < 0) i = vocab.push(piece) - 1;
    return i;
  };
  return {
    vocab,
    encode: (text) => (text.match(/ ?[^ ]+| +/g) ?? []).map(id),
    decode: (ids) => Array.from(ids, (i) => vocab[i]).join(''),
    tokenText: (i) => vocab[i],
  };
}

describe('multiple-choice tasks', () => {
  it('parses JSONL and names the line of a bad item', () => {
    const items = parseMcJsonl('{"question":"2+2=","choices":["4","5"],"answer":0}\n\n{"question":"q","choices":["a","b","c"],"answer":2}\n');
    expect(items).toHaveLength(2);
    expect(items[1].answer).toBe(2);
    expect(() => parseMcJsonl('{"question":"q","choices":["a","b"],"answer":2}', 't.jsonl')).toThrow(/t\.jsonl.*line 1.*answer/);
    expect(() => parseMcJsonl('{"question":"q","choices":["a"],"answer":0}')).toThrow(PruneLabError);
    expect(() => parseMcJsonl('not json')).toThrow(/line 1/);
  });

  it('encodes like the harness: continuation " choice", trailing context space moved onto it, bytes for acc_norm', () => {
    const tok = wordTokenizer();
    const plain = encodeMcItem(tok, { question: 'the cat sat on the', choices: ['mat', 'sofa'], answer: 0 }, null);
    expect(plain.context.map((i) => tok.vocab[i])).toEqual(['the', ' cat', ' sat', ' on', ' the']);
    expect(plain.continuations.map((c) => c.map((i) => tok.vocab[i]))).toEqual([[' mat'], [' sofa']]);
    expect(plain.choiceBytes).toEqual([3, 4]);
    // "the " + " mat" would be "the  mat"; the harness moves the space: context "the", continuation "  mat".
    const spaced = encodeMcItem(tok, { question: 'the ', choices: ['mat', 'é'], answer: 1 }, null);
    expect(spaced.context.map((i) => tok.vocab[i])).toEqual(['the']);
    expect(tok.decode(spaced.continuations[0])).toBe('  mat');
    expect(spaced.choiceBytes).toEqual([3, 2]);
    // An empty question conditions on the prefix (BOS/EOS) token.
    expect(encodeMcItem(tok, { question: '', choices: ['a', 'b'], answer: 0 }, 99).context).toEqual([99]);
    expect(() => encodeMcItem(tok, { question: '', choices: ['a', 'b'], answer: 0 }, null)).toThrow(/BOS/);
  });

  it('the built-in cloze takes last words as answers, other sentences’ last words as distractors, deterministically', () => {
    const text = `Call me Ishmael, some years ago, never mind how long precisely. Having little or no money in my purse, I thought I would sail about.
      It is a way I have of driving off the spleen and regulating the circulation! Whenever I find myself growing grim about the mouth, I go to sea.
      Short one. There now is your insular city of the Manhattoes, belted round by wharves. Right and left, the streets take you waterward?`;
    const items = clozeTasks(text, { seed: 1 });
    expect(items.map((i) => i.choices[i.answer])).toEqual(['precisely', 'about', 'circulation', 'sea', 'wharves', 'waterward']);
    expect(items[1].question).toBe('Call me Ishmael, some years ago, never mind how long precisely. Having little or no money in my purse, I thought I would sail');
    for (const item of items) {
      expect(item.choices).toHaveLength(4);
      expect(new Set(item.choices.map((c) => c.toLowerCase())).size).toBe(4);
    }
    expect(clozeTasks(text, { seed: 1 })).toEqual(items);
    expect(clozeTasks(text, { seed: 2 })).not.toEqual(items);
    expect(clozeTasks(text, { count: 2 }).map((i) => i.choices[i.answer])).toEqual(['precisely', 'sea']);
    expect(() => clozeTasks('One two three four five six seven.')).toThrow(/distinct usable last words/);
  });
});

describe('logit lens helpers', () => {
  it('top tokens of a row by one pass equal the full-sort top tokens', () => {
    const row = new Float32Array([0.5, 3, -1, 3, 2.5, 0, 7, 2.5]);
    expect(topOfRow(row, 3)).toEqual(topTokens(row, 3));
    expect(topOfRow(row, 1)[0].id).toBe(6);
    expect(topOfRow(row, 8)).toEqual(topTokens(row, 8));
  });
});
