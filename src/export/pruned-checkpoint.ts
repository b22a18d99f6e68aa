/**
 * Writes a pruned copy of a checkpoint in HF layout: removed blocks' tensors dropped, the rest renumbered
 * (the family's block-name pattern, contiguous from 0), tensor names and dtypes otherwise as stored (fused
 * tensors stay fused), config updated (layer count and per-layer lists, arch/<family>.ts), tokenizer kept.
 */
import type { FamilyDefinition } from '../engine/arch/family.ts';
import { FAMILIES } from '../engine/arch/registry.ts';
import type { Checkpoint } from '../engine/checkpoint.ts';
import type { ModelSpec } from '../engine/config.ts';
import { PruneLabError } from '../engine/errors.ts';
import { writeSafetensors, type TensorToWrite } from '../engine/safetensors.ts';
import { setTopLevelKeys } from './json-edit.ts';

export interface PrunedFiles {
  /** file name -> bytes */
  files: Map<string, Uint8Array>;
  keptBlocks: number[];
}

/** config.json fields that hold one entry per layer, over all families (the transformers hand-off script cuts the same ones). */
export const PER_LAYER_LISTS: readonly string[] = [...new Set(FAMILIES.flatMap((f) => f.perLayerKeys))];

/**
 * The config of the kept blocks: the family's layer-count key, every per-layer list cut to the kept
 * blocks, and the lists the family wants explicit (so no type is re-assigned by position).
 */
export function prunedConfig(config: Record<string, unknown>, family: FamilyDefinition, spec: ModelSpec, keptBlocks: number[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config, ...(family.explicitPerLayer?.(spec, config) ?? {}) };
  out[family.layerCountKey] = keptBlocks.length;
  for (const key of family.perLayerKeys) {
    const list = out[key];
    if (Array.isArray(list) && list.length === spec.layers) out[key] = keptBlocks.map((i) => list[i]);
  }
  return out;
}

/** The config.json keys a cut changes, with their new values (the transformers hand-off script sets exactly these). */
export function prunedConfigChanges(config: Record<string, unknown>, family: FamilyDefinition, spec: ModelSpec, keptBlocks: number[]): Record<string, unknown> {
  const pruned = prunedConfig(config, family, spec, keptBlocks);
  return Object.fromEntries(Object.entries(pruned).filter(([key, value]) => JSON.stringify(value) !== JSON.stringify(config[key])));
}

export function prunedCheckpointFiles(checkpoint: Checkpoint, removed: readonly number[], note?: Record<string, string>): PrunedFiles {
  const layers = checkpoint.spec.layers;
  // `files` holds the blocks only once the checkpoint is resident: writing without them would drop every block.
  if (!checkpoint.resident) throw new PruneLabError('an export needs every block read: call checkpoint.makeResident() first', { field: 'export' });
  for (const i of removed) {
    if (!Number.isInteger(i) || i < 0 || i >= layers) throw new PruneLabError(`block ${i} does not exist (0..${layers - 1})`, { field: 'remove' });
  }
  const gone = new Set(removed);
  const keptBlocks = Array.from({ length: layers }, (_, i) => i).filter((i) => !gone.has(i));
  if (keptBlocks.length === 0) throw new PruneLabError('cannot remove every block', { field: 'remove' });
  const newIndex = new Map(keptBlocks.map((old, k) => [old, k]));
  const tensors: TensorToWrite[] = [];
  for (const file of checkpoint.files) {
    for (const [name, t] of file.tensors) {
      const m = checkpoint.family.blockName.exec(name);
      let outName = name;
      if (m) {
        const old = Number(m[2]);
        if (gone.has(old)) continue;
        outName = `${m[1]}${newIndex.get(old)}${m[3]}`;
      }
      tensors.push({ name: outName, dtype: t.dtype, shape: t.shape, bytes: t.bytes });
    }
  }
  const metadata = { format: 'pt', ...(note ?? {}) };
  const files = new Map<string, Uint8Array>();
  files.set('model.safetensors', writeSafetensors(tensors, metadata));
  const encode = (value: unknown) => new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);
  const changed = prunedConfigChanges(checkpoint.config, checkpoint.family, checkpoint.spec, keptBlocks);
  files.set('config.json', new TextEncoder().encode(setTopLevelKeys(checkpoint.configText ?? `${JSON.stringify(checkpoint.config, null, 2)}\n`, changed)));
  if (checkpoint.tokenizer) {
    files.set('tokenizer.json', encode(checkpoint.tokenizer.tokenizerJson));
    files.set('tokenizer_config.json', encode(checkpoint.tokenizer.tokenizerConfig));
  }
  return { files, keptBlocks };
}
