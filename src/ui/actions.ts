/**
 * What the lab does in answer to a person: each action calls the engine worker and writes the answer into
 * the state. Every job has a fixed id (a new call supersedes the old one in the worker) and a ticket (a
 * late answer from a superseded call is dropped here).
 */
import { removalKey as keyOfRemoval } from '../engine/plan.ts';
import { type BlockScore, lowestBlocks, type Metric } from '../analysis/influence.ts';
import { type Bootstrap, intervalsInfo, type Refusal } from '../analysis/uncertainty.ts';
import { checkRemovalLeavesBlock, contextStop } from '../engine/limits.ts';
import type { LoadProgress, ModelInfo, ModelSourceSpec, RemovalSet, ScoreProgress, TextSourceSpec, TokenEvent } from '../worker-api.ts';
import type { HealProgress, ModelVariant } from '../worker-api-heal.ts';
import { engine, proxy } from './engine-client.ts';
import { formatBytes } from './format.ts';
import {
  BUILTIN_CALIBRATION,
  BUILTIN_MODEL,
  type CalibrationCompareState,
  type Cut,
  emptyOutput,
  emptyPerplexity,
  lab,
  notify,
  type OutputState,
  type HealState,
  type PerplexityState,
} from './state.svelte.ts';

const tickets = new Map<string, number>();

function ticket(jobId: string): () => boolean {
  const mine = (tickets.get(jobId) ?? 0) + 1;
  tickets.set(jobId, mine);
  return () => tickets.get(jobId) === mine;
}

function cancelJob(jobId: string): void {
  ticket(jobId);
  void engine.cancel(jobId);
}

const NO_REMOVAL: RemovalSet = { blocks: [], attention: [], mlp: [] };

/** The compare panel's columns: the original, the pruned model (a plan) and the healed one (its own weights). */
type Side = 'original' | 'pruned' | 'healed';
const variantOf = (side: Side): ModelVariant | undefined => (side === 'healed' ? 'healed' : undefined);
const HEAL_JOBS = ['heal', 'gen-healed', 'next-healed', 'ppl-healed'];

/** The next step to suggest after an engine error, by what went wrong. */
function hintFor(source: ModelSourceSpec | null, message: string): string {
  if (source?.kind === 'hub') {
    if (/request failed|failed to fetch|network/i.test(message)) {
      return 'The Hugging Face hub could not be reached from this page (offline, blocked, or CORS). Load the model from a local folder instead; the current model stays loaded.';
    }
    return 'Check the id (owner/name, as on huggingface.co); gated models such as Llama need a token the page does not have. The current model stays loaded.';
  }
  if (source?.kind === 'files') return 'Pick a folder in Hugging Face layout: config.json, model.safetensors (or shards + index), tokenizer.json. The current model stays loaded.';
  if (/WebGPU/.test(message)) return 'Set the backend to "auto" or "CPU" in the Model panel and load again.';
  if (/unsupported/i.test(message)) return 'PruneLab runs llama, mistral, qwen2, qwen3 and gpt2 checkpoints.';
  return 'The lab is still usable; try again or reload the page.';
}

function sourceLabel(source: ModelSourceSpec): string {
  switch (source.kind) {
    case 'builtin':
      return source.name;
    case 'hub':
      return source.id;
    case 'url':
      return source.url;
    case 'files':
      return source.label ?? `${source.files.length} local files`;
  }
}

/**
 * Loads a model. `keepExperiment`, when given, keeps the scores and cuts (e.g. a share link's, shown
 * while the model downloads) instead of clearing them, and is called to check them against the model.
 */
/** The GPU budget for the next load: the person's setting, else this browser's default (asked of the worker once). */
export async function gpuBudgetBytes(): Promise<number> {
  if (lab.gpuBudget.bytes === null) {
    const fallback = await engine.defaultGpuBudget();
    if (lab.gpuBudget.bytes === null) lab.gpuBudget = fallback;
  }
  return lab.gpuBudget.bytes as number;
}

/** A budget set in the Model panel (MiB); it applies from the next load. */
export function setGpuBudget(mib: number): void {
  if (Number.isFinite(mib) && mib >= 1) lab.gpuBudget = { bytes: Math.round(mib) * 2 ** 20, why: 'set in the Model panel' };
}

