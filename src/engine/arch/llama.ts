/** llama / mistral / qwen2 / qwen3: HF weight names -> BlockWeights. */
import type { ModelSpec } from '../config.ts';
import type { HostTensor } from '../safetensors.ts';
import { type BlockWeights, type Linear, type ModelWeights, TensorStore } from '../weights.ts';

/** Buffers some checkpoints carry that no forward reads. */
const isKnownBuffer = (name: string) => name.endsWith('rotary_emb.inv_freq');

export function bindLlamaWeights(spec: ModelSpec, tensors: Map<string, HostTensor>): ModelWeights {
  const store = new TensorStore(tensors, isKnownBuffer);
  const { hidden, intermediate, heads, kvHeads, headDim, vocabSize } = spec;
  const linear = (name: string, out: number, inp: number, bias: boolean): Linear => ({
    weight: store.take(`${name}.weight`, [out, inp]),
    bias: bias ? store.take(`${name}.bias`, [out]) : store.maybe(`${name}.bias`, [out]),
  });
  const blocks: BlockWeights[] = [];
  for (let i = 0; i < spec.layers; i++) {
    const p = `layers.${i}`;
    blocks.push({
      attnNorm: { weight: store.take(`${p}.input_layernorm.weight`, [hidden]), bias: null },
      q: linear(`${p}.self_attn.q_proj`, heads * headDim, hidden, spec.qkvBias),
      k: linear(`${p}.self_attn.k_proj`, kvHeads * headDim, hidden, spec.qkvBias),
      v: linear(`${p}.self_attn.v_proj`, kvHeads * headDim, hidden, spec.qkvBias),
      o: linear(`${p}.self_attn.o_proj`, hidden, heads * headDim, false),
      qNorm: spec.qkNorm ? store.take(`${p}.self_attn.q_norm.weight`, [headDim]) : null,
      kNorm: spec.qkNorm ? store.take(`${p}.self_attn.k_norm.weight`, [headDim]) : null,
      mlpNorm: { weight: store.take(`${p}.post_attention_layernorm.weight`, [hidden]), bias: null },
      gate: linear(`${p}.mlp.gate_proj`, intermediate, hidden, false),
      up: linear(`${p}.mlp.up_proj`, intermediate, hidden, false),
      down: linear(`${p}.mlp.down_proj`, hidden, intermediate, false),
    });
  }
  const embed = store.take('embed_tokens.weight', [vocabSize, hidden]);
  const untiedHead = !spec.tieEmbeddings && store.has('lm_head.weight');
  const lmHead = untiedHead ? store.take('lm_head.weight', [vocabSize, hidden]) : embed;
  if (!untiedHead && store.has('lm_head.weight')) store.take('lm_head.weight', [vocabSize, hidden]);
  return {
    embed,
    positions: null,
    blocks,
    finalNorm: { weight: store.take('norm.weight', [hidden]), bias: null },
    lmHead,
    unused: store.unused(),
  };
}
