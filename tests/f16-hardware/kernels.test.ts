/**
 * The f16-arithmetic kernels on an adapter with shader-f16 (see adapter.ts for how to run this folder):
 * matmul GEMM and GEMV (bias, residual accumulate, k mod 4 = 2 for the tail) and the fused decode GEMVs
 * (norm prologue, q | k | v, gated gate/up with each activation; tree and, where offered, subgroup
 * reductions), every output against the exact dot product of the same f16 weights within the bound
 * kernels/common.ts WeightMath states for any rounding WGSL allows (u = 2⁻¹⁰, subnormals possibly flushed),
 * and each run beside the f32-arithmetic path to show the f16 one really ran.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { gelu, gelu_new, silu } from '../../src/engine/cpu/ops.ts';
import { normGemv } from '../../src/engine/webgpu/kernels/decode.ts';
import { matmul } from '../../src/engine/webgpu/kernels/matmul.ts';
import { absDot, dotBound, exactDot, FLUSH_ETA, gemvF16, NEAREST, roundAllF16, WGSL_U } from '../unit/f16-emulation.ts';
import { KernelHarness, maxAbsDiff, roundF16 } from '../webgpu/harness.ts';
import { randomNormal } from '../webgpu/random-model.ts';
import { F16_TEST_MS, f16Adapter } from './adapter.ts';

const rand = randomNormal(16);
const randomArray = (n: number, scale = 1, offset = 0) => Float32Array.from({ length: n }, () => offset + scale * rand());
const ACTS = { silu, gelu_new, gelu } as const;
/** |act'| ≤ 1.13 for silu, gelu and gelu_new: how an error in the gate moves the gated output. */
const ACT_SLOPE = 1.2;

let harness: KernelHarness | null = null;
async function h(): Promise<KernelHarness> {
  harness ??= new KernelHarness(await f16Adapter());
  return harness;
}
afterAll(() => harness?.destroy());

/** The bound for an f16-arithmetic dot product on hardware (WeightMath: WGSL's rounding, flushing allowed). */
const hwBound = (x: ArrayLike<number>, w: ArrayLike<number>, at: number, k: number) => dotBound(x, w, at, k, WGSL_U, FLUSH_ETA);

describe('f16-arithmetic matmul kernels on an adapter with shader-f16', () => {
  // [rows, n, k]: GEMV (k mod 4 = 2 and 0), GEMM (one tile; several tiles, a partial one)
  for (const [rows, n, k] of [
    [1, 70, 134],
    [1, 64, 128],
    [5, 70, 134],
    [33, 65, 128],
  ] as const) {
    for (const [bias, accumulate] of [
      [false, false],
      [true, true],
    ] as const) {
      test(
        `${rows === 1 ? 'GEMV' : 'GEMM'} ${rows}×${k} · (${n}×${k})ᵀ${bias ? ' + bias' : ''}${accumulate ? ', accumulated (alpha 0.5)' : ''}: every output within WeightMath's bound of exact`,
        async () => {
          const hh = await h();
          const x = randomArray(rows * k);
          const w = roundF16(randomArray(n * k, 1 / Math.sqrt(k)));
          const b = randomArray(n, 0.1);
          const y0 = randomArray(rows * n);
          const alpha = accumulate ? 0.5 : 1;
          const run = async (math: 'f16' | 'f32') => {
            const y = hh.buffer(accumulate ? y0 : rows * n * 4);
            await hh.run((rec) =>
              matmul(rec, { x: hh.buffer(x), rows, w: hh.weights(w, 'f16'), format: 'f16', math, bias: bias ? hh.buffer(b) : null, y, n, k, accumulate, alpha }),
            );
            return hh.read(y, rows * n);
          };
          const got = await run('f16');
          const f32 = await run('f32');
          let emulatedGap = 0;
          for (let r = 0; r < rows; r++) {
            const xr = x.subarray(r * k, (r + 1) * k);
            const x16 = roundAllF16(xr);
            for (let o = 0; o < n; o++) {
              const dot = exactDot(xr, w, o * k, k);
              const add = (bias ? b[o] : 0) + dot;
              const want = accumulate ? y0[r * n + o] + alpha * add : add;
              // + the f32 bias add, scale and residual add (a few f32 roundings of their operands)
              const slack = 2 ** -21 * ((accumulate ? Math.abs(y0[r * n + o]) : 0) + Math.abs(add) + absDot(xr, w, o * k, k));
              const bound = alpha * hwBound(xr, w, o * k, k) + slack;
              expect(Math.abs(got[r * n + o] - want), `row ${r} output ${o}`).toBeLessThanOrEqual(bound);
              const emulated = (bias ? b[o] : 0) + gemvF16(x16, w, o * k, k, NEAREST);
              emulatedGap = Math.max(emulatedGap, Math.abs(got[r * n + o] - (accumulate ? y0[r * n + o] + alpha * emulated : emulated)));
            }
          }
          expect(maxAbsDiff(got, f32), 'the f16 path gives other numbers than the f32 one').toBeGreaterThan(0);
          console.log(`[f16 hardware] matmul ${rows}×${n}×${k}: max |GPU − CPU emulation (nearest)| = ${emulatedGap.toExponential(2)}`);
        },
        F16_TEST_MS,
      );
    }
  }
});

