/**
 * The engine in a Web Worker, exposed with comlink (the EngineApi of src/worker-api.ts). Wiring only: each
 * call resolves a source, builds a plan, runs the engine, and turns results (or errors) into small values.
 *
 * Every job runs on a per-job view of the model whose backend yields one macrotask before each forward, so
 * a `cancel` message is seen between forwards and concurrent jobs (original vs pruned generation) take turns.
 */
import * as Comlink from 'comlink';
import { blockScores } from '../src/analysis/influence.ts';
import { bootstrapScores } from '../src/analysis/uncertainty.ts';
import { blockParameters } from '../src/analysis/parameters.ts';
import type { Backend, BlockStatSums } from '../src/engine/backend.ts';
import { chooseDefaultBackend } from '../src/engine/backend-choice.ts';
import { type Checkpoint, loadCheckpoint } from '../src/engine/checkpoint.ts';
import { browserThreadLimit } from '../src/engine/cpu/threads.ts';
import { describeError, PruneLabError } from '../src/engine/errors.ts';
import { assertFiniteScores, assertFiniteWeights } from '../src/engine/finite.ts';
import { checkPrompt } from '../src/engine/limits.ts';
import { chooseMemoryMode, defaultGpuBudget, type ModeDecision } from '../src/engine/memory.ts';
import { accumulateStats, type BackendKind, createBackend, type DecodeRun, Model } from '../src/engine/model.ts';
import { makePlan } from '../src/engine/plan.ts';
import { topTokens } from '../src/engine/sampling.ts';
import { hubModelSource } from '../src/engine/hub.ts';
import { fileListSource, type ModelSource, parseHubId, urlSource } from '../src/engine/sources.ts';
import { prunedCheckpointZip, prunedFolderName } from '../src/export/zip.ts';
import { healUnavailableReason } from '../src/analysis/heal.ts';
import { handoffFileName, handoffText, keptBlocks } from '../src/export/handoff.ts';
import { prunedConfigChanges } from '../src/export/pruned-checkpoint.ts';
import { windows } from '../src/engine/tokenizer.ts';
import type { HealApi } from '../src/worker-api-heal.ts';
import type { StrategiesApi } from '../src/worker-api-strategies.ts';
import { dropHealed, healApi, modelForVariant } from './heal.ts';
import { strategiesApi } from './strategies.ts';
import type {
  BackendChoice,
  EngineApi,
  GenerateSettings,
  LoadProgress,
  ModelInfo,
  ModelSourceSpec,
  NextToken,
  Outcome,
  PerplexityResult,
  RemovalSet,
  ScoreProgress,
  ScoreResult,
  TextSourceSpec,
  TextStats,
  TokenEvent,
  WindowSettings,
} from '../src/worker-api.ts';

let current: { model: Model; info: ModelInfo } | null = null;
const jobs = new Map<string, AbortController>();
const texts = new Map<string, string>();
/** Token ids of recent texts for the current model (cleared when the model changes). */
const tokenized = new Map<string, number[]>();

const appBase = new URL(import.meta.env.BASE_URL, self.location.origin);

/** One macrotask: lets queued messages (cancel, other jobs) run between forwards. */
function nextTask(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(0);
  });
}

/** The model seen through a backend that yields before each forward and reports each forward's time. */
function jobView(model: Model, onForward?: (ms: number) => void): Model {
  const inner = model.backend;
  const backend: Backend = {
    info: inner.info,
    async forward(request) {
      await nextTask();
      const start = performance.now();
      try {
        return await inner.forward(request);
      } finally {
        onForward?.(performance.now() - start);
      }
    },
    createCache: (capacity, plan) => inner.createCache(capacity, plan),
    // Block streaming (a model larger than the budget): each block step yields too, so cancel is seen per block.
    streaming: inner.streaming && {
      ...inner.streaming,
      runBlock: async (stream, index, plan) => {
        await nextTask();
        return (inner.streaming as NonNullable<Backend['streaming']>).runBlock(stream, index, plan);
      },
    },
    memory: inner.memory,
    dispose: () => {},
  };
  return Object.create(model, { backend: { value: backend } }) as Model;
}

