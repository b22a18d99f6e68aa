/**
 * The lab's state: what is loaded, what was measured, what is cut, what the compare panel shows. Plain
 * runes; components receive slices as props, and src/ui/actions.ts changes it in answer to the worker.
 */
import { type BlockScore, type Metric, rankBlocks } from '../analysis/influence.ts';
import { healCutProblem } from '../analysis/heal-spans.ts';
import { removedParameters } from '../analysis/parameters.ts';
import { type Bootstrap, type IntervalsInfo, type Refusal, rankStability } from '../analysis/uncertainty.ts';
import { removalKey as keyOfRemoval } from '../engine/plan.ts';
import type {
  BackendChoice,
  DecodeRun,
  GenerateSettings,
  LoadProgress,
  ModelInfo,
  ModelSourceSpec,
  NextToken,
  PerplexityResult,
  RemovalSet,
  ScoreProgress,
  TextSourceSpec,
  TextStats,
  WindowSettings,
} from '../worker-api.ts';
import type { HealProgress, HealSummary } from '../worker-api-heal.ts';

/** How a block is cut: the whole block, or only its attention or MLP half. */
export type Cut = 'block' | 'attention' | 'mlp';

export interface Notice {
  id: number;
  level: 'error' | 'warning' | 'info';
  title: string;
  message: string;
  /** What to do next. */
  hint?: string;
}

export interface OutputState {
  text: string;
  count: number;
  tokensPerSecond: number | null;
  busy: boolean;
  error: string | null;
  next: NextToken[];
  /** The removal the output was made with (JSON), to tell a stale output from a fresh one. */
  removalKey: string;
  /** What limited the run, e.g. generation stopped at the model's context. */
  note: string | null;
  /** How this side's generation runs or would run (resident, kept blocks resident, streamed): the compare panel's memory line. */
  run: DecodeRun | null;
}

export interface PerplexityState {
  result: PerplexityResult | null;
  busy: boolean;
  error: string | null;
  removalKey: string;
}

/** A second scoring on other calibration text: its scores, and the rank comparison with the scores shown. */
export interface CalibrationCompareState {
  source: TextSourceSpec;
  /** What the compared scoring was measured on, for the sentence. */
  label: string;
  busy: boolean;
  progress: { done: number; total: number } | null;
  scores: BlockScore[] | null;
  error: string | null;
}

/** A heal of the cut: fitting (busy), fitted (summary), or failed (error). */
export interface HealState {
  /** The removed blocks it replaces, ascending. */
  removed: number[];
  busy: boolean;
  progress: HealProgress | null;
  summary: HealSummary | null;
  error: string | null;
}

export const BUILTIN_MODEL = 'sotu-llama';
export const BUILTIN_CALIBRATION: TextSourceSpec = { kind: 'builtin', name: 'moby-dick' };
export const BUILTIN_EVALUATION: TextSourceSpec = { kind: 'builtin', name: 'moby-dick-eval' };

export const emptyOutput = (): OutputState => ({ text: '', count: 0, tokensPerSecond: null, busy: false, error: null, next: [], removalKey: '', note: null, run: null });
export const emptyPerplexity = (): PerplexityState => ({ result: null, busy: false, error: null, removalKey: '' });

/** `?gpu-memory=<MiB>` sets the GPU budget as `--gpu-memory` does on the CLI (the browser checks use it). */
function gpuBudgetFromUrl(): number | null {
  const mib = Number(new URLSearchParams(globalThis.location?.search ?? '').get('gpu-memory'));
  return Number.isInteger(mib) && mib > 0 ? mib * 2 ** 20 : null;
}

function backendFromUrl(): BackendChoice {
  const wanted = new URLSearchParams(globalThis.location?.search ?? '').get('backend');
  return wanted === 'cpu' || wanted === 'webgpu' ? wanted : 'auto';
}

class LabState {
  model = $state.raw<ModelInfo | null>(null);
  /** Where the loaded model came from (the share link names built-in and hub models). */
  modelSource = $state.raw<ModelSourceSpec | null>(null);
  backendChoice = $state<BackendChoice>(backendFromUrl());
  /**
   * WebGPU memory the engine may use (bytes): a model that does not fit runs block-streamed. null until the
   * adapter's default is known (memory.ts defaultGpuBudget); `why` says where the number comes from.
   */
  gpuBudget = $state.raw<{ bytes: number | null; why: string }>({ bytes: gpuBudgetFromUrl(), why: gpuBudgetFromUrl() ? 'set in the page address (?gpu-memory=)' : '' });
  loading = $state.raw<{ label: string; progress: LoadProgress | null } | null>(null);

  calibration = $state.raw<TextSourceSpec>(BUILTIN_CALIBRATION);
  calibrationStats = $state.raw<TextStats | null>(null);
  windows = $state<WindowSettings>({ seqLen: 128, maxSequences: 16 });