export async function loadModel(source: ModelSourceSpec, keepExperiment?: (info: ModelInfo) => void): Promise<void> {
  const isCurrent = ticket('load');
  const label = sourceLabel(source);
  lab.loading = { label, progress: null };
  const budget = await gpuBudgetBytes();
  const outcome = await engine.loadModel(
    'load',
    source,
    lab.backendChoice,
    proxy((progress: LoadProgress) => {
      if (isCurrent()) lab.loading = { label, progress };
    }),
    budget,
  );
  if (!isCurrent()) return;
  lab.loading = null;
  if (!outcome.ok) {
    if (outcome.cancelled) notify('info', `Loading ${label} cancelled`, lab.model ? `${lab.model.name} stays loaded.` : 'No model is loaded.');
    else notify('error', `Could not load ${label}`, outcome.message, hintFor(source, outcome.message));
    return;
  }
  const info = outcome.value;
  lab.model = info;
  lab.modelSource = source;
  if (info.backend.fallbackReason && lab.backendChoice === 'auto') {
    notify('info', 'Running on the CPU backend', `WebGPU is not available: ${info.backend.fallbackReason}`, 'Everything works on the CPU, only slower.');
  }
  for (const id of ['score', 'score-compare', 'gen-original', 'gen-pruned', 'next-original', 'next-pruned', 'ppl-original', 'ppl-pruned', ...HEAL_JOBS]) ticket(id);
  // The worker dropped its healed model with the old one.
  clearHeal();
  lab.scoring = null;
  lab.calibrationCompare = null;
  if (keepExperiment) keepExperiment(info);
  else {
    lab.scores = [];
    lab.scoreSummary = null;
    lab.cuts = {};
    lab.lowestCount = 0;
  }
  lab.original = emptyOutput();
  lab.pruned = emptyOutput();
  lab.pplOriginal = emptyPerplexity();
  lab.pplPruned = emptyPerplexity();
  lab.allowStreamed = false;
  if (!info.hasTokenizer) {
    notify(
      'warning',
      `${info.name} has no tokenizer.json`,
      'Text cannot be tokenized, so scoring on text, generation and perplexity are unavailable.',
      'Add tokenizer.json and tokenizer_config.json to the folder.',
    );
    return;
  }
  void refreshCalibrationStats();
  void refreshOriginal();
}

export function loadBuiltinModel(): Promise<void> {
  return loadModel({ kind: 'builtin', name: BUILTIN_MODEL });
}

export function cancelLoad(): void {
  void engine.cancel('load');
}

export async function setCalibration(source: TextSourceSpec): Promise<void> {
  lab.calibration = source;
  void refreshCalibrationStats();
}

export async function refreshCalibrationStats(): Promise<void> {
  if (!lab.model) return;
  const isCurrent = ticket('text-stats');
  lab.calibrationStats = null;
  const outcome = await engine.textStats(lab.calibration);
  if (!isCurrent()) return;
  if (outcome.ok) lab.calibrationStats = outcome.value;
  else notify('error', 'Could not read the calibration text', outcome.message, 'Pick the built-in text or another file.');
}

export async function score(): Promise<void> {
  if (!lab.model) return;
  const isCurrent = ticket('score');
  const { seqLen, maxSequences } = lab.windows;
  lab.scoring = { sequencesDone: 0, sequencesTotal: 0, tokensDone: 0, tokensTotal: 0, scores: [] };
  const outcome = await engine.score(
    'score',
    lab.calibration,
    { seqLen, maxSequences },
    NO_REMOVAL,
    proxy((progress: ScoreProgress) => {
      if (!isCurrent()) return;
      lab.scoring = progress;
      // A block-streamed pass has no running scores (every sequence finishes with the last block).
      if (progress.blocks) return;
      lab.scores = progress.scores;
      lab.scoreSummary = { tokens: progress.tokensDone, sequences: progress.sequencesDone, ms: 0, complete: false };
    }),
  );
  if (!isCurrent()) return;
  lab.scoring = null;
  if (outcome.ok) {
    lab.scores = outcome.value.scores;
    lab.errorBars = errorBarsFor(outcome.value.scores, outcome.value.bootstrap);
    lab.scoreSummary = { tokens: outcome.value.tokens, sequences: outcome.value.sequences, ms: outcome.value.ms, complete: true };
    if (lab.lowestCount > 0) removeLowest(lab.lowestCount);
  } else if (!outcome.cancelled) notify('error', 'Scoring failed', outcome.message, hintFor(null, outcome.message));
}

