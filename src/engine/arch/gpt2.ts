/** GPT-2: Conv1D weights [in, out] are transposed to Linear layout and c_attn split into q, k, v. */
import type { ModelSpec } from '../config.ts';
import type { HostTensor } from '../safetensors.ts';
import { type BlockWeights, type ModelWeights, rowSlice, TensorStore, transposed } from '../weights.ts';

/** The causal-mask buffers (`h.N.attn.bias`, `h.N.attn.masked_bias`) are not weights. */
const isKnownBuffer = (name: string) => /^h\.\d+\.attn\.(bias|masked_bias)$/.test(name);

export function bindGpt2Weights(spec: ModelSpec, tensors: Map<string, HostTensor>): ModelWeights {
  const store = new TensorStore(tensors, isKnownBuffer);
  const { hidden, intermediate, vocabSize } = spec;
  const blocks: BlockWeights[] = [];
  for (let i = 0; i < spec.layers; i++) {
    const p = `h.${i}`;
    const cAttn = transposed(store.take(`${p}.attn.c_attn.weight`, [hidden, 3 * hidden]));
    const cAttnBias = store.take(`${p}.attn.c_attn.bias`, [3 * hidden]);
    const part = (k: number, what: string) => ({
      weight: rowSlice(cAttn, k * hidden, (k + 1) * hidden, `${p}.attn.c_attn.weight[${what}]`),
      bias: rowSlice(cAttnBias, k * hidden, (k + 1) * hidden, `${p}.attn.c_attn.bias[${what}]`),
    });
    const conv = (name: string, inp: number, out: number) => ({
      weight: transposed(store.take(`${name}.weight`, [inp, out])),
      bias: store.take(`${name}.bias`, [out]),
    });
    blocks.push({
      attnNorm: { weight: store.take(`${p}.ln_1.weight`, [hidden]), bias: store.take(`${p}.ln_1.bias`, [hidden]) },
      q: part(0, 'q'),
      k: part(1, 'k'),
      v: part(2, 'v'),
      o: conv(`${p}.attn.c_proj`, hidden, hidden),
      qNorm: null,
      kNorm: null,
      mlpNorm: { weight: store.take(`${p}.ln_2.weight`, [hidden]), bias: store.take(`${p}.ln_2.bias`, [hidden]) },
      gate: null,
      up: conv(`${p}.mlp.c_fc`, hidden, intermediate),
      down: conv(`${p}.mlp.c_proj`, intermediate, hidden),
    });
  }
  const embed = store.take('wte.weight', [vocabSize, hidden]);
  // GPT-2 always ties its head; an explicit lm_head.weight (some exports) is the same matrix.
  if (store.has('lm_head.weight')) store.take('lm_head.weight', [vocabSize, hidden]);
  return {
    embed,
    positions: store.take('wpe.weight', [spec.maxPositions, hidden]),
    blocks,
    finalNorm: { weight: store.take('ln_f.weight', [hidden]), bias: store.take('ln_f.bias', [hidden]) },
    lmHead: embed,
    unused: store.unused(),
  };
}
