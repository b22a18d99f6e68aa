import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockScores } from '../../src/analysis/influence.ts';
import { cachedSource } from '../../src/engine/hub.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource, type ReadStats, urlSource } from '../../src/engine/sources.ts';
import { allFixtures, HF_FIXTURES_DIR, readGolden } from './fixtures.ts';
import { type ServedFolders, serveFolders } from './http-server.ts';
import { MemoryCacheStorage } from './memory-cache.ts';

// Block-streamed runs use the same kernels in another order (block-major): the numbers must be the
// resident ones, and the removal goldens must hold without ever reading a removed block.
describe.each(allFixtures())('block-streamed CPU run of $label', ({ name, dir }) => {
  it('gives the resident statistics and NLL, with and without removal', async () => {
    const golden = readGolden(name, dir);
    const resident = await Model.load(directorySource(join(dir, name)), 'cpu-reference', { mode: 'resident' });
    const streamed = await Model.load(directorySource(join(dir, name)), 'cpu-reference', { mode: 'streamed' });
    expect(streamed.mode).toBe('streamed');
    expect(streamed.checkpoint.weights.blocks).toEqual([]);
    for (const removal of [{}, { blocks: golden.removal.removed }, { attention: golden.attnOnlyRemoval.removedAttention }]) {
      const plan = makePlan(resident.spec.layers, removal);
      const a = blockScores(await resident.score(golden.ids, plan));
      const b = blockScores(await streamed.score(golden.ids, plan));
      expect(b.map((s) => s.index)).toEqual(a.map((s) => s.index));
      b.forEach((s, k) => {
        expect(Math.abs(s.bi - a[k].bi)).toBeLessThanOrEqual(1e-6);
        expect(Math.abs(s.angular - a[k].angular)).toBeLessThanOrEqual(1e-6);
        expect(Math.abs(s.relMagnitude - a[k].relMagnitude)).toBeLessThanOrEqual(1e-6);
      });
      const pa = await resident.perplexity(golden.ids, plan);
      const pb = await streamed.perplexity(golden.ids, plan);
      expect(pb.tokens).toBe(pa.tokens);
      expect(Math.abs(pb.nll - pa.nll) / pa.nll).toBeLessThanOrEqual(1e-6);
    }
    // Decoding needs every block: a streamed CPU model whose blocks fit loads them all, then decodes as the resident one.
    const plan = makePlan(streamed.spec.layers);
    expect(await streamed.generate([1, 2], plan, { maxNewTokens: 3 })).toEqual(await resident.generate([1, 2], plan, { maxNewTokens: 3 }));
    expect(streamed.mode).toBe('resident');
  });
});

describe('what a streamed run reads', () => {
  let server: ServedFolders;
  const name = 'qwen3-v5'; // four shards: blocks span files
  beforeAll(async () => {
    server = await serveFolders({ '/m/': join(HF_FIXTURES_DIR, name) });
  });
  afterAll(() => server.close());

  it('reads the headers, the ends and the kept blocks only — removed blocks are never fetched — and a cached second run fetches nothing', async () => {
    const golden = readGolden(name, HF_FIXTURES_DIR);
    const stats: ReadStats = { bytesRead: 0, requests: 0 };
    const caches = new MemoryCacheStorage();
    const source = () => cachedSource(urlSource(`${server.origin}/m/`, 'm', stats), 'test-model', { caches });
    const model = await Model.load(source(), 'cpu-reference', { mode: 'streamed' });
    const { blockBytes, endsBytes } = model.checkpoint;
    const afterLoad = stats.bytesRead;
    const removed = golden.removal.removed;
    const ppl = await model.perplexity(golden.ids, makePlan(model.spec.layers, { blocks: removed }));
    expect(Math.abs(ppl.nll - golden.removal.nll.mean) / golden.removal.nll.mean).toBeLessThanOrEqual(1e-4);
    const keptBytes = blockBytes.filter((_, i) => !removed.includes(i)).reduce((a, b) => a + b, 0);
    // Tensors of one block are contiguous within a file; a block split across shards costs one range per shard.
    expect(stats.bytesRead - afterLoad).toBe(keptBytes);
    expect(afterLoad).toBeGreaterThanOrEqual(endsBytes);
    expect(afterLoad).toBeLessThan(endsBytes + 64 * 1024); // + headers (8 bytes and the JSON of each shard)

    const before = { ...stats };
    const again = await Model.load(source(), 'cpu-reference', { mode: 'streamed' });
    const ppl2 = await again.perplexity(golden.ids, makePlan(again.spec.layers, { blocks: removed }));
    expect(ppl2.nll).toBe(ppl.nll);
    expect(stats).toEqual(before);
  });
});