/** Calls a page callback (a comlink proxy) without waiting for it or failing on it. */
function notify<A extends unknown[]>(callback: ((...args: A) => unknown) | undefined, ...args: A): void {
  if (!callback) return;
  try {
    Promise.resolve(callback(...args)).catch(() => {});
  } catch {
    // the page went away; nothing to tell
  }
}

function release(callback: unknown): void {
  const releasable = callback as { [Comlink.releaseProxy]?: () => void } | undefined;
  try {
    releasable?.[Comlink.releaseProxy]?.();
  } catch {
    // not a proxy
  }
}

async function job<T>(jobId: string, callback: unknown, work: (signal: AbortSignal) => Promise<T>): Promise<Outcome<T>> {
  jobs.get(jobId)?.abort();
  const controller = new AbortController();
  jobs.set(jobId, controller);
  try {
    return { ok: true, value: await work(controller.signal) };
  } catch (e) {
    const cancelled = controller.signal.aborted || (e as Error)?.name === 'AbortError';
    return { ok: false, message: cancelled ? 'cancelled' : describeError(e), cancelled };
  } finally {
    if (jobs.get(jobId) === controller) jobs.delete(jobId);
    release(callback);
  }
}

function requireModel(): Model {
  if (!current) throw new PruneLabError('no model is loaded yet');
  return current.model;
}

function plainName(name: string, what: string): string {
  if (!/^[\w.-]+$/.test(name)) throw new PruneLabError(`"${name}" is not a plain name`, { field: what });
  return name;
}

function resolveSource(spec: ModelSourceSpec): { source: ModelSource; name: string } {
  switch (spec.kind) {
    case 'builtin': {
      const name = plainName(spec.name, 'model');
      return { source: urlSource(new URL(`models/${name}/`, appBase).href, name), name };
    }
    case 'url':
      return { source: urlSource(new URL(spec.url, appBase).href, spec.url), name: spec.url };
    case 'hub': {
      // Origin-checked, and cached per owner/name@revision in the Cache API so a reload downloads nothing.
      // At its commit when the listing resolved one: the weights are the ones the link names.
      const { repo, revision } = parseHubId(spec.id);
      const pinned = spec.commit ? `${repo}@${spec.commit}` : spec.id;
      const source = hubModelSource(pinned, { token: spec.token, onCacheError: (e, file) => console.warn(`PruneLab: could not cache ${file}:`, e) });
      return { source, name: revision === 'main' ? repo : `${repo}@${revision}` };
    }
    case 'files': {
      const folder = (spec.files[0] as File & { webkitRelativePath?: string })?.webkitRelativePath?.split('/')[0];
      const name = spec.label || folder || 'local files';
      return { source: fileListSource(spec.files, name), name };
    }
  }
}

interface OpenedModel {
  model: Model;
  /** Why this backend (the status bar shows it). */
  reason: string;
  /** Set when `auto` chose WebGPU but it failed to start, so the CPU backend runs instead. */
  fallbackReason: string | null;
}

/**
 * `auto` follows the CLI's rule (backend-choice.ts): WebGPU on a hardware adapter, else the fast CPU backend.
 * `open(kind)` makes the model on that backend (a resident one is handed its blocks as they are read).
 */
