/**
 * What the Strategies section does: each action calls the engine worker (workers/strategies.ts) and
 * writes the answers into strategies state as they stream in. Fixed job ids (a new call supersedes the
 * old one in the worker) and tickets (a late answer from a superseded call is dropped) as in ../actions.ts.
 */
import { cellRemoval, type SimilarityMatrix } from '../../analysis/similarity.ts';
import type { Strategy, SweepProgress, SweepStep, SweepStepEvent } from '../../analysis/sweep.ts';
import type { McSummary, McTasksSpec, SpeedPoint } from '../../worker-api-strategies.ts';
import type { BlockPassProgress, RemovalSet } from '../../worker-api.ts';
import { engine, proxy } from '../engine-client.ts';
import { type Cut, lab, notify } from '../state.svelte.ts';
import { strategies } from './state.svelte.ts';

const tickets = new Map<string, number>();

function ticket(jobId: string): () => boolean {
  const mine = (tickets.get(jobId) ?? 0) + 1;
  tickets.set(jobId, mine);
  return () => tickets.get(jobId) === mine;
}

const JOBS = ['sweep', 'similarity', 'lens', 'mc', 'mc-along', 'speed'];

/** A new model: everything measured on the old one is dropped (the worker already cancelled its jobs). */
export function cancelAll(): void {
  for (const id of JOBS) {
    ticket(id);
    void engine.cancel(id);
  }
}

function copyRemoval(): RemovalSet {
  return { blocks: [...lab.removal.blocks], attention: [...lab.removal.attention], mlp: [...lab.removal.mlp] };
}

/** Cuts exactly this removal in the lab (the compare panel and the block strip follow). */
export function applyRemoval(removal: Partial<RemovalSet>): void {
  const cuts: Record<number, Cut> = {};
  for (const i of removal.blocks ?? []) cuts[i] = 'block';
  for (const i of removal.attention ?? []) cuts[i] = 'attention';
  for (const i of removal.mlp ?? []) cuts[i] = 'mlp';
  lab.lowestCount = 0;
  lab.cuts = cuts;
}

export function applyStep(step: SweepStep): void {
  applyRemoval({ blocks: step.removed, attention: step.removedAttention, mlp: step.removedMlp });
}

/** A heatmap cell (i, j) cuts the blocks between state i and state j: blocks i … j − 1. */
export function applyCell(matrix: SimilarityMatrix, i: number, j: number): void {
  applyRemoval({ blocks: cellRemoval(matrix, i, j) });
}

// ---- sweep -----------------------------------------------------------------------------------------

export async function runSweep(): Promise<void> {
  const model = lab.model;
  if (!model) return;
  const isCurrent = ticket('sweep');
  const layers = model.blocks;
  const settings = {
    calibration: lab.calibration,
    calibrationWindows: { ...strategies.calibrationWindows },
    evaluation: lab.evaluation,
    evaluationWindows: { ...strategies.evaluationWindows },
    strategies: [...strategies.selected],
    maxRemoved: Math.min(strategies.maxRemoved ?? layers - 1, layers - 1),
    seeds: strategies.seeds,
  };
  strategies.run = {
    settings,
    layers,
    steps: {},
    orders: {},
    progress: null,
    running: true,
    error: null,
    cancelled: false,
    startedAt: performance.now(),
    ms: null,
    evaluationTokens: null,
  };
  const patch = (change: (run: NonNullable<typeof strategies.run>) => Partial<NonNullable<typeof strategies.run>>) => {
    if (isCurrent() && strategies.run) strategies.run = { ...strategies.run, ...change(strategies.run) };
  };
  const outcome = await engine.sweep(
    'sweep',
    settings,
    proxy((event: SweepStepEvent) => {
      if (event.seed !== undefined) return; // one random seed's own step: the aggregate follows
      patch((run) => {
        const list = [...(run.steps[event.strategy] ?? [])];
        list[event.k] = event.step;
        return { steps: { ...run.steps, [event.strategy]: list } };
      });
    }),
    proxy((progress: SweepProgress) => patch(() => ({ progress }))),
  );
  if (!isCurrent()) return;
  if (outcome.ok) {
    patch(() => ({
      steps: outcome.value.strategies,
      orders: outcome.value.orders,
      running: false,
      ms: performance.now() - (strategies.run?.startedAt ?? 0),
      evaluationTokens: outcome.value.evaluationTokens,
    }));
  } else {
    patch(() => ({ running: false, cancelled: outcome.cancelled, error: outcome.cancelled ? null : outcome.message }));
    if (!outcome.cancelled) notify('error', 'The sweep failed', outcome.message, 'Fewer strategies, a smaller "max removed" or shorter texts make it lighter.');
  }
}

export function cancelSweep(): void {
  void engine.cancel('sweep');
}

// ---- similarity heatmap ------------------------------------------------------------------------------

/** The calibration text and windows a heatmap is made with: a matrix with another key is out of date. */
export function similarityKey(): string {
  return JSON.stringify([lab.calibration.kind === 'builtin' ? lab.calibration.name : lab.calibration.label, strategies.calibrationWindows]);
}

export async function refreshSimilarity(): Promise<void> {
  if (!lab.model?.hasTokenizer) return;
  const isCurrent = ticket('similarity');
  const key = similarityKey();
  strategies.similarity = { ...strategies.similarity, busy: true, error: null, blocks: null };
  const onBlocks = proxy((blocks: BlockPassProgress) => {
    if (isCurrent() && strategies.similarity.busy) strategies.similarity = { ...strategies.similarity, blocks };
  });
  const outcome = await engine.similarity('similarity', lab.calibration, { ...strategies.calibrationWindows }, onBlocks);
  if (!isCurrent()) return;
  if (outcome.ok) strategies.similarity = { value: outcome.value, busy: false, error: null, key, blocks: null };
  else strategies.similarity = { ...strategies.similarity, busy: false, error: outcome.cancelled ? null : outcome.message, blocks: null };
}

