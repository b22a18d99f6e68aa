import type { CacheLike, CacheStorageLike } from '../../src/engine/hub.ts';

/** The Cache API is not in Node: a minimal in-memory CacheStorage with the same behaviour for our calls. */
export class MemoryCacheStorage implements CacheStorageLike {
  readonly caches = new Map<string, Map<string, { body: Uint8Array; headers: [string, string][] }>>();
  async open(name: string): Promise<CacheLike> {
    let entries = this.caches.get(name);
    if (!entries) {
      entries = new Map();
      this.caches.set(name, entries);
    }
    const store = entries;
    return {
      async match(key) {
        const hit = store.get(key);
        return hit ? new Response(hit.body.slice(), { headers: hit.headers }) : undefined;
      },
      async put(key, response) {
        store.set(key, { body: new Uint8Array(await response.arrayBuffer()), headers: [...response.headers] });
      },
      async keys() {
        return [...store.keys()].map((url) => ({ url }));
      },
    };
  }
  async keys(): Promise<string[]> {
    return [...this.caches.keys()];
  }
  async delete(name: string): Promise<boolean> {
    return this.caches.delete(name);
  }
}
