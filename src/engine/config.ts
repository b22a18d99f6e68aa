/** HF config.json -> ModelSpec: the numbers a forward pass needs, with HF's defaults applied. */
import { PruneLabError } from './errors.ts';

export type Family = 'llama' | 'gpt2';

export interface ModelSpec {
  family: Family;
  /** config.json model_type as given (llama, mistral, qwen2, qwen3, gpt2). */
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
  activation: 'silu' | 'gelu_new';
  /** Learned absolute positions (GPT-2) instead of RoPE. */
  learnedPositions: boolean;
  maxPositions: number;
  /** RoPE inverse frequencies (length headDim/2) with any rope_scaling already applied; float64. */
  ropeInvFreq: Float64Array | null;
  qkvBias: boolean;
  qkNorm: boolean;
  tieEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'qwen3', 'gpt2'] as const;

type Json = Record<string, unknown>;

function num(cfg: Json, field: string, fallback?: number): number {
  const value = cfg[field];
  if (value === undefined || value === null) {
    if (fallback !== undefined) return fallback;
    throw new PruneLabError('is missing', { file: 'config.json', field });
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new PruneLabError(`must be a number, got ${JSON.stringify(value)}`, { file: 'config.json', field });
  }
  return value;
}

function positiveInt(cfg: Json, field: string, fallback?: number): number {
  const value = num(cfg, field, fallback);
  if (!Number.isInteger(value) || value <= 0) {
    throw new PruneLabError(`must be a positive integer, got ${value}`, { file: 'config.json', field });
  }
  return value;
}

function tokenIds(value: unknown): number[] {
  if (typeof value === 'number') return [value];
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === 'number');
  return [];
}

/** HF's rope init: theta^(-2i/d), then the rope_scaling rule (linear or llama3). */
export function ropeInverseFrequencies(headDim: number, theta: number, scaling: unknown): Float64Array {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / theta ** ((2 * i) / headDim);
  if (scaling === null || scaling === undefined) return inv;
  if (typeof scaling !== 'object') {
    throw new PruneLabError('must be an object or null', { file: 'config.json', field: 'rope_scaling' });
  }
  const sc = scaling as Json;
  const kind = (sc.rope_type ?? sc.type) as string | undefined;
  if (kind === undefined || kind === 'default') return inv;
  const field = (name: string) => num(sc, name);
  if (kind === 'linear') {
    const factor = field('factor');
    return inv.map((f) => f / factor);
  }
  if (kind === 'llama3') {
    const factor = field('factor');
    const low = field('low_freq_factor');
    const high = field('high_freq_factor');
    const original = field('original_max_position_embeddings');
    const lowWavelen = original / low;
    const highWavelen = original / high;
    return inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) return f;
      if (wavelen > lowWavelen) return f / factor;
      const smooth = (original / wavelen - low) / (high - low);
      return (1 - smooth) * (f / factor) + smooth * f;
    });
  }
  throw new PruneLabError(`unsupported rope type "${kind}" (supported: default, linear, llama3)`, {
    file: 'config.json',
    field: 'rope_scaling',
  });
}

