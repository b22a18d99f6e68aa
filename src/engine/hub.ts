/**
 * Real hub models: which files a checkpoint needs and how big they are (before anything large is
 * downloaded), which hosts may be fetched from, and a Cache API layer so a reload does not download again.
 *
 * Sizes come from the hub's tree API (`${origin}/api/models/${repo}/tree/${revision}`); where that is not
 * available, from HEAD requests on the resolve URLs. Only huggingface.co, the page's own origin and
 * origins the user explicitly confirmed are fetched from (the hub's own redirects to its CDN are followed
 * by fetch and not checked again).
 */
import { PruneLabError } from './errors.ts';
import { HUB_ORIGIN, hubSource, type ModelSource, parseHubId, rangedReader, type UrlAccess } from './sources.ts';

// ---------------------------------------------------------------- access tokens (gated repositories)

/** The Authorization header for a request to `url`: only when the URL is on the hub's origin, so the token never goes elsewhere. */
export function hubAuthHeaders(url: string, origin: string, token?: string | null): Record<string, string> {
  if (!token) return {};
  try {
    return new URL(url).origin === new URL(origin).origin ? { authorization: `Bearer ${token}` } : {};
  } catch {
    return {};
  }
}

/**
 * What the hub's refusal means for `repo`: 401 without a token = gated or private, 401 with one = the token is
 * wrong or expired, 403 = the token's account has not been granted the gated model. Null for other statuses.
 */
export function explainHubStatus(status: number, repo: string, hasToken: boolean): string | null {
  if (status === 401 && !hasToken) {
    return `${repo} is gated or private: huggingface.co answers only with an access token (give one under "Access token"; the CLI and the transformers script read HF_TOKEN)`;
  }
  if (status === 401) return `huggingface.co refused the access token for ${repo} (401: wrong or expired); check the token under "Access token"`;
  if (status === 403) {
    return hasToken
      ? `the access token does not open ${repo} (403): ${repo} is gated; accept its license on huggingface.co/${repo} with the token's account, or use a token with read access`
      : `${repo} is gated (403): accept its license on huggingface.co/${repo} and give an access token`;
  }
  return null;
}

function refusal(response: Response, repo: string, token: string | null | undefined): PruneLabError | null {
  // The sentence names the repository; the URL would only bury it.
  const why = explainHubStatus(response.status, repo, !!token);
  return why ? new PruneLabError(why) : null;
}

// ---------------------------------------------------------------- allowed hosts

export interface OriginPolicy {
  /** Origins the user explicitly confirmed, e.g. ["https://my-mirror.example"]. */
  allowed?: readonly string[];
}

/** The origins fetched from without asking: the hub and the page's own origin. */
export function defaultOrigins(): string[] {
  const own = (globalThis as { location?: { origin?: string } }).location?.origin;
  return own && own !== 'null' ? [HUB_ORIGIN, own] : [HUB_ORIGIN];
}

/** Throws a PruneLabError naming the host unless the URL's origin is the hub, the page's, or confirmed. */
export function assertAllowedOrigin(url: string, policy: OriginPolicy = {}): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new PruneLabError(`"${url}" is not a URL`, { field: 'model' });
  }
  const allowed = new Set([...defaultOrigins(), ...(policy.allowed ?? [])].map((o) => safeOrigin(o)));
  if (!allowed.has(parsed.origin)) {
    throw new PruneLabError(`refusing to download from ${parsed.host}: PruneLab only fetches models from huggingface.co and this site unless you confirm another host`, {
      field: 'model',
    });
  }
}

function safeOrigin(origin: string): string {
  try {
    return new URL(origin).origin;
  } catch {
    return origin;
  }
}

// ---------------------------------------------------------------- file listing

export interface HubFile {
  path: string;
  size: number;
}

export interface HubListing {
  repo: string;
  revision: string;
  /** The files loadCheckpoint will read, with their sizes in bytes. */
  files: HubFile[];
  totalBytes: number;
  /** 'api': the hub's tree listing; 'head': HEAD requests on each file (API unavailable). */
  method: 'api' | 'head';
  /** The commit the revision points at now (the hub's revision API); null when it could not be asked. */
  commit: string | null;
}

