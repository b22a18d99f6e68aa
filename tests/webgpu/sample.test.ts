/**
 * GPU sampling (kernels/sample.ts) against sampling.ts sampleToken, on the tree and the subgroup reduction
 * paths: many rows (vocabularies that are not multiples of the workgroup, ties, flat and peaked rows) ×
 * temperatures × top-k × top-p × uniform draws (0, near 0, near 1). The kernel sums in f32, sampleToken in
 * float64: a case whose top-p cut or draw u lies within EPS of a cumulative boundary (the margin computed
 * here in float64) may go either way and is excluded, and such cases must stay under 1%; every other case
 * must pick sampleToken's token. A candidate set beyond the kernel's capacity must come back NO_PICK.
 * Then the backend: such picks are made on the host from the read-back row (equal to sampleToken exactly,
 * and said in the result), and Model.generate samples on the device — one id read back per step, no
 * logits row — giving the CPU backend's tokens on the embedded model.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Backend, ForwardRequest, ForwardResult } from '../../src/engine/backend.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { createCpuBackend } from '../../src/engine/cpu/backend.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan, withCapture } from '../../src/engine/plan.ts';
import { pickToken, sampleToken, type TokenSample } from '../../src/engine/sampling.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { createWebGpuBackend, type WebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import { NO_PICK, SAMPLE_CAP, sampleFitsKernel, sampleIndex } from '../../src/engine/webgpu/kernels/sample.ts';
import { KernelHarness } from './harness.ts';
import { randomNormal } from './random-model.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

/** Cumulative-probability distance from a boundary below which f32 and float64 may disagree. */
const EPS = 2e-5;
const ROOT = join(import.meta.dirname, '..', '..');

