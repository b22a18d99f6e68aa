/**
 * Every fixture checkpoint in tests/fixtures (HF layout, loaded as the CLI loads it), CPU reference vs
 * WebGPU: block statistics, NLL and last logits over the fixture's sequences, with and without a block
 * removal; the block averages over all sequences and the order they rank the blocks in; and 16 greedy
 * tokens through the KV cache. Limits: compare.ts (measured, the same for every dtype).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { blockScores } from '../../src/analysis/influence.ts';
import type { Backend, BlockStatSums } from '../../src/engine/backend.ts';
import { type Checkpoint, loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { createCpuBackend } from '../../src/engine/cpu/backend.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { createWebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import { BLOCK_AVERAGE, expectSameRanking, LOGITS_ABS, NLL_RELATIVE, STATS_PER_TOKEN } from './compare.ts';
import { maxAbsDiff } from './harness.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const names = existsSync(FIXTURES)
  ? readdirSync(FIXTURES, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(FIXTURES, d.name, 'config.json')))
      .map((d) => d.name)
      .sort()
  : [];
const measured: Record<string, Record<string, number>> = {};
const note = (model: string, what: string, value: number) => {
  const m = (measured[model] ??= {});
  m[what] = Math.max(m[what] ?? 0, Number(value.toExponential(2)));
  return value;
};

describeGpu('fixture checkpoints: WebGPU matches the CPU reference', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await acquireGpu();
  }, HOOK_TIMEOUT_MS);
  afterAll(() => {
    console.log('[tests/webgpu] fixture max errors (stats: per-token mean abs; nll: relative; logits: abs):', JSON.stringify(measured, null, 1));
    ctx?.device.destroy();
  });

  for (const name of names) {
    describe(name, () => {
      let checkpoint: Checkpoint;
      let cpu: Backend;
      let gpu: Backend;
      let sequences: number[][];
      beforeAll(async () => {
        checkpoint = await loadCheckpoint(directorySource(join(FIXTURES, name)));
        sequences = JSON.parse(readFileSync(join(FIXTURES, name, 'ids.json'), 'utf8'));
        cpu = await createCpuBackend(checkpoint.spec, checkpoint.weights);
        gpu = await createWebGpuBackend(checkpoint.spec, checkpoint.weights, { context: ctx });
      }, HOOK_TIMEOUT_MS);
      afterAll(() => gpu?.dispose());

      for (const removal of ['none', 'blocks 1 and 2'] as const) {
        test(`stats within ${STATS_PER_TOKEN.toExponential()} per token, NLL within ${NLL_RELATIVE.toExponential()} relative, logits within ${LOGITS_ABS.toExponential()}; block averages within ${BLOCK_AVERAGE.toExponential()} and ranked alike (removed: ${removal})`, async () => {
          const { layers } = checkpoint.spec;
          const plan = makePlan(layers, removal === 'none' ? {} : { blocks: [1, 2] }, 'stats');
          const totals = { cpu: [] as BlockStatSums[], gpu: [] as BlockStatSums[] };
          const add = (into: BlockStatSums[], stats: BlockStatSums[]) =>
            stats.forEach((s, k) => {
              const t = (into[k] ??= { index: s.index, cosSum: 0, angularSum: 0, relMagnitudeSum: 0, tokens: 0 });
              t.cosSum += s.cosSum;
              t.angularSum += s.angularSum;
              t.relMagnitudeSum += s.relMagnitudeSum;
              t.tokens += s.tokens;
            });
          for (const ids of sequences) {
            const request = { ids, plan, logits: 'last' as const, nll: true };
            const [c, g] = [await cpu.forward(request), await gpu.forward(request)];
            c.stats?.forEach((s, k) => {
              for (const key of ['cosSum', 'angularSum', 'relMagnitudeSum'] as const) {
                expect(note(name, key, Math.abs((g.stats?.[k][key] ?? Number.NaN) - s[key]) / s.tokens), `${key} of block ${s.index}`).toBeLessThanOrEqual(STATS_PER_TOKEN);
              }
            });
            add(totals.cpu, c.stats ?? []);
            add(totals.gpu, g.stats ?? []);
            expect(note(name, 'nll', Math.abs(g.nllSum - c.nllSum) / c.nllSum)).toBeLessThanOrEqual(NLL_RELATIVE);
            expect(note(name, 'logits', maxAbsDiff(g.logits as Float32Array, c.logits as Float32Array))).toBeLessThanOrEqual(LOGITS_ABS);
          }
          const [want, got] = [blockScores(totals.cpu), blockScores(totals.gpu)];
          expect(got.map((s) => s.index)).toEqual(want.map((s) => s.index));
          for (const metric of ['bi', 'angular', 'relMagnitude'] as const) {
            want.forEach((w, k) => {
              expect(Math.abs(got[k][metric] - w[metric]), `${metric} of block ${w.index}`).toBeLessThanOrEqual(BLOCK_AVERAGE);
            });
            expectSameRanking(
              want.map((s) => s[metric]),
              got.map((s) => s[metric]),
              BLOCK_AVERAGE,
              `${name} ${metric}`,
            );
          }
        });
      }

      test('16 greedy tokens through the KV cache equal the CPU backend', async () => {
        const plan = makePlan(checkpoint.spec.layers);
        const prompt = sequences[0].slice(0, 8);
        const want = await new Model(checkpoint, cpu).generate(prompt, plan, { maxNewTokens: 16 });
        const got = await new Model(checkpoint, gpu).generate(prompt, plan, { maxNewTokens: 16 });
        expect(got).toEqual(want);
      });
    });
  }
});
