/**
 * The lab <-> the URL hash (src/share/url-state.ts does the encoding and the distrust).
 *
 * - On start the hash is decoded and applied: settings, cuts, prompt and the link's scores, so the chart
 *   draws at once ("from link") while the model downloads; once it has loaded the state is checked
 *   against its block count.
 * - Every change rewrites the hash: steps (model, calibration, metric, cuts) push a history entry, the
 *   rest replaces the current one; back / forward apply the entry they land on.
 * - Nothing from a link is ever evaluated or rendered as HTML; what is dropped is said in one notice.
 */
import type { BlockScore } from '../../analysis/influence.ts';
import type { IntervalsInfo } from '../../analysis/uncertainty.ts';
import { parseHubId } from '../../engine/sources.ts';
import { textFingerprint } from '../../share/codec.ts';
import {
  type CalibrationChoice,
  decodeState,
  encodeState,
  type ExperimentState,
  historyAction,
  LIMITS,
  type ModelChoice,
  STATE_VERSION,
  shareUrl,
  validateForModel,
} from '../../share/url-state.ts';
import type { BackendChoice, ModelInfo, ModelSourceSpec, TextSourceSpec } from '../../worker-api.ts';
import * as actions from '../actions.ts';
import { BUILTIN_MODEL, type Cut, lab, notify } from '../state.svelte.ts';
import { checkHubModel, hub } from './hub.svelte.ts';
import { shareOfRun, showLinkSweep } from '../strategies/sweep-share.ts';
import { backendSwitch, strategies } from '../strategies/state.svelte.ts';

const BUILTIN_CALIBRATIONS = ['moby-dick'] as const;
const DECODE_OPTIONS = { builtinModels: [BUILTIN_MODEL], builtinCalibrations: BUILTIN_CALIBRATIONS };
const LINK_TEXT_LABEL = 'text from the link';

class ShareState {
  /** The scores that came from a link (by identity): while lab.scores is this array, they are the link's. */
  linkScores = $state.raw<BlockScore[] | null>(null);
  /** The link's model until it has loaded (a hub model waits for the person to confirm the download). */
  pendingModel = $state.raw<ModelChoice | null>(null);
  /** A link's pasted-text calibration (the text is not in the link), kept while its scores are shown. */
  calibrationOverride = $state.raw<{ choice: CalibrationChoice; appliedTo: TextSourceSpec } | null>(null);
  /** The person's opt-in to put pasted / uploaded calibration text into the link. */
  includeText = $state(false);
  /** Angular distance n: the lab measures n = 1; a link's other n is carried through unchanged. */
  angularN = $state(1);
  /** The link asked for the cut to be healed: refit once its model has loaded. */
  pendingHeal = false;
  fromLink = $derived(this.linkScores !== null && lab.scores === this.linkScores && lab.scores.length > 0);
}

export const share = new ShareState();

// ---------------------------------------------------------------- lab -> experiment

let fingerprintMemo: { text: string; hash: string } | null = null;
function fingerprint(text: string): string {
  if (fingerprintMemo?.text !== text) fingerprintMemo = { text, hash: textFingerprint(text) };
  return fingerprintMemo.hash;
}

/** The same model: a hub model's commit counts only when both name one (a link made before commits were recorded). */
const sameModel = (a: ModelChoice, b: ModelChoice) => {
  if (a.kind === 'builtin' || b.kind === 'builtin') return JSON.stringify(a) === JSON.stringify(b);
  return a.id === b.id && a.revision === b.revision && (!a.commit || !b.commit || a.commit === b.commit);
};

function choiceOfSource(source: ModelSourceSpec | null): ModelChoice | null {
  if (source === null) return { kind: 'builtin', name: BUILTIN_MODEL };
  if (source.kind === 'builtin') return { kind: 'builtin', name: source.name };
  if (source.kind === 'hub') {
    const { repo, revision } = parseHubId(source.id);
    return { kind: 'hub', id: repo, revision, ...(source.commit ? { commit: source.commit } : {}) };
  }
  return null;
}

function sourceOfChoice(choice: ModelChoice): ModelSourceSpec {
  return choice.kind === 'builtin'
    ? { kind: 'builtin', name: choice.name }
    : { kind: 'hub', id: `${choice.id}@${choice.revision}`, ...(choice.commit ? { commit: choice.commit } : {}) };
}

/** Whether a link can name the loaded model (models from a local folder or a URL cannot travel). */
export function modelIsLinkable(): boolean {
  return share.pendingModel !== null || choiceOfSource(lab.modelSource) !== null;
}

