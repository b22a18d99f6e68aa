/**
 * Where model files come from: a Node directory, a base URL (same-origin or any HTTP server), an HF hub
 * id, or a browser File list (dropped folder). Every source reads whole files by name; `null` = absent.
 */
import { PruneLabError } from './errors.ts';

export type Progress = (loadedBytes: number, totalBytes: number | null) => void;

export interface ModelSource {
  /** What a person would call it: a path, a URL, a hub id. */
  readonly label: string;
  read(name: string, progress?: Progress, signal?: AbortSignal): Promise<Uint8Array | null>;
}

/** A folder on disk (Node only; fs is imported lazily so browser bundles never see it). */
export function directorySource(dir: string): ModelSource {
  return {
    label: dir,
    async read(name) {
      const fs = await import('node:fs/promises');
      const path = await import('node:path');
      try {
        const buf = await fs.readFile(path.join(dir, name));
        return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw new PruneLabError(`cannot read (${(e as Error).message})`, { file: path.join(dir, name) });
      }
    },
  };
}

async function readBody(response: Response, url: string, progress?: Progress): Promise<Uint8Array> {
  const total = Number(response.headers.get('content-length')) || null;
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    progress?.(loaded, total);
  }
  if (total !== null && loaded !== total) throw new PruneLabError(`download ended after ${loaded} of ${total} bytes`, { file: url });
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Files under a base URL: `${base}/${name}`. 404 means absent; other failures are errors. */
export function urlSource(baseUrl: string, label = baseUrl): ModelSource {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  return {
    label,
    async read(name, progress, signal) {
      const url = base + name;
      let response: Response;
      try {
        response = await fetch(url, { signal });
      } catch (e) {
        if ((e as Error).name === 'AbortError') throw e;
        throw new PruneLabError(`request failed (${(e as Error).message})`, { file: url });
      }
      if (response.status === 404) return null;
      if (!response.ok) throw new PruneLabError(`HTTP ${response.status} ${response.statusText}`, { file: url });
      // Dev servers and SPAs answer a missing file with their index.html and 200: that file is absent.
      if (!name.endsWith('.html') && (response.headers.get('content-type') ?? '').startsWith('text/html')) {
        await response.body?.cancel();
        return null;
      }
      return readBody(response, url, progress);
    },
  };
}

export const HUB_ORIGIN = 'https://huggingface.co';

/** `owner/name` or `owner/name@revision` -> its resolve URL base on the hub (or a mirror for tests). */
export function parseHubId(id: string): { repo: string; revision: string } {
  const match = /^([A-Za-z0-9][\w.-]*\/[\w.-]+)(?:@([\w./-]+))?$/.exec(id.trim());
  if (!match) throw new PruneLabError(`"${id}" is not a hub id (expected owner/name or owner/name@revision)`, { field: 'model' });
  return { repo: match[1], revision: match[2] ?? 'main' };
}

export function hubSource(id: string, origin = HUB_ORIGIN): ModelSource {
  const { repo, revision } = parseHubId(id);
  return urlSource(`${origin}/${repo}/resolve/${encodeURIComponent(revision)}/`, revision === 'main' ? repo : `${repo}@${revision}`);
}

/** A dropped folder or picked files; names are matched on the file's base name. */
export function fileListSource(files: ArrayLike<File>, label = 'local files'): ModelSource {
  const byName = new Map<string, File>();
  for (const f of Array.from(files)) byName.set(f.name, f);
  return {
    label,
    async read(name, progress) {
      const file = byName.get(name);
      if (!file) return null;
      const bytes = new Uint8Array(await file.arrayBuffer());
      progress?.(bytes.byteLength, bytes.byteLength);
      return bytes;
    },
  };
}

/** Looks like a hub id rather than a path: owner/name with no leading ./ or /. */
export function looksLikeHubId(value: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[\w.-]+(@[\w./-]+)?$/.test(value) && !value.startsWith('.');
}
