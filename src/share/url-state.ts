/**
 * The experiment <-> the URL hash. A link carries the model, the calibration text (by name, by
 * fingerprint, or inline when the user opts in), the metric, what is removed, the prompt, the generation
 * settings and, quantised, the per-block scores, so a chart can be drawn before any weights arrive.
 *
 * Wire format (location.hash without '#'):
 *
 *   v1.<base64url of UTF-8 JSON>[.<base64url of the scores' uint16 codes>]
 *
 * JSON (short keys; every field written, so a link does not change meaning when defaults change):
 *   m  ["b", name] | ["h", "owner/name", revision] | ["h", "owner/name", revision, commit]   model (commit: 40 hex, later within v1)
 *   c  ["b", name, sequences, seqLen] | ["p", fingerprint, chars, sequences, seqLen]
 *      | ["i", text, sequences, seqLen]                                  calibration
 *   k  "bi" | "angular" | "relMagnitude";  n  angular distance n (≥ 1)  metric
 *   r, ra, rm  removed blocks / attention halves / MLP halves (original indices)
 *   p  prompt;  g  [maxNewTokens, temperature, topK, seed]
 *   h  1 when the cut is healed (src/analysis/heal.ts); absent otherwise. The fitted maps are not in the link:
 *      opening it refits them on the link's calibration text. Came later within v1, like `s.e`.
 *   s  { t: tokens (one number, or one per block), i?: block indices when not 0..n-1,
 *        q: [[biMin, biMax], [angularMin, angularMax], [relMagnitudeMin, relMagnitudeMax]],
 *        e?: error bars { b: resamples, n: sequences, r: seed, q: [[min, max] × 3 metrics],
 *                         d: base64url of uint16 codes: per metric, every block's lower bound, then every upper bound } }
 *   w  a strategies sweep: settings and curves (sweep-link.ts); came later within v1, like `s.e`.
 * The second segment holds, for bi, angular and relMagnitude in turn, one little-endian uint16 per
 * block (see codec.ts: a decoded score is within (max − min) / (2 · 65534) of the original). `s.e` came
 * later within v1: a link without it decodes as before (no whiskers), and older readers ignore it.
 *
 * Decoding never trusts the link: every field is checked against the schema (and the model, when its
 * layer count is known); a bad field is replaced by its default and explained in a notice. Decoding never
 * throws and never evaluates anything; text stays text (the UI renders it as text).
 */
import type { BlockScore, Metric } from '../analysis/influence.ts';
import { healCutProblem } from '../analysis/heal-spans.ts';
import { CONFIDENCE, type Interval, type IntervalsInfo } from '../analysis/uncertainty.ts';
import { base64urlToBytes, base64urlToJson, bytesToBase64url, dequantise, jsonToBase64url, packUint16, quantise, unpackUint16 } from './codec.ts';
import { decodeSweep, encodeSweep, type SweepShare } from './sweep-link.ts';

export const STATE_VERSION = 1;

/** A hub model: the revision as given ("main") and, when resolved, the commit it pointed at (the weights scored). */
export type ModelChoice = { kind: 'builtin'; name: string } | { kind: 'hub'; id: string; revision: string; commit?: string };

export type CalibrationChoice =
  | { kind: 'builtin'; name: string; sequences: number; seqLen: number }
  /** Pasted or uploaded text, identified by textFingerprint(text) and its length; the text stays local. */
  | { kind: 'pasted'; hash: string; chars: number; sequences: number; seqLen: number }
  /** The text itself, only when the user chose to put it in the link. */
  | { kind: 'inline'; text: string; sequences: number; seqLen: number };

export interface GenerationSettings {
  maxNewTokens: number;
  temperature: number;
  topK: number;
  seed: number;
}

