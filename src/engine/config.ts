/**
 * HF config.json -> ModelSpec: the numbers and switches a forward pass needs, with HF's defaults applied.
 * Which fields a model type reads lives in its family file (src/engine/arch/<family>.ts, listed in
 * arch/registry.ts); this file holds the spec's shape and the entry point.
 */
import { familyForConfig } from './arch/registry.ts';

/** Rotary embedding of one layer kind: rotate_half over the first `rotaryDim` dims of each head. */
export interface RopeSpec {
  /** HF rope_type (default, linear, llama3, longrope). */
  kind: string;
  theta: number;
  /** Dims rotated per head (head_dim × partial_rotary_factor); the rest pass through. */
  rotaryDim: number;
  /** Inverse frequencies (length rotaryDim / 2), scaling already applied; float64. */
  invFreq: Float64Array;
  /** cos and sin are multiplied by this (longrope's attention factor; 1 otherwise). */
  attentionFactor: number;
  /** Positions must stay below this (longrope's original context), or null. */
  maxPosition: number | null;
}

/** What differs between layers of one model: its RoPE (or none) and its sliding window (or none). */
export interface LayerKind {
  rope: RopeSpec | null;
  /** Keys visible to query q are q − window < k ≤ q (HF's sliding_window_overlay); null = full causal. */
  window: number | null;
}

export interface ModelSpec {
  /** Registry family name (arch/<family>.ts). */
  family: string;
  /** config.json model_type as given. */
  modelType: string;
  vocabSize: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  norm: 'rms' | 'layer';
  normEps: number;
  /** Gemma's RMSNorm scales by (1 + w): offset 1. */
  normOffset: 0 | 1;
  /** gelu_new is the tanh approximation (GPT-2's gelu_new, Gemma's gelu_pytorch_tanh); gelu is exact (erf). */
  activation: 'silu' | 'gelu_new' | 'gelu';
  /** act(gate) · up (llama family) rather than act(up) (GPT-2, GPT-NeoX). */
  gatedMlp: boolean;
  /** Learned absolute positions (GPT-2) instead of RoPE. */
  learnedPositions: boolean;
  maxPositions: number;
  /** One entry per layer. */
  layerKinds: LayerKind[];
  /** RMSNorm of q and k before RoPE: per head over head_dim (qwen3, gemma3) or over the whole projection (olmo2). */
  qkNorm: 'none' | 'head' | 'projection';
  /** GPT-NeoX: x + attn(ln1 x) + mlp(ln2 x), both halves reading the block input. */
  parallelResidual: boolean;
  /** x_0 = embedding × embedScale (Gemma √hidden in f32, Granite embedding_multiplier). */
  embedScale: number;
  /** x += residualScale × branch (Granite residual_multiplier). */
  residualScale: number;
  /** Attention scores = q·k × attnScale (1/√head_dim unless the config says otherwise). */
  attnScale: number;
  /** Gemma 2: scores = cap · tanh(scores / cap) before the mask. */
  attnSoftcap: number | null;
  /** Gemma 2: logits = cap · tanh(logits / cap). */
  finalSoftcap: number | null;
  /** Logits are multiplied by this (Granite: 1 / logits_scaling). */
  logitScale: number;
  tieEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

export function parseConfig(cfg: unknown): ModelSpec {
  return familyForConfig(cfg).parseConfig(cfg as Record<string, unknown>);
}

/** The same RoPE object for every layer that has RoPE (used to build one cos/sin table per distinct spec). */
export function distinctRopes(spec: ModelSpec): RopeSpec[] {
  return [...new Set(spec.layerKinds.map((k) => k.rope).filter((r): r is RopeSpec => r !== null))];
}

/** Parameter count of one block as the spec describes it. */
export function blockParameterCount(spec: ModelSpec): number {
  const { hidden, intermediate, heads, kvHeads, headDim } = spec;
  const attn = hidden * heads * headDim * 2 + hidden * kvHeads * headDim * 2;
  const mlp = (spec.gatedMlp ? 3 : 2) * hidden * intermediate;
  return attn + mlp + 2 * hidden;
}
