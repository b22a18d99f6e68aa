/**
 * Reads an HF checkpoint from any source: config.json, single or sharded safetensors, tokenizer files.
 * The safetensors headers are read first (a few KB by byte range); tensors are then read by range when
 * needed, one block at a time, so no whole weight file is ever held. A resident checkpoint reads every
 * block at load; a streamed one (`blocks: 'on-demand'`) keeps only the ends (embedding, final norm,
 * head) and reads block i when `loadBlock(i)` is called — what block-streamed scoring needs.
 */
import type { FamilyDefinition } from './arch/family.ts';
import { familyForConfig } from './arch/registry.ts';
import type { ModelSpec } from './config.ts';
import { PruneLabError } from './errors.ts';
import { type HostTensor, parseHeader, type TensorEntry } from './safetensors.ts';
import { type ModelSource, rangedReader } from './sources.ts';
import { type BlockWeights, canonicalName, type ModelWeights, TensorStore } from './weights.ts';

export interface TokenizerFiles {
  tokenizerJson: unknown;
  tokenizerConfig: unknown;
}

/** Where one stored tensor lives. */
interface TensorLocation {
  file: string;
  /** Name as stored (prefix included). */
  stored: string;
  entry: TensorEntry;
  /** Absolute file offset of the data section. */
  dataStart: number;
  /** Block index from the family's block-name pattern, or null for the ends. */
  block: number | null;
}

export interface Checkpoint {
  label: string;
  config: Record<string, unknown>;
  /** config.json as written (export edits it in place: JSON.parse forgets that 3.0 was a float). */
  configText?: string;
  /** The registry entry that read this checkpoint (export, healing and the UI ask it). */
  family: FamilyDefinition;
  spec: ModelSpec;
  /** The ends, and every block when resident (`blocks` is empty when blocks load on demand). */
  weights: ModelWeights;
  /** Block i's weights: from memory when resident, else read by range now. */
  loadBlock(index: number, signal?: AbortSignal): Promise<BlockWeights>;
  /** Whether every block is in `weights.blocks`. */
  resident: boolean;
  /** Reads and binds every block now and keeps them (a checkpoint loaded on demand that turned out to fit; export and healing need them). */
  makeResident(signal?: AbortSignal): Promise<void>;
  /**
   * Every block in order, handed to `take` and not kept (a resident checkpoint hands its own): how a backend
   * that makes its own copy of the weights (the fast CPU kernels' f32) is loaded, the checkpoint holding one
   * block's stored bytes and the next one's, read ahead, at a time. Progress counts every block.
   */
  forEachBlock(take: (index: number, block: BlockWeights) => Promise<void>, signal?: AbortSignal): Promise<void>;
  /** Stored bytes of each block's tensors, and of everything else. */
  blockBytes: number[];
  endsBytes: number;
  tokenizer: TokenizerFiles | null;
  /** The stored dtypes of the weights, e.g. ['F16']. */
  dtypes: string[];
  parameters: number;
  /** The raw tensors per file (all of them once resident; the ends before), kept so a pruned copy can be written without re-reading the source. */
  files: { name: string; tensors: Map<string, HostTensor> }[];
}

export interface LoadOptions {
  /** Bytes across all weight tensors read so far. */
  progress?: (loadedBytes: number, totalBytes: number | null, file: string) => void;
  signal?: AbortSignal;
  /** 'all' (default): read every block now; 'on-demand': only the ends, blocks via loadBlock. */
  blocks?: 'all' | 'on-demand';
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

/** Reads only the header of each weight file (8 bytes, then the JSON) and indexes every tensor. */
async function indexTensors(source: ModelSource, family: FamilyDefinition, names: string[], signal?: AbortSignal): Promise<Map<string, TensorLocation>> {
  const { size, readRange } = rangedReader(source);
  const index = new Map<string, TensorLocation>();
  for (const file of names) {
    const fileSize = await size(file, signal);
    if (fileSize === null) {
      throw new PruneLabError(names.length > 1 ? 'is listed in the index but missing' : `no model.safetensors in ${source.label} (only safetensors checkpoints are supported)`, {
        file,
      });
    }
    if (fileSize < 8) throw new PruneLabError('is too short to be safetensors (no 8-byte header length)', { file });
    const lengthBytes = await readRange(file, 0, 8, signal);
    const headerLength = Number(new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8).getBigUint64(0, true));
    // parseHeader re-checks the length against the file size and names the file; read what exists.
    const prefix = new Uint8Array(8 + Math.min(headerLength, Math.max(0, fileSize - 8)));
    prefix.set(lengthBytes);
    if (prefix.byteLength > 8) prefix.set(await readRange(file, 8, prefix.byteLength, signal), 8);
    const { entries, dataStart } = parseHeader(prefix, file, fileSize);
    for (const [stored, entry] of entries) {
      const canonical = canonicalName(stored, family.prefixes);
      const other = index.get(canonical);
      if (other) throw new PruneLabError(`appears twice (also in ${other.file})`, { file, tensor: stored });
      const m = family.blockName.exec(stored);
      index.set(canonical, { file, stored, entry, dataStart, block: m ? Number(m[2]) : null });
    }
  }
  return index;
}