export interface ExperimentState {
  version: number;
  model: ModelChoice;
  calibration: CalibrationChoice;
  metric: Metric;
  /** n of the angular distance between x_l and x_{l+n}. */
  angularN: number;
  removed: number[];
  removedAttention: number[];
  removedMlp: number[];
  prompt: string;
  generation: GenerationSettings;
  /** Per-block scores as measured (quantised in the link). */
  scores?: BlockScore[];
  /** Their 95% bootstrap intervals (quantised in the link), for the same blocks; only with scores. */
  intervals?: IntervalsInfo;
  /** The removed spans are healed (the maps are refitted when the link opens). */
  heal?: boolean;
  /** A finished strategies sweep: settings and curves (quantised in the link). */
  sweep?: SweepShare;
}

export const LIMITS = {
  hashChars: 65536,
  prompt: 2000,
  inlineText: 20000,
  blocks: 1024,
  nameChars: 64,
  revisionChars: 128,
  sequences: 10000,
  seqLen: 32768,
  chars: 100_000_000,
  maxNewTokens: 4096,
  temperature: 5,
  topK: 1_000_000,
  seed: 0xffffffff,
} as const;

/** What the app opens with; a link's missing or bad fields fall back to these. */
export function defaultState(): ExperimentState {
  return {
    version: STATE_VERSION,
    model: { kind: 'builtin', name: 'sotu-llama' },
    calibration: { kind: 'builtin', name: 'moby-dick', sequences: 16, seqLen: 128 },
    metric: 'bi',
    angularN: 1,
    removed: [],
    removedAttention: [],
    removedMlp: [],
    prompt: 'The state of the Union is',
    generation: { maxNewTokens: 32, temperature: 0, topK: 0, seed: 0 },
  };
}

const METRIC_KEYS: Metric[] = ['bi', 'angular', 'relMagnitude'];

// ---------------------------------------------------------------- encode

export function encodeState(state: ExperimentState): string {
  const m = state.model.kind === 'hub' ? ['h', state.model.id, state.model.revision, ...(state.model.commit ? [state.model.commit] : [])] : ['b', state.model.name];
  const cal = state.calibration;
  const c =
    cal.kind === 'builtin'
      ? ['b', cal.name, cal.sequences, cal.seqLen]
      : cal.kind === 'pasted'
        ? ['p', cal.hash, cal.chars, cal.sequences, cal.seqLen]
        : ['i', cal.text, cal.sequences, cal.seqLen];
  const g = state.generation;
  const wire: Record<string, unknown> = {
    m,
    c,
    k: state.metric,
    n: state.angularN,
    r: state.removed,
    ra: state.removedAttention,
    rm: state.removedMlp,
    p: state.prompt,
    g: [g.maxNewTokens, g.temperature, g.topK, g.seed],
  };
  if (state.heal) wire.h = 1;
  const sweep = state.sweep && encodeSweep(state.sweep);
  if (sweep) wire.w = sweep;
  let scoreSegment = '';
  if (state.scores && state.scores.length > 0) {
    const scores = state.scores;
    const quantised = METRIC_KEYS.map((metric) => quantise(scores.map((s) => s[metric])));
    const tokens = scores.map((s) => s.tokens);
    const indices = scores.map((s) => s.index);
    wire.s = {
      t: tokens.every((t) => t === tokens[0]) ? tokens[0] : tokens,
      ...(indices.every((index, i) => index === i) ? {} : { i: indices }),
      q: quantised.map((q) => [q.min, q.max]),
    };
    scoreSegment = `.${bytesToBase64url(packUint16(quantised.map((q) => q.codes)))}`;
    const errorBars = state.intervals && encodeIntervals(state.intervals, indices);
    if (errorBars) (wire.s as Record<string, unknown>).e = errorBars;
  }
  return `v${STATE_VERSION}.${jsonToBase64url(wire)}${scoreSegment}`;
}

/** The error bars of `s.e`, or null when they do not cover exactly the scored blocks. */
function encodeIntervals(info: IntervalsInfo, indices: readonly number[]): Record<string, unknown> | null {
  const byIndex = new Map(info.blocks.map((b) => [b.index, b]));
  if (info.blocks.length !== indices.length || !indices.every((i) => byIndex.has(i))) return null;
  const ordered = indices.map((i) => byIndex.get(i) as IntervalsInfo['blocks'][number]);
  const quantised = METRIC_KEYS.map((metric) => quantise([...ordered.map((b) => b[metric][0]), ...ordered.map((b) => b[metric][1])]));
  return { b: info.resamples, n: info.sequences, r: info.seed, q: quantised.map((q) => [q.min, q.max]), d: bytesToBase64url(packUint16(quantised.map((q) => q.codes))) };
}

