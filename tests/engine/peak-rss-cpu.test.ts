/**
 * The CLI's peak memory on the default (fast) CPU backend with every block resident (issue 12, deliverable
 * 1): a random-weight F16 checkpoint of 106 MiB, written here, is scored by `prunelab score --backend cpu`
 * in a child process that reports its own peak resident set at exit (peak-rss-hook.mjs, Linux VmHWM). The
 * baseline is the same command's peak on a 2 MB model of the same family, measured here, so what Node, tsx
 * and onnxruntime cost on this machine is not written down anywhere; the bound on the difference is derived
 * from the checkpoint's sizes. The block-streamed case (F16 beyond ~160 MiB) is tests/webgpu/peak-rss.test.ts.
 */
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import type { RandomModelOptions } from '../webgpu/random-model.ts';
import { MIB, mib, peakRssCheckpoints, scorePeak as scorePeakIn } from './peak-rss.ts';

/** Writing 106 MiB and two CLI runs side by side, on a machine shared with other jobs. */
const TIMEOUT_MS = 120_000;

/** 4 blocks of 22.5 MiB, an embedding and an untied head of 8 MiB each: under the ~160 MiB within which the fast CPU kernels hold F16 resident (memory.ts). */
const MODEL: RandomModelOptions = {
  modelType: 'llama',
  dtype: 'F16',
  hidden: 1024,
  heads: 16,
  kvHeads: 8,
  intermediate: 2816,
  layers: 4,
  vocab: 4096,
  maxPositions: 256,
  seed: 41,
};
const TINY: RandomModelOptions = { modelType: 'llama', dtype: 'F16', hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, layers: 2, vocab: 4096, maxPositions: 256, seed: 42 };

const files = peakRssCheckpoints('rss-cpu', TINY, MODEL, TIMEOUT_MS);

/** `prunelab score --backend cpu --json` on `model` in this test's folder. */
const scorePeak = (model: string) => scorePeakIn(files.dir, model, ['--backend', 'cpu']);

describe('peak RSS of `prunelab score` on the fast CPU backend, every block resident', () => {
  test(
    'within the baseline (a 2 MB model) + E + 2 H + 2 ΣB (the f32 copies) + 2 B + 32 MiB: the blocks as stored are not kept beside their f32 copies',
    async () => {
      const [base, run] = await Promise.all([scorePeak(join(files.dir, 'tiny')), scorePeak(join(files.dir, 'model'))]);
      const E = files.stored.endsBytes;
      const blocks = files.stored.blockBytes.reduce((a, b) => a + b, 0);
      const B = Math.max(...files.stored.blockBytes);
      /** The untied head as stored (F16). */
      const H = MODEL.vocab * MODEL.hidden * 2;
      const weights = E + blocks;
      expect(run.out.memory).toEqual({ mode: 'resident', gpuPeakBytes: 0, weightBytes: weights });
      // What the process holds: the ends as stored (a token's embedding row is decoded when it is embedded),
      // the head's f32 copy (2 H) and every block's f32 copies (2 ΣB: onnxruntime-node reads them in place);
      // while the blocks are handed over one at a time, the next one read ahead and the one just decoded,
      // which the garbage collector has yet to free (2 B; in process, array buffers peak at E + 2 H + 2 ΣB + 2 B).
      // The margin is allocator and native slack: deltas of 248–261 MiB (2.3–2.5× the checkpoint) over three
      // runs against E + 2 H + 2 ΣB + 2 B = 257 MiB. Before, the checkpoint kept every block as stored beside
      // the f32 copies and the backend an f32 embedding: 307–321 MiB (2.9–3.0×) over three runs, above this bound.
      const bound = E + 2 * H + 2 * blocks + 2 * B + 32 * MIB;
      const delta = run.peakBytes - base.peakBytes;
      console.log(
        `CPU resident: baseline ${mib(base.peakBytes)}, ${mib(run.peakBytes)}: +${mib(delta)} for ${mib(weights)} stored (${(delta / weights).toFixed(2)}×); bound +${mib(bound)}`,
      );
      expect(delta).toBeLessThanOrEqual(bound);
    },
    TIMEOUT_MS,
  );
});