function currentModelChoice(): ModelChoice {
  return share.pendingModel ?? choiceOfSource(lab.modelSource) ?? { kind: 'builtin', name: BUILTIN_MODEL };
}

function currentCalibration(): CalibrationChoice {
  const { seqLen, maxSequences: sequences } = lab.windows;
  const override = share.calibrationOverride;
  if (override && lab.calibration === override.appliedTo && (share.fromLink || lab.scores.length === 0)) return { ...override.choice, sequences, seqLen };
  const source = lab.calibration;
  if (source.kind === 'builtin') return { kind: 'builtin', name: source.name, sequences, seqLen };
  if (share.includeText && source.text.length <= LIMITS.inlineText) return { kind: 'inline', text: source.text, sequences, seqLen };
  return { kind: 'pasted', hash: fingerprint(source.text), chars: source.text.length, sequences, seqLen };
}

/** The experiment the lab shows now, as the link would carry it. */
export function currentExperiment(): ExperimentState {
  const removal = lab.removal;
  const state: ExperimentState = {
    version: STATE_VERSION,
    model: currentModelChoice(),
    calibration: currentCalibration(),
    metric: lab.metric,
    angularN: share.angularN,
    removed: [...removal.blocks],
    removedAttention: [...removal.attention],
    removedMlp: [...removal.mlp],
    // The prompt and settings of the last run, as the outputs show them (an edit not yet run is not shared).
    prompt: lab.compared.prompt.slice(0, LIMITS.prompt),
    generation: { ...lab.compared.settings },
  };
  // Running (partial) scores and scores of a model no link can name stay out of the link.
  if (!lab.scoring && lab.scores.length > 0 && modelIsLinkable()) {
    state.scores = lab.scores;
    // Their error bars travel too, so a link draws the whiskers before the model loads.
    if (lab.intervals) state.intervals = lab.intervals;
  }
  // A heal (fitting or fitted) of exactly this cut; the maps themselves are refitted by whoever opens the link.
  if (lab.heal && !lab.heal.error && lab.heal.removed.join(',') === removal.blocks.join(',')) state.heal = true;
  // A finished sweep travels too (its curves, quantised), so the link draws it before the model loads.
  const sweep = modelIsLinkable() ? shareOfRun(strategies.run) : null;
  if (sweep) state.sweep = sweep;
  return state;
}

/** The link to the experiment as it is now. The page's `?backend=` is this browser's choice, not the experiment's. */
export function currentShareUrl(): string {
  const page = new URL(location.href);
  page.searchParams.delete('backend');
  page.hash = '';
  return shareUrl(page.href, currentExperiment());
}

// ---------------------------------------------------------------- experiment -> lab

function cutsOf(state: ExperimentState): Record<number, Cut> {
  const cuts: Record<number, Cut> = {};
  for (const i of state.removedAttention) cuts[i] = 'attention';
  for (const i of state.removedMlp) cuts[i] = 'mlp';
  for (const i of state.removed) cuts[i] = 'block';
  return cuts;
}

function applyCalibration(choice: CalibrationChoice, fromLink: boolean): void {
  share.calibrationOverride = null;
  const current = lab.calibration;
  if (choice.kind === 'builtin') {
    if (current.kind !== 'builtin' || current.name !== choice.name) void actions.setCalibration({ kind: 'builtin', name: choice.name });
  } else if (choice.kind === 'inline') {
    if (current.kind !== 'text' || current.text !== choice.text) void actions.setCalibration({ kind: 'text', text: choice.text, label: LINK_TEXT_LABEL });
  } else if (current.kind !== 'text' || current.text.length !== choice.chars || fingerprint(current.text) !== choice.hash) {
    // Pasted text that is not in the link: keep naming it while the link's scores are shown.
    share.calibrationOverride = { choice, appliedTo: current };
    if (fromLink) {
      notify(
        'info',
        'The link was scored on its author’s own text',
        `That calibration text (${choice.chars.toLocaleString()} characters) is not in the link, so the chart shows the link’s scores; pressing Score here measures on ${current.kind === 'builtin' ? 'the built-in text' : current.label} instead.`,
        'Paste the same text in the Calibration row to measure on it.',
      );
    }
  }
}

/** Applies everything but the model and the scores. */
function applySettings(state: ExperimentState, fromLink: boolean): void {
  lab.metric = state.metric;
  share.angularN = state.angularN;
  lab.windows = { seqLen: state.calibration.seqLen, maxSequences: state.calibration.sequences };
  applyCalibration(state.calibration, fromLink);
  lab.cuts = cutsOf(state);
  lab.lowestCount = 0;
  if (state.removedAttention.length + state.removedMlp.length > 0) lab.halfRemoval = true;
  lab.prompt = state.prompt;
  lab.settings = { ...state.generation };
  lab.compared = { prompt: state.prompt, settings: { ...state.generation } };
  share.pendingHeal = state.heal === true;
}

