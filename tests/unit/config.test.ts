import { describe, expect, it } from 'vitest';
import { parseConfig, ropeInverseFrequencies } from '../../src/engine/config.ts';

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

describe('config.json -> ModelSpec', () => {
  it('applies HF defaults: head_dim = hidden / heads, rope_theta 10000, untied head', () => {
    const spec = parseConfig(llama);
    expect(spec.headDim).toBe(16);
    expect(spec.kvHeads).toBe(2);
    expect(spec.tieEmbeddings).toBe(false);
    expect(spec.ropeInvFreq?.[1]).toBeCloseTo(1 / 10000 ** (2 / 16), 15);
  });

  it('reads qwen3 explicit head_dim and enables q/k norm; qwen2 gets qkv bias', () => {
    expect(parseConfig({ ...llama, model_type: 'qwen3', head_dim: 32 })).toMatchObject({ headDim: 32, qkNorm: true, qkvBias: false });
    expect(parseConfig({ ...llama, model_type: 'qwen2' })).toMatchObject({ qkvBias: true, qkNorm: false });
  });

  it('rejects an unsupported model_type, listing the supported ones', () => {
    expect(() => parseConfig({ ...llama, model_type: 'mamba' })).toThrow(
      /config\.json, field model_type: unsupported model_type "mamba" \(supported: llama, mistral, qwen2, qwen3, gpt2\)/,
    );
  });

  it('rejects an unsupported rope type by name', () => {
    expect(() => parseConfig({ ...llama, rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(/field rope_scaling: unsupported rope type "yarn"/);
  });

  it('names a missing or mistyped field', () => {
    const { hidden_size: _, ...noHidden } = llama;
    expect(() => parseConfig(noHidden)).toThrow(/field hidden_size: is missing/);
    expect(() => parseConfig({ ...llama, num_attention_heads: '4' })).toThrow(/field num_attention_heads: must be a number/);
  });

  it('llama3 rope scaling keeps high frequencies, divides low ones by the factor and blends between', () => {
    const scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
    const base = ropeInverseFrequencies(16, 500000, null);
    const scaled = ropeInverseFrequencies(16, 500000, scaling);
    const wavelen = (f: number) => (2 * Math.PI) / f;
    for (let i = 0; i < base.length; i++) {
      if (wavelen(base[i]) < 16) expect(scaled[i]).toBe(base[i]);
      else if (wavelen(base[i]) > 64) expect(scaled[i]).toBeCloseTo(base[i] / 8, 15);
      else {
        const smooth = (64 / wavelen(base[i]) - 1) / 3;
        expect(scaled[i]).toBeCloseTo((1 - smooth) * (base[i] / 8) + smooth * base[i], 15);
      }
    }
  });

  it('parses gpt2 (n_embd, n_head, n_inner default 4×, learned positions, LayerNorm)', () => {
    const spec = parseConfig({ model_type: 'gpt2', vocab_size: 50, n_embd: 32, n_head: 4, n_layer: 2, n_positions: 64 });
    expect(spec).toMatchObject({ family: 'gpt2', intermediate: 128, headDim: 8, norm: 'layer', learnedPositions: true, ropeInvFreq: null, tieEmbeddings: true });
  });
});