export function cancelScore(): void {
  void engine.cancel('score');
}

/** The worker's bootstrap of a scoring's per-sequence sums (src/analysis/uncertainty.ts), tied to those scores. */
function errorBarsFor(scores: BlockScore[], bootstrap: Bootstrap | Refusal): typeof lab.errorBars {
  return { scores, bootstrap, intervals: bootstrap.ok ? intervalsInfo(bootstrap) : null };
}

/** Scores the model on a second calibration text (same windows) to compare the orderings. */
export async function scoreComparison(source: TextSourceSpec, label: string): Promise<void> {
  if (!lab.model) return;
  const isCurrent = ticket('score-compare');
  const write = (patch: Partial<CalibrationCompareState>) => {
    if (isCurrent() && lab.calibrationCompare) lab.calibrationCompare = { ...lab.calibrationCompare, ...patch };
  };
  lab.calibrationCompare = { source, label, busy: true, progress: null, scores: null, error: null };
  const outcome = await engine.score(
    'score-compare',
    source,
    { ...lab.windows },
    NO_REMOVAL,
    proxy((p: ScoreProgress) => write({ progress: { done: p.sequencesDone, total: p.sequencesTotal } })),
  );
  if (outcome.ok) write({ busy: false, scores: outcome.value.scores });
  else write({ busy: false, error: outcome.cancelled ? null : outcome.message });
}

export function cancelComparison(): void {
  void engine.cancel('score-compare');
}

export function toggleBlock(index: number): void {
  lab.lowestCount = 0;
  if (lab.cuts[index] === 'block') delete lab.cuts[index];
  else lab.cuts[index] = 'block';
}

/** Toggles removing only one half of a block (a whole-block cut becomes that half's cut). */
export function toggleHalf(index: number, half: Exclude<Cut, 'block'>): void {
  lab.lowestCount = 0;
  if (lab.cuts[index] === half) delete lab.cuts[index];
  else lab.cuts[index] = half;
}

export function removeLowest(count: number): void {
  lab.lowestCount = count;
  const cuts: Record<number, Cut> = {};
  for (const index of lowestBlocks(lab.scores, lab.metric, count)) cuts[index] = 'block';
  lab.cuts = cuts;
}

/** The slider means "the N lowest by the metric shown": switching the metric re-picks them. */
export function setMetric(metric: Metric): void {
  lab.metric = metric;
  if (lab.lowestCount > 0) removeLowest(lab.lowestCount);
}

export function resetCuts(): void {
  lab.cuts = {};
  lab.lowestCount = 0;
}

// ---- compare panel -------------------------------------------------------------------------------

/** Tokens of a prompt with the loaded model's tokenizer (special tokens included, as generation counts them). */
export async function countTokens(text: string): Promise<number | null> {
  if (!lab.model?.hasTokenizer) return null;
  const outcome = await engine.textStats({ kind: 'text', text, label: 'prompt' });
  return outcome.ok ? outcome.value.tokens : null;
}

/** An engine error about the memory budget, as the compare panel says it (not the engine's "field gpu-memory:" prefix). */
const overBudget = (message: string) => message.replace(/^field gpu-memory: /, 'over the GPU budget: ');