export interface ListOptions extends OriginPolicy {
  origin?: string;
  signal?: AbortSignal;
  /** A Hugging Face access token for gated or private repositories; sent to the hub's origin only. */
  token?: string | null;
}

const COMMIT = /^[0-9a-f]{40}$/;

/**
 * The commit `owner/name@revision` points at now, from the hub's revision API (a 40-hex revision is already
 * one). Null when the API does not answer; a gated repository without access throws the explanation.
 */
export async function resolveHubCommit(id: string, options: ListOptions = {}): Promise<string | null> {
  const origin = (options.origin ?? HUB_ORIGIN).replace(/\/+$/, '');
  assertAllowedOrigin(origin, options);
  const { repo, revision } = parseHubId(id);
  if (COMMIT.test(revision)) return revision;
  const url = `${origin}/api/models/${repo}/revision/${encodeURIComponent(revision)}`;
  let response: Response;
  try {
    response = await fetch(url, { signal: options.signal, headers: { accept: 'application/json', ...hubAuthHeaders(url, origin, options.token) } });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    return null;
  }
  const refused = refusal(response, repo, options.token);
  if (refused) throw refused;
  if (!response.ok) return null;
  const sha = ((await response.json().catch(() => null)) as { sha?: unknown } | null)?.sha;
  return typeof sha === 'string' && COMMIT.test(sha) ? sha : null;
}

const CONFIG_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json'];
const INDEX = 'model.safetensors.index.json';
const SINGLE = 'model.safetensors';

export function hubFileUrl(origin: string, repo: string, revision: string, file: string): string {
  return `${origin}/${repo}/resolve/${encodeURIComponent(revision)}/${file}`;
}

async function request(url: string, init: RequestInit, token?: string | null): Promise<Response> {
  try {
    return await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), ...(token ? { authorization: `Bearer ${token}` } : {}) } });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new PruneLabError(`request failed (${(e as Error).message})`, { file: url });
  }
}

/** Shard names from an index file's weight_map, as loadCheckpoint reads them. */
function shardsOf(index: unknown): string[] {
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null) throw new PruneLabError('has no weight_map object', { file: INDEX, field: 'weight_map' });
  const files = [...new Set(Object.values(map as Record<string, unknown>))];
  if (!files.every((f) => typeof f === 'string' && /^[\w.-]+\.safetensors$/.test(f))) {
    throw new PruneLabError('names a shard that is not a plain *.safetensors file name', { file: INDEX, field: 'weight_map' });
  }
  return (files as string[]).sort();
}

async function fetchIndex(origin: string, repo: string, revision: string, signal?: AbortSignal, token?: string | null): Promise<string[]> {
  const url = hubFileUrl(origin, repo, revision, INDEX);
  const response = await request(url, { signal }, token);
  if (!response.ok) throw refusal(response, repo, token) ?? new PruneLabError(`HTTP ${response.status} ${response.statusText}`, { file: url });
  let index: unknown;
  try {
    index = await response.json();
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new PruneLabError(`is not valid JSON (${(e as Error).message})`, { file: INDEX });
  }
  return shardsOf(index);
}

/** The tree API's file entries (following `Link: <…>; rel="next"` pages); null when it is unavailable. */
async function treeEntries(origin: string, repo: string, revision: string, signal?: AbortSignal, token?: string | null): Promise<Map<string, number> | null> {
  const sizes = new Map<string, number>();
  let url: string | null = `${origin}/api/models/${repo}/tree/${encodeURIComponent(revision)}`;
  for (let page = 0; url !== null && page < 50; page++) {
    let response: Response;
    try {
      response = await fetch(url, { signal, headers: { accept: 'application/json', ...hubAuthHeaders(url, origin, token) } });
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e;
      return null;
    }
    const refused = refusal(response, repo, token);
    if (refused) throw refused;
    if (!response.ok) return null;
    let entries: unknown;
    try {
      entries = await response.json();
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e;
      return null;
    }
    if (!Array.isArray(entries)) return null;
    for (const entry of entries) {
      const e = entry as { type?: unknown; path?: unknown; size?: unknown; lfs?: { size?: unknown } | null };
      if (e?.type !== 'file' || typeof e.path !== 'string') continue;
      const size = typeof e.lfs?.size === 'number' ? e.lfs.size : e.size;
      if (typeof size === 'number' && Number.isFinite(size) && size >= 0) sizes.set(e.path, size);
    }
    const next: RegExpExecArray | null = /<([^>]+)>;\s*rel="next"/.exec(response.headers.get('link') ?? '');
    url = next ? new URL(next[1], url).href : null;
  }
  return sizes;
}

