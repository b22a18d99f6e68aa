/**
 * The whole model with f16 arithmetic on an adapter with shader-f16 (see adapter.ts for how to run this
 * folder): the embedded model's logits at every position of 48 tokens (prefill: the GEMM path) and 16
 * decode steps through the KV cache (the fused decode GEMVs) against the same adapter's f32 arithmetic,
 * within WHOLE_MODEL_TOLERANCE (derived from the CPU emulation in tests/unit/f16-math.test.ts); greedy
 * choices equal wherever the f32 margin exceeds twice it. BF16 and F32 checkpoints keep f32 arithmetic
 * under the option (said, and bit-equal). The CLI's --gpu-f16 on ppl, against the run without it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import type { Backend } from '../../src/engine/backend.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { argmax } from '../../src/engine/sampling.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { createTokenizer } from '../../src/engine/tokenizer.ts';
import { createWebGpuBackend, type WebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { cli, EMBEDDED } from '../engine/cli-run.ts';
import { WHOLE_MODEL_TOKENS, WHOLE_MODEL_TOLERANCE } from '../unit/f16-emulation.ts';
import { maxAbsDiff } from '../webgpu/harness.ts';
import { randomCheckpoint, randomIds } from '../webgpu/random-model.ts';
import { F16_TEST_MS, f16Adapter, releaseF16Adapter } from './adapter.ts';

const EVAL_TEXT = join(import.meta.dirname, '..', '..', 'public', 'calibration', 'moby-dick-eval.txt');
const TOL = WHOLE_MODEL_TOLERANCE;
const PROMPT = 8;
const STEPS = 16;

const backends: Backend[] = [];
afterAll(async () => {
  for (const b of backends) b.dispose();
  await releaseF16Adapter();
});

async function embeddedPair() {
  const ctx = await f16Adapter();
  const checkpoint = await loadCheckpoint(directorySource(EMBEDDED));
  const { spec, weights } = checkpoint;
  const f32 = (await createWebGpuBackend(spec, weights, { context: ctx })) as WebGpuBackend;
  const f16 = (await createWebGpuBackend(spec, weights, { context: ctx, f16Math: true })) as WebGpuBackend;
  backends.push(f32, f16);
  const ids = createTokenizer(checkpoint.tokenizer as NonNullable<typeof checkpoint.tokenizer>)
    .encode(readFileSync(EVAL_TEXT, 'utf8'))
    .slice(0, WHOLE_MODEL_TOKENS);
  return { spec, f32, f16, ids };
}

describe('the embedded model with f16 arithmetic on an adapter with shader-f16', () => {
  test(
    `prefill: every position's logits of ${WHOLE_MODEL_TOKENS} tokens within ${TOL.logitsAbs} of f32 arithmetic, mean NLL within ${TOL.meanNll}`,
    async () => {
      const { spec, f32, f16, ids } = await embeddedPair();
      expect(f16.f16MathSummary).toBe('f16 arithmetic');
      expect(f16.info.description).toContain('f16 arithmetic');
      expect(f32.f16MathSummary).toBeNull();
      const plan = makePlan(spec.layers);
      const want = await f32.forward({ ids, plan, logits: 'all', nll: true });
      const got = await f16.forward({ ids, plan, logits: 'all', nll: true });
      const drift = maxAbsDiff(got.logits as Float32Array, want.logits as Float32Array);
      console.log(
        `[f16 hardware] ${f16.info.description}: prefill max |Δ logit| ${drift.toExponential(3)}, Δ mean NLL ${(got.nllSum / got.nllCount - want.nllSum / want.nllCount).toExponential(3)}`,
      );
      expect(drift).toBeGreaterThan(0);
      expect(drift).toBeLessThanOrEqual(TOL.logitsAbs);
      expect(Math.abs(got.nllSum / got.nllCount - want.nllSum / want.nllCount)).toBeLessThanOrEqual(TOL.meanNll);
    },
    F16_TEST_MS,
  );

  test(
    `decode: ${STEPS} steps through the KV cache (fused decode GEMVs) within ${TOL.logitsAbs} of f32 arithmetic, same greedy token wherever the f32 margin exceeds ${2 * TOL.logitsAbs}`,
    async () => {
      const { spec, f32, f16, ids } = await embeddedPair();
      const plan = makePlan(spec.layers);
      const caches = [f32.createCache(PROMPT + STEPS, plan), f16.createCache(PROMPT + STEPS, plan)];
      let input = ids.slice(0, PROMPT);
      let worst = 0;
      for (let step = 0; step <= STEPS; step++) {
        const want = (await f32.forward({ ids: input, plan, logits: 'last', cache: caches[0] })).logits as Float32Array;
        const got = (await f16.forward({ ids: input, plan, logits: 'last', cache: caches[1] })).logits as Float32Array;
        const drift = maxAbsDiff(got, want);
        worst = Math.max(worst, drift);
        expect(drift, `step ${step}`).toBeLessThanOrEqual(TOL.logitsAbs);
        const sorted = Array.from(want).sort((a, b) => b - a);
        if (sorted[0] - sorted[1] > 2 * TOL.logitsAbs) expect(argmax(got), `step ${step}`).toBe(argmax(want));
        // both continue with the f32 path's greedy token (teacher forcing), so every step compares the same context
        input = [argmax(want)];
      }
      for (const c of caches) c.dispose();
      console.log(`[f16 hardware] decode: max |Δ logit| over ${STEPS + 1} steps ${worst.toExponential(3)}`);
    },
    F16_TEST_MS,
  );
});

describe('f16 arithmetic leaves F32 and BF16 matrices in f32', () => {
  for (const dtype of ['BF16', 'F32'] as const) {
    test(
      `a random ${dtype} llama: the backend says no matrix is stored F16, and its logits equal the f32 backend's exactly`,
      async () => {
        const ctx = await f16Adapter();
        const { spec, weights } = randomCheckpoint({ modelType: 'llama', dtype, hidden: 32, heads: 4, kvHeads: 2, intermediate: 48, layers: 2, vocab: 64 });
        const f32 = await createWebGpuBackend(spec, weights, { context: ctx });
        const f16 = (await createWebGpuBackend(spec, weights, { context: ctx, f16Math: true })) as WebGpuBackend;
        backends.push(f32, f16);
        expect(f16.f16MathSummary).toMatch(/no matrix is stored F16/);
        const request = { ids: randomIds(9, spec.vocabSize, 5), plan: makePlan(spec.layers), logits: 'all' as const };
        expect(maxAbsDiff((await f16.forward(request)).logits as Float32Array, (await f32.forward(request)).logits as Float32Array)).toBe(0);
      },
      F16_TEST_MS,
    );
  }
});

describe('the CLI with --gpu-f16 on an adapter with shader-f16', () => {
  test(
    `ppl --backend webgpu --gpu-f16 says what runs in f16 and measures the f32 run's mean NLL within ${TOL.meanNll}`,
    async () => {
      await f16Adapter();
      const args = ['ppl', '--model', EMBEDDED, '--backend', 'webgpu', '--text', EVAL_TEXT, '--seq-len', String(WHOLE_MODEL_TOKENS), '--max-sequences', '2', '--json'];
      const plain = await cli(args);
      const withF16 = await cli([...args, '--gpu-f16']);
      expect(plain.code, plain.stderr).toBe(0);
      expect(withF16.code, withF16.stderr).toBe(0);
      expect(withF16.stderr).toMatch(/--gpu-f16: f16 arithmetic \(experimental/);
      const nll = (r: typeof plain) => (JSON.parse(r.stdout.join('\n')) as { nll: number }).nll;
      expect(Math.abs(nll(withF16) - nll(plain))).toBeLessThanOrEqual(TOL.meanNll);
    },
    F16_TEST_MS,
  );
});
