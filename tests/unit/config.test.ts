import { describe, expect, it } from 'vitest';
import { SUPPORTED_MODEL_TYPES } from '../../src/engine/arch/registry.ts';
import { parseConfig } from '../../src/engine/config.ts';

const llama = {
  model_type: 'llama',
  vocab_size: 100,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
};
const llama3Scaling = { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };

describe('config.json -> ModelSpec', () => {
  it('applies HF defaults: head_dim = hidden / heads, rope_theta 10000, untied head', () => {
    const spec = parseConfig(llama);
    expect(spec.headDim).toBe(16);
    expect(spec.kvHeads).toBe(2);
    expect(spec.tieEmbeddings).toBe(false);
    expect(spec.layerKinds[0].rope?.invFreq[1]).toBeCloseTo(1 / 10000 ** (2 / 16), 15);
    expect(spec.layerKinds[0].rope?.rotaryDim).toBe(16);
  });

  it('reads qwen3 explicit head_dim (default 128, not hidden / heads) and per-head q/k norm', () => {
    expect(parseConfig({ ...llama, model_type: 'qwen3', head_dim: 32 })).toMatchObject({ headDim: 32, qkNorm: 'head' });
    expect(parseConfig({ ...llama, model_type: 'qwen3' }).headDim).toBe(128);
    expect(parseConfig({ ...llama, model_type: 'qwen2' })).toMatchObject({ qkNorm: 'none', family: 'llama' });
  });

  it('rejects an unsupported model_type, listing the supported ones', () => {
    expect(() => parseConfig({ ...llama, model_type: 'mamba' })).toThrow(
      /config\.json, field model_type: unsupported model_type "mamba" \(supported: llama, mistral, qwen2, qwen3, gpt2, gemma2/,
    );
    for (const t of ['gemma2', 'gemma3_text', 'phi3', 'olmo2', 'granite', 'smollm3', 'gpt_neox']) expect(SUPPORTED_MODEL_TYPES).toContain(t);
  });

  it('reads transformers 5 rope_parameters exactly as transformers 4 rope_theta + rope_scaling', () => {
    const v4 = parseConfig({ ...llama, rope_theta: 500000, rope_scaling: { rope_type: 'llama3', ...llama3Scaling } });
    const v5 = parseConfig({ ...llama, rope_parameters: { rope_type: 'llama3', rope_theta: 500000, ...llama3Scaling } });
    expect(v5.layerKinds[0].rope?.theta).toBe(500000);
    expect([...(v5.layerKinds[0].rope?.invFreq ?? [])]).toEqual([...(v4.layerKinds[0].rope?.invFreq ?? [])]);
    // and not the default rope: theta 10000 without scaling would differ
    expect(v5.layerKinds[0].rope?.invFreq[7]).not.toBeCloseTo(parseConfig(llama).layerKinds[0].rope?.invFreq[7] ?? 0, 6);
    expect(parseConfig({ ...llama, rope_parameters: { rope_type: 'default', rope_theta: 1e6 } }).layerKinds[0].rope?.theta).toBe(1e6);
  });

  it('rejects an unknown rope_type or an unrecognised key in either spelling, naming the field', () => {
    expect(() => parseConfig({ ...llama, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64 } })).toThrow(
      /field rope_scaling\.rope_type: unsupported rope type "yarn"/,
    );
    expect(() => parseConfig({ ...llama, rope_parameters: { rope_type: 'ntk-magic', rope_theta: 1e4 } })).toThrow(
      /field rope_parameters\.rope_type: unsupported rope type "ntk-magic"/,
    );
    expect(() => parseConfig({ ...llama, rope_parameters: { rope_type: 'llama3', rope_theta: 5e5, ...llama3Scaling, beta_fast: 32 } })).toThrow(
      /field rope_parameters\.beta_fast: unrecognised key for rope type "llama3"/,
    );
    expect(() => parseConfig({ ...llama, rope_scaling: { type: 'linear', factor: 2, extra: 1 } })).toThrow(/field rope_scaling\.extra: unrecognised key/);
    expect(() => parseConfig({ ...llama, rope_parameters: { rope_type: 'llama3', rope_theta: 5e5, factor: 8 } })).toThrow(/field rope_parameters\.low_freq_factor: is required/);
    expect(() => parseConfig({ ...llama, rope_theta: 1e4, rope_parameters: { rope_type: 'default', rope_theta: 5e5 } })).toThrow(/disagrees/);
  });

  it('phi3 longrope: short factors, the attention factor from max / original context, top-level original_max_position_embeddings', () => {
    const phi = { ...llama, model_type: 'phi3', head_dim: 8, max_position_embeddings: 4096, original_max_position_embeddings: 256, partial_rotary_factor: 0.5 };
    const spec = parseConfig({ ...phi, rope_scaling: { type: 'longrope', short_factor: [1, 2], long_factor: [3, 4] } });
    const rope = spec.layerKinds[0].rope;
    expect(rope?.rotaryDim).toBe(4);
    expect(rope?.invFreq[1]).toBeCloseTo(1 / (2 * 10000 ** (2 / 4)), 15);
    expect(rope?.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(16) / Math.log(256)), 15);
    expect(rope?.maxPosition).toBe(256);
    // Phi-3's first checkpoints called it "su"; HF reads that as longrope.
    const su = parseConfig({ ...phi, rope_scaling: { type: 'su', short_factor: [1, 2], long_factor: [3, 4] } });
    expect([...(su.layerKinds[0].rope?.invFreq ?? [])]).toEqual([...(rope?.invFreq ?? [])]);
    expect(() => parseConfig({ ...phi, rope_scaling: { type: 'longrope', short_factor: [1], long_factor: [3, 4] } })).toThrow(
      /field rope_scaling\.short_factor: must be a list of 2/,
    );
  });

  it('names a missing or mistyped field', () => {
    const { hidden_size: _, ...noHidden } = llama;
    expect(() => parseConfig(noHidden)).toThrow(/field hidden_size: is missing/);
    expect(() => parseConfig({ ...llama, num_attention_heads: '4' })).toThrow(/field num_attention_heads: must be a number/);
    expect(() => parseConfig({ ...llama, tie_word_embeddings: 'yes' })).toThrow(/field tie_word_embeddings: must be true or false/);
    expect(() => parseConfig({ ...llama, layer_types: ['full_attention'] })).not.toThrow(); // llama ignores layer_types
  });

  it('sliding windows: mistral on every layer, qwen2 from max_window_layers or layer_types, off without use_sliding_window', () => {
    expect(parseConfig({ ...llama, model_type: 'mistral', sliding_window: 8 }).layerKinds.map((k) => k.window)).toEqual([8, 8, 8, 8]);
    expect(parseConfig({ ...llama, model_type: 'mistral', sliding_window: null }).layerKinds.map((k) => k.window)).toEqual([null, null, null, null]);
    const qwen = { ...llama, model_type: 'qwen2', sliding_window: 8, max_window_layers: 2 };
    expect(parseConfig({ ...qwen, use_sliding_window: true }).layerKinds.map((k) => k.window)).toEqual([null, null, 8, 8]);
    expect(parseConfig({ ...qwen, use_sliding_window: false }).layerKinds.map((k) => k.window)).toEqual([null, null, null, null]);
    const types = ['sliding_attention', 'full_attention', 'sliding_attention', 'full_attention'];
    expect(parseConfig({ ...qwen, use_sliding_window: true, layer_types: types }).layerKinds.map((k) => k.window)).toEqual([8, null, 8, null]);
    expect(() => parseConfig({ ...qwen, use_sliding_window: true, layer_types: ['full_attention'] })).toThrow(/field layer_types: must be a list with one entry per layer \(4\)/);
    expect(() => parseConfig({ ...qwen, use_sliding_window: true, layer_types: ['full', 'full', 'full', 'full'] })).toThrow(/field layer_types: entry 0/);
  });

  it('gemma3: local rope for sliding layers, global rope + scaling for full layers, in both spellings', () => {
    const gemma3 = { ...llama, model_type: 'gemma3_text', head_dim: 16, num_hidden_layers: 6, sliding_window: 8, query_pre_attn_scalar: 16 };
    const v5 = parseConfig({
      ...gemma3,
      rope_parameters: { sliding_attention: { rope_type: 'default', rope_theta: 1e4 }, full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 } },
    });
    const v4 = parseConfig({ ...gemma3, rope_theta: 1e6, rope_local_base_freq: 1e4, rope_scaling: { rope_type: 'linear', factor: 8 } });
    for (const spec of [v5, v4]) {
      expect(spec.layerKinds.map((k) => k.window)).toEqual([8, 8, 8, 8, 8, null]);
      expect(spec.layerKinds[0].rope?.theta).toBe(1e4);
      expect(spec.layerKinds[5].rope?.theta).toBe(1e6);
      expect(spec.layerKinds[5].rope?.invFreq[0]).toBeCloseTo(1 / 8, 15);
      expect(spec).toMatchObject({ normOffset: 1, qkNorm: 'head', embedScale: Math.fround(8), attnScale: 0.25 });
    }
    expect(() => parseConfig({ ...gemma3, rope_parameters: { local_attention: { rope_type: 'default' } } })).toThrow(/rope_parameters\.local_attention/);
  });

  it('gpt_neox: partial rotary from rotary_pct (v4) or rope_parameters (v5), parallel residual by default', () => {
    const neox = { model_type: 'gpt_neox', vocab_size: 50, hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, intermediate_size: 256 };
    const v4 = parseConfig({ ...neox, rotary_pct: 0.25, rotary_emb_base: 10000 });
    const v5 = parseConfig({ ...neox, rope_parameters: { rope_type: 'default', rope_theta: 10000, partial_rotary_factor: 0.25 } });
    expect(v4.layerKinds[0].rope?.rotaryDim).toBe(4);
    expect(v5.layerKinds[0].rope?.rotaryDim).toBe(4);
    expect(v4).toMatchObject({ parallelResidual: true, norm: 'layer', activation: 'gelu', gatedMlp: false });
    expect(parseConfig({ ...neox, use_parallel_residual: false }).parallelResidual).toBe(false);
  });

  it('granite multipliers and smollm3 no-rope layers', () => {
    const granite = parseConfig({ ...llama, model_type: 'granite', embedding_multiplier: 12, residual_multiplier: 0.22, attention_multiplier: 0.0078125, logits_scaling: 8 });
    expect(granite).toMatchObject({ embedScale: 12, residualScale: 0.22, attnScale: 0.0078125, logitScale: 0.125 });
    const smol = parseConfig({ ...llama, model_type: 'smollm3', no_rope_layers: [1, 1, 1, 0] });
    expect(smol.layerKinds.map((k) => k.rope !== null)).toEqual([true, true, true, false]);
    expect(smol.layerKinds[0].rope?.theta).toBe(2e6);
    expect(parseConfig({ ...llama, model_type: 'smollm3', no_rope_layer_interval: 2 }).layerKinds.map((k) => k.rope !== null)).toEqual([true, false, true, false]);
  });

  it('parses gpt2 (n_embd, n_head, n_inner default 4×, learned positions, LayerNorm)', () => {
    const spec = parseConfig({ model_type: 'gpt2', vocab_size: 50, n_embd: 32, n_head: 4, n_layer: 2, n_positions: 64 });
    expect(spec).toMatchObject({ family: 'gpt2', intermediate: 128, headDim: 8, norm: 'layer', learnedPositions: true, tieEmbeddings: true });
    expect(spec.layerKinds[0].rope).toBeNull();
  });
});
