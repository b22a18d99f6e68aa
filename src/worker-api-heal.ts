/**
 * The healing part of the worker boundary (src/worker-api.ts's EngineApi extends it): fit the maps that
 * replace the cut's removed spans (src/analysis/heal.ts), drop them, and download the healed checkpoint.
 * The healed model itself stays in the worker; generate / perplexity / nextTokenTop run it when asked for
 * the 'healed' variant.
 */
import type { SpanHeal } from './analysis/heal.ts';
import type { Outcome, PrunedZipRequest, TextSourceSpec, WindowSettings } from './worker-api.ts';

export type { SpanHeal } from './analysis/heal.ts';

/** Which model a generate / perplexity / next-token call runs: the loaded one, or its healed copy. */
export type ModelVariant = 'original' | 'healed';

export interface HealSummary {
  /** Ascending removed blocks the maps replace. */
  removed: number[];
  spans: SpanHeal[];
  ridge: number;
  /** What the maps were fitted on, in words (e.g. "moby-dick, 16 × 128 tokens"). */
  calibration: string;
  ms: number;
}

export interface HealProgress {
  /** Calibration sequences done over all spans, of the total. */
  done: number;
  total: number;
}

export interface HealApi {
  /** Fits one map per contiguous span of `removed` on the calibration windows and keeps the healed model. */
  heal(
    jobId: string,
    calibration: TextSourceSpec,
    calibrationLabel: string,
    windows: WindowSettings,
    removed: number[],
    onProgress?: (p: HealProgress) => void,
  ): Promise<Outcome<HealSummary>>;
  /** Frees the healed model (the cut changed, or the page no longer shows it). */
  dropHeal(): Promise<void>;
  /** The healed model as a zip of an HF checkpoint with PRUNELAB.md (bytes transferred). */
  healedZip(request: HealedZipRequest): Promise<Outcome<{ bytes: Uint8Array; fileName: string }>>;
}

export interface HealedZipRequest extends PrunedZipRequest {
  /** Perplexities the page measured (original, pruned, healed), for PRUNELAB.md. */
  perplexity?: { data: string; original?: number; removed: number; healed: number }[];
}
