/** GPT-2: Conv1D weights [in, out] are transposed to Linear layout and c_attn split into q, k, v. */
import { plainSwitches, bool, type Json, num, oneOf, positiveInt, tokenIds, uniformLayers } from '../config-fields.ts';
import type { ModelSpec } from '../config.ts';
import { PruneLabError } from '../errors.ts';
import { type BlockWeights, rowSlice, transposed } from '../weights.ts';
import type { FamilyDefinition } from './family.ts';

function parseGpt2(c: Json): ModelSpec {
  const hidden = positiveInt(c, 'n_embd');
  const heads = positiveInt(c, 'n_head');
  oneOf(c, 'activation_function', ['gelu_new'], 'gelu_new');
  if (hidden % heads !== 0) throw new PruneLabError(`n_embd ${hidden} is not divisible by n_head ${heads}`, { file: 'config.json', field: 'n_head' });
  const layers = positiveInt(c, 'n_layer');
  const headDim = hidden / heads;
  return {
    family: 'gpt2',
    modelType: 'gpt2',
    vocabSize: positiveInt(c, 'vocab_size'),
    hidden,
    intermediate: positiveInt(c, 'n_inner', 4 * hidden),
    layers,
    heads,
    kvHeads: heads,
    headDim,
    norm: 'layer',
    normEps: num(c, 'layer_norm_epsilon', 1e-5),
    activation: 'gelu_new',
    gatedMlp: false,
    learnedPositions: true,
    maxPositions: positiveInt(c, 'n_positions', 1024),
    layerKinds: uniformLayers(layers, null, null),
    ...plainSwitches(headDim),
    tieEmbeddings: bool(c, 'tie_word_embeddings', true),
    bosTokenId: typeof c.bos_token_id === 'number' ? c.bos_token_id : null,
    eosTokenIds: tokenIds(c.eos_token_id),
  };
}

export const gpt2Family: FamilyDefinition = {
  name: 'gpt2',
  modelTypes: ['gpt2'],
  parseConfig: parseGpt2,
  bindBlock(spec, store, i): BlockWeights {
    const { hidden, intermediate } = spec;
    const layerNorm = (name: string) => ({ weight: store.take(`${name}.weight`, [hidden]), bias: store.take(`${name}.bias`, [hidden]) });
    {
      const p = `h.${i}`;
      const cAttn = transposed(store.take(`${p}.attn.c_attn.weight`, [hidden, 3 * hidden]));
      const cAttnBias = store.take(`${p}.attn.c_attn.bias`, [3 * hidden]);
      const part = (k: number, what: string) => ({
        weight: rowSlice(cAttn, k * hidden, (k + 1) * hidden, `${p}.attn.c_attn.weight[${what}]`),
        bias: rowSlice(cAttnBias, k * hidden, (k + 1) * hidden, `${p}.attn.c_attn.bias[${what}]`),
      });
      const conv = (name: string, inp: number, out: number) => ({ weight: transposed(store.take(`${name}.weight`, [inp, out])), bias: store.take(`${name}.bias`, [out]) });
      return {
        attnNorm: layerNorm(`${p}.ln_1`),
        q: part(0, 'q'),
        k: part(1, 'k'),
        v: part(2, 'v'),
        o: conv(`${p}.attn.c_proj`, hidden, hidden),
        qNorm: null,
        kNorm: null,
        attnPostNorm: null,
        mlpNorm: layerNorm(`${p}.ln_2`),
        gate: null,
        up: conv(`${p}.mlp.c_fc`, hidden, intermediate),
        down: conv(`${p}.mlp.c_proj`, intermediate, hidden),
        mlpPostNorm: null,
      };
    }
  },
  bindEnds(spec, store) {
    const { hidden, vocabSize } = spec;
    const embed = store.take('wte.weight', [vocabSize, hidden]);
    // GPT-2 always ties its head; an explicit lm_head.weight (some exports) is the same matrix.
    if (store.has('lm_head.weight')) store.take('lm_head.weight', [vocabSize, hidden]);
    return {
      embed,
      positions: store.take('wpe.weight', [spec.maxPositions, hidden]),
      finalNorm: { weight: store.take('ln_f.weight', [hidden]), bias: store.take('ln_f.bias', [hidden]) },
      lmHead: embed,
    };
  },
  // The causal-mask buffers (`h.N.attn.bias`, `h.N.attn.masked_bias`) are not weights.
  isBuffer: (name) => /^h\.\d+\.attn\.(bias|masked_bias)$/.test(name),
  prefixes: ['transformer.'],
  blockName: /^((?:transformer\.)?h\.)(\d+)(\..*)$/,
  layerCountKey: 'n_layer',
  perLayerKeys: [],
  healUnsupported: null,
  hubSuggestions: [{ id: 'openai-community/gpt2', size: '≈550 MB' }],
  summary: 'gpt2: LayerNorm with bias, Conv1D weights [in, out], gelu_new, learned positions, tied head',
};
