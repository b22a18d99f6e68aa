/**
 * Multiple choice by per-choice log-likelihood, the lm-eval-harness way (`output_type: multiple_choice`):
 *
 * - each choice is a continuation " " + choice (target_delimiter " ") of the context `question`; as in
 *   the harness's _encode_pair, trailing spaces of the context move onto the continuation, the whole
 *   string context + continuation is encoded, and the continuation's tokens are those after the
 *   context's own encoding (so a merge across the boundary is handled as the harness handles it);
 * - text is encoded without special tokens (the harness's default for causal HF models); an empty
 *   context becomes the model's BOS (else EOS) token, the harness's prefix token;
 * - a sequence longer than the model's positions keeps its last maxPositions + 1 tokens;
 * - loglikelihood = Σ log p(continuation token | everything before it);
 *   acc: argmax of the sums; acc_norm: argmax of sum / (UTF-8 bytes of the choice string, without the
 *   delimiter) — the harness divides by len(choice), the same for ASCII. Ties go to the first choice.
 *
 * Built-in task (clozeTasks): last-word cloze from held-out text, documented at the function.
 */
import { nll } from '../engine/cpu/ops.ts';
import { PruneLabError } from '../engine/errors.ts';
import type { Model } from '../engine/model.ts';
import { makePlan, type Plan, type Removal } from '../engine/plan.ts';
import { seededRandom } from '../engine/sampling.ts';
import type { TextTokenizer } from '../engine/tokenizer.ts';

export interface McItem {
  question: string;
  choices: string[];
  /** Index of the right choice. */
  answer: number;
}

/** An item as token ids: what the scorer needs. */
export interface EncodedMcItem {
  context: number[];
  continuations: number[][];
  /** acc_norm's divisor per choice. */
  choiceBytes: number[];
  answer: number;
}

export interface McItemResult {
  logLikelihoods: number[];
  /** argmax of logLikelihoods (acc). */
  predicted: number;
  /** argmax of logLikelihood / choice bytes (acc_norm). */
  predictedNorm: number;
  answer: number;
}

export interface McResult {
  accuracy: number;
  accNorm: number;
  n: number;
  items: McItemResult[];
}

/** Parses JSONL of {"question": string, "choices": [string, ...], "answer": index}; blank lines skipped. */
export function parseMcJsonl(text: string, file = 'tasks.jsonl'): McItem[] {
  const items: McItem[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    const where = { file, field: `line ${i + 1}` };
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch (e) {
      throw new PruneLabError(`is not valid JSON (${(e as Error).message})`, where);
    }
    const { question, choices, answer } = (raw ?? {}) as Record<string, unknown>;
    if (typeof question !== 'string') throw new PruneLabError('needs "question" as a string', where);
    if (!Array.isArray(choices) || choices.length < 2 || !choices.every((c) => typeof c === 'string' && c.length > 0)) {
      throw new PruneLabError('needs "choices" as an array of at least two non-empty strings', where);
    }
    if (!Number.isInteger(answer) || (answer as number) < 0 || (answer as number) >= choices.length) {
      throw new PruneLabError(`needs "answer" as a choice index 0 … ${choices.length - 1}, got ${JSON.stringify(answer)}`, where);
    }
    items.push({ question, choices: choices as string[], answer: answer as number });
  });
  if (items.length === 0) throw new PruneLabError('holds no questions', { file });
  return items;
}

const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