/** Heals the cut when the applied link asks for it (and it is not healed yet), or drops a heal it does not have. */
function followHeal(): void {
  const wanted = share.pendingHeal;
  share.pendingHeal = false;
  const healedNow = lab.heal !== null && !lab.heal.error && lab.heal.removed.join(',') === lab.removal.blocks.join(',');
  if (wanted && !healedNow) void actions.healCut();
  else if (!wanted && lab.heal) actions.dropHeal();
}

function showLinkScores(scores: BlockScore[], intervals: IntervalsInfo | undefined): void {
  share.linkScores = scores;
  lab.scores = scores;
  lab.errorBars = intervals ? { scores, bootstrap: null, intervals } : null;
  lab.scoreSummary = null;
}

/** For loadModel: keeps the link's cuts and scores and checks them against the model that arrived. */
function keepForModel(info: ModelInfo): void {
  share.pendingModel = null;
  const shown: ExperimentState = { ...currentExperiment(), scores: lab.scores.length ? lab.scores : undefined, ...(share.pendingHeal ? { heal: true } : {}) };
  const { state, notices } = validateForModel(shown, info.blocks);
  lab.cuts = cutsOf(state);
  share.angularN = state.angularN;
  if (!state.scores && lab.scores.length > 0) {
    lab.scores = [];
    share.linkScores = null;
  }
  if (!state.sweep && strategies.run?.fromLink) strategies.run = null;
  if (notices.length > 0) notify('warning', `Parts of the link do not fit ${info.name}`, notices.join(' '), 'The rest of the link was applied.');
  if (!state.heal) share.pendingHeal = false;
  followHeal();
}

/** Loads the model a link names: the built-in at once, a hub model only after the person confirms its size. */
function openLinkedModel(choice: ModelChoice): void {
  const loaded = choiceOfSource(lab.modelSource);
  if (lab.model && loaded && sameModel(loaded, choice)) {
    share.pendingModel = null;
    return;
  }
  share.pendingModel = choice;
  if (choice.kind === 'builtin') {
    void actions.loadModel(sourceOfChoice(choice), keepForModel);
    return;
  }
  const id = choice.revision === 'main' ? choice.id : `${choice.id}@${choice.revision}`;
  notify(
    'info',
    `This link uses ${id} from the Hugging Face hub`,
    'Nothing is downloaded until you confirm: its download size is shown in the Model panel. The chart shows the link’s scores meanwhile.',
    lab.model ? `${lab.model.name} stays loaded until then.` : 'Or load the built-in model from the Model panel.',
  );
  hub.id = id;
  // The link's commit is listed and loaded (and compared with where the revision points now).
  void checkHubModel(id, choice.commit);
}

/** Loads a model the person picked; a pending link model is then no longer pending. */
export async function loadChosenModel(source: ModelSourceSpec): Promise<void> {
  const pending = share.pendingModel;
  const choice = choiceOfSource(source);
  // Confirming the link's own hub model keeps the link's cuts and scores.
  const keep = pending && choice && sameModel(pending, choice) ? keepForModel : undefined;
  await actions.loadModel(source, keep);
  if (lab.modelSource === source) share.pendingModel = null;
}

/**
 * A new backend choice. With a model loaded it is reloaded on that backend at once, keeping the experiment
 * (cut, metric, calibration, prompt, heal) the way a link's is kept; the scores stay, marked as measured on the old backend.
 */
export async function switchBackend(choice: BackendChoice): Promise<void> {
  if (choice === lab.backendChoice) return;
  lab.backendChoice = choice;
  const source = lab.modelSource;
  // Already on the backend asked for (e.g. `auto` chose the CPU): nothing to reload.
  if (!lab.model || !source || lab.loading || choice === lab.model.backend.kind) return;
  const before = lab.model.backend.kind;
  const healed = lab.heal !== null && !lab.heal.error && lab.heal.removed.join(',') === lab.removal.blocks.join(',');
  const partial = lab.scoring !== null;
  // a finished sweep of this checkpoint stays across the reload (StrategiesView), marked with the old backend
  Object.assign(backendSwitch, { from: before, name: lab.model.name, blocks: lab.model.blocks });
  await actions.loadModel(source, (info) => {
    share.pendingHeal = healed;
    // A score pass still running is cancelled by the load: its partial scores go with it.
    if (partial) lab.scores = [];
    // The score time was measured on the old backend: it would mislead the sweep's estimate.
    lab.scoreSummary = null;
    keepForModel(info);
    if (lab.scores.length > 0 && info.backend.kind !== before) {
      notify(
        'info',
        `The scores were measured on the ${before} backend`,
        `The cut and settings were kept on ${info.backend.kind}.`,
        'Press Score to measure them on this backend.',
      );
    }
  });
}

