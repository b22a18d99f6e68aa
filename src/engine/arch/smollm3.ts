/**
 * SmolLM3: llama-shaped, but some layers run without RoPE (NoPE). `no_rope_layers[i]` is 1 where layer i
 * uses RoPE and 0 where it does not; absent, HF makes every `no_rope_layer_interval`-th layer NoPE.
 */
import { gatedSlidingWindows, type Json, layerList, positiveInt } from '../config-fields.ts';
import type { LayerKind, ModelSpec } from '../config.ts';
import type { FamilyDefinition } from './family.ts';
import { isRotaryBuffer, LLAMA_EXPORT, llamaBlock, llamaEnds, llamaShapedSpec, PRE_NORM_NAMES, withWindows } from './llama.ts';

function parseSmollm3(c: Json): ModelSpec {
  const spec = llamaShapedSpec('smollm3', c, { defaultTheta: 2e6, tieEmbeddings: true });
  const interval = positiveInt(c, 'no_rope_layer_interval', 4);
  const useRope =
    layerList(c, 'no_rope_layers', spec.layers, (v): v is number => v === 0 || v === 1, '0 (no RoPE) or 1 (RoPE)') ??
    Array.from({ length: spec.layers }, (_, i) => ((i + 1) % interval !== 0 ? 1 : 0));
  const rope = spec.layerKinds[0].rope;
  const withRope: LayerKind = { rope, window: null };
  const noRope: LayerKind = { rope: null, window: null };
  const kinds = useRope.map((r) => (r ? withRope : noRope));
  // HF's default layer_types: sliding only on NoPE layers, when use_sliding_window is on.
  spec.layerKinds = withWindows(
    kinds,
    gatedSlidingWindows(c, spec.layers, (i, w) => (w !== null && !useRope[i] ? 'sliding_attention' : 'full_attention')),
  );
  return spec;
}

/** A pruned SmolLM3 must keep each block's RoPE switch: write no_rope_layers explicitly. */
function explicitNoRope(spec: ModelSpec): Record<string, unknown[]> {
  return { no_rope_layers: spec.layerKinds.map((k) => (k.rope ? 1 : 0)) };
}

export const smollm3Family: FamilyDefinition = {
  name: 'smollm3',
  modelTypes: ['smollm3'],
  parseConfig: parseSmollm3,
  bindBlock: (spec, store, i, c) => llamaBlock(spec, store, i, PRE_NORM_NAMES, c.attention_bias === true),
  bindEnds: (spec, store) => llamaEnds(store, spec),
  isBuffer: isRotaryBuffer,
  ...LLAMA_EXPORT,
  explicitPerLayer: explicitNoRope,
  healUnsupported: null,
  hubSuggestions: [{ id: 'HuggingFaceTB/SmolLM3-3B-Base', size: '≈6.2 GB' }],
  summary: 'smollm3: layers without RoPE (no_rope_layers / no_rope_layer_interval), written explicitly on export',
};
