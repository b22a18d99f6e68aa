/**
 * GPT-NeoX (Pythia): LayerNorm with bias, fused `query_key_value` laid out per head as [q | k | v]
 * (head h's rows are h·3d … h·3d + 3d), partial rotary (rotary_pct / partial_rotary_factor), exact gelu
 * MLP without a gate, untied `embed_out`, and a parallel residual x + attn(ln1 x) + mlp(ln2 x) unless
 * use_parallel_residual is false.
 */
import { plainSwitches, bool, type Json, num, oneOf, positiveInt, readRope, tokenIds, uniformLayers } from '../config-fields.ts';
import type { ModelSpec } from '../config.ts';
import { PruneLabError } from '../errors.ts';
import { type BlockWeights, gatherRows } from '../weights.ts';
import type { FamilyDefinition } from './family.ts';

function parseNeox(c: Json): ModelSpec {
  const hidden = positiveInt(c, 'hidden_size');
  const heads = positiveInt(c, 'num_attention_heads');
  if (hidden % heads !== 0)
    throw new PruneLabError(`hidden_size ${hidden} is not divisible by num_attention_heads ${heads}`, { file: 'config.json', field: 'num_attention_heads' });
  const headDim = hidden / heads;
  const layers = positiveInt(c, 'num_hidden_layers');
  const maxPositions = positiveInt(c, 'max_position_embeddings', 2048);
  const activation = oneOf(c, 'hidden_act', ['gelu', 'gelu_new'], 'gelu');
  // transformers 4: rotary_emb_base / rotary_pct (default 0.25); transformers 5: rope_parameters.
  const partialDefault = c.rotary_pct === undefined && c.partial_rotary_factor === undefined ? { ...c, partial_rotary_factor: 0.25 } : c;
  const rope = readRope(
    partialDefault,
    { headDim, maxPositions, defaultTheta: 10000 },
    c.rope_theta !== undefined ? 'rope_theta' : 'rotary_emb_base',
    c.rotary_pct !== undefined ? 'rotary_pct' : 'partial_rotary_factor',
  );
  return {
    family: 'gpt_neox',
    modelType: 'gpt_neox',
    vocabSize: positiveInt(c, 'vocab_size'),
    hidden,
    intermediate: positiveInt(c, 'intermediate_size'),
    layers,
    heads,
    kvHeads: heads,
    headDim,
    norm: 'layer',
    normEps: num(c, 'layer_norm_eps', 1e-5),
    activation,
    gatedMlp: false,
    learnedPositions: false,
    maxPositions,
    layerKinds: uniformLayers(layers, rope, null),
    ...plainSwitches(headDim),
    parallelResidual: bool(c, 'use_parallel_residual', true),
    tieEmbeddings: bool(c, 'tie_word_embeddings', false),
    bosTokenId: typeof c.bos_token_id === 'number' ? c.bos_token_id : null,
    eosTokenIds: tokenIds(c.eos_token_id),
  };
}

export const gptNeoxFamily: FamilyDefinition = {
  name: 'gpt_neox',
  modelTypes: ['gpt_neox'],
  parseConfig: parseNeox,
  bindBlock(spec, store, i, c): BlockWeights {
    const { hidden, intermediate, heads, headDim } = spec;
    const bias = c.attention_bias !== false;
    const lin = (name: string, out: number, inp: number, withBias: boolean) => ({
      weight: store.take(`${name}.weight`, [out, inp]),
      bias: withBias ? store.take(`${name}.bias`, [out]) : store.maybe(`${name}.bias`, [out]),
    });
    const layerNorm = (name: string) => ({ weight: store.take(`${name}.weight`, [hidden]), bias: store.take(`${name}.bias`, [hidden]) });
    {
      const p = `layers.${i}`;
      const qkv = lin(`${p}.attention.query_key_value`, 3 * hidden, hidden, bias);
      // Rows of part k (0 q, 1 k, 2 v) of every head, in head order.
      const rows = (k: number) => Array.from({ length: heads * headDim }, (_, r) => Math.floor(r / headDim) * 3 * headDim + k * headDim + (r % headDim));
      const part = (k: number, what: string) => ({
        weight: gatherRows(qkv.weight, rows(k), `${qkv.weight.name}[${what}]`),
        bias: qkv.bias ? gatherRows(qkv.bias, rows(k), `${qkv.bias.name}[${what}]`) : null,
      });
      return {
        attnNorm: layerNorm(`${p}.input_layernorm`),
        q: part(0, 'q'),
        k: part(1, 'k'),
        v: part(2, 'v'),
        o: lin(`${p}.attention.dense`, hidden, hidden, bias),
        qNorm: null,
        kNorm: null,
        attnPostNorm: null,
        mlpNorm: layerNorm(`${p}.post_attention_layernorm`),
        gate: null,
        up: lin(`${p}.mlp.dense_h_to_4h`, intermediate, hidden, true),
        down: lin(`${p}.mlp.dense_4h_to_h`, hidden, intermediate, true),
        mlpPostNorm: null,
      };
    }
  },
  bindEnds(spec, store) {
    const { hidden, vocabSize } = spec;
    const embed = store.take('embed_in.weight', [vocabSize, hidden]);
    const untied = !spec.tieEmbeddings && store.has('embed_out.weight');
    const lmHead = untied ? store.take('embed_out.weight', [vocabSize, hidden]) : embed;
    if (!untied && store.has('embed_out.weight')) store.take('embed_out.weight', [vocabSize, hidden]);
    return { embed, positions: null, finalNorm: { weight: store.take('final_layer_norm.weight', [hidden]), bias: store.take('final_layer_norm.bias', [hidden]) }, lmHead };
  },
  isBuffer: (name) => /^layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$/.test(name),
  prefixes: ['gpt_neox.'],
  blockName: /^((?:gpt_neox\.)?layers\.)(\d+)(\..*)$/,
  layerCountKey: 'num_hidden_layers',
  perLayerKeys: [],
  healUnsupported:
    'GPT-NeoX runs attention and MLP in parallel from the block input, so the residual before the MLP add is not a state of the sequential stream; healing supports sequential blocks only',
  hubSuggestions: [
    { id: 'EleutherAI/pythia-160m', size: '≈325 MB' },
    { id: 'EleutherAI/pythia-410m', size: '≈911 MB' },
  ],
  summary:
    'gpt_neox (Pythia): parallel residual (or sequential with use_parallel_residual false), fused query_key_value in per-head interleaved layout, partial rotary, LayerNorm with bias, exact gelu, untied embed_out',
};
