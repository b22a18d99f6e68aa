/**
 * bench/goals.mjs: the goals of issue 13 from a run's rows — the like-for-like peer choice (fp16 for F16
 * weights, else fp32 with the reason), the bytes-ideal deviation, dispatches per block from the pruned
 * dispatch counts, and missing rows reported as null / not met with why.
 */
import { describe, expect, test } from 'vitest';
// @ts-expect-error plain ES module without types (bench/ is not part of the TypeScript project)
import { computeGoals } from '../../bench/goals.mjs';

type Goal = { id: string; model: string; value: number | null; goal: string; met: boolean; basis: string; why?: string };

const node = {
  model: { dtypes: ['F16'] },
  scoring: { overhead: 0.08 },
  toggle: { planChangeToSubmitMs: { max: 12.5 } },
  memory: { ratio: 1.12 },
  pruned: {
    fullDispatches: 64,
    cases: [
      { k: 3, dispatches: 49, bytesDeviation: -0.05 },
      { k: 6, dispatches: 34, bytesDeviation: 0.12 },
    ],
  },
};
const run = (runtime: string, result: unknown, variant: string | null = null, skipped: string | null = null) => ({ model: 'm', runtime, variant, skipped, result });

describe('bench goals', () => {
  test('values, targets and verdicts from the rows; the fp16 peer is the like-for-like one when it ran', () => {
    const goals: Goal[] = computeGoals(
      {
        runs: [
          run('ours-webgpu-node', node),
          run('ours-webgpu-chromium', { model: { dtypes: ['F16'] }, throughput: { decodeTokS: 30, prefillTokS: 50 } }),
          run('tjs-webgpu-chromium', { throughput: { decodeTokS: 10, prefillTokS: 100 } }, 'fp32'),
          run('tjs-webgpu-chromium', { throughput: { decodeTokS: 20, prefillTokS: 40 } }, 'fp16'),
        ],
      },
      ['m'],
    );
    const by = Object.fromEntries(goals.map((g) => [g.id, g]));
    expect(goals.map((g) => g.id)).toEqual([
      'decode-vs-peer-webgpu',
      'prefill-vs-peer-webgpu',
      'pruned-decode-vs-bytes-ideal',
      'scoring-overhead',
      'toggle-ms',
      'peak-gpu-memory-ratio',
      'dispatches-per-block-decode',
    ]);
    expect([by['decode-vs-peer-webgpu'].value, by['decode-vs-peer-webgpu'].met]).toEqual([1.5, false]);
    expect(by['decode-vs-peer-webgpu'].basis).toContain('fair peer fp16');
    expect([by['prefill-vs-peer-webgpu'].value, by['prefill-vs-peer-webgpu'].met]).toEqual([1.25, true]);
    expect([by['pruned-decode-vs-bytes-ideal'].value, by['pruned-decode-vs-bytes-ideal'].met]).toEqual([0.12, false]);
    expect([by['scoring-overhead'].value, by['scoring-overhead'].met]).toEqual([0.08, true]);
    expect([by['toggle-ms'].value, by['toggle-ms'].met]).toEqual([12.5, true]);
    expect([by['peak-gpu-memory-ratio'].value, by['peak-gpu-memory-ratio'].met]).toEqual([1.12, true]);
    expect([by['dispatches-per-block-decode'].value, by['dispatches-per-block-decode'].met]).toEqual([5, true]);
  });

  test('an fp16 peer that could not run: the ratio falls back to fp32 and says why; rows that did not run give null, not met, and why', () => {
    const goals: Goal[] = computeGoals(
      {
        runs: [
          run('ours-webgpu-chromium', { model: { dtypes: ['F16'] }, throughput: { decodeTokS: 30, prefillTokS: 50 } }),
          run('tjs-webgpu-chromium', { throughput: { decodeTokS: 10, prefillTokS: 100 } }, 'fp32'),
          run('tjs-webgpu-chromium', undefined, 'fp16', 'the fp16 variant needs shader-f16'),
        ],
      },
      ['m'],
    );
    const by = Object.fromEntries(goals.map((g) => [g.id, g]));
    expect([by['decode-vs-peer-webgpu'].value, by['decode-vs-peer-webgpu'].met]).toEqual([3, true]);
    expect(by['decode-vs-peer-webgpu'].basis).toContain('fair peer fp32 (the like-for-like fp16 peer did not run: the fp16 variant needs shader-f16)');
    for (const id of ['pruned-decode-vs-bytes-ideal', 'scoring-overhead', 'toggle-ms', 'peak-gpu-memory-ratio', 'dispatches-per-block-decode']) {
      expect([by[id].value, by[id].met]).toEqual([null, false]);
      expect(by[id].why).toMatch(/Node WebGPU row/);
    }
  });
});