/** The harness's _encode_pair for one context and each " " + choice. */
export function encodeMcItem(tokenizer: TextTokenizer, item: McItem, prefixToken: number | null, options: { addSpecialTokens?: boolean } = {}): EncodedMcItem {
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: options.addSpecialTokens ?? false });
  const continuations = item.choices.map((choice) => {
    let context = item.question;
    let continuation = ` ${choice}`;
    const spaces = context.length - context.trimEnd().length;
    if (spaces > 0) {
      continuation = context.slice(context.length - spaces) + continuation;
      context = context.slice(0, context.length - spaces);
    }
    const whole = encode(context + continuation);
    const contextIds = context === '' ? [] : encode(context);
    return { contextIds, continuation: whole.slice(contextIds.length) };
  });
  let context = continuations[0].contextIds;
  if (context.length === 0) {
    if (prefixToken === null) throw new PruneLabError('an empty question needs a BOS or EOS token to condition on', { field: 'question' });
    context = [prefixToken];
  }
  continuations.forEach((c, i) => {
    if (c.continuation.length === 0) throw new PruneLabError(`choice ${i} ("${item.choices[i]}") encodes to no tokens`, { field: 'choices' });
  });
  return { context, continuations: continuations.map((c) => c.continuation), choiceBytes: item.choices.map(utf8Bytes), answer: item.answer };
}

/** Encodes items with the model's tokenizer (or a given one). */
export function encodeMcItems(model: Model, items: readonly McItem[], tokenizer: TextTokenizer = model.requireTokenizer()): EncodedMcItem[] {
  const prefix = model.spec.bosTokenId ?? model.spec.eosTokenIds[0] ?? null;
  return items.map((item) => encodeMcItem(tokenizer, item, prefix));
}

/**
 * How many items lose the start of their context to the model's positions (choiceLogLikelihoods keeps
 * the last maxPositions + 1 tokens, as lm-evaluation-harness does): a number to state, never to hide.
 */
export function contextsCut(items: readonly EncodedMcItem[], maxPositions: number): number {
  return items.filter((item) => item.continuations.some((c) => item.context.length + c.length > maxPositions + 1)).length;
}

/** Σ log p(continuation | context) for each choice of one item under a plan. */
export async function choiceLogLikelihoods(model: Model, item: EncodedMcItem, plan: Plan): Promise<number[]> {
  const { vocabSize, maxPositions } = model.spec;
  const lls: number[] = [];
  for (const continuation of item.continuations) {
    const whole = [...item.context, ...continuation].slice(-(maxPositions + 1));
    if (continuation.length >= whole.length)
      throw new PruneLabError(`a choice of ${continuation.length} tokens does not fit the model's ${maxPositions} positions`, { field: 'choices' });
    const input = whole.slice(0, -1);
    const { logits } = await model.forward({ ids: input, plan: { ...plan, capture: 'none' }, logits: 'all' });
    const rows = logits as Float32Array;
    let ll = 0;
    for (let t = whole.length - continuation.length; t < whole.length; t++) ll -= nll(rows, (t - 1) * vocabSize, vocabSize, whole[t]);
    lls.push(ll);
  }
  return lls;
}

function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

