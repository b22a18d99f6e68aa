import { copyFileSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { assertAllowedOrigin, cachedSource, deleteCachedModel, hubModelSource, listCachedModels, listHubFiles, modelCacheName } from '../../src/engine/hub.ts';
import { urlSource } from '../../src/engine/sources.ts';
import { FIXTURES_DIR, readGolden } from './fixtures.ts';
import { type ServedFolders, serveFolders } from './http-server.ts';
import { MemoryCacheStorage } from './memory-cache.ts';

const size = (folder: string, file: string) => statSync(join(FIXTURES_DIR, folder, file)).size;
const SOTU = join(FIXTURES_DIR, '..', '..', 'public', 'models', 'sotu-llama');

describe('hub files over a real HTTP server with the hub URL layout', () => {
  let server: ServedFolders;
  let bigDir: string;
  const BIG = 32 * 1024 * 1024;
  beforeAll(async () => {
    bigDir = mkdtempSync(join(tmpdir(), 'prunelab-big-'));
    copyFileSync(join(FIXTURES_DIR, 'llama-gqa', 'config.json'), join(bigDir, 'config.json'));
    writeFileSync(join(bigDir, 'model.safetensors'), Buffer.alloc(BIG, 7));
    server = await serveFolders(
      {
        '/someorg/tiny-llama/resolve/main/': join(FIXTURES_DIR, 'llama-gqa'),
        '/someorg/tiny-qwen3/resolve/main/': join(FIXTURES_DIR, 'qwen3-qknorm'),
        '/someorg/tiny-qwen3/resolve/v2/': join(FIXTURES_DIR, 'gpt2'),
        '/someorg/big/resolve/main/': bigDir,
        '/someorg/sotu/resolve/main/': SOTU,
        '/someorg/sotu/resolve/head-only/': SOTU,
      },
      {
        hubTrees: {
          '/api/models/someorg/tiny-llama/tree/main': join(FIXTURES_DIR, 'llama-gqa'),
          '/api/models/someorg/tiny-qwen3/tree/main': join(FIXTURES_DIR, 'qwen3-qknorm'),
          '/api/models/someorg/big/tree/main': bigDir,
          '/api/models/someorg/sotu/tree/main': SOTU,
        },
      },
    );
  });
  afterAll(() => server.close());

  it('the tree API gives the files a checkpoint needs and their sizes, before any weights are fetched', async () => {
    const listing = await listHubFiles('someorg/tiny-llama', { origin: server.origin, allowed: [server.origin] });
    expect(listing).toEqual({
      repo: 'someorg/tiny-llama',
      revision: 'main',
      method: 'api',
      // this stand-in has no revision API: no commit (tests/engine/hub-access.test.ts has one)
      commit: null,
      files: [
        { path: 'config.json', size: size('llama-gqa', 'config.json') },
        { path: 'model.safetensors', size: size('llama-gqa', 'model.safetensors') },
      ],
      totalBytes: size('llama-gqa', 'config.json') + size('llama-gqa', 'model.safetensors'),
    });
    expect(server.requests.some((r) => r.endsWith('/model.safetensors'))).toBe(false);
  });

  it('a sharded checkpoint lists its index and every shard with the shards\u2019 real sizes', async () => {
    const listing = await listHubFiles('someorg/tiny-qwen3', { origin: server.origin, allowed: [server.origin] });
    const names = ['config.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    expect(listing.files).toEqual(names.map((path) => ({ path, size: size('qwen3-qknorm', path) })));
    expect(listing.totalBytes).toBe(names.reduce((a, n) => a + size('qwen3-qknorm', n), 0));
  });

  it('without the tree API, HEAD requests on the resolve URLs give the same sizes', async () => {
    const pinned = await listHubFiles('someorg/tiny-qwen3@v2', { origin: server.origin, allowed: [server.origin] });
    expect(pinned.method).toBe('head');
    expect(pinned.files).toEqual(['config.json', 'model.safetensors'].map((path) => ({ path, size: size('gpt2', path) })));
    expect(server.requests).toContain('/api/models/someorg/tiny-qwen3/tree/v2');
  });

  it('tokenizer files are listed with the weights, and the API and HEAD listings agree', async () => {
    const options = { origin: server.origin, allowed: [server.origin] };
    const api = await listHubFiles('someorg/sotu', options);
    const head = await listHubFiles('someorg/sotu@head-only', options);
    const names = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'];
    expect(api.files).toEqual(names.map((path) => ({ path, size: statSync(join(SOTU, path)).size })));
    expect([api.method, head.method]).toEqual(['api', 'head']);
    expect(head.files).toEqual(api.files);
    expect(head.totalBytes).toBe(api.totalBytes);
  });

  it('a repo without config.json is reported by file name', async () => {
    await expect(listHubFiles('someorg/nothing', { origin: server.origin, allowed: [server.origin] })).rejects.toThrow(/no config\.json in someorg\/nothing@main/);
  });

  it('a host that is not huggingface.co, this site or confirmed is refused, naming the host, with no request made', async () => {
    const before = server.requests.length;
    await expect(listHubFiles('someorg/tiny-llama', { origin: server.origin })).rejects.toThrow(/refusing to download from 127\.0\.0\.1:\d+/);
    expect(() => hubModelSource('someorg/tiny-llama', { origin: 'http://evil.example:8080', caches: null })).toThrow(/refusing to download from evil\.example:8080/);
    expect(server.requests.length).toBe(before);
    expect(() => assertAllowedOrigin('https://huggingface.co/org/model/resolve/main/config.json')).not.toThrow();
    expect(() => assertAllowedOrigin('https://huggingface.co.evil.example/x')).toThrow(/huggingface\.co\.evil\.example/);
    expect(() => assertAllowedOrigin('http://huggingface.co/x')).toThrow(/huggingface\.co/);
    expect(() => assertAllowedOrigin('https://mirror.example/x', { allowed: ['https://mirror.example'] })).not.toThrow();
    expect(() => assertAllowedOrigin('not a url')).toThrow(/is not a URL/);
  });

  it('a cached hub model loads a second time with no request, lists its sizes, and can be deleted', async () => {
    const caches = new MemoryCacheStorage();
    const options = { origin: server.origin, allowed: [server.origin], caches };
    const golden = readGolden('qwen3-qknorm');
    const first = await Model.load(hubModelSource('someorg/tiny-qwen3', options), 'cpu');
    const before = server.requests.length;
    const second = await Model.load(hubModelSource('someorg/tiny-qwen3', options), 'cpu');
    expect(server.requests.length).toBe(before);
    const plan = makePlan(golden.layers);
    expect((await second.perplexity(golden.ids, plan)).nll).toBe((await first.perplexity(golden.ids, plan)).nll);

    const cached = await listCachedModels(caches);
    expect(cached).toHaveLength(1);
    expect(cached[0].id).toBe('someorg/tiny-qwen3@main');
    const names = ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json'];
    expect(cached[0].files).toEqual(names.map((path) => ({ path, size: size('qwen3-qknorm', path) })));
    expect(cached[0].totalBytes).toBe(names.reduce((a, n) => a + size('qwen3-qknorm', n), 0));

    expect(await deleteCachedModel('someorg/tiny-qwen3', caches)).toBe(true);
    expect(await listCachedModels(caches)).toEqual([]);
    await Model.load(hubModelSource('someorg/tiny-qwen3', options), 'cpu');
    expect(server.requests.length).toBeGreaterThan(before);
  });

  it('byte progress passes through the cache, on a download and on a cache hit', async () => {
    const caches = new MemoryCacheStorage();
    const source = cachedSource(urlSource(`${server.origin}/someorg/tiny-llama/resolve/main/`), modelCacheName('someorg/tiny-llama'), { caches });
    const total = size('llama-gqa', 'model.safetensors');
    for (let pass = 0; pass < 2; pass++) {
      const seen: [number, number | null][] = [];
      const bytes = await source.read('model.safetensors', (loaded, t) => seen.push([loaded, t]));
      expect(bytes?.byteLength).toBe(total);
      expect(seen.at(-1)).toEqual([total, total]);
    }
  });

  it('an AbortSignal stops a download part way, and nothing partial is cached', async () => {
    const caches = new MemoryCacheStorage();
    const source = hubModelSource('someorg/big', { origin: server.origin, allowed: [server.origin], caches });
    const controller = new AbortController();
    let loadedAtAbort = 0;
    let lastLoaded = 0;
    const read = source.read(
      'model.safetensors',
      (loaded) => {
        lastLoaded = loaded;
        if (loadedAtAbort === 0) {
          loadedAtAbort = loaded;
          controller.abort();
        }
      },
      controller.signal,
    );
    await expect(read).rejects.toMatchObject({ name: 'AbortError' });
    expect(loadedAtAbort).toBeGreaterThan(0);
    expect(lastLoaded).toBeLessThan(BIG);
    expect((await listCachedModels(caches))[0]?.files ?? []).toEqual([]);
    // A signal that is already aborted makes no request at all.
    const before = server.requests.length;
    await expect(source.read('config.json', undefined, AbortSignal.abort())).rejects.toMatchObject({ name: 'AbortError' });
    expect(server.requests.length).toBe(before);
    // And the next read, not cancelled, completes.
    expect((await source.read('model.safetensors'))?.byteLength).toBe(BIG);
    expect((await listHubFiles('someorg/big', { origin: server.origin, allowed: [server.origin] })).totalBytes).toBe(BIG + statSync(join(bigDir, 'config.json')).size);
  });

  it('absent files are remembered too, so a cached model needs no request at all', async () => {
    const caches = new MemoryCacheStorage();
    const source = cachedSource(urlSource(`${server.origin}/someorg/tiny-llama/resolve/main/`), 'x', { caches });
    expect(await source.read('tokenizer.json')).toBeNull();
    const before = server.requests.length;
    expect(await source.read('tokenizer.json')).toBeNull();
    expect(server.requests.length).toBe(before);
  });

  it('without a Cache API (Node), cachedSource is the source itself', () => {
    const inner = urlSource(`${server.origin}/x/`);
    expect(cachedSource(inner, 'x')).toBe(inner);
  });
});
