/**
 * A strategies sweep in the share link (url-state.ts key `w`, within v1 like `s.e`): its settings and the
 * measured curves, so a link draws the sweep before the model has loaded.
 *
 *   w  { l: layers, x: maxRemoved, z: seeds, c: [sequences, seqLen] (calibration windows),
 *        e: [evaluation name ("" for text of the author's own), sequences, seqLen], t: evaluation tokens,
 *        s: [[strategy, "o", codes] | [strategy, "x", [codes per step]], ...],
 *        q: [min, max] of ln(perplexity), d: base64url of uint16 codes }
 *
 * A removal is a list of codes: block i → i, its attention half → L + i, its MLP half → 2L + i. A nested
 * strategy (each step adds one) is its order ("o": step k removes the first k codes); the others list
 * every step's set ("x"). `d` holds, strategy by strategy, each step's ln(perplexity), then for random
 * each step's ln(min) and ln(max) over its seeds: quantised as the block scores are (codec.ts), so a
 * decoded perplexity is within a factor exp((max − min) / (2 · 65534)) of the measured one.
 */
import { STRATEGIES, type Strategy, type SweepStep } from '../analysis/sweep.ts';
import { base64urlToBytes, bytesToBase64url, dequantise, packUint16, quantise, unpackUint16 } from './codec.ts';

export interface SweepShare {
  layers: number;
  maxRemoved: number;
  seeds: number;
  calibrationWindows: { sequences: number; seqLen: number };
  /** The evaluation text's built-in name; '' for text the author pasted (not in the link). */
  evaluation: string;
  evaluationWindows: { sequences: number; seqLen: number };
  evaluationTokens: number;
  strategies: Partial<Record<Strategy, SweepStep[]>>;
}

const MAX_LAYERS = 1024;
const MAX_SEQUENCES = 10000;
const MAX_SEQ_LEN = 32768;

function codesOf(step: SweepStep, layers: number): number[] {
  return [...step.removed, ...(step.removedAttention ?? []).map((i) => layers + i), ...(step.removedMlp ?? []).map((i) => 2 * layers + i)].sort((a, b) => a - b);
}

function stepOf(codes: readonly number[], layers: number, ppl: number): SweepStep {
  const sorted = [...codes].sort((a, b) => a - b);
  const step: SweepStep = { removed: sorted.filter((c) => c < layers), ppl, nll: Math.log(ppl) };
  const attention = sorted.filter((c) => c >= layers && c < 2 * layers).map((c) => c - layers);
  const mlp = sorted.filter((c) => c >= 2 * layers).map((c) => c - 2 * layers);
  if (attention.length) step.removedAttention = attention;
  if (mlp.length) step.removedMlp = mlp;
  return step;
}

/** The steps measured in order from k = 0 (a cancelled run's later steps may be missing). */
function measured(steps: readonly (SweepStep | undefined)[] | undefined): SweepStep[] {
  const out: SweepStep[] = [];
  for (const step of steps ?? []) {
    if (!step || !Number.isFinite(step.ppl) || step.ppl <= 0) break;
    out.push(step);
  }
  return out;
}

/** The order of a nested strategy (each step adds exactly one code to the last), or null. */
function nestedOrder(sets: readonly number[][]): number[] | null {
  if (sets.length === 0 || sets[0].length !== 0) return null;
  const order: number[] = [];
  for (let k = 1; k < sets.length; k++) {
    const before = new Set(sets[k - 1]);
    const added = sets[k].filter((c) => !before.has(c));
    if (added.length !== 1 || sets[k].length !== k || !sets[k - 1].every((c) => sets[k].includes(c))) return null;
    order.push(added[0]);
  }
  return order;
}

export function encodeSweep(sweep: SweepShare): Record<string, unknown> | null {
  const { layers } = sweep;
  const entries: unknown[] = [];
  const logs: number[] = [];
  const extra: number[] = [];
  for (const strategy of STRATEGIES) {
    const steps = measured(sweep.strategies[strategy]);
    if (steps.length === 0) continue;
    const sets = steps.map((s) => codesOf(s, layers));
    const order = nestedOrder(sets);
    entries.push(order ? [strategy, 'o', order] : [strategy, 'x', sets]);
    logs.push(...steps.map((s) => Math.log(s.ppl)));
    if (strategy === 'random') for (const s of steps) extra.push(Math.log(s.pplMin ?? s.ppl), Math.log(s.pplMax ?? s.ppl));
  }
  if (entries.length === 0) return null;
  const quantised = quantise([...logs, ...extra]);
  return {
    l: layers,
    x: sweep.maxRemoved,
    z: sweep.seeds,
    c: [sweep.calibrationWindows.sequences, sweep.calibrationWindows.seqLen],
    e: [sweep.evaluation, sweep.evaluationWindows.sequences, sweep.evaluationWindows.seqLen],
    t: sweep.evaluationTokens,
    s: entries,
    q: [quantised.min, quantised.max],
    d: bytesToBase64url(packUint16([quantised.codes])),
  };
}

