/**
 * The strategies sweep <-> the share link's SweepShare (src/share/sweep-link.ts): a finished run goes into
 * the link; a link's sweep becomes a run marked fromLink, drawn before the model loads until it is re-run.
 */
import type { SweepShare } from '../../share/sweep-link.ts';
import type { TextSourceSpec } from '../../worker-api.ts';
import { type SweepRun, strategies } from './state.svelte.ts';

/** The run as a link carries it; null while running, after an error, or with nothing measured. */
export function shareOfRun(run: SweepRun | null): SweepShare | null {
  if (!run || run.running || run.error || !Object.values(run.steps).some((steps) => (steps?.length ?? 0) > 0)) return null;
  const { settings } = run;
  return {
    layers: run.layers,
    maxRemoved: settings.maxRemoved,
    seeds: settings.seeds,
    calibrationWindows: { sequences: settings.calibrationWindows.maxSequences, seqLen: settings.calibrationWindows.seqLen },
    evaluation: settings.evaluation.kind === 'builtin' ? settings.evaluation.name : '',
    evaluationWindows: { sequences: settings.evaluationWindows.maxSequences, seqLen: settings.evaluationWindows.seqLen },
    evaluationTokens: run.evaluationTokens ?? 0,
    strategies: run.steps,
  };
}

/** Shows a link's sweep as a finished run (fromLink until the sweep runs here). */
export function showLinkSweep(sweep: SweepShare, calibration: TextSourceSpec): void {
  const evaluation: TextSourceSpec = sweep.evaluation ? { kind: 'builtin', name: sweep.evaluation } : { kind: 'text', text: '', label: 'the link author’s evaluation text' };
  const strategyList = Object.keys(sweep.strategies) as SweepRun['settings']['strategies'];
  // Nested block strategies' orders: step k adds one block (the speed panel and MC-along read them).
  const orders: SweepRun['orders'] = {};
  for (const s of strategyList) {
    const steps = sweep.strategies[s] ?? [];
    if (s === 'angular' || s === 'random' || steps.some((step) => step.removedAttention || step.removedMlp)) continue;
    orders[s] = steps.slice(1).map((step, k) => step.removed.find((b) => !steps[k].removed.includes(b)) as number);
  }
  strategies.run = {
    settings: {
      calibration,
      calibrationWindows: { maxSequences: sweep.calibrationWindows.sequences, seqLen: sweep.calibrationWindows.seqLen },
      evaluation,
      evaluationWindows: { maxSequences: sweep.evaluationWindows.sequences, seqLen: sweep.evaluationWindows.seqLen },
      strategies: strategyList,
      maxRemoved: sweep.maxRemoved,
      seeds: sweep.seeds,
    },
    layers: sweep.layers,
    steps: sweep.strategies,
    orders,
    progress: null,
    running: false,
    error: null,
    cancelled: false,
    startedAt: 0,
    ms: null,
    evaluationTokens: sweep.evaluationTokens,
    fromLink: true,
  };
  strategies.calibrationWindows = { ...strategies.run.settings.calibrationWindows };
  strategies.evaluationWindows = { ...strategies.run.settings.evaluationWindows };
  strategies.selected = [...strategyList];
  strategies.maxRemoved = sweep.maxRemoved;
  strategies.seeds = sweep.seeds;
}
