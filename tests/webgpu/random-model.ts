/**
 * Random-weight checkpoints built in memory (no files), for any family of the registry: a config.json is
 * written for the model type, parsed by its family (src/engine/arch), and the family's own bindBlock /
 * bindEnds take its tensors (HF names, fused qkv / gate_up included) from a store that makes each one on first
 * request, stored as F32, F16 or BF16 HostTensors exactly as a loader makes them.
 */
import { familyForConfig } from '../../src/engine/arch/registry.ts';
import type { Checkpoint } from '../../src/engine/checkpoint.ts';
import type { ModelSpec } from '../../src/engine/config.ts';
import { encodeF16, type HostTensor, writeSafetensors } from '../../src/engine/safetensors.ts';
import { type ModelWeights, TensorStore } from '../../src/engine/weights.ts';

export type StoredDType = 'F32' | 'F16' | 'BF16';

export interface RandomModelOptions {
  /** config.json model_type (llama, mistral, qwen2, qwen3, gpt2, gemma2, gemma3_text, phi3, olmo2, granite, smollm3, gpt_neox). */
  modelType: string;
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
  /** config.json keys added or overriding the defaults (sliding_window, soft-caps, multipliers, layer lists …). */
  config?: Record<string, unknown>;
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

/** The config.json of a small model of `o.modelType`, in the spelling its family reads. */
function configFor(o: RandomModelOptions): Record<string, unknown> {
  const kvHeads = o.kvHeads ?? o.heads;
  const headDim = o.headDim ?? o.hidden / o.heads;
  let base: Record<string, unknown>;
  if (o.modelType === 'gpt2') {
    base = { n_embd: o.hidden, n_head: o.heads, n_layer: o.layers, n_inner: o.intermediate, n_positions: o.maxPositions ?? 64, layer_norm_epsilon: 1e-5 };
  } else if (o.modelType === 'gpt_neox') {
    base = {
      hidden_size: o.hidden,
      num_attention_heads: o.heads,
      num_hidden_layers: o.layers,
      intermediate_size: o.intermediate,
      max_position_embeddings: o.maxPositions ?? 256,
      layer_norm_eps: 1e-5,
      rotary_pct: 0.25,
      rotary_emb_base: 10000,
      hidden_act: 'gelu',
      use_parallel_residual: true,
      tie_word_embeddings: o.tie ?? false,
    };
  } else {
    base = {
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
    if (o.modelType.startsWith('gemma')) Object.assign(base, { hidden_activation: 'gelu_pytorch_tanh', query_pre_attn_scalar: headDim });
  }
  return { model_type: o.modelType, vocab_size: o.vocab, ...base, ...o.config };
}

/** GPT-2's Conv1D weights are stored [in, out]. */
const CONV1D = /\.(c_attn|c_proj|c_fc)\.weight$/;
const EMBEDDINGS = new Set(['embed_tokens.weight', 'wte.weight', 'embed_in.weight']);
const UNTIED_HEADS = new Set(['lm_head.weight', 'embed_out.weight']);

/** A TensorStore that makes every tensor the family asks for (and offers an untied head when the config unties it). */
class RandomStore extends TensorStore {
  constructor(
    private readonly make: (name: string, shape: number[]) => HostTensor,
    private readonly untied: boolean,
  ) {
    super(new Map(), () => false);
  }
  override has(name: string): boolean {
    return this.tensors.has(name) || (this.untied && UNTIED_HEADS.has(name));
  }
  override take(name: string, shape: number[]): HostTensor {
    if (!this.tensors.has(name)) this.tensors.set(name, this.make(name, shape));
    return super.take(name, shape);
  }
}

/** The tensor maker of a random model: norms near 1, biases small, matrices scaled by 1/√fan-in. */
function tensorMaker(o: RandomModelOptions, spec: ModelSpec): (name: string, shape: number[]) => HostTensor {
  const rand = randomNormal(o.seed ?? 1);
  return (name: string, shape: number[]) => {
    let scale: number;
    let offset = 0;
    if (shape.length === 1) {
      // Biases small; norm weights near 1 (Gemma stores w of its (1 + w)).
      scale = 0.1;
      if (!name.endsWith('.bias') && spec.normOffset === 0) offset = 1;
    } else if (EMBEDDINGS.has(name)) scale = 1;
    else if (name === 'wpe.weight') scale = 0.3;
    else scale = 1 / Math.sqrt(spec.family === 'gpt2' && CONV1D.test(name) ? shape[0] : shape[1]);
    const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < v.length; i++) v[i] = offset + scale * rand();
    return tensorOf(name, shape, v, o.dtype);
  };
}

export function randomCheckpoint(o: RandomModelOptions): Checkpoint {
  const config = configFor(o);
  const family = familyForConfig(config);
  const spec = family.parseConfig(config);
  const make = tensorMaker(o, spec);
  const store = new RandomStore(make, !spec.tieEmbeddings);
  // Stored bytes of what each bind made (a block's tensors, then the ends').
  const madeBytes = () => [...store.tensors.values()].reduce((n, t) => n + t.bytes.byteLength, 0);
  const blockBytes: number[] = [];
  const blocks = Array.from({ length: spec.layers }, (_, i) => {
    const before = madeBytes();
    const block = family.bindBlock(spec, store, i, config);
    blockBytes.push(madeBytes() - before);
    return block;
  });
  const before = madeBytes();
  const weights: ModelWeights = { ...family.bindEnds(spec, store, config), blocks, unused: store.unused() };
  return {
    label: `random-${spec.modelType}-${o.dtype}`,
    config,
    family,
    spec,
    weights,
    loadBlock: async (i) => blocks[i],
    resident: true,
    makeResident: async () => {},
    forEachBlock: async (take) => {
      for (const [i, block] of blocks.entries()) await take(i, block);
    },
    blockBytes,
    endsBytes: madeBytes() - before,
    tokenizer: null,
    dtypes: [o.dtype],
    parameters: 0,
    files: [],
  };
}

export function randomIds(count: number, vocab: number, seed: number): number[] {
  const rand = randomNormal(seed);
  return Array.from({ length: count }, () => Math.floor(Math.abs(rand() * 1e6)) % vocab);
}

/**
 * Writes a random checkpoint laid out as transformers saves a sharded one: config.json, shards
 * model-0000k-of-0000n.safetensors of at most `shardBytes` (a block may span two shards), and
 * model.safetensors.index.json; names carry the family's prefix (model.layers.0…). Tensors are made one
 * block at a time and each shard is written when full, so a 1B-shaped model never sits in memory whole.
 * Returns the stored bytes of each block and of the ends.
 */
export async function writeRandomCheckpoint(dir: string, o: RandomModelOptions, shardBytes: number): Promise<{ blockBytes: number[]; endsBytes: number }> {
  const { mkdir, writeFile, rename } = await import('node:fs/promises');
  const { join } = await import('node:path');
  await mkdir(dir, { recursive: true });
  const config = configFor(o);
  const family = familyForConfig(config);
  const spec = family.parseConfig(config);
  const make = tensorMaker(o, spec);
  const prefix = family.prefixes[0] ?? '';
  const stored = (name: string) => (UNTIED_HEADS.has(name) ? name : `${prefix}${name}`);
  const shards: { name: string; tensors: string[] }[] = [];
  let pending: HostTensor[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    if (pending.length === 0) return;
    const name = `shard-${shards.length}.tmp`;
    await writeFile(
      join(dir, name),
      writeSafetensors(
        pending.map((t) => ({ name: stored(t.name), dtype: t.dtype, shape: t.shape, bytes: t.bytes })),
        { format: 'pt' },
      ),
    );
    shards.push({ name, tensors: pending.map((t) => stored(t.name)) });
    pending = [];
    pendingBytes = 0;
  };
  const add = async (tensors: Iterable<HostTensor>) => {
    let bytes = 0;
    for (const t of tensors) {
      if (pendingBytes + t.bytes.byteLength > shardBytes) await flush();
      pending.push(t);
      pendingBytes += t.bytes.byteLength;
      bytes += t.bytes.byteLength;
    }
    return bytes;
  };
  // The ends are bound first (the embedding leads the file, as transformers writes it); the final norm and head follow the blocks.
  const endStore = new RandomStore(make, !spec.tieEmbeddings);
  family.bindEnds(spec, endStore, config);
  const endTensors = [...endStore.tensors.values()];
  const embedding = endTensors.filter((t) => EMBEDDINGS.has(t.name));
  let endsBytes = await add(embedding);
  const blockBytes: number[] = [];
  for (let i = 0; i < spec.layers; i++) {
    const store = new RandomStore(make, false);
    family.bindBlock(spec, store, i, config);
    blockBytes.push(await add(store.tensors.values()));
  }
  endsBytes += await add(endTensors.filter((t) => !EMBEDDINGS.has(t.name)));
  await flush();
  const n = shards.length;
  const weightMap: Record<string, string> = {};
  for (const [k, shard] of shards.entries()) {
    const final = `model-${String(k + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
    await rename(join(dir, shard.name), join(dir, final));
    for (const t of shard.tensors) weightMap[t] = final;
  }
  const totalSize = endsBytes + blockBytes.reduce((a, b) => a + b, 0);
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2));
  await writeFile(join(dir, 'config.json'), JSON.stringify({ torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[o.dtype], ...config }, null, 2));
  return { blockBytes, endsBytes };
}