export function parseConfig(cfg: unknown): ModelSpec {
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) {
    throw new PruneLabError('must be a JSON object', { file: 'config.json' });
  }
  const c = cfg as Json;
  const modelType = c.model_type;
  if (typeof modelType !== 'string' || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new PruneLabError(`unsupported model_type ${JSON.stringify(modelType)} (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`, { file: 'config.json', field: 'model_type' });
  }
  if (modelType === 'gpt2') {
    const hidden = positiveInt(c, 'n_embd');
    const heads = positiveInt(c, 'n_head');
    const act = c.activation_function ?? 'gelu_new';
    if (act !== 'gelu_new') {
      throw new PruneLabError(`unsupported activation ${JSON.stringify(act)} (supported: gelu_new)`, {
        file: 'config.json',
        field: 'activation_function',
      });
    }
    if (hidden % heads !== 0) throw new PruneLabError(`n_embd ${hidden} is not divisible by n_head ${heads}`, { file: 'config.json', field: 'n_head' });
    return {
      family: 'gpt2',
      modelType,
      vocabSize: positiveInt(c, 'vocab_size'),
      hidden,
      intermediate: positiveInt(c, 'n_inner', 4 * hidden),
      layers: positiveInt(c, 'n_layer'),
      heads,
      kvHeads: heads,
      headDim: hidden / heads,
      norm: 'layer',
      normEps: num(c, 'layer_norm_epsilon', 1e-5),
      activation: 'gelu_new',
      learnedPositions: true,
      maxPositions: positiveInt(c, 'n_positions', 1024),
      ropeInvFreq: null,
      qkvBias: true,
      qkNorm: false,
      tieEmbeddings: c.tie_word_embeddings !== false,
      bosTokenId: typeof c.bos_token_id === 'number' ? c.bos_token_id : null,
      eosTokenIds: tokenIds(c.eos_token_id),
    };
  }
  const hidden = positiveInt(c, 'hidden_size');
  const heads = positiveInt(c, 'num_attention_heads');
  const kvHeads = positiveInt(c, 'num_key_value_heads', heads);
  if (heads % kvHeads !== 0) {
    throw new PruneLabError(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`, {
      file: 'config.json',
      field: 'num_key_value_heads',
    });
  }
  const headDim = positiveInt(c, 'head_dim', Math.floor(hidden / heads));
  if (headDim % 2 !== 0) throw new PruneLabError(`head_dim ${headDim} must be even for RoPE`, { file: 'config.json', field: 'head_dim' });
  const act = c.hidden_act ?? 'silu';
  if (act !== 'silu') {
    throw new PruneLabError(`unsupported hidden_act ${JSON.stringify(act)} (supported: silu)`, { file: 'config.json', field: 'hidden_act' });
  }
  if (typeof c.partial_rotary_factor === 'number' && c.partial_rotary_factor !== 1) {
    throw new PruneLabError('partial rotary embeddings are not supported', { file: 'config.json', field: 'partial_rotary_factor' });
  }
  return {
    family: 'llama',
    modelType,
    vocabSize: positiveInt(c, 'vocab_size'),
    hidden,
    intermediate: positiveInt(c, 'intermediate_size'),
    layers: positiveInt(c, 'num_hidden_layers'),
    heads,
    kvHeads,
    headDim,
    norm: 'rms',
    normEps: num(c, 'rms_norm_eps', 1e-6),
    activation: 'silu',
    learnedPositions: false,
    maxPositions: positiveInt(c, 'max_position_embeddings', 2048),
    ropeInvFreq: ropeInverseFrequencies(headDim, num(c, 'rope_theta', 10000), c.rope_scaling),
    // qwen2 always has q/k/v biases; llama/mistral only with attention_bias.
    qkvBias: modelType === 'qwen2' || c.attention_bias === true,
    qkNorm: modelType === 'qwen3',
    // HF's llama/mistral/qwen configs default to untied; a checkpoint without lm_head.weight is tied anyway.
    tieEmbeddings: c.tie_word_embeddings === true,
    bosTokenId: typeof c.bos_token_id === 'number' ? c.bos_token_id : null,
    eosTokenIds: tokenIds(c.eos_token_id),
  };
}

/** Parameter count of the blocks, embeddings and head as the spec describes them. */
export function blockParameterCount(spec: ModelSpec): number {
  const { hidden, intermediate, heads, kvHeads, headDim } = spec;
  const attn = hidden * heads * headDim * 2 + hidden * kvHeads * headDim * 2;
  const mlp = spec.activation === 'silu' ? 3 * hidden * intermediate : 2 * hidden * intermediate;
  return attn + mlp + 2 * hidden;
}
