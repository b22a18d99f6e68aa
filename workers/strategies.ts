/**
 * The strategies half of the engine worker (StrategiesApi of src/worker-api-strategies.ts): sweep,
 * similarity, logit lens, multiple choice and decode speed. Wiring only — resolve texts, build plans, call
 * src/analysis, turn results into small values. engine.worker.ts passes in its job runner and helpers, so
 * cancellation, per-forward yielding and error values work exactly as for its own calls.
 */
import * as Comlink from 'comlink';
import { blockScores, rankBlocks } from '../src/analysis/influence.ts';
import { logitLens } from '../src/analysis/logit-lens.ts';
import { clozeTasks, type EncodedMcItem, encodeMcItems, evaluateMc, type McItem, type McResult, parseMcJsonl } from '../src/analysis/mc.ts';
import { layerSimilarity } from '../src/analysis/similarity.ts';
import { decodeSpeedAlong } from '../src/analysis/speed.ts';
import { runSweep } from '../src/analysis/sweep.ts';
import { PruneLabError } from '../src/engine/errors.ts';
import type { Model } from '../src/engine/model.ts';
import { makePlan } from '../src/engine/plan.ts';
import { windows } from '../src/engine/tokenizer.ts';
import type { LensView, McComparison, McSummary, McTasksSpec, SpeedResult, StrategiesApi } from '../src/worker-api-strategies.ts';
import type { BlockPassProgress, Outcome, RemovalSet, TextSourceSpec, WindowSettings } from '../src/worker-api.ts';

/** What engine.worker.ts lends: its job runner (per-job cancel, errors as values) and model helpers. */
export interface WorkerContext {
  job<T>(jobId: string, callback: unknown, work: (signal: AbortSignal) => Promise<T>): Promise<Outcome<T>>;
  requireModel(): Model;
  /** The model through a backend that yields before each forward (and reports each forward's time). */
  jobView(model: Model, onForward?: (ms: number) => void): Model;
  textOf(spec: TextSourceSpec, signal?: AbortSignal): Promise<string>;
  idsOf(model: Model, spec: TextSourceSpec, signal?: AbortSignal): Promise<number[]>;
  notify<A extends unknown[]>(callback: ((...args: A) => unknown) | undefined, ...args: A): void;
}

function release(callback: unknown): void {
  try {
    (callback as { [Comlink.releaseProxy]?: () => void } | undefined)?.[Comlink.releaseProxy]?.();
  } catch {
    // not a proxy
  }
}

const NOTHING = (r: RemovalSet) => r.blocks.length + r.attention.length + r.mlp.length === 0;

function summary(result: McResult, items: readonly EncodedMcItem[]): McSummary {
  return { accuracy: result.accuracy, accNorm: result.accNorm, n: result.n, meanChoices: items.reduce((a, i) => a + i.continuations.length, 0) / items.length };
}

/** The job's view of the model; a block-streamed pass tells `onBlocks` after each block (the status line's "block 7 / 12 · … read"). */
function blockReporting(ctx: WorkerContext, model: Model, onBlocks: ((progress: BlockPassProgress) => void) | undefined): Model {
  const view = ctx.jobView(model);
  if (model.mode === 'streamed') view.onBlock = (done, total, p) => ctx.notify(onBlocks, { done, total, bytesRead: p.bytesRead, elapsedMs: p.elapsedMs });
  return view;
}

