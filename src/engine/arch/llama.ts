/**
 * llama / mistral / qwen2 / qwen3, and the llama-shaped building blocks other families reuse: the common
 * sizes, the default spec, and the HF weight names of a pre-norm block (`layers.N.self_attn.q_proj`, ...).
 */
import { plainSwitches, allLayersWindow, bool, gatedSlidingWindows, type Json, num, oneOf, positiveInt, readRope, tokenIds, uniformLayers } from '../config-fields.ts';
import type { LayerKind, ModelSpec } from '../config.ts';
import { PruneLabError } from '../errors.ts';
import type { BlockWeights, Linear, ModelEnds, Norm, TensorStore } from '../weights.ts';
import type { FamilyDefinition } from './family.ts';

export interface LlamaShapedDefaults {
  /** HF's default head_dim when the config has none (qwen3 128, gemma 256); null = hidden / heads. */
  headDim?: number | null;
  normEps?: number;
  tieEmbeddings?: boolean;
  defaultTheta?: number;
  activationKey?: string;
  activations?: readonly ('silu' | 'gelu_new' | 'gelu')[];
}

/** HF activation names -> the spec's (gelu_pytorch_tanh is the tanh approximation, i.e. gelu_new). */
const ACTIVATION_NAMES: Record<string, ModelSpec['activation']> = { silu: 'silu', gelu_new: 'gelu_new', gelu_pytorch_tanh: 'gelu_new', gelu: 'gelu' };