/** A full share URL: the page's URL with its hash replaced. */
export function shareUrl(pageUrl: string, state: ExperimentState): string {
  return `${pageUrl.split('#')[0]}#${encodeState(state)}`;
}

/**
 * How the address bar should follow a change: a new model, calibration, metric or removal is a step
 * back/forward walks through ('push'); prompt, generation and fresh scores only 'replace' the entry.
 */
export function historyAction(previous: ExperimentState | null, next: ExperimentState): 'push' | 'replace' | 'none' {
  if (previous === null) return 'replace';
  if (encodeState(previous) === encodeState(next)) return 'none';
  const step = (s: ExperimentState) => JSON.stringify([s.model, s.calibration, s.metric, s.angularN, s.removed, s.removedAttention, s.removedMlp, s.heal === true]);
  return step(previous) === step(next) ? 'replace' : 'push';
}

// ---------------------------------------------------------------- decode

export interface DecodeOptions {
  /** The model's block count, when known: block indices and scores are checked against it. */
  layers?: number;
  /** Fallbacks for missing or bad fields (default: defaultState()). */
  defaults?: ExperimentState;
  /** Built-in model / calibration names that exist; others are refused when given. */
  builtinModels?: readonly string[];
  builtinCalibrations?: readonly string[];
}

export interface DecodedState {
  state: ExperimentState;
  /** One sentence per dropped or repaired part, for the notice component. */
  notices: string[];
  /** Whether the hash held a readable state at all (false for an empty or unreadable hash). */
  found: boolean;
}

/** Own property only: never reads through the prototype chain (`constructor`, `__proto__`). */
function field(object: unknown, key: string): unknown {
  if (typeof object !== 'object' || object === null || Array.isArray(object)) return undefined;
  return Object.hasOwn(object, key) ? (object as Record<string, unknown>)[key] : undefined;
}

const isInt = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const isNumber = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max;
const SAFE_NAME = /^[A-Za-z0-9][\w.-]*$/;
const HUB_REPO = /^[A-Za-z0-9][\w.-]{0,95}\/[A-Za-z0-9_.-]{1,96}$/;
const HUB_REVISION = /^[\w.-]+(\/[\w.-]+)*$/;

/** Short, printable description of a bad value for a notice (never the whole value). */
function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return value.length > 40 ? `a ${value.length}-character text` : JSON.stringify(value);
  return String(value);
}

function isBuiltinName(name: unknown, known: readonly string[] | undefined): name is string {
  return typeof name === 'string' && name.length <= LIMITS.nameChars && SAFE_NAME.test(name) && !name.includes('..') && (!known || known.includes(name));
}

export function isHubRepo(id: unknown): id is string {
  return typeof id === 'string' && HUB_REPO.test(id) && !id.split('/').some((part) => part === '.' || part === '..' || part.includes('..'));
}

export function isHubRevision(revision: unknown): revision is string {
  return (
    typeof revision === 'string' && revision.length <= LIMITS.revisionChars && HUB_REVISION.test(revision) && !revision.split('/').some((part) => part === '.' || part === '..')
  );
}