export function strategiesApi(ctx: WorkerContext): StrategiesApi {
  /** The full model's MC result per task set, per model (the original side rarely changes). */
  const originalMc = new WeakMap<Model, Map<string, McResult>>();

  async function sequences(model: Model, spec: TextSourceSpec, settings: WindowSettings, what: string, signal: AbortSignal): Promise<number[][]> {
    const list = windows(await ctx.idsOf(model, spec, signal), settings.seqLen, settings.maxSequences);
    if (list.length === 0) throw new PruneLabError(`the ${what} text has fewer than two tokens`, { field: what });
    return list;
  }

  async function mcItems(model: Model, tasks: McTasksSpec, signal: AbortSignal): Promise<{ key: string; items: McItem[]; encoded: EncodedMcItem[] }> {
    let items: McItem[];
    let key: string;
    if (tasks.kind === 'cloze') {
      const text = await ctx.textOf(tasks.text, signal);
      items = clozeTasks(text, { count: tasks.count, seed: tasks.seed });
      key = `cloze:${tasks.text.kind === 'builtin' ? tasks.text.name : text}:${tasks.count}:${tasks.seed}`;
    } else {
      items = parseMcJsonl(tasks.text, tasks.label);
      key = `jsonl:${tasks.text}`;
    }
    return { key, items, encoded: encodeMcItems(model, items) };
  }

  async function fullModelMc(model: Model, key: string, encoded: EncodedMcItem[], signal: AbortSignal, onProgress?: (done: number) => void): Promise<McResult> {
    let cache = originalMc.get(model);
    if (!cache) originalMc.set(model, (cache = new Map()));
    const cached = cache.get(key);
    if (cached) return cached;
    const result = await evaluateMc(ctx.jobView(model), encoded, makePlan(model.spec.layers), { signal, onProgress });
    if (cache.size >= 4) cache.delete(cache.keys().next().value as string);
    cache.set(key, result);
    return result;
  }

  return {
    async sweep(jobId, settings, onStep, onProgress) {
      try {
        return await ctx.job(jobId, onStep, async (signal) => {
          const model = ctx.requireModel();
          const calibration = await sequences(model, settings.calibration, settings.calibrationWindows, 'calibration', signal);
          const evaluation = await sequences(model, settings.evaluation, settings.evaluationWindows, 'evaluation', signal);
          return runSweep(ctx.jobView(model), calibration, {
            strategies: settings.strategies,
            evaluation,
            maxRemoved: settings.maxRemoved,
            seeds: settings.seeds,
            signal,
            onStep: (event) => ctx.notify(onStep, event),
            onProgress: (progress) => ctx.notify(onProgress, progress),
          });
        });
      } finally {
        release(onProgress);
      }
    },

    similarity(jobId, text, settings, onBlocks) {
      return ctx.job(jobId, onBlocks, async (signal) => {
        const model = ctx.requireModel();
        const calibration = await sequences(model, text, settings, 'calibration', signal);
        return layerSimilarity(blockReporting(ctx, model, onBlocks), calibration, makePlan(model.spec.layers), { signal });
      });
    },

    logitLens(jobId, prompt, removal, top, maxPositions, onBlocks) {
      return ctx.job(jobId, onBlocks, async (signal): Promise<LensView> => {
        const model = ctx.requireModel();
        const tokenizer = model.requireTokenizer();
        const ids = tokenizer.encode(prompt);
        const lens = await logitLens(blockReporting(ctx, model, onBlocks), ids, makePlan(model.spec.layers, removal), { top, signal });
        if (signal.aborted) throw new DOMException('cancelled', 'AbortError');
        const shown = lens.positions.slice(-Math.max(1, maxPositions));
        const from = lens.positions.length - shown.length;
        return {
          promptTokens: ids.map((id) => tokenizer.tokenText(id)),
          positions: shown,
          layers: model.spec.layers,
          blocks: lens.blocks,
          rows: lens.rows.map((row) => ({
            state: row.state,
            afterBlock: row.afterBlock,
            cells: row.positions.slice(from).map((tokens) => ({ tokens: tokens.map((t) => ({ ...t, text: tokenizer.tokenText(t.id) })) })),
          })),
        };
      });
    },

    mc(jobId, tasks, removal, onProgress) {
      return ctx.job(jobId, onProgress, async (signal): Promise<McComparison> => {
        const start = performance.now();
        const model = ctx.requireModel();
        const plan = makePlan(model.spec.layers, removal); // validates the indices before any scoring
        const { key, items, encoded } = await mcItems(model, tasks, signal);
        const both = NOTHING(removal) ? 1 : 2;
        const total = encoded.length * both;
        const original = await fullModelMc(model, key, encoded, signal, (done) => ctx.notify(onProgress, done, total));
        const pruned =
          both === 1 ? original : await evaluateMc(ctx.jobView(model), encoded, plan, { signal, onProgress: (done) => ctx.notify(onProgress, encoded.length + done, total) });
        const examples = items
          .slice(0, 4)
          .map((item, i) => ({ question: item.question, choices: item.choices, answer: item.answer, original: original.items[i].predicted, pruned: pruned.items[i].predicted }));
        return { original: summary(original, encoded), pruned: summary(pruned, encoded), removal, examples, ms: performance.now() - start };
      });
    },

    mcAlong(jobId, tasks, removals, onResult) {
      return ctx.job(jobId, onResult, async (signal): Promise<McSummary[]> => {
        const model = ctx.requireModel();
        const { key, encoded } = await mcItems(model, tasks, signal);
        const out: McSummary[] = [];
        for (const removal of removals) {
          const plan = makePlan(model.spec.layers, removal);
          const result = NOTHING(removal) ? await fullModelMc(model, key, encoded, signal) : await evaluateMc(ctx.jobView(model), encoded, plan, { signal });
          out.push(summary(result, encoded));
          ctx.notify(onResult, out.length - 1, out[out.length - 1]);
        }
        return out;
      });
    },

    speed(jobId, settings, onPoint) {
      return ctx.job(jobId, onPoint, async (signal): Promise<SpeedResult> => {
        const model = ctx.requireModel();
        const layers = model.spec.layers;
        const promptIds = model.requireTokenizer().encode(settings.prompt);
        let order = settings.order;
        if (!order) {
          const calibration = await sequences(model, settings.calibration, settings.calibrationWindows, 'calibration', signal);
          order = rankBlocks(blockScores(await ctx.jobView(model).score(calibration, makePlan(layers), { signal })), 'bi');
        }
        const points = await decodeSpeedAlong((onForward) => ctx.jobView(model, onForward), layers, order, promptIds, {
          tokens: settings.tokens,
          signal,
          onPoint: (point) => ctx.notify(onPoint, point),
        });
        return { order, layers, points };
      });
    },
  };
}