/** Generation + next-token top-5 for one side; true when it finished and is still the current job. */
async function runGeneration(side: Side, removal: RemovalSet, removalKey: string): Promise<boolean> {
  const jobId = `gen-${side}`;
  const isCurrent = ticket(jobId);
  const write = (patch: Partial<OutputState>) => {
    if (isCurrent()) lab[side] = { ...lab[side], ...patch };
  };
  const nothingLeft = lab.model ? checkRemovalLeavesBlock(lab.model.blocks, removal.blocks.length) : null;
  if (nothingLeft) {
    // Finished: the answer is the message (and the perplexity that follows says the same).
    write({ text: '', count: 0, tokensPerSecond: null, busy: false, error: nothingLeft.message, removalKey, note: null, next: [] });
    return isCurrent();
  }
  write({ text: '', count: 0, tokensPerSecond: null, busy: true, error: null, removalKey, note: null });
  const { prompt, settings } = lab.compared;
  // A block-streamed model: what this side needs resident against the budget (the panel's memory line); a side that
  // would stream is generated only once asked (the panel's button states the cost), and its perplexity still runs.
  if (lab.model?.memory.mode === 'streamed') {
    const run = await engine.decodeRun(prompt, removal, settings, variantOf(side));
    write({ run: run.ok ? run.value : null });
    if (run.ok && run.value.mode === 'streamed' && !lab.allowStreamed) {
      write({ busy: false, next: [], note: `not generated: it would stream, re-reading ${formatBytes(run.value.bytesPerToken)} of weights per token` });
      return isCurrent();
    }
  }
  const decode = { allowStreamed: lab.allowStreamed };
  const [generation, next] = await Promise.all([
    engine.generate(
      jobId,
      prompt,
      removal,
      settings,
      proxy((event: TokenEvent) => write({ text: event.text, count: event.count, tokensPerSecond: event.tokensPerSecond })),
      variantOf(side),
      decode,
    ),
    engine.nextTokenTop(`next-${side}`, prompt, removal, 5, variantOf(side), decode),
  ]);
  if (next.ok) write({ next: next.value });
  if (generation.ok) {
    const { text, count, tokensPerSecond, promptTokens, run } = generation.value;
    write({ text, count, tokensPerSecond, busy: false, run, note: lab.model ? contextStop(promptTokens, count, settings.maxNewTokens, lab.model) : null });
  } else write({ busy: false, error: generation.cancelled ? null : overBudget(generation.message) });
  if (!next.ok && !next.cancelled) write({ error: overBudget(next.message) });
  return generation.ok && isCurrent();
}

async function runPerplexity(side: Side, removal: RemovalSet, removalKey: string): Promise<void> {
  const jobId = `ppl-${side}`;
  const key = side === 'original' ? 'pplOriginal' : side === 'pruned' ? 'pplPruned' : 'pplHealed';
  const isCurrent = ticket(jobId);
  const write = (patch: Partial<PerplexityState>) => {
    if (isCurrent()) lab[key] = { ...lab[key], ...patch };
  };
  const none = keyOfRemoval(NO_REMOVAL);
  if (side === 'pruned' && removalKey === none && lab.pplOriginal.result && lab.pplOriginal.removalKey === none) {
    // Nothing cut: the pruned model is the original, same computation, same number.
    write({ result: lab.pplOriginal.result, busy: false, error: null, removalKey });
    return;
  }
  const nothingLeft = lab.model ? checkRemovalLeavesBlock(lab.model.blocks, removal.blocks.length) : null;
  if (nothingLeft) {
    write({ result: null, busy: false, error: nothingLeft.message, removalKey });
    return;
  }
  write({ busy: true, error: null, removalKey });
  const outcome = await engine.perplexity(jobId, lab.evaluation, { ...lab.evalWindows }, removal, undefined, variantOf(side));
  if (outcome.ok) write({ result: outcome.value, busy: false });
  else write({ busy: false, error: outcome.cancelled ? null : overBudget(outcome.message) });
}

function currentRemoval(): RemovalSet {
  return { blocks: [...lab.removal.blocks], attention: [...lab.removal.attention], mlp: [...lab.removal.mlp] };
}

/**
 * Both sides' outputs for the prompt (after a load, or on Generate), then whichever perplexity is missing.
 * Text first: it is what a person watches; perplexity (many more tokens) follows.
 */
export async function refreshOriginal(): Promise<void> {
  if (!lab.model?.hasTokenizer) return;
  lab.compared = { prompt: lab.prompt, settings: { ...lab.settings } };
  const removal = currentRemoval();
  const removalKey = lab.removalKey;
  const none = keyOfRemoval(NO_REMOVAL);
  const healedNow = lab.heal?.summary ? runGeneration('healed', removal, removalKey) : Promise.resolve(false);
  const [originalDone, prunedDone, healedDone] = await Promise.all([runGeneration('original', NO_REMOVAL, none), runGeneration('pruned', removal, removalKey), healedNow]);
  if (originalDone && !lab.pplOriginal.result && !lab.pplOriginal.busy) await runPerplexity('original', NO_REMOVAL, none);
  if (prunedDone && (lab.pplPruned.removalKey !== removalKey || (!lab.pplPruned.result && !lab.pplPruned.busy))) await runPerplexity('pruned', removal, removalKey);
  if (healedDone && (lab.pplHealed.removalKey !== removalKey || (!lab.pplHealed.result && !lab.pplHealed.busy))) await runPerplexity('healed', removal, removalKey);
}

