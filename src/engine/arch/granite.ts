/**
 * Granite 3: llama-shaped with four scalars: embeddings × embedding_multiplier, each half's output ×
 * residual_multiplier before the add, attention scores × attention_multiplier (instead of 1/√head_dim),
 * logits ÷ logits_scaling.
 */
import { type Json, num } from '../config-fields.ts';
import type { ModelSpec } from '../config.ts';
import type { FamilyDefinition } from './family.ts';
import { isRotaryBuffer, LLAMA_EXPORT, llamaBlock, llamaEnds, llamaShapedSpec, PRE_NORM_NAMES } from './llama.ts';

function parseGranite(c: Json): ModelSpec {
  const spec = llamaShapedSpec('granite', c);
  spec.embedScale = num(c, 'embedding_multiplier', 1);
  spec.residualScale = num(c, 'residual_multiplier', 1);
  spec.attnScale = num(c, 'attention_multiplier', 1);
  spec.logitScale = 1 / num(c, 'logits_scaling', 1);
  return spec;
}

export const graniteFamily: FamilyDefinition = {
  name: 'granite',
  modelTypes: ['granite'],
  parseConfig: parseGranite,
  bindBlock: (spec, store, i, c) => llamaBlock(spec, store, i, PRE_NORM_NAMES, c.attention_bias === true),
  bindEnds: (spec, store) => llamaEnds(store, spec),
  isBuffer: isRotaryBuffer,
  ...LLAMA_EXPORT,
  // The fold T into down_proj also scales by residual_multiplier, which is linear: healing stays exact.
  healUnsupported: null,
  hubSuggestions: [{ id: 'ibm-granite/granite-3.3-2b-base', size: '≈5.1 GB' }],
  summary: 'granite: embedding_multiplier, residual_multiplier, attention_multiplier (replaces 1/√head_dim), logits_scaling',
};