function decodeModel(raw: unknown, options: DecodeOptions, fallback: ModelChoice, notices: string[]): ModelChoice {
  if (Array.isArray(raw) && raw[0] === 'b' && raw.length === 2 && isBuiltinName(raw[1], options.builtinModels)) return { kind: 'builtin', name: raw[1] };
  if (Array.isArray(raw) && raw[0] === 'h' && raw.length === 3 && isHubRepo(raw[1]) && isHubRevision(raw[2])) return { kind: 'hub', id: raw[1], revision: raw[2] };
  if (Array.isArray(raw) && raw[0] === 'h' && raw.length === 4 && isHubRepo(raw[1]) && isHubRevision(raw[2])) {
    if (typeof raw[3] === 'string' && /^[0-9a-f]{40}$/.test(raw[3])) return { kind: 'hub', id: raw[1], revision: raw[2], commit: raw[3] };
    notices.push(`Ignored the link's commit (${describe(raw[3])}): a commit is 40 hexadecimal digits. Opened ${raw[1]} at ${raw[2]} as it is now.`);
    return { kind: 'hub', id: raw[1], revision: raw[2] };
  }
  const what =
    Array.isArray(raw) && raw[0] === 'h'
      ? `hub model ${describe(raw[1])}${raw.length > 2 ? ` at revision ${describe(raw[2])}` : ''} is not a valid owner/name@revision`
      : `model ${describe(Array.isArray(raw) ? raw[1] : raw)} is not one this app knows`;
  notices.push(`Ignored the link's model: ${what}. Opened ${fallback.kind === 'builtin' ? fallback.name : fallback.id} instead.`);
  return fallback;
}

function decodeWindows(sequences: unknown, seqLen: unknown, fallback: CalibrationChoice, notices: string[]): { sequences: number; seqLen: number } {
  const out = { sequences: fallback.sequences, seqLen: fallback.seqLen };
  if (isInt(sequences, 1, LIMITS.sequences)) out.sequences = sequences;
  else notices.push(`Ignored the link's calibration sequence count (${describe(sequences)}): it must be a whole number from 1 to ${LIMITS.sequences}.`);
  if (isInt(seqLen, 1, LIMITS.seqLen)) out.seqLen = seqLen;
  else notices.push(`Ignored the link's calibration sequence length (${describe(seqLen)}): it must be a whole number from 1 to ${LIMITS.seqLen}.`);
  return out;
}

function decodeCalibration(raw: unknown, options: DecodeOptions, fallback: CalibrationChoice, notices: string[]): CalibrationChoice {
  if (Array.isArray(raw)) {
    if (raw[0] === 'b' && raw.length === 4 && isBuiltinName(raw[1], options.builtinCalibrations)) {
      return { kind: 'builtin', name: raw[1], ...decodeWindows(raw[2], raw[3], fallback, notices) };
    }
    if (raw[0] === 'p' && raw.length === 5 && typeof raw[1] === 'string' && /^[0-9a-f]{8,64}$/.test(raw[1]) && isInt(raw[2], 0, LIMITS.chars)) {
      return { kind: 'pasted', hash: raw[1], chars: raw[2], ...decodeWindows(raw[3], raw[4], fallback, notices) };
    }
    if (raw[0] === 'i' && raw.length === 4 && typeof raw[1] === 'string' && raw[1].length <= LIMITS.inlineText) {
      return { kind: 'inline', text: raw[1], ...decodeWindows(raw[2], raw[3], fallback, notices) };
    }
    if (raw[0] === 'i' && typeof raw[1] === 'string' && raw[1].length > LIMITS.inlineText) {
      notices.push(`Ignored the link's calibration text: it is ${raw[1].length} characters long (at most ${LIMITS.inlineText}).`);
      return fallback;
    }
  }
  notices.push(
    `Ignored the link's calibration source (${describe(Array.isArray(raw) ? raw[1] : raw)}): it is not a built-in text, a pasted-text fingerprint or inline text. Using the default calibration text.`,
  );
  return fallback;
}

/** Valid block indices, ascending and distinct; bad entries dropped with one notice per list. */
function decodeBlocks(raw: unknown, what: string, layers: number | undefined, notices: string[]): number[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    notices.push(`Ignored the link's ${what}: expected a list of block numbers, got ${describe(raw)}.`);
    return [];
  }
  if (raw.length > LIMITS.blocks) {
    notices.push(`Ignored the link's ${what}: it lists ${raw.length} blocks (at most ${LIMITS.blocks}).`);
    return [];
  }
  const top = (layers ?? LIMITS.blocks) - 1;
  const good = new Set<number>();
  const bad: string[] = [];
  for (const v of raw) {
    if (isInt(v, 0, top)) good.add(v);
    else bad.push(describe(v));
  }
  if (bad.length > 0) {
    const range = layers === undefined ? `0 to ${top}` : `0 to ${top} (the model has ${layers} blocks)`;
    notices.push(
      `Dropped ${bad.length === 1 ? 'an entry' : `${bad.length} entries`} from the link's ${what} (${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ', …' : ''}): block numbers are whole numbers from ${range}.`,
    );
  }
  return [...good].sort((a, b) => a - b);
}

