/**
 * Block-streamed WebGPU (issue 12): a backend created with the ends only, blocks uploaded, run over the
 * residual streams and released one at a time. The same kernels in another order, so every statistic and
 * NLL must be the resident one (1e-6); the engine's own GPU meter must stay within the budget and agree
 * with an independent count of every buffer created on the device (bench/gpu-meter.ts patches the device);
 * removed blocks are never read; a budget too small for all streams runs them in batches, each reading the
 * kept blocks again.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { meterGpu } from '../../bench/gpu-meter.ts';
import { blockScores } from '../../src/analysis/influence.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { planStreamBatches } from '../../src/engine/memory.ts';
import { Model, type ModelLoadOptions } from '../../src/engine/model.ts';
import { makePlan, type Removal } from '../../src/engine/plan.ts';
import { directorySource, type ReadStats } from '../../src/engine/sources.ts';
import { createWebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { prunedCheckpointFiles } from '../../src/export/pruned-checkpoint.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import { fixtureNames, HF_FIXTURES_DIR, readGolden } from '../engine/fixtures.ts';
import { randomIds, writeRandomCheckpoint } from './random-model.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

const MIB = 2 ** 20;
/** Several passes of two models on SwiftShader, on a machine shared with other jobs. */
const LONG_TEST_MS = 300_000;

/** |Δ| of BI / angular / relMagnitude per block, and the relative |Δ| of the NLL, streamed vs resident. */
async function compare(resident: Model, streamed: Model, ids: number[][], removal: Removal) {
  const plan = makePlan(resident.spec.layers, removal);
  const a = blockScores(await resident.score(ids, plan));
  const b = blockScores(await streamed.score(ids, plan));
  expect(b.map((s) => s.index)).toEqual(a.map((s) => s.index));
  let stats = 0;
  b.forEach((s, k) => {
    expect(s.tokens).toBe(a[k].tokens);
    for (const metric of ['bi', 'angular', 'relMagnitude'] as const) stats = Math.max(stats, Math.abs(s[metric] - a[k][metric]));
  });
  const pa = await resident.perplexity(ids, plan);
  const pb = await streamed.perplexity(ids, plan);
  expect(pb.tokens).toBe(pa.tokens);
  return { stats, nll: Math.abs(pb.nll - pa.nll) / pa.nll };
}

describeGpu('block-streamed WebGPU on the transformers-written fixtures equals resident WebGPU', () => {
  const names = existsSync(HF_FIXTURES_DIR) ? fixtureNames(HF_FIXTURES_DIR).filter((n) => existsSync(join(HF_FIXTURES_DIR, n, 'golden.json'))) : [];
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await acquireGpu();
  }, HOOK_TIMEOUT_MS);
  afterAll(() => ctx?.device.destroy());

  test('tests/fixtures-hf holds the transformers-written checkpoints', () => {
    expect(names.length).toBeGreaterThanOrEqual(13);
  });

  for (const name of names) {
    test(
      `${name}: statistics and NLL within 1e-6 of resident, with no removal and with the golden's removal`,
      async () => {
        const golden = readGolden(name, HF_FIXTURES_DIR);
        const source = directorySource(join(HF_FIXTURES_DIR, name));
        const full = await loadCheckpoint(source);
        const ends = await loadCheckpoint(source, { blocks: 'on-demand' });
        expect(ends.weights.blocks).toEqual([]);
        const resident = new Model(full, await createWebGpuBackend(full.spec, full.weights, { context: ctx }));
        const backend = await createWebGpuBackend(ends.spec, ends.weights, { context: ctx });
        const streamed = new Model(ends, backend, 'streamed');
        try {
          expect(backend.info.description).toContain('blocks streamed');
          for (const removal of [{}, { blocks: golden.removal.removed }]) {
            const d = await compare(resident, streamed, golden.ids, removal);
            expect(d.stats, JSON.stringify(removal)).toBeLessThanOrEqual(1e-6);
            expect(d.nll, JSON.stringify(removal)).toBeLessThanOrEqual(1e-6);
          }
          // Nothing streamed stays behind: blocks released, streams disposed; the head of the last pass until the next pass begins.
          const meter = backend.memory as NonNullable<typeof backend.memory>;
          const afterPasses = meter.liveBytes;
          await streamed.score(golden.ids.slice(0, 1), makePlan(ends.spec.layers));
          expect(meter.liveBytes).toBeLessThanOrEqual(afterPasses);
        } finally {
          resident.dispose();
          streamed.dispose();
        }
      },
      HOOK_TIMEOUT_MS,
    );
  }
});

