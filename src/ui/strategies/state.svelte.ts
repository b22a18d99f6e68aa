/**
 * The Strategies section's state: sweep settings and the run streaming in, the similarity heatmap, the
 * logit lens, the downstream (multiple-choice) check and the speed run. The removal set itself stays in
 * the lab's state (src/ui/state.svelte.ts): clicking a heatmap cell or a sweep point cuts through it.
 */
import { BLOCK_STRATEGIES, type Strategy, type SweepProgress, type SweepResult, type SweepStep } from '../../analysis/sweep.ts';
import type { LensView, McComparison, McSummary, SimilarityMatrix, SpeedPoint, SweepSettings } from '../../worker-api-strategies.ts';
import type { BlockPassProgress, WindowSettings } from '../../worker-api.ts';

export interface SweepRun {
  settings: SweepSettings;
  layers: number;
  /** Steps measured so far, per strategy, index = k (they stream in order). */
  steps: Partial<Record<Strategy, SweepStep[]>>;
  orders: SweepResult['orders'];
  progress: SweepProgress | null;
  running: boolean;
  error: string | null;
  cancelled: boolean;
  startedAt: number;
  ms: number | null;
  evaluationTokens: number | null;
  /** Shown from a share link (quantised), not measured here; cleared by running the sweep. */
  fromLink?: boolean;
  /** Measured on another backend of the same model (kept across a backend switch); cleared by running the sweep. */
  measuredOn?: string;
}

export interface Busy<T> {
  value: T | null;
  busy: boolean;
  error: string | null;
}

export interface LensState extends Busy<LensView> {
  prompt: string;
  removalKey: string;
  /** Where a block-streamed model's pass is while busy; null otherwise. */
  blocks: BlockPassProgress | null;
}

export interface SimilarityState extends Busy<SimilarityMatrix> {
  /** The calibration text and windows the matrix was made with (actions.ts similarityKey). */
  key: string;
  /** Where a block-streamed model's pass is while busy; null otherwise. */
  blocks: BlockPassProgress | null;
}

export interface McState extends Busy<McComparison> {
  progress: { done: number; total: number } | null;
  /** The lab's removal key the pruned side was computed with. */
  removalKey: string;
}

export interface McAlongState {
  strategy: Strategy | null;
  /** Removal sets measured (one per sweep step). */
  steps: SweepStep[];
  points: (McSummary | undefined)[];
  busy: boolean;
  error: string | null;
}

export interface SpeedState {
  points: SpeedPoint[];
  order: number[] | null;
  /** Where the order came from, for the caption. */
  orderLabel: string;
  layers: number;
  busy: boolean;
  error: string | null;
}

export type McSource = { kind: 'cloze' } | { kind: 'jsonl'; text: string; label: string };

const idle = <T>(): Busy<T> => ({ value: null, busy: false, error: null });

class StrategiesState {
  /** Small defaults: a full sweep of the embedded model finishes in about two minutes on the CPU backend. */
  calibrationWindows = $state<WindowSettings>({ seqLen: 64, maxSequences: 2 });
  evaluationWindows = $state<WindowSettings>({ seqLen: 64, maxSequences: 2 });
  selected = $state<Strategy[]>([...BLOCK_STRATEGIES]);
  /** null: L − 1 (every step down to one block). */
  maxRemoved = $state<number | null>(null);
  seeds = $state(5);
  run = $state.raw<SweepRun | null>(null);
  hidden = $state<Partial<Record<Strategy, boolean>>>({});
  /** The pair the chart shades and the summary compares ("where does BI beat reverse order?"). */
  pair = $state<[Strategy, Strategy]>(['bi', 'reverse']);
  /** Clip the y axis at a few times the original perplexity (the fully collapsed steps dwarf the rest). */
  zoom = $state(true);

  heatMetric = $state<'cos' | 'angular'>('angular');
  similarity = $state.raw<SimilarityState>({ ...idle(), key: '', blocks: null });

  lens = $state.raw<LensState>({ ...idle(), prompt: '', removalKey: '', blocks: null });

  mcSource = $state.raw<McSource>({ kind: 'cloze' });
  /** Cloze questions: each costs 4 forwards of up to ~150 tokens per model (about 2 s on the CPU backend). */
  clozeCount = $state(8);
  mc = $state.raw<McState>({ ...idle(), progress: null, removalKey: '' });
  mcAlong = $state.raw<McAlongState>({ strategy: null, steps: [], points: [], busy: false, error: null });

  speedTokens = $state(12);
  speed = $state.raw<SpeedState>({ points: [], order: null, orderLabel: '', layers: 0, busy: false, error: null });
}

export const strategies = new StrategiesState();

/**
 * The backend switch about to reload the same checkpoint (url-sync switchBackend): a finished sweep of it stays,
 * marked as measured on the old backend. Taken (and cleared) by the first model that loads after it.
 */
export const backendSwitch: { from: string | null; name: string; blocks: number } = { from: null, name: '', blocks: 0 };

/** A new model: everything measured on the old one goes; `keepRun` keeps a link's sweep for the model it names. */
export function resetStrategies(keepRun = false): void {
  if (!keepRun) strategies.run = null;
  strategies.similarity = { ...idle(), key: '', blocks: null };
  strategies.lens = { ...idle(), prompt: '', removalKey: '', blocks: null };
  strategies.mc = { ...idle(), progress: null, removalKey: '' };
  strategies.mcAlong = { strategy: null, steps: [], points: [], busy: false, error: null };
  strategies.speed = { points: [], order: null, orderLabel: '', layers: 0, busy: false, error: null };
}