function decodeGeneration(raw: unknown, fallback: GenerationSettings, notices: string[]): GenerationSettings {
  const out = { ...fallback };
  if (raw === undefined) return out;
  if (!Array.isArray(raw) || raw.length !== 4) {
    notices.push(`Ignored the link's generation settings: expected four numbers, got ${describe(raw)}.`);
    return out;
  }
  const [maxNewTokens, temperature, topK, seed] = raw;
  if (isInt(maxNewTokens, 1, LIMITS.maxNewTokens)) out.maxNewTokens = maxNewTokens;
  else notices.push(`Ignored the link's max new tokens (${describe(maxNewTokens)}): it must be a whole number from 1 to ${LIMITS.maxNewTokens}.`);
  if (isNumber(temperature, 0, LIMITS.temperature)) out.temperature = temperature;
  else notices.push(`Ignored the link's temperature (${describe(temperature)}): it must be a number from 0 to ${LIMITS.temperature}.`);
  if (isInt(topK, 0, LIMITS.topK)) out.topK = topK;
  else notices.push(`Ignored the link's top-k (${describe(topK)}): it must be a whole number from 0 (off) to ${LIMITS.topK}.`);
  if (isInt(seed, 0, LIMITS.seed)) out.seed = seed;
  else notices.push(`Ignored the link's seed (${describe(seed)}): it must be a whole number from 0 to ${LIMITS.seed}.`);
  return out;
}

function decodeScores(raw: unknown, segment: string | undefined, notices: string[]): BlockScore[] | undefined {
  if (raw === undefined && segment === undefined) return undefined;
  const drop = (why: string) => {
    notices.push(`Ignored the link's block scores: ${why}. Score the model to see them.`);
    return undefined;
  };
  if (raw === undefined || segment === undefined) return drop('they are incomplete');
  const ranges = field(raw, 'q');
  if (
    !Array.isArray(ranges) ||
    ranges.length !== 3 ||
    !ranges.every((r) => Array.isArray(r) && r.length === 2 && isNumber(r[0], -Number.MAX_VALUE, Number.MAX_VALUE) && isNumber(r[1], r[0], Number.MAX_VALUE))
  ) {
    return drop('their value ranges are not pairs of finite numbers (min ≤ max)');
  }
  const bytes = base64urlToBytes(segment);
  if (bytes === null || bytes.length === 0 || bytes.length % 6 !== 0) return drop('their data is damaged or truncated');
  const count = bytes.length / 6;
  if (count > LIMITS.blocks) return drop(`they cover ${count} blocks (at most ${LIMITS.blocks})`);
  const codes = unpackUint16(bytes, 3, count) as Uint16Array[];
  const values = codes.map((c, k) => dequantise({ min: ranges[k][0], max: ranges[k][1], codes: c }));
  const tokensRaw = field(raw, 't');
  const tokens = Array.isArray(tokensRaw) ? tokensRaw : Array.from({ length: count }, () => tokensRaw);
  if (tokens.length !== count || !tokens.every((t) => isInt(t, 0, Number.MAX_SAFE_INTEGER))) return drop('their token counts are not whole numbers, one per block');
  const indicesRaw = field(raw, 'i');
  const indices = indicesRaw === undefined ? Array.from({ length: count }, (_, i) => i) : indicesRaw;
  if (!Array.isArray(indices) || indices.length !== count || !indices.every((v) => isInt(v, 0, LIMITS.blocks - 1)) || new Set(indices).size !== count) {
    return drop('their block numbers are not distinct whole numbers, one per block');
  }
  return indices.map((index: number, i) => ({ index, bi: values[0][i], angular: values[1][i], relMagnitude: values[2][i], tokens: tokens[i] as number }));
}