describeGpu('a sharded random checkpoint larger than its GPU budget', () => {
  let dir: string;
  let stored: { blockBytes: number[]; endsBytes: number };
  const ids = [0, 1, 2, 3].map((s) => randomIds(12 + 4 * s, 2048, 100 + s));
  let resident: Model;
  const weightBytes = () => stored.endsBytes + stored.blockBytes.reduce((a, b) => a + b, 0);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'prunelab-stream-'));
    // 3.4 MB of F16 in 4 shards of ≤ 1 MB (blocks span shards): embedding and head 512 KB each, six blocks of 393 KB.
    stored = await writeRandomCheckpoint(
      dir,
      { modelType: 'llama', dtype: 'F16', hidden: 128, heads: 4, kvHeads: 2, intermediate: 384, layers: 6, vocab: 2048, maxPositions: 256, seed: 5 },
      MIB,
    );
    resident = await Model.load(directorySource(dir), 'webgpu', { mode: 'resident' });
  }, HOOK_TIMEOUT_MS);
  afterAll(() => {
    resident?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Loads the checkpoint under `budget` with a metered navigator.gpu: the device's own count of live buffer bytes. */
  async function loadMetered(budget: number, options: ModelLoadOptions = {}) {
    const nav = globalThis.navigator as { gpu: GPU };
    const original = nav.gpu;
    const { gpu, meter } = meterGpu(original);
    Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true, writable: true });
    const stats: ReadStats = { bytesRead: 0, requests: 0 };
    try {
      const model = await Model.load(directorySource(dir, stats), 'webgpu', { gpuMemoryBytes: budget, ...options });
      return { model, meter, stats };
    } finally {
      Object.defineProperty(nav, 'gpu', { value: original, configurable: true, writable: true });
    }
  }

  test(
    'a 2 MiB budget: streamed, the resident numbers, the measured peak within the budget and equal to the device-level count',
    async () => {
      const budget = 2 * MIB;
      expect(weightBytes()).toBeGreaterThan(budget);
      const progress: { done: number; total: number; bytesRead: number }[] = [];
      const { model, meter, stats } = await loadMetered(budget, { onBlock: (done, total, p) => progress.push({ done, total, bytesRead: p.bytesRead }) });
      try {
        expect(model.mode).toBe('streamed');
        expect(model.checkpoint.blockBytes).toEqual(stored.blockBytes);
        for (const removal of [{}, { blocks: [1, 4] }, { mlp: [2] }]) {
          const d = await compare(resident, model, ids, removal);
          expect(d.stats).toBeLessThanOrEqual(1e-6);
          expect(d.nll).toBeLessThanOrEqual(1e-6);
        }
        const engine = model.memoryReport();
        expect(engine.mode).toBe('streamed');
        expect(engine.weightBytes).toBe(weightBytes());
        expect(engine.gpuPeakBytes).toBeGreaterThan(2 * Math.max(...stored.blockBytes));
        expect(engine.gpuPeakBytes).toBeLessThanOrEqual(budget);
        // Every buffer on the device went through the engine's meter: the same peak, counted from outside.
        expect(engine.gpuPeakBytes).toBe(meter.peakBytes);
        // Progress per block: 4 of 4 kept blocks after removal {1, 4}; bytes read add up to the kept blocks.
        const removedPass = progress.filter((p) => p.total === 4);
        expect(removedPass.map((p) => p.done)).toEqual([1, 2, 3, 4, 1, 2, 3, 4]);
        expect(removedPass[3].bytesRead).toBe([0, 2, 3, 5].reduce((a, i) => a + stored.blockBytes[i], 0));
        // Each pass read the ends once at load, then only the blocks it ran.
        expect(stats.bytesRead).toBeGreaterThan(0);
      } finally {
        model.dispose();
      }
    },
    LONG_TEST_MS,
  );

  test(
    'a budget that holds one residual stream at a time: batches of one sequence, each re-reading the kept blocks; same numbers, peak within the budget',
    async () => {
      const ckpt = await loadCheckpoint(directorySource(dir), { blocks: 'on-demand' });
      const lengths = ids.map((s) => s.length);
      // The largest budget (in 4 KiB steps below 2 MiB) whose plan puts each sequence in a batch of its own, with the head.
      let budget = 2 * MIB;
      while (planStreamBatches(ckpt, lengths, budget, true).batches.length < ids.length) budget -= 4 * 1024;
      expect(planStreamBatches(ckpt, lengths, budget, false).batches.length).toBeGreaterThan(1);
      expect(() => planStreamBatches(ckpt, lengths, 2 * Math.max(...stored.blockBytes), false)).toThrow(/a block-streamed pass needs at least .* but the budget is/);
      const { model, meter, stats } = await loadMetered(budget);
      try {
        const removal = { blocks: [3] };
        const afterLoad = stats.bytesRead;
        const d = await compare(resident, model, ids, removal);
        expect(d.stats).toBeLessThanOrEqual(1e-6);
        expect(d.nll).toBeLessThanOrEqual(1e-6);
        const kept = stored.blockBytes.reduce((a, b, i) => a + (i === 3 ? 0 : b), 0);
        const scoreBatches = planStreamBatches(ckpt, lengths, budget, false).batches.length;
        // Score and perplexity passes: every kept block once per batch, and never block 3.
        expect(stats.bytesRead - afterLoad).toBe((scoreBatches + ids.length) * kept);
        expect(model.memoryReport().gpuPeakBytes).toBeLessThanOrEqual(budget);
        expect(model.memoryReport().gpuPeakBytes).toBe(meter.peakBytes);
      } finally {
        model.dispose();
      }
    },
    LONG_TEST_MS,
  );

  test(
    'resident: each block is uploaded as it is read and not kept on the host; the same numbers and tokens as a backend created with every block; an export reads the blocks again',
    async () => {
      const full = await loadCheckpoint(directorySource(dir));
      const whole = new Model(full, await createWebGpuBackend(full.spec, full.weights));
      try {
        expect(resident.mode).toBe('resident');
        expect(resident.checkpoint.resident).toBe(false);
        expect(resident.checkpoint.weights.blocks).toEqual([]);
        // The same buffers: every block counted once it is handed over, the same formats said.
        expect(resident.backend.info.weightBytes).toBe(whole.backend.info.weightBytes);
        expect(resident.backend.info.description).toBe(whole.backend.info.description);
        expect(resident.backend.info.description).toContain('f16 weights');
        // The same kernels over the same buffers: equal numbers, not merely close.
        for (const removal of [{}, { blocks: [1, 4] }]) {
          const plan = makePlan(full.spec.layers, removal);
          expect(await resident.score(ids, plan)).toEqual(await whole.score(ids, plan));
          expect(await resident.perplexity(ids, plan)).toEqual(await whole.perplexity(ids, plan));
          const greedy = { maxNewTokens: 8, temperature: 0 };
          expect(await resident.generate(ids[0], plan, greedy)).toEqual(await whole.generate(ids[0], plan, greedy));
        }
        // An export needs the stored bytes: refused until they are read again, then the files of the whole checkpoint.
        expect(() => prunedCheckpointFiles(resident.checkpoint, [2])).toThrow(/field export/);
        await resident.checkpoint.makeResident();
        const exported = prunedCheckpointFiles(resident.checkpoint, [2]).files;
        expect(exported).toEqual(prunedCheckpointFiles(full, [2]).files);
      } finally {
        whole.dispose();
      }
    },
    LONG_TEST_MS,
  );

  test('a budget below two blocks is refused, naming the flag', async () => {
    const { model } = await loadMetered(512 * 1024);
    try {
      await expect(model.score(ids, makePlan(model.spec.layers))).rejects.toThrow(/gpu-memory.*a block-streamed pass needs at least/);
    } finally {
      model.dispose();
    }
  });
});

describe('planStreamBatches without a budget', () => {
  test('one batch of every sequence', async () => {
    const ckpt = await loadCheckpoint(directorySource(join(HF_FIXTURES_DIR, fixtureNames(HF_FIXTURES_DIR)[0])), { blocks: 'on-demand' });
    expect(planStreamBatches(ckpt, [5, 6, 7], null, true).batches).toEqual([[0, 1, 2]]);
  });
});
