/**
 * The strategies part of the worker boundary (src/worker-api.ts's EngineApi extends it): strategy sweep,
 * layer × layer similarity, logit lens, multiple choice and decode speed. Only small values cross it; the
 * logic lives in src/analysis and workers/strategies.ts only wires it.
 */
import type { LensToken } from './analysis/logit-lens.ts';
import type { SimilarityMatrix } from './analysis/similarity.ts';
import type { SpeedPoint } from './analysis/speed.ts';
import type { Strategy, SweepProgress, SweepResult, SweepStepEvent } from './analysis/sweep.ts';
import type { BlockPassProgress, Outcome, RemovalSet, TextSourceSpec, WindowSettings } from './worker-api.ts';

export type { SimilarityMatrix } from './analysis/similarity.ts';
export type { SpeedPoint } from './analysis/speed.ts';
export type { Strategy, SweepProgress, SweepResult, SweepStep, SweepStepEvent } from './analysis/sweep.ts';

export interface SweepSettings {
  /** Drives every choice (scores, SLEB's greedy NLL, the angular windows). */
  calibration: TextSourceSpec;
  calibrationWindows: WindowSettings;
  /** Only measures the choices (held-out perplexity). */
  evaluation: TextSourceSpec;
  evaluationWindows: WindowSettings;
  strategies: Strategy[];
  /** Largest number of blocks (or halves) removed; at most L − 1. */
  maxRemoved: number;
  /** Random orders: seeds 0 … seeds − 1. */
  seeds: number;
}

/** One logit-lens cell: the top tokens at one position from one residual state. */
export interface LensCell {
  tokens: (LensToken & { text: string })[];
}

export interface LensView {
  /** The prompt's tokens as text (one per position). */
  promptTokens: string[];
  /** Positions shown (indices into the prompt; the last ones when the prompt is long). */
  positions: number[];
  layers: number;
  /** The plan's active blocks in order (any other block was skipped). */
  blocks: number[];
  /** One row per residual state: 0 = embedding, then after each active block. */
  rows: { state: number; afterBlock: number | null; cells: LensCell[] }[];
}

/** Where multiple-choice questions come from. */
export type McTasksSpec =
  /** Built-in last-word cloze (analysis/mc.ts clozeTasks) from a text, e.g. the held-out evaluation text. */
  | { kind: 'cloze'; text: TextSourceSpec; count: number; seed: number }
  /** A JSONL file of {"question", "choices", "answer"}. */
  | { kind: 'jsonl'; text: string; label: string };

export interface McSummary {
  accuracy: number;
  accNorm: number;
  n: number;
  /** Mean choices per question (1 / chance level). */
  meanChoices: number;
}

export interface McExample {
  question: string;
  choices: string[];
  answer: number;
  /** acc's pick (argmax log-likelihood) of the original and the pruned model. */
  original: number;
  pruned: number;
}

export interface McComparison {
  original: McSummary;
  pruned: McSummary;
  removal: RemovalSet;
  /** The first few questions with each model's pick. */
  examples: McExample[];
  ms: number;
}

export interface SpeedSettings {
  prompt: string;
  /** Decode steps timed per removal set (the prompt pass is not timed). */
  tokens: number;
  /** Removal order (k removed = its first k); null: the full model's BI order on the calibration windows. */
  order: number[] | null;
  calibration: TextSourceSpec;
  calibrationWindows: WindowSettings;
}

export interface SpeedResult {
  order: number[];
  layers: number;
  points: SpeedPoint[];
}

export interface StrategiesApi {
  /** The strategy sweep (analysis/sweep.ts runSweep); every measured step streams through onStep. */
  sweep(jobId: string, settings: SweepSettings, onStep?: (event: SweepStepEvent) => void, onProgress?: (progress: SweepProgress) => void): Promise<Outcome<SweepResult>>;
  /**
   * Mean cos and angular distance between every pair of the full model's residual states. A block-streamed
   * model computes it in one pass over its blocks, told per block through onBlocks.
   */
  similarity(jobId: string, text: TextSourceSpec, windows: WindowSettings, onBlocks?: (progress: BlockPassProgress) => void): Promise<Outcome<SimilarityMatrix>>;
  /** Top tokens from every residual state (final norm + LM head) for each prompt position; onBlocks as for similarity. */
  logitLens(jobId: string, prompt: string, removal: RemovalSet, top: number, maxPositions: number, onBlocks?: (progress: BlockPassProgress) => void): Promise<Outcome<LensView>>;
  /** Accuracy (acc, acc_norm) of the full model and of the model with the removal. */
  mc(jobId: string, tasks: McTasksSpec, removal: RemovalSet, onProgress?: (done: number, total: number) => void): Promise<Outcome<McComparison>>;
  /** Accuracy for each removal set in turn (e.g. the steps of a sweep); onResult as each one finishes. */
  mcAlong(jobId: string, tasks: McTasksSpec, removals: RemovalSet[], onResult?: (index: number, summary: McSummary) => void): Promise<Outcome<McSummary[]>>;
  /** Measured decode tokens/s with k = 0 … L − 1 blocks removed along an order. */
  speed(jobId: string, settings: SpeedSettings, onPoint?: (point: SpeedPoint) => void): Promise<Outcome<SpeedResult>>;
}
