/**
 * Writes a pruned copy of a checkpoint in HF layout: removed blocks' tensors dropped, the rest renumbered
 * (`layers.N` / `h.N` contiguous from 0), tensor names and dtypes otherwise as stored, config updated
 * (num_hidden_layers / n_layer and per-layer lists such as layer_types), tokenizer files kept.
 */
import type { Checkpoint } from '../engine/checkpoint.ts';
import { PruneLabError } from '../engine/errors.ts';
import { writeSafetensors, type TensorToWrite } from '../engine/safetensors.ts';

export interface PrunedFiles {
  /** file name -> bytes */
  files: Map<string, Uint8Array>;
  keptBlocks: number[];
}

const BLOCK_NAME = /^((?:model\.|transformer\.)?(?:layers|h)\.)(\d+)(\..*)$/;
/** config.json fields that hold one entry per layer. */
const PER_LAYER_LISTS = ['layer_types', 'sliding_window_pattern_list', 'no_rope_layers'];

export function prunedConfig(config: Record<string, unknown>, layers: number, keptBlocks: number[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config };
  if ('n_layer' in out) out.n_layer = keptBlocks.length;
  else out.num_hidden_layers = keptBlocks.length;
  for (const key of PER_LAYER_LISTS) {
    const list = out[key];
    if (Array.isArray(list) && list.length === layers) out[key] = keptBlocks.map((i) => list[i]);
  }
  return out;
}

export function prunedCheckpointFiles(checkpoint: Checkpoint, removed: readonly number[], note?: Record<string, string>): PrunedFiles {
  const layers = checkpoint.spec.layers;
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
      const m = BLOCK_NAME.exec(name);
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
  files.set('config.json', encode(prunedConfig(checkpoint.config, layers, keptBlocks)));
  if (checkpoint.tokenizer) {
    files.set('tokenizer.json', encode(checkpoint.tokenizer.tokenizerJson));
    files.set('tokenizer_config.json', encode(checkpoint.tokenizer.tokenizerConfig));
  }
  return { files, keptBlocks };
}