/** Size of one file by HEAD; null when absent (404). */
async function headSize(url: string, signal?: AbortSignal, repo = '', token?: string | null): Promise<number | null> {
  const response = await request(url, { method: 'HEAD', signal }, token);
  if (response.status === 404) return null;
  if (!response.ok) throw refusal(response, repo, token) ?? new PruneLabError(`HTTP ${response.status} ${response.statusText}`, { file: url });
  // The hub's resolve answers for LFS files carry the real size in x-linked-size.
  const size = Number(response.headers.get('x-linked-size') ?? response.headers.get('content-length'));
  if (!Number.isFinite(size) || size < 0) throw new PruneLabError('the server did not say how big the file is', { file: url });
  return size;
}

/**
 * The files a checkpoint at `owner/name[@revision]` needs (config, tokenizer files if present, the
 * single safetensors file or the index and its shards) and their sizes, read before downloading.
 */
export async function listHubFiles(id: string, options: ListOptions = {}): Promise<HubListing> {
  const origin = (options.origin ?? HUB_ORIGIN).replace(/\/+$/, '');
  assertAllowedOrigin(origin, options);
  const { repo, revision: given } = parseHubId(id);
  const { signal, token } = options;
  // The commit first: the files listed (and later read) are that commit's, whatever the branch does meanwhile.
  const commit = await resolveHubCommit(id, options);
  const revision = commit ?? given;
  const tree = await treeEntries(origin, repo, revision, signal, token);
  if (tree !== null) {
    if (!tree.has('config.json')) throw new PruneLabError(`no config.json in ${repo}@${revision}`, { file: 'config.json' });
    // As loadCheckpoint reads them: tokenizer_config.json only alongside tokenizer.json.
    const wanted = CONFIG_FILES.filter((f) => tree.has(f) && (f !== 'tokenizer_config.json' || tree.has('tokenizer.json')));
    if (tree.has(INDEX)) {
      wanted.push(INDEX);
      for (const shard of await fetchIndex(origin, repo, revision, signal, token)) {
        if (!tree.has(shard)) throw new PruneLabError(`is listed in the index but missing from ${repo}@${revision}`, { file: shard });
        wanted.push(shard);
      }
    } else if (tree.has(SINGLE)) wanted.push(SINGLE);
    else throw new PruneLabError(`no model.safetensors in ${repo}@${revision} (only safetensors checkpoints are supported)`, { file: SINGLE });
    const files = wanted.map((path) => ({ path, size: tree.get(path) as number }));
    return { repo, revision: given, files, totalBytes: files.reduce((a, f) => a + f.size, 0), method: 'api', commit };
  }
  const files: HubFile[] = [];
  const head = async (path: string) => {
    const size = await headSize(hubFileUrl(origin, repo, revision, path), signal, repo, token);
    if (size !== null) files.push({ path, size });
    return size;
  };
  if ((await head('config.json')) === null) throw new PruneLabError(`no config.json in ${repo}@${revision}`, { file: 'config.json' });
  if ((await head('tokenizer.json')) !== null) await head('tokenizer_config.json');
  if ((await head(INDEX)) !== null) {
    for (const shard of await fetchIndex(origin, repo, revision, signal, token)) {
      if ((await head(shard)) === null) throw new PruneLabError(`is listed in the index but missing from ${repo}@${revision}`, { file: shard });
    }
  } else if ((await head(SINGLE)) === null) {
    throw new PruneLabError(`no model.safetensors in ${repo}@${revision} (only safetensors checkpoints are supported)`, { file: SINGLE });
  }
  return { repo, revision: given, files, totalBytes: files.reduce((a, f) => a + f.size, 0), method: 'head', commit };
}

