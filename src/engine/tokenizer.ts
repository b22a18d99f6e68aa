/** Thin wrapper over @huggingface/tokenizers (transformers.js's tokenizer code), from in-memory files. */
import { Tokenizer } from '@huggingface/tokenizers';
import type { TokenizerFiles } from './checkpoint.ts';
import { PruneLabError } from './errors.ts';

export interface TextTokenizer {
  /** Tokenizes a document as the model's tokenizer does (special tokens such as BOS included). */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string;
  /** The text of one token as it appears when decoded on its own. */
  tokenText(id: number): string;
}

export function createTokenizer(files: TokenizerFiles): TextTokenizer {
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(files.tokenizerJson as object, (files.tokenizerConfig ?? {}) as object);
  } catch (e) {
    throw new PruneLabError(`cannot be loaded (${(e as Error).message})`, { file: 'tokenizer.json' });
  }
  return {
    encode: (text, options = {}) => tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids,
    decode: (ids, options = {}) => tokenizer.decode(Array.from(ids), { skip_special_tokens: options.skipSpecialTokens ?? false }),
    tokenText: (id) => tokenizer.decode([id], { skip_special_tokens: false }),
  };
}

/** Cuts a token stream into consecutive windows of `length` (the last partial window kept if ≥ 2 tokens). */
export function windows(ids: readonly number[], length: number, maxWindows = Number.POSITIVE_INFINITY): number[][] {
  if (!Number.isInteger(length) || length < 2) throw new PruneLabError(`sequence length must be an integer ≥ 2, got ${length}`, { field: 'seq-len' });
  const out: number[][] = [];
  for (let at = 0; at < ids.length && out.length < maxWindows; at += length) {
    const w = ids.slice(at, at + length);
    if (w.length >= 2) out.push(w);
  }
  return out;
}