/** The error bars of `s.e` for the decoded scores' blocks; undefined (with a notice) when anything is off. */
function decodeIntervals(raw: unknown, scores: readonly BlockScore[], notices: string[]): IntervalsInfo | undefined {
  if (raw === undefined) return undefined;
  const drop = (why: string) => {
    notices.push(`Ignored the link's error bars: ${why}. The scores are shown without them.`);
    return undefined;
  };
  const resamples = field(raw, 'b');
  const sequences = field(raw, 'n');
  const seed = field(raw, 'r');
  const ranges = field(raw, 'q');
  const data = field(raw, 'd');
  if (!isInt(resamples, 2, 1_000_000) || !isInt(sequences, 2, LIMITS.sequences) || !isInt(seed, 0, LIMITS.seed)) {
    return drop('their resample count, sequence count or seed is not a whole number in range');
  }
  if (
    !Array.isArray(ranges) ||
    ranges.length !== 3 ||
    !ranges.every((r) => Array.isArray(r) && r.length === 2 && isNumber(r[0], -Number.MAX_VALUE, Number.MAX_VALUE) && isNumber(r[1], r[0], Number.MAX_VALUE))
  ) {
    return drop('their value ranges are not pairs of finite numbers (min ≤ max)');
  }
  const count = scores.length;
  const bytes = typeof data === 'string' ? base64urlToBytes(data) : null;
  const codes = bytes && unpackUint16(bytes, 3, 2 * count);
  if (!codes) return drop('their data is damaged, truncated or for another number of blocks');
  const bounds = codes.map((c, k) => dequantise({ min: ranges[k][0], max: ranges[k][1], codes: c }));
  const blocks = scores.map((s, i) => {
    const interval = (k: number): Interval => [bounds[k][i], bounds[k][count + i]];
    return { index: s.index, bi: interval(0), angular: interval(1), relMagnitude: interval(2) };
  });
  if (!blocks.every((b) => METRIC_KEYS.every((m) => b[m][0] <= b[m][1]))) return drop('a lower bound lies above its upper bound');
  return { confidence: CONFIDENCE, resamples, sequences, seed, blocks };
}

/**
 * Re-checks a state against a model with `layers` blocks: out-of-range block indices are dropped,
 * removing every block is refused, scores for another block count are dropped, angular n is capped.
 */
export function validateForModel(state: ExperimentState, layers: number): { state: ExperimentState; notices: string[] } {
  const notices: string[] = [];
  const out: ExperimentState = { ...state };
  out.removed = decodeBlocks(state.removed, 'removed blocks', layers, notices);
  out.removedAttention = decodeBlocks(state.removedAttention, 'removed attention halves', layers, notices);
  out.removedMlp = decodeBlocks(state.removedMlp, 'removed MLP halves', layers, notices);
  if (layers > 0 && out.removed.length >= layers) {
    notices.push(`Ignored the link's removed blocks: it removes all ${layers} blocks of the model.`);
    out.removed = [];
  }
  if (out.angularN > Math.max(1, layers)) {
    notices.push(`Ignored the link's angular distance n = ${out.angularN}: the model has ${layers} blocks.`);
    out.angularN = 1;
  }
  if (state.scores && (state.scores.some((s) => s.index >= layers) || state.scores.length > layers)) {
    notices.push(`Ignored the link's block scores: they are for a model with other blocks than this one's ${layers}.`);
    delete out.scores;
    delete out.intervals;
  }
  if (state.sweep && state.sweep.layers !== layers) {
    notices.push(`Ignored the link's strategies sweep: it was run on a model with ${state.sweep.layers} blocks, this one has ${layers}.`);
    delete out.sweep;
  }
  const healProblem = out.heal ? healCutProblem({ blocks: out.removed, attention: out.removedAttention, mlp: out.removedMlp }) : null;
  if (healProblem) {
    notices.push(`Ignored the link's heal: ${healProblem}.`);
    delete out.heal;
  }
  return { state: out, notices };
}