/** The spec every llama-shaped family starts from: sizes, RMSNorm, gated MLP, RoPE on every layer, no extras. */
export function llamaShapedSpec(family: string, c: Json, d: LlamaShapedDefaults = {}): ModelSpec {
  const hidden = positiveInt(c, 'hidden_size');
  const heads = positiveInt(c, 'num_attention_heads');
  const kvHeads = positiveInt(c, 'num_key_value_heads', heads);
  if (heads % kvHeads !== 0)
    throw new PruneLabError(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`, { file: 'config.json', field: 'num_key_value_heads' });
  const headDim = positiveInt(c, 'head_dim', d.headDim ?? Math.floor(hidden / heads));
  const layers = positiveInt(c, 'num_hidden_layers');
  const maxPositions = positiveInt(c, 'max_position_embeddings', 2048);
  const actKey = d.activationKey ?? 'hidden_act';
  const allowed = Object.entries(ACTIVATION_NAMES)
    .filter(([, v]) => (d.activations ?? ['silu']).includes(v))
    .map(([k]) => k);
  const activation = ACTIVATION_NAMES[oneOf(c, actKey, allowed, allowed[0])];
  const rope = readRope(c, {
    headDim,
    maxPositions,
    defaultTheta: d.defaultTheta ?? 10000,
    originalMaxPositions: typeof c.original_max_position_embeddings === 'number' ? c.original_max_position_embeddings : undefined,
  });
  return {
    family,
    modelType: c.model_type as string,
    vocabSize: positiveInt(c, 'vocab_size'),
    hidden,
    intermediate: positiveInt(c, 'intermediate_size'),
    layers,
    heads,
    kvHeads,
    headDim,
    norm: 'rms',
    normEps: num(c, 'rms_norm_eps', d.normEps ?? 1e-6),
    activation,
    gatedMlp: true,
    learnedPositions: false,
    maxPositions,
    layerKinds: uniformLayers(layers, rope, null),
    ...plainSwitches(headDim),
    tieEmbeddings: bool(c, 'tie_word_embeddings', d.tieEmbeddings ?? false),
    bosTokenId: typeof c.bos_token_id === 'number' ? c.bos_token_id : null,
    eosTokenIds: tokenIds(c.eos_token_id),
  };
}

/** Layers with the same rope and window share one LayerKind object. */
export function withWindows(kinds: LayerKind[], windows: (number | null)[]): LayerKind[] {
  const shared = new Map<string, LayerKind>();
  return kinds.map((k, i) => {
    const key = `${kinds.indexOf(k)}:${windows[i]}`;
    let kind = shared.get(key);
    if (!kind) shared.set(key, (kind = { rope: k.rope, window: windows[i] }));
    return kind;
  });
}

export interface LlamaNames {
  /** Norm before attention; null = none (olmo2). */
  attnNorm: string | null;
  attnPostNorm: string | null;
  mlpNorm: string | null;
  mlpPostNorm: string | null;
}

export const PRE_NORM_NAMES: LlamaNames = { attnNorm: 'input_layernorm', attnPostNorm: null, mlpNorm: 'post_attention_layernorm', mlpPostNorm: null };

/** `<name>.weight` [out, in] and `<name>.bias` [out] (required, or taken when present). */
export function linear(store: TensorStore, name: string, out: number, inp: number, bias: boolean): Linear {
  return {
    weight: store.take(`${name}.weight`, [out, inp]),
    bias: bias ? store.take(`${name}.bias`, [out]) : store.maybe(`${name}.bias`, [out]),
  };
}

export function rmsNormAt(store: TensorStore, name: string | null, width: number): Norm | null {
  return name === null ? null : { weight: store.take(`${name}.weight`, [width]), bias: null };
}

/** q/k norm weights: per head [head_dim], or over the whole projection [heads × head_dim] (olmo2). */
export function qkNorms(store: TensorStore, spec: ModelSpec, p: string): Pick<BlockWeights, 'qNorm' | 'kNorm'> {
  if (spec.qkNorm === 'none') return { qNorm: null, kNorm: null };
  const qWidth = spec.qkNorm === 'head' ? spec.headDim : spec.heads * spec.headDim;
  const kWidth = spec.qkNorm === 'head' ? spec.headDim : spec.kvHeads * spec.headDim;
  return { qNorm: store.take(`${p}.self_attn.q_norm.weight`, [qWidth]), kNorm: store.take(`${p}.self_attn.k_norm.weight`, [kWidth]) };
}

/** The four norms of a block by name (pre/post around attention and MLP). */
export function blockNorms(store: TensorStore, p: string, names: LlamaNames, hidden: number): Pick<BlockWeights, 'attnNorm' | 'attnPostNorm' | 'mlpNorm' | 'mlpPostNorm'> {
  const at = (n: string | null) => rmsNormAt(store, n === null ? null : `${p}.${n}`, hidden);
  return { attnNorm: at(names.attnNorm), attnPostNorm: at(names.attnPostNorm), mlpNorm: at(names.mlpNorm), mlpPostNorm: at(names.mlpPostNorm) };
}

/** Embedding, head (tied unless the config unties it and lm_head.weight exists) and final norm. */
export function llamaEnds(store: TensorStore, spec: ModelSpec, names = { embed: 'embed_tokens.weight', norm: 'norm.weight', head: 'lm_head.weight' }): ModelEnds {
  const { hidden, vocabSize } = spec;
  const embed = store.take(names.embed, [vocabSize, hidden]);
  const untiedHead = !spec.tieEmbeddings && store.has(names.head);
  const lmHead = untiedHead ? store.take(names.head, [vocabSize, hidden]) : embed;
  // A tied checkpoint may still store the head (some exports); HF uses the embedding.
  if (!untiedHead && store.has(names.head)) store.take(names.head, [vocabSize, hidden]);
  return { embed, positions: null, finalNorm: { weight: store.take(names.norm, [hidden]), bias: null }, lmHead };
}

/** Block i with separate q/k/v/o and gate/up/down projections under HF llama names. */
export function llamaBlock(spec: ModelSpec, store: TensorStore, i: number, names: LlamaNames = PRE_NORM_NAMES, qkvBias = false): BlockWeights {
  const { hidden, intermediate, heads, kvHeads, headDim } = spec;
  const p = `layers.${i}`;
  return {
    ...blockNorms(store, p, names, hidden),
    q: linear(store, `${p}.self_attn.q_proj`, heads * headDim, hidden, qkvBias),
    k: linear(store, `${p}.self_attn.k_proj`, kvHeads * headDim, hidden, qkvBias),
    v: linear(store, `${p}.self_attn.v_proj`, kvHeads * headDim, hidden, qkvBias),
    o: linear(store, `${p}.self_attn.o_proj`, hidden, heads * headDim, false),
    ...qkNorms(store, spec, p),
    gate: linear(store, `${p}.mlp.gate_proj`, intermediate, hidden, false),
    up: linear(store, `${p}.mlp.up_proj`, intermediate, hidden, false),
    down: linear(store, `${p}.mlp.down_proj`, hidden, intermediate, false),
  };
}

/** Buffers some checkpoints carry that no forward reads. */
export const isRotaryBuffer = (name: string) => name.endsWith('rotary_emb.inv_freq');

/** What export needs for checkpoints named `model.layers.N.*` with `num_hidden_layers`. */
export const LLAMA_EXPORT = {
  prefixes: ['model.'],
  blockName: /^((?:model\.)?layers\.)(\d+)(\..*)$/,
  layerCountKey: 'num_hidden_layers',
  perLayerKeys: ['layer_types', 'no_rope_layers'],
} as const;

function parseLlama(c: Json): ModelSpec {
  const modelType = c.model_type as string;
  const spec = llamaShapedSpec('llama', c, { headDim: modelType === 'qwen3' ? 128 : null });
  if (modelType === 'mistral')
    spec.layerKinds = withWindows(
      spec.layerKinds,
      spec.layerKinds.map(() => allLayersWindow(c)),
    );
  // qwen2 / qwen3: sliding for layers ≥ max_window_layers when use_sliding_window (or as layer_types says).
  if (modelType === 'qwen2' || modelType === 'qwen3') {
    const maxWindowLayers = c.max_window_layers === undefined || c.max_window_layers === null ? spec.layers : num(c, 'max_window_layers');
    spec.layerKinds = withWindows(
      spec.layerKinds,
      gatedSlidingWindows(c, spec.layers, (i, w) => (w !== null && i >= maxWindowLayers ? 'sliding_attention' : 'full_attention')),
    );
  }
  if (modelType === 'qwen3') spec.qkNorm = 'head';
  return spec;
}

export const llamaFamily: FamilyDefinition = {
  name: 'llama',
  modelTypes: ['llama', 'mistral', 'qwen2', 'qwen3'],
  parseConfig: parseLlama,
  // qwen2 always has q/k/v biases; llama/mistral/qwen3 only with attention_bias.
  bindBlock: (spec, store, i, c) => llamaBlock(spec, store, i, PRE_NORM_NAMES, spec.modelType === 'qwen2' || c.attention_bias === true),
  bindEnds: (spec, store) => llamaEnds(store, spec),
  isBuffer: isRotaryBuffer,
  ...LLAMA_EXPORT,
  healUnsupported: null,
  hubSuggestions: [
    { id: 'HuggingFaceTB/SmolLM2-135M', size: '≈270 MB' },
    { id: 'HuggingFaceTB/SmolLM2-360M', size: '≈720 MB' },
    { id: 'Qwen/Qwen2.5-0.5B', size: '≈990 MB' },
    { id: 'Qwen/Qwen3-0.6B', size: '≈1.5 GB' },
    { id: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0', size: '≈2.2 GB' },
    { id: 'meta-llama/Llama-3.2-1B', size: '≈2.5 GB', gated: true },
  ],
  summary:
    'llama, mistral, qwen2, qwen3: RMSNorm, SwiGLU, RoPE (default / linear / llama3 scaling, transformers 4 and 5 spellings), GQA, qkv bias (qwen2), per-head q/k norm (qwen3), sliding windows (mistral sliding_window; qwen2/qwen3 use_sliding_window + max_window_layers or layer_types)',
};