function reportNotices(notices: string[], found: boolean): void {
  if (notices.length === 0) return;
  notify(
    'warning',
    found ? 'Parts of this link were ignored' : 'This link could not be opened as an experiment',
    notices.join(' '),
    found ? 'Everything else in the link was applied; the lab works as usual.' : 'The lab opened its default experiment and works as usual.',
  );
}

// ---------------------------------------------------------------- history

let written: ExperimentState | null = null;
let writtenHash = '';
let replaceTimer: ReturnType<typeof setTimeout> | null = null;

function write(state: ExperimentState, hash: string, how: 'push' | 'replace'): void {
  written = state;
  writtenHash = hash;
  const url = `${location.pathname}${location.search}#${hash}`;
  try {
    if (how === 'push') history.pushState(null, '', url);
    else history.replaceState(null, '', url);
  } catch {
    // Too many history calls in a short time (browsers throttle them): the next change writes again.
  }
}

function follow(next: ExperimentState): void {
  const how = historyAction(written, next);
  if (how === 'none') return;
  if (replaceTimer) clearTimeout(replaceTimer);
  replaceTimer = null;
  const hash = encodeState(next);
  if (how === 'push') write(next, hash, 'push');
  // Typing a prompt replaces the entry once the typing pauses, not on every key.
  else replaceTimer = setTimeout(() => write(next, hash, 'replace'), 250);
}

/** Back / forward (or an edited hash): apply the entry's state without writing a new one. */
function onNavigate(): void {
  const hash = location.hash.replace(/^#/, '');
  if (hash === writtenHash || hash === '') return;
  if (replaceTimer) clearTimeout(replaceTimer);
  replaceTimer = null;
  const decoded = decodeState(hash, DECODE_OPTIONS);
  if (!decoded.found) {
    reportNotices(decoded.notices, false);
    // Not an experiment (e.g. an edited hash): keep the lab as it is and put its own state back.
    written = null;
    writtenHash = '';
    follow(currentExperiment());
    return;
  }
  const before = currentExperiment();
  // Checked against the loaded model when the entry is for it (another model is checked once it loads).
  const loaded = choiceOfSource(lab.modelSource);
  const checked = lab.model && loaded && sameModel(loaded, decoded.state.model) ? validateForModel(decoded.state, lab.model.blocks) : { state: decoded.state, notices: [] };
  reportNotices([...decoded.notices, ...checked.notices], true);
  const state = checked.state;
  const sameScores = sameModel(before.model, state.model) && JSON.stringify(before.calibration) === JSON.stringify(state.calibration);
  applySettings(state, false);
  if (state.scores && !(sameScores && lab.scores.length > 0 && !share.fromLink)) showLinkScores(state.scores, state.intervals);
  else if (!state.scores && !sameScores) lab.scores = [];
  if (state.sweep && (!strategies.run || strategies.run.fromLink)) showLinkSweep(state.sweep, lab.calibration);
  written = state;
  writtenHash = hash;
  openLinkedModel(state.model);
  // The same model stays loaded (no load to wait for): heal or un-heal now.
  if (lab.model && loaded && sameModel(loaded, state.model)) followHeal();
}

/**
 * Starts the lab from the page's hash (or the defaults) and keeps the hash in step with the lab from
 * then on. Call once, from the root component's setup.
 */
export function startUrlSync(): void {
  const decoded = decodeState(location.hash, DECODE_OPTIONS);
  reportNotices(decoded.notices, decoded.found);
  if (decoded.found) {
    applySettings(decoded.state, true);
    if (decoded.state.scores) showLinkScores(decoded.state.scores, decoded.state.intervals);
    if (decoded.state.sweep) showLinkSweep(decoded.state.sweep, lab.calibration);
    openLinkedModel(decoded.state.model);
  } else {
    void actions.loadBuiltinModel();
  }
  $effect.root(() => {
    $effect(() => {
      const next = currentExperiment();
      follow(next);
    });
  });
  addEventListener('popstate', onNavigate);
  addEventListener('hashchange', onNavigate);
}