export interface McOptions {
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export async function evaluateMc(model: Model, items: readonly EncodedMcItem[], plan: Plan, options: McOptions = {}): Promise<McResult> {
  if (items.length === 0) throw new PruneLabError('no questions to score', { field: 'tasks' });
  const results: McItemResult[] = [];
  for (const item of items) {
    if (options.signal?.aborted) throw new DOMException('cancelled', 'AbortError');
    const logLikelihoods = await choiceLogLikelihoods(model, item, plan);
    const predicted = argmax(logLikelihoods);
    const predictedNorm = argmax(logLikelihoods.map((ll, i) => ll / item.choiceBytes[i]));
    results.push({ logLikelihoods, predicted, predictedNorm, answer: item.answer });
    options.onProgress?.(results.length, items.length);
  }
  const share = (hit: (r: McItemResult) => boolean) => results.filter(hit).length / results.length;
  return { accuracy: share((r) => r.predicted === r.answer), accNorm: share((r) => r.predictedNorm === r.answer), n: results.length, items: results };
}

/** Accuracy of the full model and of the model with a removal set. */
export async function compareMc(model: Model, items: readonly EncodedMcItem[], removal: Removal, options: McOptions = {}): Promise<{ original: McResult; pruned: McResult }> {
  const layers = model.spec.layers;
  const original = await evaluateMc(model, items, makePlan(layers), options);
  const nothingRemoved = !removal.blocks?.length && !removal.attention?.length && !removal.mlp?.length;
  const pruned = nothingRemoved ? original : await evaluateMc(model, items, makePlan(layers, removal), options);
  return { original, pruned };
}

/** Accuracy along a sweep: one result per step's removal set. */
export async function mcAlongSweep(
  model: Model,
  items: readonly EncodedMcItem[],
  steps: readonly { removed: number[]; removedAttention?: number[]; removedMlp?: number[] }[],
  options: McOptions = {},
): Promise<McResult[]> {
  const out: McResult[] = [];
  for (const step of steps)
    out.push(await evaluateMc(model, items, makePlan(model.spec.layers, { blocks: step.removed, attention: step.removedAttention, mlp: step.removedMlp }), options));
  return out;
}

export interface ClozeOptions {
  /** Most items to make (spread evenly over the eligible sentences); default 100. */
  count?: number;
  /** Choices per item, the right one included; default 4. */
  choices?: number;
  /** Preceding sentences kept as context; default 1. */
  contextSentences?: number;
  /** Fewest words a sentence needs to be used; default 6. */
  minWords?: number;
  seed?: number;
}

/**
 * Built-in last-word cloze from held-out text. Whitespace is collapsed and the text cut into sentences
 * ending in . ! or ?. A sentence with at least minWords words whose last word (trailing punctuation and
 * quotes dropped) is 3+ letters a–z is eligible. Item: question = the previous contextSentences sentences
 * + the sentence without its last word; answer = that word; distractors = other eligible sentences' last
 * words (distinct, case-insensitively different from the answer), drawn without replacement by a
 * mulberry32 stream seeded with `seed`, which also draws where the answer sits among the choices. Same
 * text and options, same items, everywhere.
 */
export function clozeTasks(text: string, options: ClozeOptions = {}): McItem[] {
  const count = options.count ?? 100;
  const choiceCount = options.choices ?? 4;
  const contextSentences = options.contextSentences ?? 1;
  const minWords = options.minWords ?? 6;
  const sentences = (text.replace(/\s+/g, ' ').match(/[^.!?]+[.!?]+["'”’)]*/g) ?? []).map((s) => s.trim()).filter((s) => s.length > 0);
  const eligible: { at: number; question: string; answer: string }[] = [];
  sentences.forEach((sentence, at) => {
    const words = sentence.split(' ');
    const last = words[words.length - 1].replace(/[.!?,;:"'”’)\]]+$/, '');
    if (words.length < minWords || !/^[A-Za-z]{3,}$/.test(last)) return;
    const context = sentences.slice(Math.max(0, at - contextSentences), at);
    eligible.push({ at, question: [...context, words.slice(0, -1).join(' ')].join(' '), answer: last });
  });
  const pool = [...new Map(eligible.map((e) => [e.answer.toLowerCase(), e.answer])).values()];
  if (pool.length < choiceCount)
    throw new PruneLabError(`the text has ${pool.length} distinct usable last words; a ${choiceCount}-choice cloze needs at least ${choiceCount}`, { field: 'text' });
  const picked = eligible.length <= count ? eligible : Array.from({ length: count }, (_, i) => eligible[Math.floor((i * eligible.length) / count)]);
  const random = seededRandom(options.seed ?? 0);
  return picked.map(({ question, answer }) => {
    const others = pool.filter((w) => w.toLowerCase() !== answer.toLowerCase());
    const distractors: string[] = [];
    while (distractors.length < choiceCount - 1) distractors.push(others.splice(Math.floor(random() * others.length), 1)[0]);
    const position = Math.floor(random() * choiceCount);
    const choices = [...distractors.slice(0, position), answer, ...distractors.slice(position)];
    return { question, choices, answer: position };
  });
}
