/** Reads an HF checkpoint from any source: config.json, single or sharded safetensors, tokenizer files. */
import type { FamilyDefinition } from './arch/family.ts';
import { familyForConfig } from './arch/registry.ts';
import type { ModelSpec } from './config.ts';
import { PruneLabError } from './errors.ts';
import { type HostTensor, parseSafetensors } from './safetensors.ts';
import type { ModelSource } from './sources.ts';
import { canonicalName, type ModelWeights, TensorStore } from './weights.ts';

export interface TokenizerFiles {
  tokenizerJson: unknown;
  tokenizerConfig: unknown;
}

export interface Checkpoint {
  label: string;
  config: Record<string, unknown>;
  /** config.json as written (export edits it in place: JSON.parse forgets that 3.0 was a float). */
  configText?: string;
  /** The registry entry that read this checkpoint (export, healing and the UI ask it). */
  family: FamilyDefinition;
  spec: ModelSpec;
  weights: ModelWeights;
  tokenizer: TokenizerFiles | null;
  /** The stored dtypes of the weights, e.g. ['F16']. */
  dtypes: string[];
  parameters: number;
  /** The raw files, kept so a pruned copy can be written without re-reading the source. */
  files: { name: string; tensors: Map<string, HostTensor> }[];
}

export interface LoadOptions {
  /** Bytes across all weight files. */
  progress?: (loadedBytes: number, totalBytes: number | null, file: string) => void;
  signal?: AbortSignal;
}

function parseJson(bytes: Uint8Array, file: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new PruneLabError(`is not valid JSON (${(e as Error).message})`, { file });
  }
}

async function readJson(source: ModelSource, name: string, signal?: AbortSignal): Promise<unknown | null> {
  const bytes = await source.read(name, undefined, signal);
  return bytes ? parseJson(bytes, name) : null;
}

/** Which safetensors files hold the weights: the index's shards, or model.safetensors. */
async function weightFiles(source: ModelSource, signal?: AbortSignal): Promise<string[]> {
  const index = await readJson(source, 'model.safetensors.index.json', signal);
  if (index !== null) {
    const map = (index as { weight_map?: unknown }).weight_map;
    if (typeof map !== 'object' || map === null) {
      throw new PruneLabError('has no weight_map object', { file: 'model.safetensors.index.json', field: 'weight_map' });
    }
    const files = [...new Set(Object.values(map as Record<string, unknown>))];
    if (!files.every((f) => typeof f === 'string' && /^[\w.-]+\.safetensors$/.test(f))) {
      throw new PruneLabError('names a shard that is not a plain *.safetensors file name', { file: 'model.safetensors.index.json', field: 'weight_map' });
    }
    return (files as string[]).sort();
  }
  return ['model.safetensors'];
}

export async function loadCheckpoint(source: ModelSource, options: LoadOptions = {}): Promise<Checkpoint> {
  const { signal } = options;
  const configBytes = await source.read('config.json', undefined, signal);
  if (configBytes === null) throw new PruneLabError(`no config.json in ${source.label}`, { file: 'config.json' });
  const config = parseJson(configBytes, 'config.json');
  const configText = new TextDecoder().decode(configBytes);
  const family = familyForConfig(config);
  const spec = family.parseConfig(config as Record<string, unknown>);
  const names = await weightFiles(source, signal);
  const tensors = new Map<string, HostTensor>();
  const files: Checkpoint['files'] = [];
  let loadedBefore = 0;
  for (const name of names) {
    const bytes = await source.read(name, (loaded, total) => options.progress?.(loadedBefore + loaded, total === null ? null : loadedBefore + total, name), signal);
    if (bytes === null) {
      throw new PruneLabError(names.length > 1 ? 'is listed in the index but missing' : `no model.safetensors in ${source.label} (only safetensors checkpoints are supported)`, {
        file: name,
      });
    }
    loadedBefore += bytes.byteLength;
    const fileTensors = parseSafetensors(bytes, name);
    files.push({ name, tensors: fileTensors });
    for (const [tensorName, t] of fileTensors) {
      const canonical = canonicalName(tensorName, family.prefixes);
      if (tensors.has(canonical)) throw new PruneLabError(`appears twice (also in ${tensors.get(canonical)?.file})`, { file: name, tensor: tensorName });
      tensors.set(canonical, t);
    }
  }
  const weights = family.bindWeights(spec, new TensorStore(tensors, family.isBuffer), config as Record<string, unknown>);
  const tokenizerJson = await readJson(source, 'tokenizer.json', signal);
  const tokenizerConfig = tokenizerJson === null ? null : ((await readJson(source, 'tokenizer_config.json', signal)) ?? {});
  const used = new Set<HostTensor>();
  const dtypes = new Set<string>();
  let parameters = 0;
  const visit = (t: HostTensor | null) => {
    if (!t || used.has(t)) return;
    used.add(t);
    dtypes.add(t.dtype);
    parameters += t.shape.reduce((a, b) => a * b, 1);
  };
  visit(weights.embed);
  visit(weights.positions);
  visit(weights.lmHead);
  visit(weights.finalNorm.weight);
  visit(weights.finalNorm.bias);
  for (const b of weights.blocks) {
    for (const n of [b.attnNorm, b.attnPostNorm, b.mlpNorm, b.mlpPostNorm]) {
      visit(n?.weight ?? null);
      visit(n?.bias ?? null);
    }
    visit(b.qNorm);
    visit(b.kNorm);
    for (const l of [b.q, b.k, b.v, b.o, b.gate, b.up, b.down]) {
      if (l) {
        visit(l.weight);
        visit(l.bias);
      }
    }
  }
  return {
    label: source.label,
    config: config as Record<string, unknown>,
    configText,
    family,
    spec,
    weights,
    tokenizer: tokenizerJson === null ? null : { tokenizerJson, tokenizerConfig },
    dtypes: [...dtypes].sort(),
    parameters,
    files,
  };
}