async function openModel(choice: BackendChoice, open: (kind: BackendKind) => Promise<Model>): Promise<OpenedModel> {
  if (choice === 'cpu') return { model: await open('cpu'), reason: 'chosen in the settings', fallbackReason: null };
  if (choice === 'webgpu') {
    if (!('gpu' in navigator) || !navigator.gpu)
      throw new PruneLabError('the WebGPU backend could not start: this browser exposes no WebGPU (navigator.gpu is missing)', { field: 'backend' });
    try {
      return { model: await open('webgpu'), reason: 'chosen in the settings', fallbackReason: null };
    } catch (e) {
      // A cancel while the blocks are handed over is not a failure to start.
      if ((e as Error)?.name === 'AbortError') throw e;
      throw new PruneLabError(`the WebGPU backend could not start: ${describeError(e)}`, { field: 'backend' });
    }
  }
  const gpu = 'gpu' in navigator ? navigator.gpu : null;
  const decision = await chooseDefaultBackend(gpu, 'this browser exposes no WebGPU (navigator.gpu is missing)');
  if (decision.kind === 'cpu') return { model: await open('cpu'), reason: `auto: ${decision.reason}`, fallbackReason: null };
  try {
    return { model: await open('webgpu'), reason: `auto: ${decision.reason}`, fallbackReason: null };
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    const why = describeError(e);
    return { model: await open('cpu'), reason: `auto: WebGPU failed to start (${why})`, fallbackReason: why };
  }
}

/**
 * Per-block parameter counts: from the blocks when they were read (in memory, or counted as they were handed
 * to the backend), else (block-streamed) from the config: the spec's shapes.
 */
function blockParametersOf(checkpoint: Checkpoint, counted: ModelInfo['blockParameters']): ModelInfo['blockParameters'] {
  if (checkpoint.weights.blocks.length > 0) return blockParameters(checkpoint.weights.blocks);
  if (counted.length === checkpoint.spec.layers && counted.every(Boolean)) return counted;
  const { hidden, intermediate, heads, kvHeads, headDim, gatedMlp, layers } = checkpoint.spec;
  const attention = hidden * heads * headDim * 2 + hidden * kvHeads * headDim * 2 + hidden;
  const mlp = (gatedMlp ? 3 : 2) * hidden * intermediate + hidden;
  return Array.from({ length: layers }, (_, index) => ({ index, attention, mlp, total: attention + mlp }));
}

async function textOf(spec: TextSourceSpec, signal?: AbortSignal): Promise<string> {
  if (spec.kind === 'text') return spec.text;
  const name = plainName(spec.name, 'calibration');
  let text = texts.get(name);
  if (text === undefined) {
    const url = new URL(`calibration/${name}.txt`, appBase).href;
    const response = await fetch(url, { signal });
    if (!response.ok) throw new PruneLabError(`HTTP ${response.status} ${response.statusText}`, { file: url });
    text = await response.text();
    texts.set(name, text);
  }
  return text;
}

async function idsOf(model: Model, spec: TextSourceSpec, signal?: AbortSignal): Promise<number[]> {
  const text = await textOf(spec, signal);
  const key = spec.kind === 'builtin' ? `builtin:${spec.name}` : `text:${text}`;
  let ids = tokenized.get(key);
  if (!ids) {
    ids = model.requireTokenizer().encode(text);
    if (tokenized.size >= 4) tokenized.delete(tokenized.keys().next().value as string);
    tokenized.set(key, ids);
  }
  return ids;
}

function describeModel(model: Model, name: string, opened: Omit<OpenedModel, 'model'>, loadMs: number, memoryReason: string, counted: ModelInfo['blockParameters']): ModelInfo {
  const { spec, checkpoint, backend } = model;
  return {
    name,
    source: checkpoint.label,
    modelType: spec.modelType,
    blocks: spec.layers,
    hidden: spec.hidden,
    vocab: spec.vocabSize,
    maxPositions: spec.maxPositions,
    learnedPositions: spec.learnedPositions,
    parameters: checkpoint.parameters,
    dtypes: checkpoint.dtypes,
    blockParameters: blockParametersOf(checkpoint, counted),
    hasTokenizer: model.tokenizer !== null,
    healUnsupported: healUnavailableReason(spec),
    backend: {
      kind: backend.info.kind,
      description: backend.info.description,
      reason: opened.reason,
      fallbackReason: opened.fallbackReason,
      threadNote: backend.info.kind === 'cpu' ? browserThreadLimit() : null,
      weightBytes: backend.info.weightBytes,
    },
    memory: {
      mode: model.mode,
      reason: memoryReason,
      gpuBudgetBytes: model.gpuBudgetBytes,
      weightBytes: model.memoryReport().weightBytes,
      largestBlockBytes: Math.max(0, ...checkpoint.blockBytes),
    },
    loadMs,
  };
}