const isInt = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const own = (o: unknown, key: string): unknown =>
  typeof o === 'object' && o !== null && !Array.isArray(o) && Object.hasOwn(o, key) ? (o as Record<string, unknown>)[key] : undefined;

/** The sweep of a link, or undefined with one notice saying why it was dropped. Never throws. */
export function decodeSweep(raw: unknown, notices: string[], builtinTexts?: readonly string[]): SweepShare | undefined {
  if (raw === undefined) return undefined;
  const drop = (why: string) => {
    notices.push(`Ignored the link's strategies sweep: ${why}. Run the sweep to see it.`);
    return undefined;
  };
  const layers = own(raw, 'l');
  const maxRemoved = own(raw, 'x');
  const seeds = own(raw, 'z');
  const cal = own(raw, 'c');
  const evaluation = own(raw, 'e');
  const tokens = own(raw, 't');
  if (!isInt(layers, 1, MAX_LAYERS) || !isInt(maxRemoved, 1, layers) || !isInt(seeds, 1, 1000) || !isInt(tokens, 0, Number.MAX_SAFE_INTEGER)) {
    return drop('its block count, steps, seeds or token count is not a whole number in range');
  }
  if (!Array.isArray(cal) || cal.length !== 2 || !isInt(cal[0], 1, MAX_SEQUENCES) || !isInt(cal[1], 2, MAX_SEQ_LEN)) return drop('its calibration windows are not valid');
  if (
    !Array.isArray(evaluation) ||
    evaluation.length !== 3 ||
    typeof evaluation[0] !== 'string' ||
    !(evaluation[0] === '' || (/^[A-Za-z0-9][\w.-]{0,63}$/.test(evaluation[0]) && (!builtinTexts || builtinTexts.includes(evaluation[0])))) ||
    !isInt(evaluation[1], 1, MAX_SEQUENCES) ||
    !isInt(evaluation[2], 2, MAX_SEQ_LEN)
  ) {
    return drop('its evaluation text or windows are not valid');
  }
  const entries = own(raw, 's');
  if (!Array.isArray(entries) || entries.length === 0 || entries.length > STRATEGIES.length) return drop('it lists no strategies, or too many');
  const codeOk = (c: unknown): c is number => isInt(c, 0, 3 * layers - 1);
  const parsed: { strategy: Strategy; sets: number[][] }[] = [];
  for (const entry of entries) {
    if (!Array.isArray(entry) || entry.length !== 3 || !STRATEGIES.includes(entry[0]) || parsed.some((p) => p.strategy === entry[0])) {
      return drop('a strategy is unknown or listed twice');
    }
    let sets: number[][];
    if (entry[1] === 'o' && Array.isArray(entry[2]) && entry[2].length <= maxRemoved && entry[2].every(codeOk) && new Set(entry[2]).size === entry[2].length) {
      const order = entry[2] as number[];
      sets = Array.from({ length: order.length + 1 }, (_, k) => order.slice(0, k));
    } else if (
      entry[1] === 'x' &&
      Array.isArray(entry[2]) &&
      entry[2].length >= 1 &&
      entry[2].length <= maxRemoved + 1 &&
      entry[2].every((set: unknown) => Array.isArray(set) && set.length <= 3 * layers && set.every(codeOk) && new Set(set).size === set.length)
    ) {
      sets = entry[2] as number[][];
    } else return drop(`the steps of ${String(entry[0])} are not valid block lists`);
    parsed.push({ strategy: entry[0] as Strategy, sets });
  }
  const range = own(raw, 'q');
  const data = own(raw, 'd');
  if (!Array.isArray(range) || range.length !== 2 || !range.every((v) => typeof v === 'number' && Number.isFinite(v)) || range[0] > range[1] || typeof data !== 'string') {
    return drop('its perplexity range or data is missing');
  }
  const count = parsed.reduce((a, p) => a + p.sets.length * (p.strategy === 'random' ? 3 : 1), 0);
  const bytes = base64urlToBytes(data);
  const codes = bytes && unpackUint16(bytes, 1, count);
  if (!codes) return drop('its data is damaged, truncated or for other steps');
  const logs = dequantise({ min: range[0], max: range[1], codes: codes[0] });
  if (!logs.every(Number.isFinite)) return drop('a perplexity is missing');
  const strategies: Partial<Record<Strategy, SweepStep[]>> = {};
  let at = 0;
  for (const { strategy, sets } of parsed) {
    strategies[strategy] = sets.map((set, k) => stepOf(set, layers, Math.exp(logs[at + k])));
    at += sets.length;
  }
  const random = strategies.random;
  if (random) {
    random.forEach((step, k) => {
      step.pplMin = Math.exp(logs[at + 2 * k]);
      step.pplMax = Math.exp(logs[at + 2 * k + 1]);
    });
  }
  return {
    layers,
    maxRemoved,
    seeds,
    calibrationWindows: { sequences: cal[0], seqLen: cal[1] },
    evaluation: evaluation[0],
    evaluationWindows: { sequences: evaluation[1], seqLen: evaluation[2] },
    evaluationTokens: tokens,
    strategies,
  };
}
