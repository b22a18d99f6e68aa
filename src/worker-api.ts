/**
 * The typed boundary between the page and workers/engine.worker.ts (comlink). Only small values cross it:
 * model facts, per-block scores, token text, numbers. Weights and logits stay in the worker.
 *
 * Every call resolves to an Outcome (errors as values): `{ ok: false, message }` carries the engine's
 * describeError text, `cancelled: true` when the job was cancelled through `cancel(jobId)`.
 */
import type { BlockScore, Metric } from './analysis/influence.ts';
import type { Bootstrap, Refusal } from './analysis/uncertainty.ts';
import type { BlockStatSums } from './engine/backend.ts';
import type { DecodeRun } from './engine/model.ts';
import type { BlockParameters } from './analysis/parameters.ts';
import type { HandoffFormat, HandoffPlan, HandoffSource } from './export/handoff.ts';
import type { HealApi, ModelVariant } from './worker-api-heal.ts';
import type { StrategiesApi } from './worker-api-strategies.ts';

export type { BlockScore, Metric } from './analysis/influence.ts';
export type { BlockParameters } from './analysis/parameters.ts';
export type { DecodeRun } from './engine/model.ts';

/** Where a model comes from. `builtin` names a folder under public/models/. */
export type ModelSourceSpec =
  | { kind: 'builtin'; name: string }
  | { kind: 'url'; url: string }
  /** `expectedBytes`: the weight files' total from a hub listing (src/engine/hub.ts), for the progress bar. */
  /**
   * `id` as the person gave it (owner/name@revision); `commit`: the revision resolved when it was listed, the
   * files read are that commit's; `token`: an access token for a gated repository (sent to the hub only).
   */
  | { kind: 'hub'; id: string; expectedBytes?: number; commit?: string; token?: string }
  | { kind: 'files'; files: File[]; label?: string };

/** `auto`: WebGPU on a hardware adapter, else the fast CPU backend (backend-choice.ts), with the reason shown. */
export type BackendChoice = 'auto' | 'cpu' | 'webgpu';

/** Calibration / evaluation text: a file under public/calibration/ or text the user gave. */
export type TextSourceSpec = { kind: 'builtin'; name: string } | { kind: 'text'; text: string; label: string };

import type { RemovalSet } from './engine/plan.ts';
export type { RemovalSet };

export type Outcome<T> = { ok: true; value: T } | { ok: false; message: string; cancelled: boolean };

export interface LoadProgress {
  /** `download`: reading weight files; `backend`: decoding / uploading weights. */
  phase: 'download' | 'backend';
  loadedBytes: number;
  totalBytes: number | null;
  file: string;
}

export interface ModelInfo {
  /** What a person would call it: the built-in name, hub id, URL or folder name. */
  name: string;
  source: string;
  modelType: string;
  blocks: number;
  hidden: number;
  vocab: number;
  maxPositions: number;
  /** GPT-2's learned position table: no position past maxPositions exists (RoPE models only extrapolate). */
  learnedPositions: boolean;
  parameters: number;
  dtypes: string[];
  blockParameters: BlockParameters[];
  hasTokenizer: boolean;
  /** Why a cut cannot be healed for this model's family (src/analysis/heal.ts); null when it can. */
  healUnsupported: string | null;
  backend: {
    kind: 'cpu' | 'webgpu';
    description: string;
    /** Why this backend: the `auto` rule's reason, or "chosen in the settings". */
    reason: string;
    /** Why `auto` ended on the CPU backend after WebGPU failed to start; null when it did not. */
    fallbackReason: string | null;
    /** Why the CPU kernels run single-threaded (no cross-origin isolation); null when threaded or on WebGPU. */
    threadNote: string | null;
    weightBytes: number;
  };
  /** Resident (every block on the backend) or block-streamed, and why (src/engine/memory.ts). */
  memory: ModelMemory;
  loadMs: number;
}

export interface ModelMemory {
  mode: 'resident' | 'streamed';
  /** The rule's sentence: "the model needs about 2400 MiB resident, more than the 1024 MiB budget". */
  reason: string;
  /** The GPU budget the load was given (WebGPU); null = none. */
  gpuBudgetBytes: number | null;
  /** Checkpoint tensor bytes as stored; the largest block's. */
  weightBytes: number;
  largestBlockBytes: number;
}

/** Where a block-streamed pass is (Model.onBlock): for "block 17 / 32 · 1.2 GB read · 40 s left". */
export interface BlockPassProgress {
  done: number;
  total: number;
  bytesRead: number;
  elapsedMs: number;
}

export interface TextStats {
  tokens: number;
  characters: number;
}

export interface WindowSettings {
  seqLen: number;
  maxSequences: number;
}

export interface ScoreProgress {
  sequencesDone: number;
  sequencesTotal: number;
  tokensDone: number;
  tokensTotal: number;
  /** Running scores over the sequences done so far, for the active blocks, by depth. */
  scores: BlockScore[];
  /** Block-streamed scoring: every sequence advances block by block (scores arrive at the end). */
  blocks?: BlockPassProgress;
}