  /** Running scores while Score runs; null when idle. */
  scoring = $state.raw<ScoreProgress | null>(null);
  scores = $state.raw<BlockScore[]>([]);
  scoreSummary = $state.raw<{ tokens: number; sequences: number; ms: number; complete: boolean } | null>(null);
  metric = $state<Metric>('bi');
  order = $state<'depth' | 'rank'>('depth');
  /** The block under the pointer or keyboard focus in the chart (its numbers go into the formula note). */
  hoveredBlock = $state<number | null>(null);
  logScale = $state(false);
  /**
   * Error bars and the scores array they belong to (by identity: once lab.scores is replaced they no
   * longer apply). `bootstrap` is null for a link's intervals (no per-sequence sums travel in a link).
   */
  errorBars = $state.raw<{ scores: BlockScore[]; bootstrap: Bootstrap | Refusal | null; intervals: IntervalsInfo | null } | null>(null);
  showWhiskers = $state(true);
  /** The same model scored on a second calibration text, to compare the orderings. */
  calibrationCompare = $state.raw<CalibrationCompareState | null>(null);

  /** Cut blocks by index; absent = kept. */
  cuts = $state<Record<number, Cut>>({});
  lowestCount = $state(0);
  halfRemoval = $state(false);

  prompt = $state('The state of the Union is');
  settings = $state<GenerateSettings>({ maxNewTokens: 32, temperature: 0, topK: 0, seed: 0 });
  /** The prompt and settings both outputs were made with (the fields above may have been edited since). */
  compared = $state.raw<{ prompt: string; settings: GenerateSettings }>({ prompt: this.prompt, settings: { ...this.settings } });
  /** A block-streamed model generates streamed only once asked (the compare panel's button, with the cost); reset per model. */
  allowStreamed = $state(false);
  original = $state<OutputState>(emptyOutput());
  pruned = $state<OutputState>(emptyOutput());
  evaluation = $state.raw<TextSourceSpec>(BUILTIN_EVALUATION);
  evalWindows = $state<WindowSettings>({ seqLen: 128, maxSequences: 4 });
  pplOriginal = $state<PerplexityState>(emptyPerplexity());
  pplPruned = $state<PerplexityState>(emptyPerplexity());
  /** The heal of the cut (src/analysis/heal.ts) and the healed model's outputs; null when not healed. */
  heal = $state.raw<HealState | null>(null);
  healed = $state<OutputState>(emptyOutput());
  pplHealed = $state<PerplexityState>(emptyPerplexity());

  notices = $state<Notice[]>([]);

  removal: RemovalSet = $derived.by(() => {
    const removal: RemovalSet = { blocks: [], attention: [], mlp: [] };
    for (const [index, cut] of Object.entries(this.cuts)) {
      removal[cut === 'block' ? 'blocks' : cut].push(Number(index));
    }
    for (const list of Object.values(removal)) list.sort((a: number, b: number) => a - b);
    return removal;
  });
  removalKey = $derived(keyOfRemoval(this.removal));
  removedParameters = $derived(this.model ? removedParameters(this.model.blockParameters, this.removal) : 0);
  /** Block indices from least to most influential by the chosen metric. */
  ranking = $derived(rankBlocks(this.scores, this.metric));
  /** The error bars of the scores shown; null when there are none for them. */
  bootstrap = $derived(this.errorBars?.scores === this.scores ? this.errorBars.bootstrap : null);
  intervals = $derived(this.errorBars?.scores === this.scores ? this.errorBars.intervals : null);
  /** How stable "remove the N lowest" is under resampling of the calibration sequences. */
  stability = $derived.by(() => {
    const boot = this.bootstrap;
    if (!boot?.ok || this.lowestCount <= 0 || this.lowestCount >= boot.indices.length) return null;
    return rankStability(boot, this.metric, this.lowestCount);
  });
  keptBlocks = $derived(this.model ? this.model.blocks - this.removal.blocks.length : 0);
  /** Why the cut cannot be healed (the family, or the cut itself); null when it can. */
  healProblem = $derived(!this.model ? 'no model is loaded' : (this.model.healUnsupported ?? healCutProblem(this.removal)));
}

export const lab = new LabState();

let nextNoticeId = 1;

export function notify(level: Notice['level'], title: string, message: string, hint?: string): void {
  const notice = { id: nextNoticeId++, level, title, message, hint };
  // The same notice twice in a row is shown once.
  lab.notices = [...lab.notices.filter((n) => n.title !== title || n.message !== message), notice].slice(-4);
}

export function dismissNotice(id: number): void {
  lab.notices = lab.notices.filter((n) => n.id !== id);
}