/** Stops a heatmap pass (a block-streamed model's takes a pass over every block). */
export function cancelSimilarity(): void {
  ticket('similarity');
  strategies.similarity = { ...strategies.similarity, busy: false, blocks: null };
  void engine.cancel('similarity');
}

// ---- logit lens --------------------------------------------------------------------------------------

/** The lens for the prompt the compare panel last ran, under the current cut. */
export async function refreshLens(): Promise<void> {
  if (!lab.model?.hasTokenizer) return;
  const prompt = lab.compared.prompt || lab.prompt;
  if (!prompt) return;
  const isCurrent = ticket('lens');
  const removalKey = lab.removalKey;
  strategies.lens = { ...strategies.lens, busy: true, error: null, blocks: null };
  const onBlocks = proxy((blocks: BlockPassProgress) => {
    if (isCurrent() && strategies.lens.busy) strategies.lens = { ...strategies.lens, blocks };
  });
  const outcome = await engine.logitLens('lens', prompt, copyRemoval(), 3, 12, onBlocks);
  if (!isCurrent()) return;
  if (outcome.ok) strategies.lens = { value: outcome.value, busy: false, error: null, prompt, removalKey, blocks: null };
  else strategies.lens = { ...strategies.lens, busy: false, error: outcome.cancelled ? null : outcome.message, blocks: null };
}

// ---- downstream check ----------------------------------------------------------------------------------

function tasksSpec(): McTasksSpec {
  const source = strategies.mcSource;
  if (source.kind === 'jsonl') return { kind: 'jsonl', text: source.text, label: source.label };
  return { kind: 'cloze', text: lab.evaluation, count: strategies.clozeCount, seed: 0 };
}

export async function runMc(): Promise<void> {
  if (!lab.model?.hasTokenizer) return;
  const isCurrent = ticket('mc');
  const removalKey = lab.removalKey;
  strategies.mc = { ...strategies.mc, busy: true, error: null, progress: null };
  const outcome = await engine.mc(
    'mc',
    tasksSpec(),
    copyRemoval(),
    proxy((done: number, total: number) => {
      if (isCurrent()) strategies.mc = { ...strategies.mc, progress: { done, total } };
    }),
  );
  if (!isCurrent()) return;
  if (outcome.ok) strategies.mc = { value: outcome.value, busy: false, error: null, progress: null, removalKey };
  else strategies.mc = { ...strategies.mc, busy: false, progress: null, error: outcome.cancelled ? null : outcome.message };
}

export async function runMcAlong(strategy: Strategy): Promise<void> {
  const steps = strategies.run?.steps[strategy];
  if (!lab.model?.hasTokenizer || !steps?.length) return;
  const isCurrent = ticket('mc-along');
  strategies.mcAlong = { strategy, steps, points: [], busy: true, error: null };
  const removals = steps.map((s) => ({ blocks: [...s.removed], attention: [...(s.removedAttention ?? [])], mlp: [...(s.removedMlp ?? [])] }));
  const outcome = await engine.mcAlong(
    'mc-along',
    tasksSpec(),
    removals,
    proxy((index: number, summary: McSummary) => {
      if (!isCurrent()) return;
      const points = [...strategies.mcAlong.points];
      points[index] = summary;
      strategies.mcAlong = { ...strategies.mcAlong, points };
    }),
  );
  if (!isCurrent()) return;
  if (outcome.ok) strategies.mcAlong = { ...strategies.mcAlong, points: outcome.value, busy: false };
  else strategies.mcAlong = { ...strategies.mcAlong, busy: false, error: outcome.cancelled ? null : outcome.message };
}

export function cancelMc(): void {
  void engine.cancel('mc');
  void engine.cancel('mc-along');
}

// ---- speed -----------------------------------------------------------------------------------------------

export async function runSpeed(): Promise<void> {
  const model = lab.model;
  if (!model?.hasTokenizer) return;
  const isCurrent = ticket('speed');
  const sweepOrder = strategies.run?.orders.bi ?? null;
  const orderLabel = sweepOrder
    ? 'the sweep’s BI order'
    : `BI order of the full model on ${strategies.calibrationWindows.maxSequences} × ${strategies.calibrationWindows.seqLen} calibration tokens`;
  strategies.speed = { points: [], order: sweepOrder, orderLabel, layers: model.blocks, busy: true, error: null };
  const outcome = await engine.speed(
    'speed',
    {
      prompt: lab.compared.prompt || lab.prompt,
      tokens: strategies.speedTokens,
      order: sweepOrder,
      calibration: lab.calibration,
      calibrationWindows: { ...strategies.calibrationWindows },
    },
    proxy((point: SpeedPoint) => {
      if (!isCurrent()) return;
      const points = [...strategies.speed.points];
      points[point.k] = point; // later rounds refine a k
      strategies.speed = { ...strategies.speed, points };
    }),
  );
  if (!isCurrent()) return;
  if (outcome.ok) strategies.speed = { ...strategies.speed, points: outcome.value.points, order: outcome.value.order, busy: false };
  else strategies.speed = { ...strategies.speed, busy: false, error: outcome.cancelled ? null : outcome.message };
}

export function cancelSpeed(): void {
  void engine.cancel('speed');
}

export type { Strategy };