/** sampleToken's steps in float64, with how close its two cumulative decisions came to flipping. */
function reference(row: Float32Array, s: TokenSample): { token: number; margin: number; keep: number; gatherAtLeast: number; gatherAtMost: number } {
  let order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
  if (s.topK > 0) order = order.slice(0, s.topK);
  const max = row[order[0]];
  const weights = order.map((id) => Math.exp((row[id] - max) / s.temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let margin = Number.POSITIVE_INFINITY;
  let keep = order.length;
  /** The fewest logits with value ≥ the mass target (every tie of the last one counted). */
  const atLeast = (target: number) => {
    let cum = 0;
    let j = 0;
    while (j < order.length && cum < target) cum += weights[j++] / total;
    const last = row[order[Math.max(0, j - 1)]];
    return row.filter((v) => v >= last).length;
  };
  let gatherAtLeast = row.filter((v) => v >= row[order[order.length - 1]]).length;
  let gatherAtMost = gatherAtLeast;
  if (s.topP < 1) {
    let cum = 0;
    keep = 0;
    while (keep < order.length && cum < s.topP) {
      cum += weights[keep++] / total;
      margin = Math.min(margin, Math.abs(cum - s.topP));
    }
    keep = Math.max(1, keep);
    gatherAtLeast = atLeast(s.topP);
    gatherAtMost = atLeast(Math.min(1, s.topP * (1 + 2e-4)));
  }
  const kept = weights.slice(0, keep).reduce((a, b) => a + b, 0);
  // the last cumulative (1) decides nothing: a draw past it takes the last token too
  let cum = 0;
  for (let i = 0; i + 1 < keep; i++) {
    cum += weights[i] / kept;
    margin = Math.min(margin, Math.abs(cum - s.u));
  }
  return { token: sampleToken(row, s, () => s.u), margin, keep, gatherAtLeast, gatherAtMost };
}

const rand = randomNormal(23);
const normalRow = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * rand());

/** Vocabularies not multiples of 256, ties (a 0.25 grid, a plateau), a flat row whose top-p sets exceed the kernel, a peaked one, a tiny one. */
function rows(): { name: string; row: Float32Array }[] {
  const grid = normalRow(1000, 1.5).map((v) => Math.round(v * 4) / 4);
  const plateau = new Float32Array(513).fill(-1);
  for (const i of [3, 100, 101, 400, 512]) plateau[i] = 2;
  const spiky = normalRow(2051, 2);
  for (const i of [17, 2000, 2050]) spiky[i] = 12;
  return [
    { name: 'n=7', row: normalRow(7, 1) },
    { name: 'n=300 σ=2', row: normalRow(300, 2) },
    { name: 'n=1000 ties on a 0.25 grid', row: grid },
    { name: 'n=513 plateau of ties', row: plateau },
    { name: 'n=1337 σ=4', row: normalRow(1337, 4) },
    { name: 'n=1500 flat σ=0.05', row: normalRow(1500, 0.05) },
    { name: 'n=2051 spikes', row: spiky },
  ];
}

const TEMPERATURES = [0.5, 1, 2];
const TOP_K = [0, 1, 5, 50];
const TOP_P = [0.5, 0.9, 1];
/** Draws: 0, near 0, one inside (not a ratio of small integers, which ties make exact boundaries), near 1 (as mulberry32 can return), and one at random per rule. */
const U = [0, 1e-7, Math.SQRT2 - 1, 1 - 2 ** -32];
/** SwiftShader runs a few thousand of these one-workgroup dispatches in about a minute. */
const KERNEL_TIMEOUT_MS = 240_000;

describeGpu('GPU sampling kernel vs sampling.ts sampleToken (tree and subgroup reductions)', () => {
  let h: KernelHarness;
  beforeAll(async () => {
    h = await KernelHarness.create();
  }, HOOK_TIMEOUT_MS);
  afterAll(() => h?.destroy());

  for (const subgroups of [false, true]) {
    const path = subgroups ? 'subgroups' : 'tree';
    test(
      `[${path}] picks sampleToken's token on ${rows().length} rows × ${TEMPERATURES.length * TOP_K.length * TOP_P.length} rules × ${U.length + 1} draws, except < 1% within ${EPS} of a boundary; NO_PICK exactly beyond ${SAMPLE_CAP} candidates`,
      async (ctx) => {
        if (subgroups && !h.ctx.features.has('subgroups')) ctx.skip();
        const draw = randomNormal(5);
        let total = 0;
        let excluded = 0;
        let excludedDiffer = 0;
        /** The largest float64 margin at which the kernel picked differently: the epsilon measured. */
        let widestDiffer = 0;
        let noPick = 0;
        let worstMismatchMargin = 0;
        for (const { name, row } of rows()) {
          const cases: TokenSample[] = [];
          for (const temperature of TEMPERATURES)
            for (const topK of TOP_K) for (const topP of TOP_P) for (const u of [...U, (Math.abs(draw()) * 7) % 1]) cases.push({ temperature, topK, topP, u });
          const logits = h.buffer(row);
          const out = h.buffer(cases.length * 4);
          await h.run((rec) => {
            cases.forEach((s, i) => {
              sampleIndex(rec, { logits, n: row.length, ...s, out, outIndex: i, subgroups });
            });
          });
          const got = new Uint32Array((await h.read(out, cases.length)).buffer);
          cases.forEach((s, i) => {
            const want = reference(row, s);
            const what = `${name}, T ${s.temperature}, top-k ${s.topK}, top-p ${s.topP}, u ${s.u}`;
            total++;
            if (got[i] === NO_PICK) {
              noPick++;
              expect(want.gatherAtMost > SAMPLE_CAP || want.margin < EPS, `${what}: NO_PICK with at most ${want.gatherAtMost} candidates`).toBe(true);
              return;
            }
            expect(want.gatherAtLeast, `${what}: picked from a set of at least ${want.gatherAtLeast} candidates`).toBeLessThanOrEqual(SAMPLE_CAP);
            if (want.margin < EPS) {
              excluded++;
              if (got[i] !== want.token) {
                excludedDiffer++;
                widestDiffer = Math.max(widestDiffer, want.margin);
              }
              return;
            }
            if (got[i] !== want.token) worstMismatchMargin = Math.max(worstMismatchMargin, want.margin);
            expect(got[i], `${what} (margin ${want.margin.toExponential(2)})`).toBe(want.token);
          });
        }
        console.log(
          `[tests/webgpu] sampling kernel (${path}): ${total} cases, ${noPick} NO_PICK (beyond ${SAMPLE_CAP} candidates), ${excluded} within ${EPS} of a boundary (${excludedDiffer} of them picked differently, the widest at a margin of ${widestDiffer.toExponential(1)})`,
        );
        expect(noPick).toBeGreaterThan(0);
        expect(excluded / total).toBeLessThan(0.01);
        expect(worstMismatchMargin).toBe(0);
      },
      KERNEL_TIMEOUT_MS,
    );
  }

  test('sampleFitsKernel: only a rule without a top-p cut whose top-k set (or vocabulary) exceeds the capacity is sent to the host up front', () => {
    expect(sampleFitsKernel(4096, 0, 1)).toBe(false);
    expect(sampleFitsKernel(4096, SAMPLE_CAP + 1, 1)).toBe(false);
    expect(sampleFitsKernel(4096, SAMPLE_CAP, 1)).toBe(true);
    expect(sampleFitsKernel(4096, 0, 0.9)).toBe(true);
    expect(sampleFitsKernel(SAMPLE_CAP, 0, 1)).toBe(true);
    expect(sampleFitsKernel(500, 5000, 1)).toBe(true);
  });
});

describeGpu('WebGPU backend sampling on the embedded model (sotu-llama, 4096 tokens)', () => {
  let ctx: GpuContext;
  let checkpoint: Awaited<ReturnType<typeof loadCheckpoint>>;
  let cpu: Backend;
  const gpus: WebGpuBackend[] = [];
  const prompt = [1, 450, 3186, 310, 278, 7];
  beforeAll(async () => {
    ctx = await acquireGpu();
    checkpoint = await loadCheckpoint(directorySource(join(ROOT, 'public', 'models', 'sotu-llama')));
    cpu = await createCpuBackend(checkpoint.spec, checkpoint.weights);
    for (const subgroups of [true, false]) gpus.push((await createWebGpuBackend(checkpoint.spec, checkpoint.weights, { context: ctx, subgroups })) as WebGpuBackend);
  }, HOOK_TIMEOUT_MS * 2);
  afterAll(() => {
    for (const b of gpus) b.dispose();
    cpu?.dispose();
    ctx?.device.destroy();
  });

  /** A backend whose forwards are recorded (request and result). */
  const recording = (backend: Backend) => {
    const calls: { request: ForwardRequest; result: ForwardResult }[] = [];
    const wrapped: Backend = {
      info: backend.info,
      createCache: (capacity, p) => backend.createCache(capacity, p),
      dispose: () => {},
      forward: async (request) => {
        const result = await backend.forward(request);
        calls.push({ request, result });
        return result;
      },
    };
    return { wrapped, calls };
  };

  test('Model.generate (temperature 0.8, top-k 20, top-p 0.9, seed 7): the WebGPU device pick gives the CPU backend’s tokens, each step reading back one id and no logits row', async () => {
    const options = { maxNewTokens: 24, temperature: 0.8, topK: 20, topP: 0.9, seed: 7 };
    const ids = prompt;
    const full = makePlan(checkpoint.spec.layers);
    const want = await new Model(checkpoint, cpu).generate(ids, full, options);
    expect(new Set(want).size).toBeGreaterThan(3);
    for (const gpu of gpus) {
      const { wrapped, calls } = recording(gpu);
      const before = gpu.hostPicks;
      const got = await new Model(checkpoint, wrapped).generate(ids, full, options);
      expect(got, `${gpu.useSubgroups ? 'subgroup' : 'tree'} reductions`).toEqual(want);
      expect(calls.length).toBe(options.maxNewTokens);
      for (const { request, result } of calls) {
        expect(request.logits).toBe('none');
        expect(typeof request.pick).toBe('object');
        expect(result.logits).toBeNull();
        expect(result.pickedOnHost).toBeUndefined();
      }
      expect(gpu.hostPicks).toBe(before);
      // with a per-token callback the row comes back and is picked on the host: the same tokens
      const rows: number[] = [];
      expect(await new Model(checkpoint, gpu).generate(ids, full, { ...options, onToken: (id) => rows.push(id) })).toEqual(want);
      expect(rows).toEqual(want);
    }
  });

  test('a sample beyond the kernel is picked on the host, said in the result and counted: sampleToken on the same row exactly (no cut up front; top-p 0.99 over a flat row via NO_PICK)', async () => {
    const full = withCapture(makePlan(checkpoint.spec.layers), 'none');
    const ids = prompt;
    const { vocabSize } = checkpoint.spec;
    const rules: TokenSample[] = [
      { temperature: 1, topK: 0, topP: 1, u: 0.37 },
      { temperature: 30, topK: 0, topP: 0.99, u: 0.81 },
      { temperature: 0.7, topK: 3000, topP: 1, u: 0.05 },
    ];
    for (const gpu of gpus) {
      const row = (await gpu.forward({ ids, plan: full, logits: 'last' })).logits as Float32Array;
      for (const rule of rules) {
        const before = gpu.hostPicks;
        const r = await gpu.forward({ ids, plan: full, logits: 'none', pick: rule });
        expect(r.pickedOnHost, JSON.stringify(rule)).toBe(true);
        expect(r.logits).toBeNull();
        expect(r.picked).toBe(pickToken(row, rule));
        expect(gpu.hostPicks).toBe(before + 1);
        expect(reference(row, rule).gatherAtLeast).toBeGreaterThan(SAMPLE_CAP);
      }
      expect(sampleFitsKernel(vocabSize, 0, 0.99)).toBe(true);
      // a rule inside the kernel: picked on the device, sampleToken's token away from a boundary
      const inside: TokenSample = { temperature: 1.3, topK: 40, topP: 0.95, u: 0.6 };
      const r = await gpu.forward({ ids, plan: full, logits: 'last', pick: inside });
      expect(r.pickedOnHost).toBeUndefined();
      const want = reference(r.logits as Float32Array, inside);
      if (want.margin >= EPS) expect(r.picked).toBe(want.token);
    }
  });

  test('both backends take the same pick requests and refuse the same bad ones, naming the field', async () => {
    const full = withCapture(makePlan(checkpoint.spec.layers), 'none');
    const rule: TokenSample = { temperature: 0.9, topK: 10, topP: 0.8, u: 0.4 };
    const row = (await cpu.forward({ ids: prompt, plan: full, logits: 'last' })).logits as Float32Array;
    const byCpu = await cpu.forward({ ids: prompt, plan: full, logits: 'none', pick: rule });
    expect(byCpu.picked).toBe(pickToken(row, rule));
    expect(byCpu.logits).toBeNull();
    expect((await cpu.forward({ ids: prompt, plan: full, logits: 'none', pick: 'argmax' })).picked).toBe(pickToken(row, 'argmax'));
    const bad: [Partial<ForwardRequest>, RegExp][] = [
      [{ pick: { ...rule, temperature: 0 } }, /field temperature/],
      [{ pick: { ...rule, topK: 2.5 } }, /field top-k/],
      [{ pick: { ...rule, topP: 0 } }, /field top-p/],
      [{ pick: { ...rule, u: 1 } }, /field pick/],
      [{ pick: rule, logits: 'all' }, /field pick/],
      [{ pick: 'argmax', nll: true }, /field pick/],
    ];
    for (const backend of [cpu, gpus[0]]) {
      for (const [change, message] of bad) await expect(backend.forward({ ids: prompt, plan: full, logits: 'none', ...change })).rejects.toThrow(message);
    }
  });
});
