import { mkdtempSync, readFileSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { parseSafetensors, writeSafetensors } from '../../src/engine/safetensors.ts';
import { directorySource, hubSource, urlSource } from '../../src/engine/sources.ts';
import { FIXTURES_DIR, readGolden } from './fixtures.ts';
import { type ServedFolders, serveFolders } from './http-server.ts';

/** A copy of a fixture folder whose model.safetensors the test may rewrite. */
function copyFixture(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `prunelab-${name}-`));
  cpSync(join(FIXTURES_DIR, name), dir, { recursive: true });
  return dir;
}

function rewriteTensors(dir: string, edit: (tensors: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[]) => void): void {
  const path = join(dir, 'model.safetensors');
  const tensors = [...parseSafetensors(new Uint8Array(readFileSync(path)), 'model.safetensors').values()].map((t) => ({
    name: t.name,
    dtype: t.dtype,
    shape: t.shape,
    bytes: t.bytes.slice(),
  }));
  edit(tensors);
  writeFileSync(path, writeSafetensors(tensors));
}

describe('checkpoint loading', () => {
  it('names a tensor the recipe needs that the checkpoint lacks', async () => {
    const dir = copyFixture('llama-gqa');
    rewriteTensors(dir, (ts) =>
      ts.splice(
        ts.findIndex((t) => t.name === 'model.layers.2.mlp.up_proj.weight'),
        1,
      ),
    );
    await expect(loadCheckpoint(directorySource(dir))).rejects.toThrow(/tensor layers\.2\.mlp\.up_proj\.weight: is missing from the checkpoint/);
  });

  it('names a tensor whose shape disagrees with config.json', async () => {
    const dir = copyFixture('llama-gqa');
    rewriteTensors(dir, (ts) => {
      const t = ts.find((x) => x.name === 'model.layers.1.self_attn.k_proj.weight')!;
      t.shape = [t.shape[1], t.shape[0]];
    });
    await expect(loadCheckpoint(directorySource(dir))).rejects.toThrow(
      /file model\.safetensors, tensor layers\.1\.self_attn\.k_proj\.weight: has shape \[48, 24\] but config\.json implies \[24, 48\]/,
    );
  });

  it('reports a missing config.json and missing weights by file name', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'prunelab-empty-'));
    await expect(loadCheckpoint(directorySource(empty))).rejects.toThrow(/no config\.json/);
    writeFileSync(join(empty, 'config.json'), readFileSync(join(FIXTURES_DIR, 'llama-gqa', 'config.json')));
    await expect(loadCheckpoint(directorySource(empty))).rejects.toThrow(/file model\.safetensors: no model\.safetensors/);
  });

  it('ignores known buffers (rotary inv_freq, GPT-2 mask) and reports nothing unused', async () => {
    for (const name of ['llama3-rope', 'gpt2', 'gpt2-prefixed']) {
      const ckpt = await loadCheckpoint(directorySource(join(FIXTURES_DIR, name)));
      expect(ckpt.weights.unused, name).toEqual([]);
    }
  });

  it('loads a sharded checkpoint (index.json + two shards)', async () => {
    const ckpt = await loadCheckpoint(directorySource(join(FIXTURES_DIR, 'qwen3-qknorm')));
    expect(ckpt.files.map((f) => f.name)).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(ckpt.spec.headDim).toBe(16);
  });
});

describe('sources over real HTTP', () => {
  let server: ServedFolders;
  beforeAll(async () => {
    server = await serveFolders({
      '/models/gpt2/': join(FIXTURES_DIR, 'gpt2'),
      '/someorg/tiny-qwen3/resolve/main/': join(FIXTURES_DIR, 'qwen3-qknorm'),
      '/someorg/tiny-qwen3/resolve/v1.0/': join(FIXTURES_DIR, 'llama-gqa'),
    });
  });
  afterAll(() => server.close());

  it('a base URL source loads the same model as the directory, with byte progress', async () => {
    const seen: number[] = [];
    let total: number | null = null;
    const model = await Model.load(urlSource(`${server.origin}/models/gpt2/`), 'cpu', {
      progress: (loaded, of) => {
        seen.push(loaded);
        total = of;
      },
    });
    const golden = readGolden('gpt2');
    const ppl = await model.perplexity(golden.ids, makePlan(model.spec.layers));
    expect(Math.abs(ppl.nll - golden.nll.mean) / golden.nll.mean).toBeLessThan(1e-4);
    // Progress counts tensor bytes (the header is read first, separately): the file minus its header.
    const file = readFileSync(join(FIXTURES_DIR, 'gpt2', 'model.safetensors'));
    expect(seen.at(-1)).toBe(file.byteLength - 8 - Number(file.readBigUInt64LE(0)));
    expect(total).toBe(seen.at(-1));
  });

  it('a hub id resolves to <origin>/<id>/resolve/<rev>/<file>, sharded files included', async () => {
    const model = await Model.load(hubSource('someorg/tiny-qwen3', server.origin), 'cpu');
    expect(model.spec.modelType).toBe('qwen3');
    expect(server.requests).toContain('/someorg/tiny-qwen3/resolve/main/model-00002-of-00002.safetensors');
    const pinned = await Model.load(hubSource('someorg/tiny-qwen3@v1.0', server.origin), 'cpu');
    expect(pinned.spec.modelType).toBe('llama');
  });

  it('a server that answers missing files with an HTML page (SPA fallback) is read as "file absent"', async () => {
    const { createServer } = await import('node:http');
    const dir = join(FIXTURES_DIR, 'llama-gqa');
    const spa = createServer((req, res) => {
      const name = (req.url ?? '').split('/').pop() ?? '';
      if (['config.json', 'model.safetensors'].includes(name)) res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(readFileSync(join(dir, name)));
      else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>app</title>');
    });
    await new Promise<void>((resolve) => spa.listen(0, '127.0.0.1', resolve));
    const port = (spa.address() as { port: number }).port;
    try {
      const ckpt = await loadCheckpoint(urlSource(`http://127.0.0.1:${port}/m/`));
      expect(ckpt.files.map((f) => f.name)).toEqual(['model.safetensors']);
      expect(ckpt.tokenizer).toBeNull();
    } finally {
      spa.close();
    }
  });

  it('a hub id that does not exist fails naming config.json', async () => {
    await expect(Model.load(hubSource('someorg/nothing-here', server.origin), 'cpu')).rejects.toThrow(/no config\.json in someorg\/nothing-here/);
  });
});
