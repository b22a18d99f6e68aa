/**
 * Random-weight checkpoints built in memory (no files): llama-family (GQA, qkv bias, qk-norm variants)
 * and GPT-2 specs, with every tensor stored as F32, F16 or BF16 HostTensors exactly as a loader makes.
 */
import type { Checkpoint } from '../../src/engine/checkpoint.ts';
import { parseConfig } from '../../src/engine/config.ts';
import { encodeF16, type HostTensor } from '../../src/engine/safetensors.ts';
import type { BlockWeights, Linear, ModelWeights } from '../../src/engine/weights.ts';

export type StoredDType = 'F32' | 'F16' | 'BF16';

export interface RandomModelOptions {
  family: 'llama' | 'gpt2';
  modelType?: string;
  dtype: StoredDType;
  hidden: number;
  heads: number;
  kvHeads?: number;
  headDim?: number;
  intermediate: number;
  layers: number;
  vocab: number;
  qkvBias?: boolean;
  tie?: boolean;
  ropeScaling?: unknown;
  maxPositions?: number;
  seed?: number;
}

/** Deterministic standard-normal-ish numbers (mulberry32 + Box–Muller). */
export function randomNormal(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

function encode(values: Float32Array, dtype: StoredDType): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  if (dtype === 'F16') return encodeF16(values);
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  const u = new Uint32Array(Float32Array.from(values).buffer);
  for (let i = 0; i < u.length; i++) view.setUint16(i * 2, (u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16, true);
  return out;
}

export function tensorOf(name: string, shape: number[], values: Float32Array, dtype: StoredDType): HostTensor {
  return { name, file: 'random.safetensors', dtype, shape, bytes: encode(values, dtype) };
}

export function randomCheckpoint(o: RandomModelOptions): Checkpoint {
  const rand = randomNormal(o.seed ?? 1);
  const kvHeads = o.kvHeads ?? o.heads;
  const headDim = o.headDim ?? o.hidden / o.heads;
  const config: Record<string, unknown> =
    o.family === 'gpt2'
      ? {
          model_type: 'gpt2',
          vocab_size: o.vocab,
          n_embd: o.hidden,
          n_head: o.heads,
          n_layer: o.layers,
          n_inner: o.intermediate,
          n_positions: o.maxPositions ?? 64,
          layer_norm_epsilon: 1e-5,
        }
      : {
          model_type: o.modelType ?? 'llama',
          vocab_size: o.vocab,
          hidden_size: o.hidden,
          intermediate_size: o.intermediate,
          num_hidden_layers: o.layers,
          num_attention_heads: o.heads,
          num_key_value_heads: kvHeads,
          head_dim: headDim,
          rms_norm_eps: 1e-5,
          rope_theta: 10000,
          rope_scaling: o.ropeScaling ?? null,
          max_position_embeddings: o.maxPositions ?? 256,
          attention_bias: o.qkvBias ?? false,
          tie_word_embeddings: o.tie ?? false,
        };
  const spec = parseConfig(config);
  const t = (name: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = offset + scale * rand();
    return tensorOf(name, shape, v, o.dtype);
  };
  const lin = (name: string, out: number, inp: number, bias: boolean): Linear => ({
    weight: t(`${name}.weight`, [out, inp], 1 / Math.sqrt(inp)),
    bias: bias ? t(`${name}.bias`, [out], 0.1) : null,
  });
  const layer = spec.norm === 'layer';
  const norm = (name: string) => ({ weight: t(`${name}.weight`, [spec.hidden], 0.1, 1), bias: layer ? t(`${name}.bias`, [spec.hidden], 0.05) : null });
  const blocks: BlockWeights[] = [];
  for (let i = 0; i < spec.layers; i++) {
    blocks.push({
      attnNorm: norm(`h.${i}.ln_1`),
      q: lin(`h.${i}.q`, spec.heads * headDim, spec.hidden, spec.qkvBias),
      k: lin(`h.${i}.k`, kvHeads * headDim, spec.hidden, spec.qkvBias),
      v: lin(`h.${i}.v`, kvHeads * headDim, spec.hidden, spec.qkvBias),
      o: lin(`h.${i}.o`, spec.hidden, spec.heads * headDim, spec.family === 'gpt2'),
      qNorm: spec.qkNorm ? t(`h.${i}.q_norm`, [headDim], 0.1, 1) : null,
      kNorm: spec.qkNorm ? t(`h.${i}.k_norm`, [headDim], 0.1, 1) : null,
      mlpNorm: norm(`h.${i}.ln_2`),
      gate: spec.family === 'llama' ? lin(`h.${i}.gate`, spec.intermediate, spec.hidden, false) : null,
      up: lin(`h.${i}.up`, spec.intermediate, spec.hidden, spec.family === 'gpt2'),
      down: lin(`h.${i}.down`, spec.hidden, spec.intermediate, spec.family === 'gpt2'),
    });
  }
  const embed = t('wte', [spec.vocabSize, spec.hidden], 1);
  const weights: ModelWeights = {
    embed,
    positions: spec.learnedPositions ? t('wpe', [spec.maxPositions, spec.hidden], 0.3) : null,
    blocks,
    finalNorm: norm('ln_f'),
    lmHead: spec.tieEmbeddings ? embed : t('lm_head', [spec.vocabSize, spec.hidden], 1 / Math.sqrt(spec.hidden)),
    unused: [],
  };
  return { label: `random-${spec.modelType}-${o.dtype}`, config, spec, weights, tokenizer: null, dtypes: [o.dtype], parameters: 0, files: [] };
}

export function randomIds(count: number, vocab: number, seed: number): number[] {
  const rand = randomNormal(seed);
  return Array.from({ length: count }, () => Math.floor(Math.abs(rand() * 1e6)) % vocab);
}