export function decodeState(hash: string, options: DecodeOptions = {}): DecodedState {
  const defaults = options.defaults ?? defaultState();
  const fresh = (): ExperimentState => structuredClone(defaults);
  const notices: string[] = [];
  try {
    const text = (typeof hash === 'string' ? hash : '').replace(/^#/, '').trim();
    if (text === '') return { state: fresh(), notices, found: false };
    if (text.length > LIMITS.hashChars) {
      return { state: fresh(), notices: [`Ignored the link's experiment: it is ${text.length} characters long (at most ${LIMITS.hashChars}).`], found: false };
    }
    const version = /^v(\d{1,6})\./.exec(text);
    if (!version) return { state: fresh(), notices: ['Ignored the text after # in the link: it is not a PruneLab experiment. Opened the default experiment.'], found: false };
    if (Number(version[1]) !== STATE_VERSION) {
      return {
        state: fresh(),
        notices: [
          `This link uses experiment format v${Number(version[1])}, which this version of PruneLab cannot read (it reads v${STATE_VERSION}). Opened the default experiment.`,
        ],
        found: false,
      };
    }
    const segments = text.slice(version[0].length).split('.');
    if (segments.length > 2) notices.push('Ignored extra data at the end of the link.');
    const parsed = base64urlToJson(segments[0]);
    const wire = parsed?.value;
    if (typeof wire !== 'object' || wire === null || Array.isArray(wire)) {
      return { state: fresh(), notices: ['The link\u2019s experiment is damaged (cut short or edited) and could not be read. Opened the default experiment.'], found: false };
    }
    const state = fresh();
    const get = (key: string) => field(wire, key);
    if (get('m') !== undefined) state.model = decodeModel(get('m'), options, defaults.model, notices);
    if (get('c') !== undefined) state.calibration = decodeCalibration(get('c'), options, defaults.calibration, notices);
    const metric = get('k');
    if (metric !== undefined) {
      if (METRIC_KEYS.includes(metric as Metric)) state.metric = metric as Metric;
      else notices.push(`Ignored the link's metric (${describe(metric)}): it must be one of ${METRIC_KEYS.join(', ')}.`);
    }
    const angularN = get('n');
    if (angularN !== undefined) {
      if (isInt(angularN, 1, LIMITS.blocks)) state.angularN = angularN;
      else notices.push(`Ignored the link's angular distance n (${describe(angularN)}): it must be a whole number from 1 to ${LIMITS.blocks}.`);
    }
    state.removed = decodeBlocks(get('r'), 'removed blocks', undefined, notices);
    state.removedAttention = decodeBlocks(get('ra'), 'removed attention halves', undefined, notices);
    state.removedMlp = decodeBlocks(get('rm'), 'removed MLP halves', undefined, notices);
    const prompt = get('p');
    if (prompt !== undefined) {
      if (typeof prompt === 'string' && prompt.length <= LIMITS.prompt) state.prompt = prompt;
      else notices.push(`Ignored the link's prompt (${describe(prompt)}): it must be text of at most ${LIMITS.prompt} characters.`);
    }
    state.generation = decodeGeneration(get('g'), defaults.generation, notices);
    const scores = decodeScores(get('s'), segments[1], notices);
    if (scores) state.scores = scores;
    else delete state.scores;
    const heal = get('h');
    if (heal === 1) state.heal = true;
    else if (heal !== undefined) notices.push(`Ignored the link's heal flag (${describe(heal)}): it must be 1 or absent.`);
    const sweep = decodeSweep(get('w'), notices);
    if (sweep) state.sweep = sweep;
    const intervals = scores && decodeIntervals(field(get('s'), 'e'), scores, notices);
    if (intervals) state.intervals = intervals;
    else delete state.intervals;
    if (options.layers !== undefined && Number.isInteger(options.layers) && options.layers > 0) {
      const checked = validateForModel(state, options.layers);
      return { state: checked.state, notices: [...notices, ...checked.notices], found: true };
    }
    return { state, notices, found: true };
  } catch (e) {
    // Nothing above should throw; if something does, the app still opens.
    return { state: fresh(), notices: [`The link could not be read (${(e as Error)?.message ?? 'unknown error'}). Opened the default experiment.`], found: false };
  }
}