export interface ScoreResult {
  scores: BlockScore[];
  tokens: number;
  sequences: number;
  /** Each sequence's block sums (the active blocks, by depth): what the error bars resample. */
  perSequence: BlockStatSums[][];
  /** The error bars: the bootstrap of perSequence (analysis/uncertainty.ts, default resamples and seed), or why there are none. */
  bootstrap: Bootstrap | Refusal;
  ms: number;
}

export interface GenerateSettings {
  maxNewTokens: number;
  /** 0 = greedy. */
  temperature: number;
  /** 0 = no top-k cut. */
  topK: number;
  seed: number;
}

export interface TokenEvent {
  /** Decoded text of all generated tokens so far (decoding per token would split multi-byte pieces). */
  text: string;
  count: number;
  /** Decode speed: 1 / median time of this job's own one-token forwards (prompt pass excluded); null until the 2nd token. */
  tokensPerSecond: number | null;
}

export interface GenerateResult extends TokenEvent {
  promptTokens: number;
  ms: number;
  /** How it ran (Model.decodeRun): resident, a streamed model's kept blocks resident, or block-streamed (asked for). */
  run: DecodeRun | null;
}

/** Next-token work on a block-streamed model whose plan does not fit the budget runs streamed only when asked: each token re-reads the kept blocks. */
export interface DecodeOptions {
  allowStreamed?: boolean;
}

export interface PerplexityResult {
  ppl: number;
  nll: number;
  /** Predicted tokens (Σ (length − 1)). */
  tokens: number;
  sequences: number;
}

export interface NextToken {
  id: number;
  text: string;
  prob: number;
}

/** The worker's API (what Comlink.wrap gives the page, minus the Remote<> promise wrapping). */
/** The strategies calls (sweep, similarity, logit lens, MC, speed) are declared in worker-api-strategies.ts. */
export interface EngineApi extends StrategiesApi, HealApi {
  /**
   * Loads a model; the current one stays until the new one has loaded. Cancel with cancel(jobId).
   * `gpuBudgetBytes`: WebGPU memory the engine may use; a model that does not fit streams its blocks.
   */
  loadModel(jobId: string, source: ModelSourceSpec, backend: BackendChoice, onProgress?: (p: LoadProgress) => void, gpuBudgetBytes?: number | null): Promise<Outcome<ModelInfo>>;
  /** The lab's default GPU budget from this browser's WebGPU adapter (memory.ts defaultGpuBudget), and why. */
  defaultGpuBudget(): Promise<{ bytes: number; why: string }>;
  /** Token count of a text with the current model's tokenizer (as a document: special tokens included). */
  textStats(text: TextSourceSpec): Promise<Outcome<TextStats>>;
  /** Block statistics over consecutive windows of the text; onBatch after every sequence with running scores. */
  score(jobId: string, text: TextSourceSpec, windows: WindowSettings, removal: RemovalSet, onBatch?: (p: ScoreProgress) => void): Promise<Outcome<ScoreResult>>;
  /** `variant` 'healed' runs the healed copy of the model (HealApi), which exists only for the cut it was fitted to. */
  generate(
    jobId: string,
    prompt: string,
    removal: RemovalSet,
    settings: GenerateSettings,
    onToken?: (t: TokenEvent) => void,
    variant?: ModelVariant,
    options?: DecodeOptions,
  ): Promise<Outcome<GenerateResult>>;
  /** How generating this prompt with these settings and this cut would run (Model.decodeRun): the memory the full and the pruned model need against the budget, the cost when streamed. */
  decodeRun(prompt: string, removal: RemovalSet, settings: GenerateSettings, variant?: ModelVariant): Promise<Outcome<DecodeRun>>;
  perplexity(
    jobId: string,
    text: TextSourceSpec,
    windows: WindowSettings,
    removal: RemovalSet,
    onProgress?: (done: number, total: number) => void,
    variant?: ModelVariant,
  ): Promise<Outcome<PerplexityResult>>;
  nextTokenTop(jobId: string, prompt: string, removal: RemovalSet, k: number, variant?: ModelVariant, options?: DecodeOptions): Promise<Outcome<NextToken[]>>;
  /** Aborts a running job (no-op when it already ended). */
  cancel(jobId: string): void;

  // ---- export (src/ui/share/) ----
  /** The loaded model with `removed` blocks cut, as a zip of an HF checkpoint (bytes transferred). */
  prunedZip(request: PrunedZipRequest): Promise<Outcome<{ bytes: Uint8Array; fileName: string }>>;
  /** The cut as a transformers script or a mergekit config (src/export/handoff.ts) for the loaded model. */
  handoff(request: HandoffRequest): Promise<Outcome<{ text: string; fileName: string }>>;
}

export interface HandoffRequest {
  format: HandoffFormat;
  /** Where the script / config loads the original from (the page knows the hub id or the folder). */
  source: HandoffSource;
  removed: number[];
  version: string;
  chosenBy: HandoffPlan['chosenBy'];
}

export interface PrunedZipRequest {
  /** Original block indices to drop. */
  removed: number[];
  /** The metric that chose them (null: by hand). */
  metric: Metric | null;
  scores: BlockScore[];
  calibration?: string;
  link?: string;
  /** Where the original weights came from, e.g. "owner/name at commit abc… (revision main)". */
  weights?: string;
}