/** The pruned model's outputs, then its perplexity, under the current removal set. */
export async function refreshPruned(): Promise<void> {
  if (!lab.model?.hasTokenizer) return;
  const removal = currentRemoval();
  const removalKey = lab.removalKey;
  if (await runGeneration('pruned', removal, removalKey)) await runPerplexity('pruned', removal, removalKey);
}

let pendingPruned: ReturnType<typeof setTimeout> | null = null;

/** Called whenever the removal set changes: cancel what runs now, recompute shortly after the last change. */
export function removalChanged(): void {
  // A heal replaces exactly the blocks it was fitted for: another cut needs a new fit.
  if (lab.heal && lab.heal.removed.join(',') !== lab.removal.blocks.join(',')) dropHeal();
  for (const id of ['gen-pruned', 'next-pruned', 'ppl-pruned']) cancelJob(id);
  lab.pruned = { ...lab.pruned, busy: true };
  lab.pplPruned = { ...lab.pplPruned, busy: true };
  if (pendingPruned) clearTimeout(pendingPruned);
  pendingPruned = setTimeout(() => {
    pendingPruned = null;
    void refreshPruned();
  }, 350);
}

export function stopGeneration(): void {
  // The next-token lists too: on a streamed model each is a whole pass.
  for (const id of ['gen-original', 'gen-pruned', 'gen-healed', 'next-original', 'next-pruned', 'next-healed']) void engine.cancel(id);
}

/** The compare panel's "Generate streamed anyway": this model generates block-streamed from now on; the sides that stream run. */
export async function generateStreamedAnyway(): Promise<void> {
  lab.allowStreamed = true;
  const none = keyOfRemoval(NO_REMOVAL);
  const runs: Promise<boolean>[] = [];
  if (lab.original.run?.mode === 'streamed') runs.push(runGeneration('original', NO_REMOVAL, none));
  if (lab.pruned.run?.mode === 'streamed') runs.push(runGeneration('pruned', currentRemoval(), lab.removalKey));
  await Promise.all(runs);
}

export function useBuiltinCalibration(): Promise<void> {
  return setCalibration(BUILTIN_CALIBRATION);
}

// ---- heal ----------------------------------------------------------------------------------------

/**
 * Heals the cut (src/analysis/heal.ts in the worker): one linear map per removed span, fitted on the
 * calibration text and folded into the block before it; then the healed column's outputs and perplexity.
 */
export async function healCut(): Promise<void> {
  if (!lab.model || lab.healProblem) {
    if (lab.healProblem) notify('warning', 'This cut cannot be healed', lab.healProblem);
    return;
  }
  const isCurrent = ticket('heal');
  const removed = [...lab.removal.blocks];
  const source = lab.calibration;
  lab.heal = { removed, busy: true, progress: null, summary: null, error: null };
  lab.healed = emptyOutput();
  lab.pplHealed = emptyPerplexity();
  const write = (patch: Partial<HealState>) => {
    if (isCurrent() && lab.heal) lab.heal = { ...lab.heal, ...patch };
  };
  const outcome = await engine.heal(
    'heal',
    source,
    source.kind === 'builtin' ? source.name : source.label,
    { ...lab.windows },
    removed,
    proxy((progress: HealProgress) => write({ progress })),
  );
  if (!isCurrent()) return;
  if (!outcome.ok) {
    if (outcome.cancelled) lab.heal = null;
    else write({ busy: false, error: outcome.message });
    return;
  }
  write({ busy: false, progress: null, summary: outcome.value });
  const removal = currentRemoval();
  const removalKey = lab.removalKey;
  if (await runGeneration('healed', removal, removalKey)) await runPerplexity('healed', removal, removalKey);
}

/** The page's heal state back to none (the worker's healed model is dropped separately). */
function clearHeal(): void {
  lab.heal = null;
  lab.healed = emptyOutput();
  lab.pplHealed = emptyPerplexity();
}

/** Stops a heal or removes a fitted one, and frees the worker's healed model. */
export function dropHeal(): void {
  for (const id of HEAL_JOBS) cancelJob(id);
  clearHeal();
  void engine.dropHeal();
}
