/**
 * Where model files come from: a Node directory, a base URL (same-origin or any HTTP server), an HF hub
 * id, or a browser File list (dropped folder). Small files are read whole by name (`null` = absent);
 * weights are read by byte range (`readRange`: file offsets in Node, File.slice in the browser, HTTP Range
 * requests for URLs) so no source ever holds a whole weight file.
 */
import { PruneLabError } from './errors.ts';

export type Progress = (loadedBytes: number, totalBytes: number | null) => void;

export interface ModelSource {
  /** What a person would call it: a path, a URL, a hub id. */
  readonly label: string;
  read(name: string, progress?: Progress, signal?: AbortSignal): Promise<Uint8Array | null>;
  /** A file's size in bytes, or null when absent. */
  size?(name: string, signal?: AbortSignal): Promise<number | null>;
  /** Bytes [begin, end) of an existing file. */
  readRange?(name: string, begin: number, end: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** Said once when the source had to fall back to whole files (a server that ignores Range). */
  onNotice?: (message: string) => void;
}

/** Byte counters of a ranged source, for progress and for tests that count what was fetched. */
export interface ReadStats {
  bytesRead: number;
  requests: number;
}

/** Size and ranges of a source, falling back to one whole read per file for sources without them. */
export function rangedReader(source: ModelSource): Required<Pick<ModelSource, 'size' | 'readRange'>> {
  if (source.size && source.readRange) return { size: source.size.bind(source), readRange: source.readRange.bind(source) };
  const whole = new Map<string, Promise<Uint8Array | null>>();
  const file = (name: string, signal?: AbortSignal) => {
    let f = whole.get(name);
    if (!f) whole.set(name, (f = source.read(name, undefined, signal)));
    return f;
  };
  return {
    size: async (name, signal) => (await file(name, signal))?.byteLength ?? null,
    async readRange(name, begin, end, signal) {
      const bytes = await file(name, signal);
      if (!bytes) throw new PruneLabError('is missing', { file: name });
      return bytes.subarray(begin, end);
    },
  };
}

/** A folder on disk (Node only; fs is imported lazily so browser bundles never see it). */
export function directorySource(dir: string, stats?: ReadStats): ModelSource {
  const where = async (name: string) => (await import('node:path')).join(dir, name);
  return {
    label: dir,
    async size(name) {
      const fs = await import('node:fs/promises');
      try {
        return (await fs.stat(await where(name))).size;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw new PruneLabError(`cannot read (${(e as Error).message})`, { file: await where(name) });
      }
    },
    async readRange(name, begin, end) {
      const fs = await import('node:fs/promises');
      const path = await where(name);
      const handle = await fs.open(path, 'r').catch((e: Error) => {
        throw new PruneLabError(`cannot read (${e.message})`, { file: path });
      });
      try {
        const out = new Uint8Array(end - begin);
        let at = 0;
        while (at < out.byteLength) {
          const { bytesRead } = await handle.read(out, at, out.byteLength - at, begin + at);
          if (bytesRead === 0) throw new PruneLabError(`ended after ${begin + at} bytes; expected at least ${end}`, { file: path });
          at += bytesRead;
        }
        if (stats) {
          stats.bytesRead += out.byteLength;
          stats.requests++;
        }
        return out;
      } finally {
        await handle.close();
      }
    },
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

/** Credentials for a server (the hub's access token) and how to explain its refusals (401 / 403). */
export interface UrlAccess {
  headers?: Record<string, string>;
  /** A sentence for a failed status (e.g. "gated: give an access token"); null: the plain HTTP status. */
  explain?: (status: number) => string | null;
}

/** Files under a base URL: `${base}/${name}`. 404 means absent; other failures are errors. */
export function urlSource(baseUrl: string, label = baseUrl, stats?: ReadStats, access: UrlAccess = {}): ModelSource {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const failed = (response: Response, url: string) => {
    const explained = access.explain?.(response.status);
    return explained ? new PruneLabError(explained) : new PruneLabError(`HTTP ${response.status} ${response.statusText}`, { file: url });
  };
  const get = async (url: string, init: RequestInit) => {
    try {
      return await fetch(url, { ...init, headers: { ...access.headers, ...(init.headers as Record<string, string> | undefined) } });
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e;
      throw new PruneLabError(`request failed (${(e as Error).message})`, { file: url });
    }
  };
  // Files of a server that answered a Range request with the whole body: kept so each is fetched once.
  const wholeFiles = new Map<string, Promise<Uint8Array>>();
  const wholeFile = (name: string, url: string, response: Response): Promise<Uint8Array> => {
    source.onNotice?.(`${new URL(url).host} does not answer HTTP Range requests: reading whole weight files (more memory, no block streaming from this server)`);
    const body = readBody(response, url).then((bytes) => {
      if (stats) {
        stats.bytesRead += bytes.byteLength;
        stats.requests++;
      }
      return bytes;
    });
    wholeFiles.set(name, body);
    return body;
  };
  const source: ModelSource = {
    label,
    async size(name, signal) {
      // A one-byte range answers with Content-Range: bytes 0-0/<size>, where HEAD may be refused.
      const url = base + name;
      if (wholeFiles.has(name)) return (await wholeFiles.get(name))?.byteLength ?? null;
      const response = await get(url, { headers: { Range: 'bytes=0-0' }, signal });
      if (response.status === 404) return null;
      if (!response.ok) throw failed(response, url);
      if (response.status === 206) {
        await response.body?.cancel();
        const total = /\/(\d+)$/.exec(response.headers.get('content-range') ?? '')?.[1];
        if (total === undefined) throw new PruneLabError('answered a Range request without a Content-Range total', { file: url });
        return Number(total);
      }
      if ((response.headers.get('content-type') ?? '').startsWith('text/html')) {
        await response.body?.cancel();
        return null; // an SPA's index.html for a missing file
      }
      return (await wholeFile(name, url, response)).byteLength;
    },
    async readRange(name, begin, end, signal) {
      const url = base + name;
      const whole = wholeFiles.get(name);
      if (whole) return (await whole).subarray(begin, end);
      const response = await get(url, { headers: { Range: `bytes=${begin}-${end - 1}` }, signal });
      if (response.status === 206) {
        const bytes = await readBody(response, url);
        if (bytes.byteLength !== end - begin) throw new PruneLabError(`asked for bytes ${begin}-${end - 1}, got ${bytes.byteLength} bytes`, { file: url });
        if (stats) {
          stats.bytesRead += bytes.byteLength;
          stats.requests++;
        }
        return bytes;
      }
      if (!response.ok) throw failed(response, url);
      // 200: the server ignores Range. Read the file once and slice it from memory, and say so.
      const body = wholeFile(name, url, response);
      return (await body).subarray(begin, end);
    },
    async read(name, progress, signal) {
      const url = base + name;
      const response = await get(url, { signal });
      if (response.status === 404) return null;
      if (!response.ok) throw failed(response, url);
      // Dev servers and SPAs answer a missing file with their index.html and 200: that file is absent.
      if (!name.endsWith('.html') && (response.headers.get('content-type') ?? '').startsWith('text/html')) {
        await response.body?.cancel();
        return null;
      }
      return readBody(response, url, progress);
    },
  };
  return source;
}

export const HUB_ORIGIN = 'https://huggingface.co';

/** `owner/name` or `owner/name@revision` -> its resolve URL base on the hub (or a mirror for tests). */
export function parseHubId(id: string): { repo: string; revision: string } {
  const match = /^([A-Za-z0-9][\w.-]*\/[\w.-]+)(?:@([\w./-]+))?$/.exec(id.trim());
  if (!match) throw new PruneLabError(`"${id}" is not a hub id (expected owner/name or owner/name@revision)`, { field: 'model' });
  return { repo: match[1], revision: match[2] ?? 'main' };
}

export function hubSource(id: string, origin = HUB_ORIGIN, stats?: ReadStats, access?: UrlAccess): ModelSource {
  const { repo, revision } = parseHubId(id);
  return urlSource(`${origin}/${repo}/resolve/${encodeURIComponent(revision)}/`, revision === 'main' ? repo : `${repo}@${revision}`, stats, access);
}

/** A dropped folder or picked files; names are matched on the file's base name. */
export function fileListSource(files: ArrayLike<File>, label = 'local files'): ModelSource {
  const byName = new Map<string, File>();
  for (const f of Array.from(files)) byName.set(f.name, f);
  return {
    label,
    async size(name) {
      return byName.get(name)?.size ?? null;
    },
    async readRange(name, begin, end) {
      const file = byName.get(name);
      if (!file) throw new PruneLabError('is missing', { file: name });
      return new Uint8Array(await file.slice(begin, end).arrayBuffer());
    },
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
