/**
 * The interface both backends implement. A backend holds one model's weights (uploaded once) and runs
 * one sequence per call under a Plan; a plan change is just a different argument on the next call.
 */
import type { ModelSpec } from './config.ts';
import type { Plan } from './plan.ts';
import type { TokenPick } from './sampling.ts';
import type { BlockWeights, ModelWeights } from './weights.ts';

/** Per active block, the streaming sums of DESIGN.md: they add up across sequences and batches. */
export interface BlockStatSums {
  /** Original block index. */
  index: number;
  /** Σ_t cos(x_in,t, x_out,t) */
  cosSum: number;
  /** Σ_t arccos(cos)/π */
  angularSum: number;
  /** Σ_t ‖x_out − x_in‖ / ‖x_out‖ */
  relMagnitudeSum: number;
  tokens: number;
}

export interface ForwardRequest {
  /** Token ids of one sequence (or the new tokens when a cache is passed). */
  ids: ArrayLike<number>;
  plan: Plan;
  /** Logit rows to return: none, the last position only, or every position. */
  logits: 'none' | 'last' | 'all';
  /** Also return Σ NLL of predicting ids[t+1] from ids[≤t] within this call (computed where the logits are). */
  nll?: boolean;
  /** Decode with a KV cache made by createCache for the same plan; positions continue from cache.length. */
  cache?: KVCache;
  /**
   * Also pick the next token from the last position's logits where they are computed (WebGPU: on the
   * device, so with logits 'none' a decode step reads back one id, not a vocabulary row): 'argmax' (the
   * first maximum, sampling.ts argmax) or a sample (sampling.ts TokenSample: temperature, top-k, top-p and
   * the caller's uniform draw u, by sampleToken's rule). Needs logits 'none' or 'last' and no nll.
   */
  pick?: TokenPick;
}

export interface ForwardResult {
  /** rows × vocab, row-major; rows = 1 for 'last', ids.length for 'all'. */
  logits: Float32Array | null;
  stats: BlockStatSums[] | null;
  /** With capture 'states': [x_0, x_1 (after first active block), ...], each tokens × hidden. */
  states: Float32Array[] | null;
  nllSum: number;
  nllCount: number;
  /** The next token, when the request asked for `pick`. */
  picked?: number;
  /**
   * True when a sampled pick was made on the host from the logits row read back (WebGPU: the candidate set
   * exceeded the sampling kernel's capacity; the rule is the same, sampleToken in float64).
   */
  pickedOnHost?: boolean;
}

export interface KVCache {
  /** Positions already stored. */
  readonly length: number;
  readonly capacity: number;
  /** The plan key the cache was filled under. */
  readonly planKey: string;
  dispose(): void;
}

export interface BackendInfo {
  kind: 'cpu' | 'webgpu';
  /** For the status bar: "CPU (TypeScript reference)" or the adapter's name. */
  description: string;
  /** Bytes the backend holds for weights (device or host). */
  weightBytes: number;
}

/** One sequence's residual stream, kept between calls while blocks stream through (block-major order). */
export interface ResidualStream {
  readonly ids: readonly number[];
  dispose(): void;
}

/**
 * Block-major execution for models larger than the memory budget: the ends stay resident, block i is
 * loaded, run over every stream, and released before block i + 1. `forward` is the same steps in
 * sequence-major order, so both orders give the same numbers.
 */
export interface BlockStreaming {
  /** Prepares (uploads) block i's weights; runBlock needs it loaded. */
  loadBlock(index: number, weights: BlockWeights): Promise<void>;
  releaseBlock(index: number): void;
  /** x_0 of a sequence (checks the ids as forward does). */
  embed(ids: readonly number[]): Promise<ResidualStream>;
  /** Runs block `index` (halves skipped as the plan says) on the stream; its statistics when the plan captures them. */
  runBlock(stream: ResidualStream, index: number, plan: Plan): Promise<BlockStatSums | null>;
  /**
   * A copy of the stream's residual state on the host (tokens × hidden, f32): x_0 after embed, the block's
   * output after runBlock — the states forward's capture 'states' returns, read as they stream by.
   */
  readState(stream: ResidualStream): Promise<Float32Array>;
  /** Final norm and head over the stream: Σ NLL of predicting ids[t+1] (and the last logits when asked). */
  head(stream: ResidualStream, want: { nll: boolean; lastLogits: boolean }): Promise<{ lastLogits: Float32Array | null; nllSum: number; nllCount: number }>;
}

/** Bytes the engine holds on the device right now and at most so far (WebGPU buffers; 0 on the CPU). */
export interface MemoryMeter {
  liveBytes: number;
  peakBytes: number;
}

export interface Backend {
  readonly info: BackendInfo;
  forward(request: ForwardRequest): Promise<ForwardResult>;
  createCache(capacity: number, plan: Plan): KVCache;
  /** Block streaming, for backends that support it. */
  readonly streaming?: BlockStreaming;
  /** Device memory accounting, for backends that hold device memory. */
  readonly memory?: MemoryMeter;
  dispose(): void;
}

export type BackendFactory = (spec: ModelSpec, weights: ModelWeights) => Promise<Backend>;
