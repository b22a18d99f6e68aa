/**
 * The WebGPU backend against transformers itself: every checkpoint in tests/fixtures-hf (written by
 * transformers, tools/hf-fixtures, loaded as the CLI loads it: resident, each block uploaded as it is read
 * and not kept on the host, Model.open) scored with the golden's sequences.
 * BI / angular / relMagnitude within 1e-4 absolute, NLL within 1e-4 relative and last logits within 1e-4
 * of the largest logit, of transformers' own float64 forward — with no removal, the golden's block
 * removal, and its attention-only and MLP-only removals; plus KV-cached decoding under the removal.
 * The CPU backend is held to the same goldens in tests/engine/cpu-goldens.test.ts.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { blockScores } from '../../src/analysis/influence.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan, type Removal } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import { type Golden, type GoldenBlock, type GoldenNll, fixtureNames, HF_FIXTURES_DIR, maxRelativeError, readGolden } from '../engine/fixtures.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

const names = existsSync(HF_FIXTURES_DIR) ? fixtureNames(HF_FIXTURES_DIR).filter((n) => existsSync(join(HF_FIXTURES_DIR, n, 'golden.json'))) : [];
const measured: Record<string, Record<string, number>> = {};
const note = (model: string, what: string, value: number) => {
  const m = (measured[model] ??= {});
  m[what] = Math.max(m[what] ?? 0, Number(value.toExponential(2)));
  return value;
};

describeGpu('transformers-written checkpoints: WebGPU matches transformers’ own forward', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await acquireGpu();
  }, HOOK_TIMEOUT_MS);
  afterAll(() => {
    console.log('[tests/webgpu] fixtures-hf max errors vs transformers (stats: abs; nll: relative; logits: relative to the largest):', JSON.stringify(measured, null, 1));
    ctx?.device.destroy();
  });

  test('tests/fixtures-hf holds transformers-written checkpoints with goldens', () => {
    expect(names.length).toBeGreaterThanOrEqual(13);
  });

  for (const name of names) {
    describe(name, () => {
      const golden: Golden = readGolden(name, HF_FIXTURES_DIR);
      let model: Model;
      beforeAll(async () => {
        const checkpoint = await loadCheckpoint(directorySource(join(HF_FIXTURES_DIR, name)), { blocks: 'on-demand' });
        model = await Model.open(checkpoint, 'webgpu', { mode: 'resident', reason: 'every block fits', residentFits: true }, { webgpu: { context: ctx } });
        // The blocks went to the GPU one at a time: the host holds none of them.
        expect(checkpoint.weights.blocks).toEqual([]);
        expect(model.mode).toBe('resident');
      }, HOOK_TIMEOUT_MS);
      afterAll(() => model?.backend.dispose());

      async function check(removal: Removal, blocks: GoldenBlock[], nll: GoldenNll, lastLogits: number[][]) {
        const plan = makePlan(model.spec.layers, removal);
        const scores = blockScores(await model.score(golden.ids, plan));
        expect(scores.map((s) => s.index)).toEqual(blocks.map((b) => b.index));
        scores.forEach((s, k) => {
          expect(s.tokens).toBe(blocks[k].tokens);
          for (const metric of ['bi', 'angular', 'relMagnitude'] as const) {
            expect(note(name, metric, Math.abs(s[metric] - blocks[k][metric])), `${metric} of block ${s.index}`).toBeLessThanOrEqual(1e-4);
          }
        });
        const ppl = await model.perplexity(golden.ids, plan);
        expect(ppl.tokens).toBe(nll.count);
        expect(note(name, 'nll', Math.abs(ppl.nll - nll.mean) / nll.mean)).toBeLessThanOrEqual(1e-4);
        for (let s = 0; s < golden.ids.length; s++) {
          const logits = await model.lastLogits(golden.ids[s], plan);
          expect(note(name, 'logits', maxRelativeError(logits, lastLogits[s])), `last logits of sequence ${s}`).toBeLessThanOrEqual(1e-4);
        }
      }

      test('BI / angular / relMagnitude of every block, NLL and last logits match within 1e-4 (no removal)', async () => {
        await check({}, golden.blocks, golden.nll, golden.lastLogits);
      });

      test(`with blocks ${golden.removal.removed.join(', ')} removed, as the golden says`, async () => {
        await check({ blocks: golden.removal.removed }, golden.removal.blocks, golden.removal.nll, golden.removal.lastLogits);
      });

      test('attention-only and MLP-only removal, as the golden says', async () => {
        const a = golden.attnOnlyRemoval;
        await check({ attention: a.removedAttention }, a.blocks, a.nll, a.lastLogits);
        const m = golden.mlpOnlyRemoval;
        await check({ mlp: m.removedMlp }, m.blocks, m.nll, m.lastLogits);
      });

      test('KV-cached decoding under the removal gives the golden last logits', async () => {
        const plan = makePlan(model.spec.layers, { blocks: golden.removal.removed });
        const ids = golden.ids[0];
        const cache = model.backend.createCache(ids.length, plan);
        let last: Float32Array | null = null;
        await model.backend.forward({ ids: ids.slice(0, 10), plan, logits: 'none', cache });
        for (const id of ids.slice(10)) last = (await model.backend.forward({ ids: [id], plan, logits: 'last', cache })).logits;
        cache.dispose();
        expect(note(name, 'decode logits', maxRelativeError(last as Float32Array, golden.removal.lastLogits[0]))).toBeLessThanOrEqual(1e-4);
      });
    });
  }
});
