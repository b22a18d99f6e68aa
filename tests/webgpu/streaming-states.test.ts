/**
 * The state-reading analyses on block-streamed WebGPU models (issue 12): the similarity heatmap and the
 * logit lens read each residual state back as it streams by (BlockStreaming.readState through
 * Model.forEachState), so a streamed model gives resident WebGPU's numbers: cos / angular cells within
 * 1e-6, the same top tokens; under a real budget the measured GPU peak (state readback included) stays
 * within it, also when the sequences go in batches.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { logitLens } from '../../src/analysis/logit-lens.ts';
import { layerSimilarity } from '../../src/analysis/similarity.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { planStreamBatches } from '../../src/engine/memory.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { createWebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import { fixtureNames, HF_FIXTURES_DIR, readGolden } from '../engine/fixtures.ts';
import { expectDiagonalMatchesScore, lensDifference, matrixDifference } from '../engine/state-compare.ts';
import { randomIds, writeRandomCheckpoint } from './random-model.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

const MIB = 2 ** 20;
const LONG_TEST_MS = 300_000;

describeGpu('similarity heatmap and logit lens of block-streamed WebGPU on the transformers-written fixtures equal resident WebGPU', () => {
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
      `${name}: heatmap cells within 1e-6 and the same lens top tokens, with no removal and with the golden's removal`,
      async () => {
        const golden = readGolden(name, HF_FIXTURES_DIR);
        const source = directorySource(join(HF_FIXTURES_DIR, name));
        const full = await loadCheckpoint(source);
        const ends = await loadCheckpoint(source, { blocks: 'on-demand' });
        const resident = new Model(full, await createWebGpuBackend(full.spec, full.weights, { context: ctx }));
        const streamed = new Model(ends, await createWebGpuBackend(ends.spec, ends.weights, { context: ctx }), 'streamed');
        try {
          for (const removal of [{}, { blocks: golden.removal.removed }]) {
            const plan = makePlan(full.spec.layers, removal);
            const b = await layerSimilarity(streamed, golden.ids, plan);
            expect(matrixDifference(await layerSimilarity(resident, golden.ids, plan), b), JSON.stringify(removal)).toBeLessThanOrEqual(1e-6);
            await expectDiagonalMatchesScore(streamed, golden.ids, plan, b);
            const prompt = golden.ids[0];
            expect(lensDifference(await logitLens(resident, prompt, plan, { top: 3 }), await logitLens(streamed, prompt, plan, { top: 3 }))).toBeLessThanOrEqual(1e-6);
          }
          expect(streamed.mode).toBe('streamed');
        } finally {
          resident.dispose();
          streamed.dispose();
        }
      },
      HOOK_TIMEOUT_MS,
    );
  }
});

describeGpu('similarity heatmap and logit lens of a random checkpoint larger than its GPU budget', () => {
  let dir: string;
  let weightBytes = 0;
  const ids = [0, 1, 2, 3].map((s) => randomIds(12 + 4 * s, 2048, 200 + s));
  let resident: Model;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'prunelab-stream-states-'));
    // 3.4 MB of F16 in shards of ≤ 1 MB: embedding and head 512 KB each, six blocks of 393 KB.
    const stored = await writeRandomCheckpoint(
      dir,
      { modelType: 'llama', dtype: 'F16', hidden: 128, heads: 4, kvHeads: 2, intermediate: 384, layers: 6, vocab: 2048, maxPositions: 256, seed: 9 },
      MIB,
    );
    weightBytes = stored.endsBytes + stored.blockBytes.reduce((a, b) => a + b, 0);
    resident = await Model.load(directorySource(dir), 'webgpu', { mode: 'resident' });
  }, HOOK_TIMEOUT_MS);
  afterAll(() => {
    resident?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test(
    'a 2 MiB budget, and one that takes a batch per sequence: the resident heatmap and lens, per-block progress, the measured peak within the budget',
    async () => {
      const ckpt = await loadCheckpoint(directorySource(dir), { blocks: 'on-demand' });
      const lengths = ids.map((s) => s.length);
      // The largest budget (4 KiB steps below 2 MiB) whose state-reading plan puts each sequence in a batch of its own.
      let batched = 2 * MIB;
      while (planStreamBatches(ckpt, lengths, batched, false, true).batches.length < ids.length) batched -= 4 * 1024;
      const plan = makePlan(resident.spec.layers, { blocks: [2] });
      const expected = await layerSimilarity(resident, ids, plan);
      const expectedLens = await logitLens(resident, ids[3], plan, { top: 2 });
      for (const [budget, batches] of [
        [2 * MIB, 1],
        [batched, ids.length],
      ]) {
        expect(weightBytes).toBeGreaterThan(budget);
        const progress: [number, number][] = [];
        const model = await Model.load(directorySource(dir), 'webgpu', { gpuMemoryBytes: budget, onBlock: (done, total) => progress.push([done, total]) });
        try {
          expect(model.mode).toBe('streamed');
          expect(matrixDifference(expected, await layerSimilarity(model, ids, plan))).toBeLessThanOrEqual(1e-6);
          // Five kept blocks, read once per batch.
          expect(progress.map(([done, total]) => `${done}/${total}`)).toEqual(Array.from({ length: 5 * batches }, (_, k) => `${k + 1}/${5 * batches}`));
          expect(lensDifference(expectedLens, await logitLens(model, ids[3], plan, { top: 2 }))).toBeLessThanOrEqual(1e-6);
          expect(model.memoryReport().gpuPeakBytes).toBeLessThanOrEqual(budget);
        } finally {
          model.dispose();
        }
      }
    },
    LONG_TEST_MS,
  );
});