// ---------------------------------------------------------------- Cache API

/** The part of the browser's CacheStorage this module uses (tests pass an in-memory one). */
export interface CacheLike {
  match(key: string): Promise<Response | undefined>;
  put(key: string, response: Response): Promise<void>;
  keys(): Promise<readonly { url: string }[]>;
}
export interface CacheStorageLike {
  open(name: string): Promise<CacheLike>;
  keys(): Promise<string[]>;
  delete(name: string): Promise<boolean>;
}

/** The browser's Cache API when there is one (window or worker, secure context), else null. */
export function browserCaches(): CacheStorageLike | null {
  const caches = (globalThis as { caches?: CacheStorageLike }).caches;
  return caches ?? null;
}

const CACHE_PREFIX = 'prunelab-model:';
/** Cache keys must be http(s) URLs; files are keyed by name under this made-up base. */
const KEY_BASE = 'https://prunelab.cache/';
const ABSENT = 'x-prunelab-absent';
/** Cache keys of byte ranges (`<file>?bytes=<begin>-<end>`; the Cache API ignores fragments) and of file sizes (`<file>?size`). */
const RANGE_MARK = '?bytes=';
const SIZE_SUFFIX = '?size';
const SIZE = 'x-prunelab-size';

/** `owner/name` or `owner/name@rev` -> the name of its cache ("prunelab-model:owner/name@rev"). */
export function modelCacheName(id: string): string {
  const { repo, revision } = parseHubId(id);
  return `${CACHE_PREFIX}${repo}@${revision}`;
}

function abortError(): DOMException {
  return new DOMException('cancelled', 'AbortError');
}

export interface CacheOptions {
  /** Default: the browser's Cache API; without one the source is returned unchanged. */
  caches?: CacheStorageLike | null;
  /** Told when storing fails (e.g. quota); the read itself still succeeds. */
  onCacheError?: (error: unknown, file: string) => void;
}

/**
 * A source that answers from the cache `cacheName` when it can and stores what it reads from `source`
 * there (absent files too, so a reload makes no requests). Progress and cancellation pass through; a
 * cancelled or failed read stores nothing.
 */