describe('f16-arithmetic fused decode GEMVs on an adapter with shader-f16', () => {
  const rmsNormExact = (x: Float32Array, nw: Float32Array, eps: number, offset: number) => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const scale = 1 / Math.sqrt(ss / x.length + eps);
    return Float64Array.from(x, (v, i) => v * scale * (offset + nw[i]));
  };
  const subgroupChoices = async () => ((await h()).ctx.features.has('subgroups') ? [false, true] : [false]);

  for (const [norm, bias] of [
    [true, false],
    [true, true],
    [false, false],
  ] as const) {
    test(
      `${norm ? 'RMSNorm + ' : ''}q | k | v GEMV${bias ? ' + biases' : ''} (k = 70): every output within WeightMath's bound, tree and subgroup reductions`,
      async () => {
        const hh = await h();
        const [k, nq, nkv] = [70, 48, 16];
        const x = randomArray(k);
        const nw = randomArray(k, 0.1, 1);
        const ws = [nq, nkv, nkv].map((n) => roundF16(randomArray(n * k, 1 / Math.sqrt(k))));
        const bs = [nq, nkv, nkv].map((n) => randomArray(n, 0.1));
        const xn = norm ? rmsNormExact(x, nw, 1e-5, 0) : Float64Array.from(x);
        for (const subgroups of await subgroupChoices()) {
          const run = async (math: 'f16' | 'f32') => {
            const y = hh.buffer((nq + 2 * nkv) * 4);
            await hh.run((rec) =>
              normGemv(rec, {
                x: hh.buffer(x),
                normWeight: norm ? hh.buffer(nw) : null,
                eps: 1e-5,
                offset: 0,
                weights: ws.map((w, i) => hh.matrix(w, [nq, nkv, nkv][i], k, 'f16')),
                math,
                biases: bias ? bs.map((b) => hh.buffer(b)) : null,
                y,
                gated: null,
                subgroups,
              }),
            );
            return hh.read(y, nq + 2 * nkv);
          };
          const got = await run('f16');
          let at = 0;
          ws.forEach((w, part) => {
            for (let o = 0; o < [nq, nkv, nkv][part]; o++) {
              const dot = exactDot(xn, w, o * k, k);
              const want = dot + (bias ? bs[part][o] : 0);
              // + the GPU's f32 norm (a few ulps of x̂) and the bias add
              const bound = hwBound(xn, w, o * k, k) * (1 + 1e-4) + 2 ** -18 * absDot(xn, w, o * k, k) + 2 ** -22 * Math.abs(want);
              expect(Math.abs(got[at + o] - want), `${subgroups ? 'subgroups' : 'tree'}: part ${part} output ${o}`).toBeLessThanOrEqual(bound);
            }
            at += [nq, nkv, nkv][part];
          });
          expect(maxAbsDiff(got, await run('f32'))).toBeGreaterThan(0);
        }
      },
      F16_TEST_MS,
    );
  }

  for (const act of ['silu', 'gelu_new', 'gelu'] as const) {
    test(
      `RMSNorm + gated ${act}(gate) · up GEMV (k = 38): every output within the bound carried through the activation, tree and subgroup reductions`,
      async () => {
        const hh = await h();
        const [k, f] = [38, 61];
        const x = randomArray(k);
        const nw = randomArray(k, 0.1, 1);
        const wg = roundF16(randomArray(f * k, 1 / Math.sqrt(k)));
        const wu = roundF16(randomArray(f * k, 1 / Math.sqrt(k)));
        const xn = rmsNormExact(x, nw, 1e-6, 0);
        for (const subgroups of await subgroupChoices()) {
          const run = async (math: 'f16' | 'f32') => {
            const y = hh.buffer(f * 4);
            await hh.run((rec) =>
              normGemv(rec, {
                x: hh.buffer(x),
                normWeight: hh.buffer(nw),
                eps: 1e-6,
                offset: 0,
                weights: [hh.matrix(wg, f, k, 'f16'), hh.matrix(wu, f, k, 'f16')],
                math,
                biases: null,
                y,
                gated: act,
                subgroups,
              }),
            );
            return hh.read(y, f);
          };
          const got = await run('f16');
          for (let o = 0; o < f; o++) {
            const g = exactDot(xn, wg, o * k, k);
            const u = exactDot(xn, wu, o * k, k);
            const slack = (w: Float32Array) => hwBound(xn, w, o * k, k) * (1 + 1e-4) + 2 ** -18 * absDot(xn, w, o * k, k);
            const [bg, bu] = [slack(wg), slack(wu)];
            const want = ACTS[act](g) * u;
            const bound = ACT_SLOPE * bg * (Math.abs(u) + bu) + (Math.abs(ACTS[act](g)) + ACT_SLOPE * bg) * bu + 1e-5 * Math.abs(want) + 1e-6;
            expect(Math.abs(got[o] - want), `${subgroups ? 'subgroups' : 'tree'}: output ${o}`).toBeLessThanOrEqual(bound);
          }
          expect(maxAbsDiff(got, await run('f32'))).toBeGreaterThan(0);
        }
      },
      F16_TEST_MS,
    );
  }
});
