/**
 * `prunelab export`: the cut as a transformers script or a mergekit config, on stdout (src/export/handoff.ts
 * writes both). It reads only config.json and the safetensors headers (a few KB over HTTP Range for a hub
 * model), never the weights.
 */
import { existsSync, statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Metric } from '../../src/analysis/influence.ts';
import { familyForConfig } from '../../src/engine/arch/registry.ts';
import { PruneLabError } from '../../src/engine/errors.ts';
import { MAX_HEADER_BYTES } from '../../src/engine/safetensors.ts';
import { explainHubStatus, hubFileUrl, resolveHubCommit } from '../../src/engine/hub.ts';
import { HUB_ORIGIN, looksLikeHubId, parseHubId } from '../../src/engine/sources.ts';
import { HANDOFF_FORMATS, type HandoffFormat, type HandoffSource, handoffFileName, handoffText, keptBlocks } from '../../src/export/handoff.ts';
import { prunedConfigChanges } from '../../src/export/pruned-checkpoint.ts';
import type { Command, Flags, Out } from '../args.ts';
import { COMMON_FLAGS, modelFlag } from '../common.ts';

const METRIC_NAMES: Record<string, Metric> = { bi: 'bi', angular: 'angular', relmag: 'relMagnitude', relMagnitude: 'relMagnitude' };

/** Reads one file of the model, or its first `bytes` bytes; null when absent. */
type Reader = (name: string, bytes?: number) => Promise<Uint8Array | null>;

function folderReader(dir: string): Reader {
  return async (name, bytes) => {
    const path = join(dir, name);
    if (!existsSync(path)) return null;
    if (bytes === undefined) return new Uint8Array(await readFile(path));
    const handle = await open(path, 'r');
    try {
      const buffer = new Uint8Array(Math.min(bytes, statSync(path).size));
      await handle.read(buffer, 0, buffer.byteLength, 0);
      return buffer;
    } finally {
      await handle.close();
    }
  };
}

function hubReader(repo: string, revision: string, origin: string, token: string | undefined): Reader {
  return async (name, bytes) => {
    const url = hubFileUrl(origin, repo, revision, name);
    const headers: Record<string, string> = {};
    if (bytes !== undefined) headers.range = `bytes=0-${bytes - 1}`;
    if (token) headers.authorization = `Bearer ${token}`;
    let response: Response;
    try {
      response = await fetch(url, { headers });
    } catch (e) {
      throw new PruneLabError(`request failed (${(e as Error).message})`, { file: url });
    }
    if (response.status === 404) return null;
    if (!response.ok) throw new PruneLabError(explainHubStatus(response.status, repo, !!token) ?? `HTTP ${response.status} ${response.statusText}`, { file: url });
    if (bytes === undefined || !response.body) return new Uint8Array(await response.arrayBuffer());
    // A server that ignores Range sends the whole file: read only what is needed.
    const reader = response.body.getReader();
    const out = new Uint8Array(bytes);
    let at = 0;
    while (at < bytes) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(value.byteLength, bytes - at);
      out.set(value.subarray(0, take), at);
      at += take;
    }
    await reader.cancel().catch(() => {});
    return out.subarray(0, at);
  };
}

function json(bytes: Uint8Array, file: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new PruneLabError(`is not valid JSON (${(e as Error).message})`, { file });
  }
}

/** The dtypes stored in the checkpoint's safetensors files, from their headers alone. */
async function storedDtypes(read: Reader): Promise<string[]> {
  const index = await read('model.safetensors.index.json');
  let files = ['model.safetensors'];
  if (index !== null) {
    const map = (json(index, 'model.safetensors.index.json') as { weight_map?: unknown }).weight_map;
    if (typeof map !== 'object' || map === null) throw new PruneLabError('has no weight_map object', { file: 'model.safetensors.index.json', field: 'weight_map' });
    files = [...new Set(Object.values(map as Record<string, string>))].sort();
  }
  const dtypes = new Set<string>();
  for (const file of files) {
    const prefix = await read(file, 8);
    if (prefix === null) throw new PruneLabError('is missing (only safetensors checkpoints are supported)', { file });
    if (prefix.byteLength < 8) throw new PruneLabError('is too short to be safetensors', { file });
    const length = Number(new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true));
    if (length < 2 || length > MAX_HEADER_BYTES) throw new PruneLabError(`header length ${length} is out of bounds (not safetensors?)`, { file });
    const head = await read(file, 8 + length);
    if (head === null || head.byteLength < 8 + length) throw new PruneLabError('header is truncated', { file });
    const header = json(head.subarray(8), file) as Record<string, { dtype?: unknown }>;
    for (const [name, entry] of Object.entries(header)) if (name !== '__metadata__' && typeof entry?.dtype === 'string') dtypes.add(entry.dtype);
  }
  return [...dtypes].sort();
}