export function cachedSource(source: ModelSource, cacheName: string, options: CacheOptions = {}): ModelSource {
  const storage = options.caches === undefined ? browserCaches() : options.caches;
  if (!storage) return source;
  let opened: Promise<CacheLike> | null = null;
  const cache = () => {
    opened ??= storage.open(cacheName);
    return opened;
  };
  const stored = async (key: string, bytes: Uint8Array | null, file: string) => {
    try {
      const response =
        bytes === null
          ? new Response(null, { headers: { [ABSENT]: '1', [SIZE]: '0' } })
          : new Response(bytes as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/octet-stream', [SIZE]: String(bytes.byteLength) } });
      await (await cache()).put(key, response);
    } catch (e) {
      options.onCacheError?.(e, file);
    }
  };
  const ranged = rangedReader(source);
  return {
    label: source.label,
    set onNotice(notice: ((message: string) => void) | undefined) {
      source.onNotice = notice;
    },
    get onNotice() {
      return source.onNotice;
    },
    async size(name, signal) {
      if (signal?.aborted) throw abortError();
      const key = `${KEY_BASE + encodeURIComponent(name)}${SIZE_SUFFIX}`;
      const hit = await (await cache()).match(key);
      if (hit) return hit.headers.get(ABSENT) === '1' ? null : Number(await hit.text());
      const size = await ranged.size(name, signal);
      try {
        await (await cache()).put(key, new Response(size === null ? null : String(size), { headers: size === null ? { [ABSENT]: '1' } : {} }));
      } catch (e) {
        options.onCacheError?.(e, name);
      }
      return size;
    },
    // Each range is cached under its own key: a second run reads nothing from the network, and an
    // interrupted load resumes with the ranges it already has. A cached range of the wrong length
    // (a truncated store) is ignored and fetched again.
    async readRange(name, begin, end, signal) {
      if (signal?.aborted) throw abortError();
      const key = `${KEY_BASE + encodeURIComponent(name)}${RANGE_MARK}${begin}-${end}`;
      const hit = await (await cache()).match(key);
      if (hit) {
        const bytes = new Uint8Array(await hit.arrayBuffer());
        if (bytes.byteLength === end - begin) return bytes;
      }
      const bytes = await ranged.readRange(name, begin, end, signal);
      await stored(key, bytes, name);
      return bytes;
    },
    async read(name, progress, signal) {
      if (signal?.aborted) throw abortError();
      const key = KEY_BASE + encodeURIComponent(name);
      const hit = await (await cache()).match(key);
      if (hit) {
        if (hit.headers.get(ABSENT) === '1') return null;
        const bytes = new Uint8Array(await hit.arrayBuffer());
        if (signal?.aborted) throw abortError();
        progress?.(bytes.byteLength, bytes.byteLength);
        return bytes;
      }
      const bytes = await source.read(name, progress, signal);
      await stored(key, bytes, name);
      return bytes;
    },
  };
}

export interface HubSourceOptions extends CacheOptions, OriginPolicy {
  origin?: string;
  /** A Hugging Face access token for gated or private repositories; sent to the hub's origin only. */
  token?: string | null;
}

/**
 * A hub checkpoint as a ModelSource: origin checked, reads cached per `owner/name@revision` (pass the commit
 * as the revision to pin the weights), a gated repository's refusals explained.
 */
export function hubModelSource(id: string, options: HubSourceOptions = {}): ModelSource {
  const origin = (options.origin ?? HUB_ORIGIN).replace(/\/+$/, '');
  assertAllowedOrigin(origin, options);
  return cachedSource(hubSource(id, origin, undefined, hubAccess(id, origin, options.token)), modelCacheName(id), options);
}

/** Reads from the hub with a token (its origin only) and refusals explained: for hubSource / urlSource. */
export function hubAccess(id: string, origin = HUB_ORIGIN, token?: string | null): UrlAccess {
  const { repo } = parseHubId(id);
  return { headers: hubAuthHeaders(`${origin}/`, origin, token), explain: (status: number) => explainHubStatus(status, repo, !!token) };
}

export interface CachedModel {
  /** owner/name@revision */
  id: string;
  files: HubFile[];
  totalBytes: number;
}

/** Models in the cache with the size of each stored file. */
export async function listCachedModels(storage: CacheStorageLike | null = browserCaches()): Promise<CachedModel[]> {
  if (!storage) return [];
  const out: CachedModel[] = [];
  for (const name of await storage.keys()) {
    if (!name.startsWith(CACHE_PREFIX)) continue;
    const cache = await storage.open(name);
    // Whole files and byte ranges of a file add up under the file's name; size records hold no bytes.
    const bytesByFile = new Map<string, number>();
    for (const request of await cache.keys()) {
      const key = request.url.slice(KEY_BASE.length);
      if (key.endsWith(SIZE_SUFFIX)) continue;
      const response = await cache.match(request.url);
      if (!response || response.headers.get(ABSENT) === '1') continue;
      let size = Number(response.headers.get(SIZE));
      if (!Number.isFinite(size) || response.headers.get(SIZE) === null) size = (await response.blob()).size;
      const path = decodeURIComponent(key.split(RANGE_MARK)[0]);
      bytesByFile.set(path, (bytesByFile.get(path) ?? 0) + size);
    }
    const files: HubFile[] = [...bytesByFile].map(([path, size]) => ({ path, size })).sort((a, b) => a.path.localeCompare(b.path));
    out.push({ id: name.slice(CACHE_PREFIX.length), files, totalBytes: files.reduce((a, f) => a + f.size, 0) });
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/** Deletes a model's cached files; false when nothing was cached for it. */
export async function deleteCachedModel(id: string, storage: CacheStorageLike | null = browserCaches()): Promise<boolean> {
  if (!storage) return false;
  return storage.delete(modelCacheName(id));
}
