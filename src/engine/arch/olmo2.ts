/**
 * OLMo 2: no norm before attention or MLP; instead each half's output is RMS-normed before the residual
 * add (post_attention_layernorm, post_feedforward_layernorm), and q / k are RMS-normed over the whole
 * projection (all heads together) before RoPE.
 */
import type { Json } from '../config-fields.ts';
import type { ModelSpec } from '../config.ts';
import type { FamilyDefinition } from './family.ts';
import { isRotaryBuffer, LLAMA_EXPORT, llamaBlock, llamaEnds, llamaShapedSpec } from './llama.ts';

function parseOlmo2(c: Json): ModelSpec {
  const spec = llamaShapedSpec('olmo2', c, { normEps: 1e-5 });
  spec.qkNorm = 'projection';
  return spec;
}

export const olmo2Family: FamilyDefinition = {
  name: 'olmo2',
  modelTypes: ['olmo2'],
  parseConfig: parseOlmo2,
  bindBlock: (spec, store, i, c) =>
    llamaBlock(spec, store, i, { attnNorm: null, attnPostNorm: 'post_attention_layernorm', mlpNorm: null, mlpPostNorm: 'post_feedforward_layernorm' }, c.attention_bias === true),
  bindEnds: (spec, store) => llamaEnds(store, spec),
  isBuffer: isRotaryBuffer,
  ...LLAMA_EXPORT,
  healUnsupported: 'OLMo 2 normalises the MLP output (post_feedforward_layernorm) before the residual add, so a linear map cannot be folded into down_proj',
  hubSuggestions: [{ id: 'allenai/OLMo-2-0425-1B', size: '≈6 GB (F32)' }],
  summary: 'olmo2: post-norms (attention / MLP output normed before the residual add, no pre-norms), q/k RMSNorm over the whole projection',
};