const api: Omit<EngineApi, keyof StrategiesApi | keyof HealApi> = {
  async defaultGpuBudget() {
    let maxBufferSize: number | null = null;
    try {
      const adapter = 'gpu' in navigator ? await navigator.gpu?.requestAdapter() : null;
      maxBufferSize = adapter?.limits.maxBufferSize ?? null;
    } catch {
      // no adapter: the stated fallback
    }
    return defaultGpuBudget(maxBufferSize);
  },

  loadModel(jobId, spec, backendChoice, onProgress, gpuBudgetBytes = null) {
    return job(jobId, onProgress, async (signal) => {
      const start = performance.now();
      const { source, name } = resolveSource(spec);
      let lastReport = 0;
      const report = (p: LoadProgress) => {
        const now = performance.now();
        if (now - lastReport < 100 && p.loadedBytes !== p.totalBytes) return;
        lastReport = now;
        // A hub listing told the page the weights' total: report against it rather than per file.
        const expected = spec.kind === 'hub' && spec.expectedBytes ? spec.expectedBytes : null;
        notify(onProgress, expected && p.phase === 'download' ? { ...p, totalBytes: Math.max(expected, p.loadedBytes) } : p);
      };
      // Headers and the ends first; the blocks are read now only when the model runs resident (memory.ts).
      const checkpoint = await loadCheckpoint(source, {
        signal,
        blocks: 'on-demand',
        progress: (loadedBytes, totalBytes, file) => report({ phase: 'download', loadedBytes, totalBytes, file }),
      });
      assertFiniteWeights(checkpoint.weights);
      let memory: ModeDecision = { mode: 'resident', reason: '', residentFits: true };
      let counted: ModelInfo['blockParameters'] = [];
      const open = async (kind: BackendKind) => {
        memory = await chooseMemoryMode(checkpoint, kind, { gpuMemoryBytes: gpuBudgetBytes });
        // The lab decodes right away (compare panel): a model that fits its budget is loaded resident now,
        // not streamed for passes and loaded later (the CLI's choice for scoring on the fast CPU kernels).
        if (memory.mode === 'streamed' && memory.residentFits) memory = { ...memory, mode: 'resident', reason: 'every block fits; the lab decodes, so it holds them all' };
        // Creating the backend (device, kernels) reads nothing; a resident model's blocks are then read (progress
        // as downloads again), each handed to the backend and dropped: the worker keeps no block's stored bytes.
        notify(onProgress, { phase: 'backend', loadedBytes: checkpoint.endsBytes, totalBytes: null, file: '' });
        counted = [];
        return Model.open(checkpoint, kind, memory, {
          signal,
          onBlockLoaded: (index, block) => {
            counted[index] = { ...blockParameters([block])[0], index };
          },
        });
      };
      const { model, ...opened } = await openModel(backendChoice, open);
      if (signal.aborted) {
        model.dispose();
        throw new DOMException('cancelled', 'AbortError');
      }
      // The new model replaces the old one only now; jobs still running on the old one are cancelled.
      for (const [id, controller] of jobs) if (id !== jobId) controller.abort();
      current?.model.dispose();
      dropHealed();
      tokenized.clear();
      model.gpuBudgetBytes = model.backend.info.kind === 'webgpu' ? gpuBudgetBytes : null;
      const info = describeModel(model, name, opened, performance.now() - start, memory.reason, counted);
      current = { model, info };
      return info;
    });
  },

  textStats(spec) {
    return job(`textStats:${Math.random()}`, undefined, async (signal): Promise<TextStats> => {
      const text = await textOf(spec, signal);
      return { tokens: (await idsOf(requireModel(), spec, signal)).length, characters: text.length };
    });
  },

  score(jobId, spec, settings: WindowSettings, removal: RemovalSet, onBatch) {
    return job(jobId, onBatch, async (signal): Promise<ScoreResult> => {
      const start = performance.now();
      const model = requireModel();
      const sequences = windows(await idsOf(model, spec, signal), settings.seqLen, settings.maxSequences);
      if (sequences.length === 0) throw new PruneLabError('the calibration text has fewer than two tokens', { field: 'calibration' });
      const plan = makePlan(model.spec.layers, removal);
      const view = jobView(model);
      const totals = new Map<number, BlockStatSums>();
      const tokensTotal = sequences.reduce((a, s) => a + s.length, 0);
      if (model.mode === 'streamed') {
        // Block-major: one pass over every sequence, each block read once; progress per block, scores at the end.
        view.onBlock = (done, total, p) =>
          notify(onBatch, {
            sequencesDone: 0,
            sequencesTotal: sequences.length,
            tokensDone: 0,
            tokensTotal,
            scores: [],
            blocks: { done, total, bytesRead: p.bytesRead, elapsedMs: p.elapsedMs },
          });
        const { total, perSequence } = await view.scoreSequences(sequences, plan, { signal });
        const scores = blockScores(total);
        assertFiniteScores(scores);
        return { scores, tokens: tokensTotal, sequences: sequences.length, perSequence, bootstrap: bootstrapScores(perSequence), ms: performance.now() - start };
      }
      let tokensDone = 0;
      let scores: ScoreProgress['scores'] = [];
      // Each sequence's own sums too: the page bootstraps its error bars from them (analysis/uncertainty.ts).
      const perSequence: BlockStatSums[][] = [];
      for (let s = 0; s < sequences.length; s++) {
        const own = await view.score([sequences[s]], plan, { signal });
        perSequence.push(own);
        accumulateStats(totals, own);
        tokensDone += sequences[s].length;
        scores = blockScores(plan.blocks.map((i) => totals.get(i) as BlockStatSums));
        notify(onBatch, { sequencesDone: s + 1, sequencesTotal: sequences.length, tokensDone, tokensTotal, scores });
      }
      assertFiniteScores(scores);
      // The error bars are bootstrapped here, off the page's thread (a second or so for thousands of sequences).
      return { scores, tokens: tokensDone, sequences: sequences.length, perSequence, bootstrap: bootstrapScores(perSequence), ms: performance.now() - start };
    });
  },

  generate(jobId, prompt, removal, settings: GenerateSettings, onToken, variant, options) {
    return job(jobId, onToken, async (signal) => {
      const start = performance.now();
      const model = modelForVariant(requireModel(), variant, removal);
      const tokenizer = model.requireTokenizer();
      const promptIds = tokenizer.encode(prompt);
      // Speed = one token per decode forward (the prompt pass excluded), from the median forward time so a
      // pause elsewhere in the machine does not swing it; streamed (no forwards), the time between tokens.
      let forwards = 0;
      const decodeMs: number[] = [];
      const view = jobView(model, (ms) => {
        if (forwards++ > 0) decodeMs.push(ms);
      });
      const ids: number[] = [];
      let run: DecodeRun | null = null;
      let lastToken = 0;
      const event = (): TokenEvent => {
        const sorted = [...decodeMs].sort((a, b) => a - b);
        const median = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
        return { text: tokenizer.decode(ids, { skipSpecialTokens: true }), count: ids.length, tokensPerSecond: median > 0 ? 1000 / median : null };
      };
      await view.generate(promptIds, makePlan(model.spec.layers, removal), {
        maxNewTokens: settings.maxNewTokens,
        temperature: settings.temperature,
        topK: settings.topK,
        seed: settings.seed,
        stopAtEos: true,
        signal,
        allowStreamed: options?.allowStreamed,
        onRun: (r) => (run = r),
        onToken: (id) => {
          const now = performance.now();
          if (run?.mode === 'streamed' && ids.length > 0) decodeMs.push(now - lastToken);
          lastToken = now;
          ids.push(id);
          notify(onToken, event());
        },
      });
      return { ...event(), promptTokens: promptIds.length, ms: performance.now() - start, run };
    });
  },

  perplexity(jobId, spec, settings, removal, onProgress, variant) {
    return job(jobId, onProgress, async (signal): Promise<PerplexityResult> => {
      const model = modelForVariant(requireModel(), variant, removal);
      const sequences = windows(await idsOf(model, spec, signal), settings.seqLen, settings.maxSequences);
      const result = await jobView(model).perplexity(sequences, makePlan(model.spec.layers, removal), {
        signal,
        onProgress: (done, total) => notify(onProgress, done, total),
      });
      return { ppl: result.ppl, nll: result.nll, tokens: result.tokens, sequences: sequences.length };
    });
  },

  decodeRun(prompt, removal, settings, variant) {
    return job(`decodeRun:${Math.random()}`, undefined, async () => {
      const model = modelForVariant(requireModel(), variant, removal);
      const promptIds = model.requireTokenizer().encode(prompt);
      return model.decodeRun(makePlan(model.spec.layers, removal), Math.min(promptIds.length + settings.maxNewTokens, model.spec.maxPositions));
    });
  },

  nextTokenTop(jobId, prompt, removal, k, variant, options) {
    return job(jobId, undefined, async (signal): Promise<NextToken[]> => {
      const model = modelForVariant(requireModel(), variant, removal);
      const tokenizer = model.requireTokenizer();
      const promptIds = tokenizer.encode(prompt);
      const promptProblem = checkPrompt(promptIds.length, 1, model.spec);
      if (promptProblem?.level === 'error') throw new PruneLabError(promptProblem.message, { field: 'prompt' });
      const row = await jobView(model).lastLogits(promptIds, makePlan(model.spec.layers, removal), { allowStreamed: options?.allowStreamed, signal });
      if (signal.aborted) throw new DOMException('cancelled', 'AbortError');
      return topTokens(row, k).map(({ id, prob }) => ({ id, prob, text: tokenizer.tokenText(id) }));
    });
  },

  cancel(jobId) {
    jobs.get(jobId)?.abort();
  },

  // ---- export ----

  async prunedZip(request) {
    const outcome = await job('pruned-zip', undefined, async (signal) => {
      const model = requireModel();
      // A block-streamed model's checkpoint holds only the ends: the export reads every block first.
      await model.checkpoint.makeResident(signal);
      const bytes = prunedCheckpointZip(model.checkpoint, request.removed, {
        metric: request.metric,
        scores: request.scores,
        calibration: request.calibration,
        link: request.link,
        weights: request.weights,
      });
      return { bytes, fileName: `${prunedFolderName(current?.info.name ?? model.checkpoint.label)}.zip` };
    });
    return outcome.ok ? Comlink.transfer(outcome, [outcome.value.bytes.buffer]) : outcome;
  },

  async handoff(request) {
    return job('handoff', undefined, async () => {
      const { checkpoint } = requireModel();
      const { spec, family, config, dtypes } = checkpoint;
      const configChanges = prunedConfigChanges(config, family, spec, keptBlocks(spec.layers, request.removed));
      const plan = { source: request.source, layers: spec.layers, removed: request.removed, configChanges, dtypes, version: request.version, chosenBy: request.chosenBy };
      return { text: handoffText(plan, request.format), fileName: handoffFileName(request.source, request.format) };
    });
  },
};

// Sweep, similarity, logit lens, MC and speed (workers/strategies.ts), on this file's job runner.
// Healing (workers/heal.ts): its healed model runs on a second backend of the loaded model's kind.
const healing = healApi({
  job,
  requireModel,
  jobView,
  idsOf,
  notify,
  openBackend: (checkpoint) => createBackend(current?.info.backend.kind ?? 'cpu', checkpoint),
  modelName: () => current?.info.name ?? requireModel().checkpoint.label,
});
const engineApi: EngineApi = { ...api, ...strategiesApi({ job, requireModel, jobView, textOf, idsOf, notify }), ...healing };

Comlink.expose(engineApi);