/** Largest gap between two wanted tensors that is read through rather than split into two requests. */
const MERGE_GAP = 64 * 1024;

/**
 * Reads the given tensors as views into as few range reads as possible (neighbours in a file are merged);
 * returns canonical name -> HostTensor.
 */
async function readTensors(
  source: ModelSource,
  locations: [string, TensorLocation][],
  onBytes: (bytes: number, file: string) => void,
  signal?: AbortSignal,
): Promise<Map<string, HostTensor>> {
  const { readRange } = rangedReader(source);
  const out = new Map<string, HostTensor>();
  const byFile = new Map<string, [string, TensorLocation][]>();
  for (const item of locations) {
    const list = byFile.get(item[1].file) ?? [];
    list.push(item);
    byFile.set(item[1].file, list);
  }
  for (const [file, list] of byFile) {
    list.sort((a, b) => a[1].entry.begin - b[1].entry.begin);
    let i = 0;
    while (i < list.length) {
      let j = i + 1;
      while (j < list.length && list[j][1].entry.begin - list[j - 1][1].entry.end <= MERGE_GAP) j++;
      const { dataStart } = list[i][1];
      const begin = dataStart + list[i][1].entry.begin;
      const end = dataStart + list[j - 1][1].entry.end;
      const bytes = end > begin ? await readRange(file, begin, end, signal) : new Uint8Array(0);
      onBytes(bytes.byteLength, file);
      for (const [canonical, loc] of list.slice(i, j)) {
        const at = dataStart + loc.entry.begin - begin;
        out.set(canonical, { name: loc.stored, file, dtype: loc.entry.dtype, shape: loc.entry.shape, bytes: bytes.subarray(at, at + loc.entry.end - loc.entry.begin) });
      }
      i = j;
    }
  }
  return out;
}

const elements = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