export interface ExportOptions {
  /** The hub's origin (tests: a local stand-in). */
  origin?: string;
  /** An access token for gated repositories (default: HF_TOKEN); sent to the hub's origin only. */
  token?: string;
  /** Resolves a hub revision to its commit (default: the hub's revision API, src/engine/hub.ts). */
  resolveCommit?: (repo: string, revision: string, token: string | undefined) => Promise<string | null>;
}

async function run(flags: Flags, out: Out, options: ExportOptions = {}): Promise<void> {
  const format = flags.str('format');
  if (format === undefined) throw new PruneLabError(`export needs --format ${HANDOFF_FORMATS.join('|')}`);
  if (!HANDOFF_FORMATS.includes(format as HandoffFormat)) throw new PruneLabError(`--format must be ${HANDOFF_FORMATS.join(' or ')}, got "${format}"`);
  const removed = flags.indices('remove');
  if (!flags.has('remove')) throw new PruneLabError('export needs --remove 3,5,7 (the blocks to cut)');
  const metricFlag = flags.str('metric');
  if (metricFlag !== undefined && !(metricFlag in METRIC_NAMES)) throw new PruneLabError(`--metric must be bi, angular or relmag, got "${metricFlag}"`);
  const model = modelFlag(flags);
  const token = options.token ?? (process.env.HF_TOKEN || undefined);

  let source: HandoffSource;
  let read: Reader;
  if (looksLikeHubId(model) && !existsSync(model)) {
    const { repo, revision } = parseHubId(model);
    const origin = (options.origin ?? HUB_ORIGIN).replace(/\/+$/, '');
    const resolve = options.resolveCommit ?? ((r: string, rev: string, t?: string) => resolveHubCommit(`${r}@${rev}`, { origin, allowed: [origin], token: t }));
    const commit = (await resolve(repo, revision, token)) ?? undefined;
    // Read the files at the commit the script will name, so the numbers and the script agree.
    read = hubReader(repo, commit ?? revision, origin, token);
    source = { kind: 'hub', repo, revision, ...(commit ? { commit } : {}) };
  } else {
    if (!existsSync(model) || !statSync(model).isDirectory()) throw new PruneLabError('is not a folder or a hub id (owner/name[@revision])', { field: 'model', file: model });
    read = folderReader(model);
    source = { kind: 'path', path: resolve(model), label: model };
  }
  const configBytes = await read('config.json');
  if (configBytes === null) throw new PruneLabError(`no config.json in ${model}`, { file: 'config.json' });
  const config = json(configBytes, 'config.json') as Record<string, unknown>;
  const family = familyForConfig(config);
  const spec = family.parseConfig(config);
  const text = handoffText(
    {
      source,
      layers: spec.layers,
      removed,
      configChanges: prunedConfigChanges(config, family, spec, keptBlocks(spec.layers, removed)),
      dtypes: await storedDtypes(read),
      version: await prunelabVersion(),
      chosenBy: { metric: metricFlag === undefined ? null : METRIC_NAMES[metricFlag], calibration: flags.str('calibration'), link: flags.str('link') },
    },
    format as HandoffFormat,
  );
  if (out.json) out.print(JSON.stringify({ format, fileName: handoffFileName(source, format as HandoffFormat), removed: [...new Set(removed)].sort((a, b) => a - b), text }));
  else out.print(text.replace(/\n$/, ''));
}

async function prunelabVersion(): Promise<string> {
  const pkg = json(await readFile(new URL('../../package.json', import.meta.url)), 'package.json') as { version?: string };
  return pkg.version ?? 'unknown';
}

/** `export` with options (tests pass a stand-in hub); `exportCommand` is the registered one. */
export function exportCommandWith(options: ExportOptions): Command {
  return {
    name: 'export',
    summary: 'Prints a transformers script (load, cut, --eval perplexity, --out checkpoint) or a mergekit passthrough config for a cut.',
    synopsis: '--model <dir|hub-id> --remove 3,5,7 --format transformers|mergekit [--metric bi|angular|relmag] [--calibration "..."] [--link URL]',
    flags: [
      ...COMMON_FLAGS,
      { name: 'remove', value: '3,5,7', help: 'blocks to cut (original 0-based indices)' },
      { name: 'format', value: 'transformers|mergekit', help: 'a Python script for transformers, or a mergekit passthrough YAML' },
      { name: 'metric', value: 'bi|angular|relmag', help: 'the metric that chose the blocks, for the header' },
      { name: 'calibration', value: '"..."', help: 'the calibration that was scored, for the header' },
      { name: 'link', value: 'URL', help: 'the experiment (PruneLab share link), for the header' },
    ],
    run: (flags, out) => run(flags, out, options),
  };
}

export const exportCommand: Command = exportCommandWith({});
