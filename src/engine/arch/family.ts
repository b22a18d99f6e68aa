/**
 * What one model family contributes, in one place: config -> ModelSpec, weight names -> ModelWeights,
 * and what export needs (block-name pattern, layer-count key, per-layer config lists). Adding a family
 * is one file exporting a FamilyDefinition plus one line in registry.ts.
 */
import type { Json } from '../config-fields.ts';
import type { ModelSpec } from '../config.ts';
import type { BlockWeights, ModelEnds, TensorStore } from '../weights.ts';

export interface HubSuggestion {
  id: string;
  /** Approximate size of the weight files, as shown before download. */
  size: string;
  gated?: boolean;
}

export interface FamilyDefinition {
  /** Registry name, stored in ModelSpec.family. */
  name: string;
  /** config.json model_type values this family reads. */
  modelTypes: readonly string[];
  parseConfig(cfg: Json): ModelSpec;
  /**
   * Binds block `index` from a store holding that block's tensors (names with `prefixes` stripped), so
   * a block can be read, bound and dropped on its own (block streaming); `cfg` for naming quirks only.
   */
  bindBlock(spec: ModelSpec, store: TensorStore, index: number, cfg: Json): BlockWeights;
  /** Binds the embedding, positions, final norm and head from a store of the non-block tensors. */
  bindEnds(spec: ModelSpec, store: TensorStore, cfg: Json): ModelEnds;
  /** Stored tensors no forward reads (causal-mask buffers, rotary caches): not reported as unused. */
  isBuffer(name: string): boolean;
  /** Wrapper prefixes stripped from tensor names before binding (e.g. `model.`). */
  prefixes: readonly string[];
  /** A stored tensor name of one block: (prefix up to the index)(index)(rest). */
  blockName: RegExp;
  /** config.json key holding the block count. */
  layerCountKey: string;
  /** config.json lists with one entry per layer: rewritten for the kept blocks on export. */
  perLayerKeys: readonly string[];
  /**
   * Per-layer lists export must write explicitly even when the source config relies on a default
   * pattern (a pruned Gemma 3 without `layer_types` would re-assign types by position).
   */
  explicitPerLayer?(spec: ModelSpec, cfg: Json): Record<string, unknown[]>;
  /** Why healing (a fold into the preceding block's down_proj) is not available, or null when it is. */
  healUnsupported: string | null;
  /** Small checkpoints of this family for the lab's hub field. */
  hubSuggestions: readonly HubSuggestion[];
  /** What the family needed, one line for the README. */
  summary: string;
}
