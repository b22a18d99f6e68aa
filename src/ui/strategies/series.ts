/** How each strategy is drawn (colour variable, dash) and read (labels, comparisons), shared by the views. */
import { format } from 'd3';
import { cliffStep, STRATEGY_INFO, type Strategy, type SweepStep } from '../../analysis/sweep.ts';

/** Sub-block series remove halves, not blocks: drawn dashed. */
export const HALF_STRATEGIES: Strategy[] = ['bi-attn', 'bi-mlp'];

export const SHORT_LABEL: Record<Strategy, string> = {
  bi: 'BI',
  'bi-iter': 'BI iter.',
  angular: 'Angular',
  relmag: 'Rel. mag.',
  reverse: 'Reverse',
  random: 'Random',
  sleb: 'SLEB',
  'bi-attn': 'Attn halves',
  'bi-mlp': 'MLP halves',
};

export function label(strategy: Strategy): string {
  return STRATEGY_INFO[strategy].label;
}

/** The CSS colour of a series (variables defined in StrategiesView.svelte for light and dark). */
export function colour(strategy: Strategy): string {
  return `var(--s-${strategy})`;
}

export function dash(strategy: Strategy): string | undefined {
  return HALF_STRATEGIES.includes(strategy) ? '6 4' : undefined;
}

/** Perplexity with enough digits to tell close strategies apart: 1135.6, 12.340, 65.2k. */
export function formatPpl(ppl: number): string {
  if (!Number.isFinite(ppl)) return '—';
  if (ppl >= 10000) return format('.3~s')(ppl);
  return format('.5r')(ppl);
}

/** An axis tick: 1500, 12.5, 40k. */
export function formatTick(value: number): string {
  return value >= 10000 ? format('~s')(value) : format('.4~r')(value);
}

/** Every step of a series measured. */
export function finished(steps: readonly SweepStep[] | undefined, maxRemoved: number): steps is SweepStep[] {
  return !!steps && steps.length >= maxRemoved + 1 && steps.every((s) => !!s);
}

/**
 * The cliff of a finished series: analysis/sweep.ts cliffStep (the largest rise in log perplexity), or
 * null when perplexity never rises (then there is no cliff to mark).
 */
export function finishedCliff(steps: readonly SweepStep[] | undefined, maxRemoved: number): number | null {
  if (!finished(steps, maxRemoved)) return null;
  const k = cliffStep(steps);
  return k !== null && steps[k].ppl > steps[k - 1].ppl ? k : null;
}

/** "1, 4–6, 9" from ascending integers. */
export function ranges(ks: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < ks.length; i++) {
    let j = i;
    while (j + 1 < ks.length && ks[j + 1] === ks[j] + 1) j++;
    parts.push(j === i ? String(ks[i]) : `${ks[i]}–${ks[j]}`);
    i = j;
  }
  return parts.join(', ');
}

/** Steps (k ≥ 1) where a has the lower perplexity than b, where b does, and where they tie (1e-9 relative). */
export function comparePair(a: readonly SweepStep[] | undefined, b: readonly SweepStep[] | undefined): { aLower: number[]; bLower: number[]; tie: number[] } {
  const out = { aLower: [] as number[], bLower: [] as number[], tie: [] as number[] };
  if (!a || !b) return out;
  for (let k = 1; k < Math.min(a.length, b.length); k++) {
    if (!a[k] || !b[k]) continue;
    const rel = (a[k].ppl - b[k].ppl) / b[k].ppl;
    if (Math.abs(rel) <= 1e-9) out.tie.push(k);
    else if (rel < 0) out.aLower.push(k);
    else out.bLower.push(k);
  }
  return out;
}

/** The blocks (or halves) a step removes, as a person reads it. */
export function describeStep(step: SweepStep): string {
  if (step.removedAttention) return step.removedAttention.length ? `attention of ${step.removedAttention.join(', ')}` : 'nothing';
  if (step.removedMlp) return step.removedMlp.length ? `MLP of ${step.removedMlp.join(', ')}` : 'nothing';
  return step.removed.length ? `blocks ${step.removed.join(', ')}` : 'nothing';
}
