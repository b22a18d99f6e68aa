/**
 * Next-token work on a block-streamed WebGPU model (issue 12, deliverable 3). A backend made with the ends
 * only runs a whole forward over the blocks loaded now: a pruned plan that fits the GPU budget is decoded
 * with only its kept blocks uploaded (the embedding and head uploaded for it) and equals resident WebGPU with
 * that removal, within the budget (measured); the full plan streams one pass per token when asked and picks
 * the resident tokens. The CLI: `generate --gpu-memory` refuses naming --allow-streamed and the cost, runs
 * streamed with it, and runs a pruned model that fits resident, saying which mode ran (--json `generation`).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { residentNeed } from '../../src/engine/memory.ts';
import { type DecodeRun, Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { createWebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import { cli, EMBEDDED } from '../engine/cli-run.ts';
import { HF_FIXTURES_DIR, maxRelativeError, readGolden } from '../engine/fixtures.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

const LONG_TEST_MS = 300_000;
const PROMPT_TOKENS = 6;
const NEW_TOKENS = 5;

describeGpu('a block-streamed WebGPU model decodes a pruned plan that fits with its kept blocks resident, and the full one streamed when asked', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await acquireGpu();
  }, HOOK_TIMEOUT_MS);
  afterAll(() => ctx?.device.destroy());

  // Plain llama (sharded, untied head); GPT-2 (learned positions, tied head: the embedding uploaded once for both ends).
  for (const name of ['llama3-v5', 'gpt2-v5']) {
    test(
      `${name}: kept blocks resident equal resident WebGPU with that removal, within the budget; the full model streamed picks the resident tokens`,
      async () => {
        const golden = readGolden(name, HF_FIXTURES_DIR);
        const source = directorySource(join(HF_FIXTURES_DIR, name));
        const full = await loadCheckpoint(source);
        const ends = await loadCheckpoint(source, { blocks: 'on-demand' });
        const layers = full.spec.layers;
        const prompt = golden.ids[0].slice(0, PROMPT_TOKENS);
        const capacity = PROMPT_TOKENS + NEW_TOKENS;
        const all = makePlan(layers);
        const pruned = makePlan(layers, { blocks: golden.removal.removed });
        const prunedNeed = residentNeed(ends, 'webgpu', pruned.blocks, capacity).bytes;
        const fullNeed = residentNeed(ends, 'webgpu', null, capacity).bytes;
        const budget = Math.ceil((prunedNeed + fullNeed) / 2);
        const resident = new Model(full, await createWebGpuBackend(full.spec, full.weights, { context: ctx }));
        const backend = await createWebGpuBackend(ends.spec, ends.weights, { context: ctx });
        const streamed = new Model(ends, backend, 'streamed');
        streamed.gpuBudgetBytes = budget;
        const meter = backend.memory as NonNullable<typeof backend.memory>;
        try {
          let run: DecodeRun | null = null;
          const tokens = await streamed.generate(prompt, pruned, { maxNewTokens: NEW_TOKENS, onRun: (r) => (run = r) });
          expect(run).toMatchObject({ mode: 'kept-blocks-resident', needBytes: prunedNeed, fullNeedBytes: fullNeed, budgetBytes: budget });
          expect(tokens).toEqual(await resident.generate(prompt, pruned, { maxNewTokens: NEW_TOKENS }));
          expect(meter.peakBytes).toBeLessThanOrEqual(budget);
          for (const [s, ids] of golden.ids.entries()) {
            const a = await streamed.lastLogits(ids, pruned);
            expect(maxRelativeError(a, await resident.lastLogits(ids, pruned)), `sequence ${s}`).toBeLessThanOrEqual(1e-5);
            expect(maxRelativeError(a, golden.removal.lastLogits[s]), `sequence ${s} vs transformers`).toBeLessThanOrEqual(1e-4);
          }
          // A streamed pass frees the held blocks and the ends; the next decode uploads them again.
          const ppl = await streamed.perplexity(golden.ids, pruned);
          expect(Math.abs(ppl.nll - golden.removal.nll.mean) / golden.removal.nll.mean).toBeLessThanOrEqual(1e-4);
          expect(await streamed.generate(prompt, pruned, { maxNewTokens: NEW_TOKENS })).toEqual(tokens);

          await expect(streamed.generate(prompt, all, { maxNewTokens: NEW_TOKENS })).rejects.toThrow(/each token is a block-streamed pass that re-reads [\d.]+ MiB of weights/);
          const greedy = await streamed.generate(prompt, all, { maxNewTokens: NEW_TOKENS, allowStreamed: true, onRun: (r) => (run = r) });
          expect((run as DecodeRun | null)?.mode).toBe('streamed');
          expect(greedy).toEqual(await resident.generate(prompt, all, { maxNewTokens: NEW_TOKENS }));
          const last = await streamed.lastLogits(golden.ids[0], all, { allowStreamed: true });
          expect(maxRelativeError(last, await resident.lastLogits(golden.ids[0], all))).toBeLessThanOrEqual(1e-5);
          expect(meter.peakBytes).toBeLessThanOrEqual(budget);
        } finally {
          resident.dispose();
          streamed.dispose();
        }
      },
      LONG_TEST_MS,
    );
  }

  test(
    'the CLI: generate --gpu-memory refuses naming --allow-streamed and the cost; with it, streamed and the resident tokens; a pruned model that fits runs resident',
    async () => {
      const base = ['generate', '--model', EMBEDDED, '--prompt', 'The President said', '--max-new-tokens', '6', '--backend', 'webgpu', '--json'];
      const refused = await cli([...base, '--gpu-memory', '4']);
      expect(refused.code).toBe(1);
      expect(refused.stdout).toEqual([]);
      expect(refused.stderr).toMatch(
        /prunelab: generation needs about [\d.]+ MiB to run the model resident .*more than the 4\.0 MiB budget: each token is a block-streamed pass that re-reads 4\.5 MiB of weights; pass --allow-streamed to run it anyway, or remove more blocks \/ raise --gpu-memory/,
      );
      const reference = await cli(base);
      expect(reference.code, reference.stderr).toBe(0);
      const resident = JSON.parse(reference.stdout[0]);
      expect(resident.generation.mode).toBe('resident');

      const ran = await cli([...base, '--gpu-memory', '4', '--allow-streamed']);
      expect(ran.code, ran.stderr).toBe(0);
      const streamed = JSON.parse(ran.stdout[0]);
      expect(streamed.ids).toEqual(resident.ids);
      expect(streamed.memory.mode).toBe('streamed');
      expect(streamed.memory.gpuPeakBytes).toBeLessThanOrEqual(4 * 2 ** 20);
      expect(streamed.generation).toMatchObject({ mode: 'streamed', budgetBytes: 4 * 2 ** 20, bytesPerToken: 4724736 });
      expect(streamed.generation.msPerToken).toBeGreaterThan(0);
      expect(ran.stderr).toMatch(/generating block-streamed \(--allow-streamed\): it needs about .* re-reads 4\.5 MiB of weights/);
      expect(ran.stderr).toMatch(/streamed generation: 6 tokens, 4\.5 MiB of weights read per token, [\d.]+ s per token \(measured\)/);

      // Nine of twelve blocks removed: the pruned model fits 8 MiB (the full one does not) and runs resident.
      const removal = ['--remove', '0,1,2,3,4,5,6,7,8'];
      const prunedResident = JSON.parse((await cli([...base, ...removal])).stdout[0]);
      const kept = await cli([...base, ...removal, '--gpu-memory', '8']);
      expect(kept.code, kept.stderr).toBe(0);
      const keptJson = JSON.parse(kept.stdout[0]);
      expect(keptJson.ids).toEqual(prunedResident.ids);
      expect(keptJson.memory.mode).toBe('streamed');
      expect(keptJson.memory.gpuPeakBytes).toBeLessThanOrEqual(8 * 2 ** 20);
      expect(keptJson.generation).toMatchObject({ mode: 'kept-blocks-resident', budgetBytes: 8 * 2 ** 20, bytesPerToken: 0 });
      expect(keptJson.generation.needBytes).toBeLessThanOrEqual(8 * 2 ** 20);
      expect(keptJson.generation.fullNeedBytes).toBeGreaterThan(8 * 2 ** 20);
      expect(kept.stderr).toMatch(
        /generating with the kept blocks resident: the pruned model \(3 of 12 blocks\) needs about .* within the 8\.0 MiB budget .*: only its blocks are loaded/,
      );
    },
    LONG_TEST_MS,
  );
});
