/**
 * The healing half of the engine worker (HealApi of src/worker-api-heal.ts). Wiring only: the fit and the
 * fold are src/analysis/heal.ts; this file keeps at most one healed model (its own backend, the same kind
 * as the loaded model's) and hands it to generate / perplexity / nextTokenTop for the 'healed' variant.
 */
import * as Comlink from 'comlink';
import { healSpans, removedSpans } from '../src/analysis/heal.ts';
import type { Backend } from '../src/engine/backend.ts';
import type { Checkpoint } from '../src/engine/checkpoint.ts';
import { PruneLabError } from '../src/engine/errors.ts';
import type { Model } from '../src/engine/model.ts';
import { windows } from '../src/engine/tokenizer.ts';
import { prunedCheckpointZip, prunedFolderName } from '../src/export/zip.ts';
import type { HealApi, HealSummary, ModelVariant } from '../src/worker-api-heal.ts';
import type { RemovalSet } from '../src/worker-api.ts';
import type { WorkerContext } from './strategies.ts';

export interface HealContext extends Pick<WorkerContext, 'job' | 'requireModel' | 'jobView' | 'idsOf' | 'notify'> {
  /** A backend of the loaded model's kind for another checkpoint. */
  openBackend(checkpoint: Checkpoint): Promise<Backend>;
  /** The loaded model's name, for file names. */
  modelName(): string;
}

/** The healed copy of the loaded model: which original it belongs to, and for which removed blocks. */
let healed: { original: Model; model: Model; summary: HealSummary } | null = null;

/** Frees the healed model (a new model loaded, a new heal, or the page dropped it). */
export function dropHealed(): void {
  healed?.model.dispose();
  healed = null;
}

const sameBlocks = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

/** The model a call runs: the loaded one, or its healed copy, which exists only for the cut it was fitted to. */
export function modelForVariant(original: Model, variant: ModelVariant | undefined, removal: RemovalSet): Model {
  if (variant !== 'healed') return original;
  if (!healed || healed.original !== original) throw new PruneLabError('there is no healed model for the loaded one; press Heal first', { field: 'heal' });
  const blocks = [...removal.blocks].sort((a, b) => a - b);
  if (!sameBlocks(blocks, healed.summary.removed) || removal.attention.length + removal.mlp.length > 0) {
    throw new PruneLabError(`the healed model replaces blocks ${healed.summary.removed.join(', ')}, not this cut; heal the cut again`, { field: 'heal' });
  }
  return healed.model;
}

export function healApi(ctx: HealContext): HealApi {
  return {
    heal(jobId, calibration, calibrationLabel, settings, removed, onProgress) {
      return ctx.job(jobId, onProgress, async (signal): Promise<HealSummary> => {
        const start = performance.now();
        const original = ctx.requireModel();
        const sequences = windows(await ctx.idsOf(original, calibration, signal), settings.seqLen, settings.maxSequences);
        if (sequences.length === 0) throw new PruneLabError('the calibration text has fewer than two tokens', { field: 'calibration' });
        const spans = removedSpans(removed);
        const result = await healSpans(ctx.jobView(original), sequences, removed, {
          signal,
          openBackend: ctx.openBackend,
          onProgress: (done, total, span) => {
            const k = spans.findIndex((s) => s.start === span.start);
            ctx.notify(onProgress, { done: k * total + done, total: total * spans.length });
          },
        });
        const tokens = sequences.reduce((a, s) => a + s.length, 0);
        const summary: HealSummary = {
          removed: result.removed,
          spans: result.spans,
          ridge: result.ridge,
          calibration: `${calibrationLabel}, ${sequences.length} × ${settings.seqLen} tokens (${tokens} tokens)`,
          ms: performance.now() - start,
        };
        dropHealed();
        healed = { original, model: result.model, summary };
        return summary;
      });
    },

    async dropHeal() {
      dropHealed();
    },

    async healedZip(request) {
      const outcome = await ctx.job('healed-zip', undefined, async () => {
        const original = ctx.requireModel();
        const model = modelForVariant(original, 'healed', { blocks: request.removed, attention: [], mlp: [] });
        const summary = healed?.summary as HealSummary;
        const bytes = prunedCheckpointZip(model.checkpoint, summary.removed, {
          metric: request.metric,
          scores: request.scores,
          calibration: request.calibration,
          link: request.link,
          heal: { spans: summary.spans, ridge: summary.ridge, calibration: summary.calibration, perplexity: request.perplexity },
        });
        return { bytes, fileName: `${prunedFolderName(ctx.modelName(), 'healed')}.zip` };
      });
      return outcome.ok ? Comlink.transfer(outcome, [outcome.value.bytes.buffer]) : outcome;
    },
  };
}