export async function loadCheckpoint(source: ModelSource, options: LoadOptions = {}): Promise<Checkpoint> {
  const { signal } = options;
  const configBytes = await source.read('config.json', undefined, signal);
  if (configBytes === null) throw new PruneLabError(`no config.json in ${source.label}`, { file: 'config.json' });
  const config = parseJson(configBytes, 'config.json') as Record<string, unknown>;
  const configText = new TextDecoder().decode(configBytes);
  const family = familyForConfig(config);
  const spec = family.parseConfig(config);
  const fileNames = await weightFiles(source, signal);
  const index = await indexTensors(source, family, fileNames, signal);

  const all = [...index.entries()];
  for (const [, loc] of all) {
    if (loc.block !== null && loc.block >= spec.layers) {
      throw new PruneLabError(`belongs to block ${loc.block} but config.json has ${spec.layers} blocks`, { file: loc.file, tensor: loc.stored });
    }
  }
  const bytesOf = (list: [string, TensorLocation][]) => list.reduce((a, [, l]) => a + l.entry.end - l.entry.begin, 0);
  const ofBlock = (i: number) => all.filter(([, l]) => l.block === i);
  const ends = all.filter(([, l]) => l.block === null);
  const blockBytes = Array.from({ length: spec.layers }, (_, i) => bytesOf(ofBlock(i)));
  const endsBytes = bytesOf(ends);
  let resident = false;
  // The ends, plus every block once the checkpoint becomes resident (streamed passes report per block).
  let totalBytes = endsBytes + (options.blocks !== 'on-demand' ? blockBytes.reduce((a, b) => a + b, 0) : 0);
  let loadedBytes = 0;
  const onBytes = (bytes: number, file: string) => {
    loadedBytes += bytes;
    options.progress?.(loadedBytes, totalBytes, file);
  };

  // Every stored tensor of a resident checkpoint, by file, for export (buffers included).
  const files: Checkpoint['files'] = fileNames.map((name) => ({ name, tensors: new Map() }));
  const keep = (tensors: Map<string, HostTensor>) => {
    for (const t of tensors.values()) files.find((f) => f.name === t.file)?.tensors.set(t.name, t);
  };
  const bindBlock = (i: number, tensors: Map<string, HostTensor>) => {
    const store = new TensorStore(tensors, family.isBuffer);
    const block = family.bindBlock(spec, store, i, config);
    return { block, unused: store.unused() };
  };

  const endTensors = await readTensors(source, ends, onBytes, signal);
  const endStore = new TensorStore(endTensors, family.isBuffer);
  const boundEnds = family.bindEnds(spec, endStore, config);
  const unused = endStore.unused();
  keep(endTensors);
  const blocks: BlockWeights[] = [];
  const weights: ModelWeights = { ...boundEnds, blocks, unused };
  /** Reads every block in order (the next one while `take` has this one) and binds it; progress counts them all. */
  const readEveryBlock = async (take: (i: number, block: BlockWeights, tensors: Map<string, HostTensor>) => Promise<void> | void, readSignal?: AbortSignal) => {
    totalBytes = endsBytes + blockBytes.reduce((a, b) => a + b, 0);
    const read = (i: number) => {
      const tensors = readTensors(source, ofBlock(i), onBytes, readSignal);
      // A read ahead that is abandoned (cancel, error) must not surface as unhandled.
      tensors.catch(() => undefined);
      return tensors;
    };
    let next = spec.layers > 0 ? read(0) : null;
    for (let i = 0; i < spec.layers; i++) {
      const tensors = await (next as Promise<Map<string, HostTensor>>);
      next = i + 1 < spec.layers ? read(i + 1) : null;
      const bound = bindBlock(i, tensors);
      // A second pass over the blocks (forEachBlock, then makeResident for an export) names nothing twice.
      unused.push(...bound.unused.filter((name) => !unused.includes(name)));
      await take(i, bound.block, tensors);
    }
  };
  const makeResident = async (readSignal?: AbortSignal) => {
    if (resident) return;
    await readEveryBlock((_, block, tensors) => {
      keep(tensors);
      blocks.push(block);
    }, readSignal);
    resident = true;
  };
  if (options.blocks !== 'on-demand') await makeResident(signal);

  const tokenizerJson = await readJson(source, 'tokenizer.json', signal);
  const tokenizerConfig = tokenizerJson === null ? null : ((await readJson(source, 'tokenizer_config.json', signal)) ?? {});
  // Counted from the headers for the blocks (so a streamed checkpoint knows its size before reading
  // any), from the bound tensors for the ends (a tied head stored twice is one matrix).
  const blockTensors = all.filter(([name, l]) => l.block !== null && !family.isBuffer(name));
  const endParts = [...new Set([boundEnds.embed, boundEnds.positions, boundEnds.finalNorm.weight, boundEnds.finalNorm.bias, boundEnds.lmHead])].filter(
    (t): t is HostTensor => t !== null,
  );
  const parameters = blockTensors.reduce((a, [, l]) => a + elements(l.entry.shape), 0) + endParts.reduce((a, t) => a + elements(t.shape), 0);
  const dtypes = [...new Set([...blockTensors.map(([, l]) => l.entry.dtype), ...endParts.map((t) => t.dtype)])].sort();
  return {
    label: source.label,
    config,
    configText,
    family,
    spec,
    weights,
    get resident() {
      return resident;
    },
    makeResident,
    blockBytes,
    endsBytes,
    async forEachBlock(take, blockSignal) {
      if (resident) {
        for (const [i, block] of blocks.entries()) await take(i, block);
        return;
      }
      await readEveryBlock((i, block) => take(i, block), blockSignal);
    },
    async loadBlock(i, blockSignal) {
      if (resident) return blocks[i];
      if (!Number.isInteger(i) || i < 0 || i >= spec.layers) throw new PruneLabError(`block ${i} does not exist (0..${spec.layers - 1})`, { field: 'plan' });
      const bound = bindBlock(i, await readTensors(source, ofBlock(i), onBytes, blockSignal));
      return bound.block;
    },
    tokenizer: tokenizerJson === null ? null : { tokenizerJson, tokenizerConfig },
    dtypes,
    parameters,
    files,
  };
}
