/**
 * The Strategies section's numbers as data: the sweep's curves, the multiple-choice check (with its 95%
 * Wilson intervals and chance level), accuracy along a sweep, and decode speed (with its fit). JSON keeps
 * the structure; CSV is one long table (RFC 4180, via results.ts) whose `table` column says which part a
 * row belongs to, so a spreadsheet or pandas can filter it.
 */
import { wilsonInterval } from '../analysis/proportion.ts';
import { type SpeedFit, type SpeedPoint, speedFit } from '../analysis/speed.ts';
import { STRATEGIES, type Strategy, type SweepStep } from '../analysis/sweep.ts';
import { toCsv } from './results.ts';

export interface McSummaryData {
  accuracy: number;
  accNorm: number;
  n: number;
  meanChoices: number;
}

export interface StrategiesData {
  sweep: {
    layers: number;
    maxRemoved: number;
    seeds: number;
    calibrationWindows: { maxSequences: number; seqLen: number };
    evaluation: string;
    evaluationWindows: { maxSequences: number; seqLen: number };
    evaluationTokens: number | null;
    /** true: the curves came from a share link (quantised), not measured in this browser. */
    fromLink: boolean;
    /** The backend the curves were measured on when it is not the one loaded now (kept across a backend switch). */
    measuredOn?: string;
    steps: Partial<Record<Strategy, SweepStep[]>>;
  } | null;
  mc: { source: string; removal: { blocks: number[]; attention: number[]; mlp: number[] }; original: McSummaryData; pruned: McSummaryData } | null;
  mcAlong: { strategy: Strategy; steps: SweepStep[]; points: (McSummaryData | undefined)[] } | null;
  speed: { layers: number; orderLabel: string; points: SpeedPoint[] } | null;
}

function withInterval(summary: McSummaryData) {
  return {
    ...summary,
    chance: 1 / summary.meanChoices,
    accuracyInterval: wilsonInterval(Math.round(summary.accuracy * summary.n), summary.n),
    accNormInterval: wilsonInterval(Math.round(summary.accNorm * summary.n), summary.n),
  };
}

/** The JSON value (also put into the main results file's extras). */
export function strategiesValue(data: StrategiesData) {
  const speedPoints = data.speed?.points.filter(Boolean) ?? [];
  const fit: SpeedFit | null = data.speed ? speedFit(data.speed.points, data.speed.layers) : null;
  return {
    sweep: data.sweep && {
      ...data.sweep,
      steps: Object.fromEntries(STRATEGIES.filter((s) => data.sweep?.steps[s]?.length).map((s) => [s, (data.sweep?.steps[s] ?? []).map((step, k) => ({ k, ...step }))])),
    },
    mc: data.mc && { ...data.mc, original: withInterval(data.mc.original), pruned: withInterval(data.mc.pruned) },
    mcAlong: data.mcAlong && {
      strategy: data.mcAlong.strategy,
      steps: data.mcAlong.steps.map((step, k) => ({ k, removed: step.removed, ...(data.mcAlong?.points[k] ? withInterval(data.mcAlong.points[k] as McSummaryData) : {}) })),
    },
    speed: data.speed && { layers: data.speed.layers, orderLabel: data.speed.orderLabel, points: speedPoints, fit },
  };
}

export function strategiesJson(data: StrategiesData, extras: Record<string, unknown> = {}): string {
  return `${JSON.stringify({ format: 'prunelab-strategies', version: 1, createdAt: new Date().toISOString(), ...strategiesValue(data), extras }, null, 2)}\n`;
}

export const STRATEGIES_CSV_HEADER = [
  'table',
  'strategy',
  'k',
  'model',
  'removed',
  'removed_attention',
  'removed_mlp',
  'ppl',
  'ppl_min',
  'ppl_max',
  'accuracy',
  'accuracy_lo',
  'accuracy_hi',
  'acc_norm',
  'n',
  'chance',
  'ms_per_token',
  'tokens_per_second',
] as const;

type Row = Partial<Record<(typeof STRATEGIES_CSV_HEADER)[number], string | number | boolean | null>>;
const list = (indices: readonly number[] | undefined) => (indices ?? []).join(' ');

/** One row per sweep step, per MC side, per MC-along step and per speed point; block lists space-separated. */
export function strategiesCsv(data: StrategiesData): string {
  const rows: Row[] = [];
  if (data.sweep) {
    for (const strategy of STRATEGIES) {
      (data.sweep.steps[strategy] ?? []).forEach((step, k) => {
        if (!step) return;
        rows.push({
          table: 'sweep',
          strategy,
          k,
          removed: list(step.removed),
          removed_attention: list(step.removedAttention),
          removed_mlp: list(step.removedMlp),
          ppl: step.ppl,
          ppl_min: step.pplMin ?? null,
          ppl_max: step.pplMax ?? null,
        });
      });
    }
  }
  const mcRow = (summary: McSummaryData): Row => {
    const [lo, hi] = wilsonInterval(Math.round(summary.accuracy * summary.n), summary.n);
    return { accuracy: summary.accuracy, accuracy_lo: lo, accuracy_hi: hi, acc_norm: summary.accNorm, n: summary.n, chance: 1 / summary.meanChoices };
  };
  if (data.mc) {
    const { removal } = data.mc;
    rows.push({ table: 'mc', model: 'original', removed: '', ...mcRow(data.mc.original) });
    rows.push({
      table: 'mc',
      model: 'pruned',
      removed: list(removal.blocks),
      removed_attention: list(removal.attention),
      removed_mlp: list(removal.mlp),
      ...mcRow(data.mc.pruned),
    });
  }
  if (data.mcAlong) {
    data.mcAlong.steps.forEach((step, k) => {
      const point = data.mcAlong?.points[k];
      if (point)
        rows.push({
          table: 'mc-along',
          strategy: data.mcAlong?.strategy,
          k,
          removed: list(step.removed),
          removed_attention: list(step.removedAttention),
          removed_mlp: list(step.removedMlp),
          ...mcRow(point),
        });
    });
  }
  for (const point of data.speed?.points ?? []) {
    if (point) rows.push({ table: 'speed', k: point.k, removed: list(point.removed), ms_per_token: point.msPerToken, tokens_per_second: point.tokensPerSecond });
  }
  return toCsv([[...STRATEGIES_CSV_HEADER], ...rows.map((row) => STRATEGIES_CSV_HEADER.map((column) => row[column] ?? null))]);
}
