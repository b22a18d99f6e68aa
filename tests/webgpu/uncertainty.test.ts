/**
 * Error bars on the WebGPU backend: Model.scoreSequences keeps each sequence's block sums there too, they
 * match the CPU reference per sequence, and the bootstrap's intervals from either backend agree.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { blockScores, type Metric } from '../../src/analysis/influence.ts';
import { bootstrapScores } from '../../src/analysis/uncertainty.ts';
import type { BlockStatSums } from '../../src/engine/backend.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { createCpuBackend } from '../../src/engine/cpu/backend.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { createWebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import { STATS_PER_TOKEN } from './compare.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

const ROOT = join(import.meta.dirname, '..', '..');
/** Per-token means, and intervals made of them (compare.ts). */
const TOLERANCE = STATS_PER_TOKEN;
const METRICS: Metric[] = ['bi', 'angular', 'relMagnitude'];

describeGpu('error bars on WebGPU: per-sequence sums and intervals match the CPU reference', () => {
  let ctx: GpuContext;
  let cpu: BlockStatSums[][];
  let gpu: BlockStatSums[][];
  beforeAll(async () => {
    ctx = await acquireGpu();
    const checkpoint = await loadCheckpoint(directorySource(join(ROOT, 'public', 'models', 'sotu-llama')));
    const text = 'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse.';
    const cpuModel = new Model(checkpoint, await createCpuBackend(checkpoint.spec, checkpoint.weights));
    const ids = cpuModel.requireTokenizer().encode(text.repeat(4));
    // Six sequences of different lengths: the bootstrap weights them by their tokens.
    const sequences = [0, 1, 2, 3, 4, 5].map((s) => ids.slice(s * 13, s * 13 + 14 + 3 * s));
    const plan = makePlan(checkpoint.spec.layers);
    cpu = (await cpuModel.scoreSequences(sequences, plan)).perSequence;
    const gpuModel = new Model(checkpoint, await createWebGpuBackend(checkpoint.spec, checkpoint.weights, { context: ctx }));
    gpu = (await gpuModel.scoreSequences(sequences, plan)).perSequence;
    gpuModel.dispose();
  }, HOOK_TIMEOUT_MS * 2);
  afterAll(() => ctx?.device.destroy());

  test(`each sequence's block means within ${TOLERANCE.toExponential()}, and the 95% intervals within ${TOLERANCE.toExponential()}`, () => {
    expect(gpu).toHaveLength(cpu.length);
    cpu.forEach((sequence, s) => {
      const [c, g] = [blockScores(sequence), blockScores(gpu[s])];
      c.forEach((block, i) => {
        expect(g[i].tokens).toBe(block.tokens);
        for (const m of METRICS) expect(Math.abs(g[i][m] - block[m]), `sequence ${s} block ${i} ${m}`).toBeLessThanOrEqual(TOLERANCE);
      });
    });
    const [a, b] = [bootstrapScores(cpu), bootstrapScores(gpu)];
    if (!a.ok || !b.ok) throw new Error('the bootstrap refused six sequences');
    a.blocks.forEach((interval, i) => {
      for (const m of METRICS) {
        expect(Math.abs(b.blocks[i][m][0] - interval[m][0]), `block ${i} ${m} lower`).toBeLessThanOrEqual(TOLERANCE);
        expect(Math.abs(b.blocks[i][m][1] - interval[m][1]), `block ${i} ${m} upper`).toBeLessThanOrEqual(TOLERANCE);
      }
    });
  });
});
