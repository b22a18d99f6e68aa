/**
 * Gemma 2 and Gemma 3 (text): (1 + w) RMSNorms before and after both halves ("sandwich"), embeddings ×
 * √hidden (HF rounds the scale to float32 first), attention scaled by query_pre_attn_scalar^-½, optional
 * tanh soft-capping of attention scores and final logits, gelu (tanh) gated MLP, sliding-window layers
 * from `layer_types` (or the default pattern). Gemma 3 adds per-head q/k norms and a separate RoPE for
 * sliding (local) and full (global) layers.
 */
import { type AttentionType, type Json, layerTypes, nestedRopeParameters, optionalNum, positiveInt, positiveNum, readRope, ropeSpec } from '../config-fields.ts';
import type { LayerKind, ModelSpec } from '../config.ts';
import { PruneLabError } from '../errors.ts';
import type { FamilyDefinition } from './family.ts';
import type { TensorStore } from '../weights.ts';
import { isRotaryBuffer, LLAMA_EXPORT, type LlamaNames, llamaBlock, llamaEnds, llamaShapedSpec } from './llama.ts';

const SANDWICH: LlamaNames = {
  attnNorm: 'input_layernorm',
  attnPostNorm: 'post_attention_layernorm',
  mlpNorm: 'pre_feedforward_layernorm',
  mlpPostNorm: 'post_feedforward_layernorm',
};

function gemmaCommon(family: string, c: Json, pattern: number): { spec: ModelSpec; types: AttentionType[]; window: number | null } {
  // The rope is replaced below for Gemma 3; read sizes with a plain one.
  const spec = llamaShapedSpec(family, nestedRopeParameters(c) ? { ...c, rope_parameters: null } : c, {
    headDim: 256,
    tieEmbeddings: true,
    activationKey: 'hidden_activation',
    activations: ['gelu_new', 'gelu'],
  });
  spec.normOffset = 1;
  spec.embedScale = Math.fround(Math.sqrt(spec.hidden));
  spec.attnScale = 1 / Math.sqrt(positiveNum(c, 'query_pre_attn_scalar', 256));
  spec.attnSoftcap = optionalNum(c, 'attn_logit_softcapping');
  spec.finalSoftcap = optionalNum(c, 'final_logit_softcapping');
  const types = layerTypes(c, spec.layers, (i) => ((i + 1) % pattern !== 0 ? 'sliding_attention' : 'full_attention'));
  const window = c.sliding_window === undefined || c.sliding_window === null ? null : positiveInt(c, 'sliding_window');
  if (window === null && types.includes('sliding_attention'))
    throw new PruneLabError('layer_types has sliding layers but sliding_window is not set', { file: 'config.json', field: 'sliding_window' });
  return { spec, types, window };
}

/** One LayerKind per attention type, so layers of a type share their rope and window. */
function kindsByType(types: AttentionType[], rope: Record<AttentionType, LayerKind['rope']>, window: number | null): LayerKind[] {
  const kinds: Record<AttentionType, LayerKind> = {
    full_attention: { rope: rope.full_attention, window: null },
    sliding_attention: { rope: rope.sliding_attention, window },
  };
  return types.map((t) => kinds[t]);
}

function parseGemma2(c: Json): ModelSpec {
  const { spec, types, window } = gemmaCommon('gemma2', c, 2);
  const rope = spec.layerKinds[0].rope;
  spec.layerKinds = kindsByType(types, { full_attention: rope, sliding_attention: rope }, window);
  return spec;
}

function parseGemma3(c: Json): ModelSpec {
  const { spec, types, window } = gemmaCommon('gemma3', c, typeof c.sliding_window_pattern === 'number' ? positiveInt(c, 'sliding_window_pattern') : 6);
  spec.qkNorm = 'head';
  // HF's Gemma3Attention never passes attn_logit_softcapping on, even when the config sets it.
  spec.attnSoftcap = null;
  const ctx = { headDim: spec.headDim, maxPositions: spec.maxPositions, defaultTheta: 1e6 };
  const nested = nestedRopeParameters(c);
  let full: LayerKind['rope'];
  let local: LayerKind['rope'];
  if (nested) {
    // transformers 5: {sliding_attention: {...}, full_attention: {...}}
    full = ropeSpec(nested.full_attention ?? {}, 'rope_parameters.full_attention', ctx, 1e6, 1);
    local = ropeSpec(nested.sliding_attention ?? {}, 'rope_parameters.sliding_attention', { ...ctx, defaultTheta: 1e4 }, 1e4, 1);
  } else {
    // transformers 4: rope_theta + rope_scaling for global layers, rope_local_base_freq (default rope) for local ones.
    full = readRope(c, ctx);
    local = ropeSpec({ rope_type: 'default' }, 'rope_local_base_freq', ctx, positiveNum(c, 'rope_local_base_freq', 1e4), 1);
  }
  spec.layerKinds = kindsByType(types, { full_attention: full, sliding_attention: local }, window);
  return spec;
}

/** Export writes `layer_types` explicitly: a pruned checkpoint relying on the default pattern would re-assign types by position. */
function explicitLayerTypes(spec: ModelSpec): Record<string, unknown[]> {
  return { layer_types: spec.layerKinds.map((k) => (k.window === null ? 'full_attention' : 'sliding_attention')) };
}

const gemmaBase = {
  bindBlock: (spec: ModelSpec, store: TensorStore, i: number) => llamaBlock(spec, store, i, SANDWICH),
  bindEnds: (spec: ModelSpec, store: TensorStore) => llamaEnds(store, spec),
  isBuffer: isRotaryBuffer,
  ...LLAMA_EXPORT,
  explicitPerLayer: explicitLayerTypes,
  healUnsupported: 'Gemma normalises the MLP output (post_feedforward_layernorm) before the residual add, so a linear map cannot be folded into down_proj',
};

export const gemma2Family: FamilyDefinition = {
  ...gemmaBase,
  name: 'gemma2',
  modelTypes: ['gemma2'],
  parseConfig: parseGemma2,
  hubSuggestions: [{ id: 'google/gemma-2-2b', size: '≈10.5 GB (F32)', gated: true }],
  summary:
    'gemma2: (1 + w) RMSNorm before and after attention and MLP, embeddings × √hidden, query_pre_attn_scalar, tanh soft-capping of attention scores and final logits, alternating sliding-window layers, gelu (tanh) gated MLP',
};

export const gemma3Family: FamilyDefinition = {
  ...gemmaBase,
  name: 'gemma3',
  modelTypes: ['gemma3_text'],
  parseConfig: parseGemma3,
  hubSuggestions: [{ id: 'google/gemma-3-270m', size: '≈540 MB', gated: true }],
  summary:
    "gemma3_text: Gemma 2's layout plus per-head q/k RMSNorm, a local RoPE base for sliding layers and the global base + scaling for full layers, sliding pattern from layer_types",
};
