/**
 * The f16-arithmetic kernels' indexing and the backend's wiring of them, run here although SwiftShader has
 * no shader-f16: a device wrapper rewrites each f16 module before compiling it: the vec2<f16> weight words
 * become u32 words unpacked with unpack2x16float (the same bytes), and every other f16 becomes f32. What
 * runs is then the f16 path's exact code with f32 arithmetic: its runs of four, the k mod 4 tail, the lane
 * sums, the GEMM's tiles, and which matrices the backend gives f16 math, against the exact dot products
 * (kernels) and the f32-arithmetic backend (the embedded model, prefill and decode). The f16 numerics are
 * tests/unit/f16-math.test.ts's; the WGSL's types under f16, tests/unit/f16-wgsl.test.ts's.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { silu } from '../../src/engine/cpu/ops.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { createWebGpuBackend, type WebGpuBackend } from '../../src/engine/webgpu/backend.ts';
import { acquireGpu, type GpuContext } from '../../src/engine/webgpu/device.ts';
import { normGemv } from '../../src/engine/webgpu/kernels/decode.ts';
import { matmul } from '../../src/engine/webgpu/kernels/matmul.ts';
import { EMBEDDED } from '../engine/cli-run.ts';
import { absDot, exactDot } from '../unit/f16-emulation.ts';
import { KernelHarness, maxAbsDiff, roundF16 } from './harness.ts';
import { randomNormal } from './random-model.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

/** An f16-arithmetic module with its f16 replaced by f32 (weights still read from packed f16 words); throws if it is not one. */
export function asF32(code: string): string {
  if (!code.includes('enable f16;')) return code;
  const names = [...code.matchAll(/var<storage, read> (\w+): array<vec2<f16>>;/g)].map((m) => m[1]);
  if (names.length === 0) throw new Error('an f16 module without f16 weights');
  let out = code.replace('enable f16;', '');
  for (const n of names) {
    const before = out;
    out = out
      .replace(`var<storage, read> ${n}: array<vec2<f16>>;`, `var<storage, read> ${n}: array<u32>;`)
      .replaceAll(`${n}[i >> 1u][i & 1u]`, `unpack2x16float(${n}[i >> 1u])[i & 1u]`)
      .replace(`vec4<f16>(${n}[j], ${n}[j + 1u])`, `vec4<f16>(unpack2x16float(${n}[j]), unpack2x16float(${n}[j + 1u]))`);
    if (out.split('unpack2x16float').length - before.split('unpack2x16float').length !== 4) throw new Error(`the accessors of ${n} are not the ones expected`);
  }
  return out.replace(/\bf16\b/g, 'f32');
}

/** The adapter's context with a device that compiles f16 modules as asF32 and says it offers shader-f16. */
function substituting(ctx: GpuContext, compiled: string[]): GpuContext {
  const device = new Proxy(ctx.device, {
    get(target, prop) {
      if (prop === 'createShaderModule')
        return (d: GPUShaderModuleDescriptor) => {
          if (d.code.includes('enable f16;')) compiled.push(d.label ?? '');
          return target.createShaderModule({ ...d, code: asF32(d.code) });
        };
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { ...ctx, device, features: new Set([...ctx.features, 'shader-f16']) };
}

const rand = randomNormal(23);
const randomArray = (n: number, scale = 1, offset = 0) => Float32Array.from({ length: n }, () => offset + scale * rand());

describeGpu('the f16-arithmetic path with f16 replaced by f32 (indexing and wiring, on this adapter)', () => {
  let ctx: GpuContext;
  let h: KernelHarness;
  const compiled: string[] = [];
  beforeAll(async () => {
    ctx = await acquireGpu();
    h = new KernelHarness(substituting(ctx, compiled));
  }, HOOK_TIMEOUT_MS);
  afterAll(() => h?.destroy());

  /** f32 products and sums of k terms: within (k + 2)·2⁻²⁴·Σ|x·w| of exact. */
  const f32Bound = (x: ArrayLike<number>, w: ArrayLike<number>, at: number, k: number) => (k + 2) * 2 ** -24 * absDot(x, w, at, k) + 1e-7;

  for (const [rows, n, k] of [
    [1, 70, 134],
    [1, 64, 128],
    [5, 70, 134],
    [33, 65, 128],
  ] as const) {
    test(`${rows === 1 ? 'GEMV' : 'GEMM'} ${rows}×${k} · (${n}×${k})ᵀ + bias, accumulated: the f16 path's code equals exact within f32 rounding`, async () => {
      const x = randomArray(rows * k);
      const w = roundF16(randomArray(n * k, 1 / Math.sqrt(k)));
      const b = randomArray(n, 0.1);
      const y0 = randomArray(rows * n);
      const y = h.buffer(y0);
      await h.run((rec) => matmul(rec, { x: h.buffer(x), rows, w: h.weights(w, 'f16'), format: 'f16', math: 'f16', bias: h.buffer(b), y, n, k, accumulate: true, alpha: 0.5 }));
      const got = await h.read(y, rows * n);
      for (let r = 0; r < rows; r++) {
        const xr = x.subarray(r * k, (r + 1) * k);
        for (let o = 0; o < n; o++) {
          const want = y0[r * n + o] + 0.5 * (exactDot(xr, w, o * k, k) + b[o]);
          expect(Math.abs(got[r * n + o] - want), `row ${r} output ${o}`).toBeLessThanOrEqual(f32Bound(xr, w, o * k, k) + 2 ** -22 * Math.abs(y0[r * n + o]));
        }
      }
      expect(compiled.some((label) => label.startsWith(`matmul-${rows === 1 ? 'gemv' : 'gemm'}-f16-f16math`))).toBe(true);
    });
  }

  test('fused decode GEMVs (norm + q | k | v with biases, k = 70; gated silu, k = 38), tree and subgroup reductions: the f16 path’s code equals exact within f32 rounding', async () => {
    const rms = (x: Float32Array, nw: Float32Array) => {
      const s = 1 / Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + 1e-5);
      return Float64Array.from(x, (v, i) => v * s * nw[i]);
    };
    for (const subgroups of ctx.features.has('subgroups') ? [false, true] : [false]) {
      const [k, nq, nkv] = [70, 48, 16];
      const x = randomArray(k);
      const nw = randomArray(k, 0.1, 1);
      const ws = [nq, nkv, nkv].map((n) => roundF16(randomArray(n * k, 1 / Math.sqrt(k))));
      const bs = [nq, nkv, nkv].map((n) => randomArray(n, 0.1));
      const y = h.buffer((nq + 2 * nkv) * 4);
      const matrices = ws.map((w, i) => h.matrix(w, [nq, nkv, nkv][i], k, 'f16'));
      await h.run((rec) =>
        normGemv(rec, {
          x: h.buffer(x),
          normWeight: h.buffer(nw),
          eps: 1e-5,
          offset: 0,
          weights: matrices,
          math: 'f16',
          biases: bs.map((b) => h.buffer(b)),
          y,
          gated: null,
          subgroups,
        }),
      );
      const got = await h.read(y, nq + 2 * nkv);
      const xn = rms(x, nw);
      let at = 0;
      ws.forEach((w, part) => {
        for (let o = 0; o < [nq, nkv, nkv][part]; o++) {
          const want = exactDot(xn, w, o * k, k) + bs[part][o];
          expect(Math.abs(got[at + o] - want), `part ${part} output ${o}`).toBeLessThanOrEqual(f32Bound(xn, w, o * k, k) + 2 ** -20 * absDot(xn, w, o * k, k));
        }
        at += [nq, nkv, nkv][part];
      });

      const [kg, f] = [38, 61];
      const xg = randomArray(kg);
      const nwg = randomArray(kg, 0.1, 1);
      const [wg, wu] = [0, 1].map(() => roundF16(randomArray(f * kg, 1 / Math.sqrt(kg))));
      const yg = h.buffer(f * 4);
      const gated = [h.matrix(wg, f, kg, 'f16'), h.matrix(wu, f, kg, 'f16')];
      await h.run((rec) =>
        normGemv(rec, { x: h.buffer(xg), normWeight: h.buffer(nwg), eps: 1e-5, offset: 0, weights: gated, math: 'f16', biases: null, y: yg, gated: 'silu', subgroups }),
      );
      const gotG = await h.read(yg, f);
      const xgn = rms(xg, nwg);
      for (let o = 0; o < f; o++) {
        const want = silu(exactDot(xgn, wg, o * kg, kg)) * exactDot(xgn, wu, o * kg, kg);
        expect(Math.abs(gotG[o] - want), `gated output ${o}`).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want)));
      }
    }
    expect(compiled.filter((label) => label.startsWith('norm-gemv-f16-f16math')).length).toBeGreaterThanOrEqual(2);
  });

  test(
    'the embedded model with f16Math (its f16 written as f32): every matrix takes the f16 path, and prefill and 6 decode steps equal the f32 backend within 2e-4',
    async () => {
      const { spec, weights } = await loadCheckpoint(directorySource(EMBEDDED));
      const before = compiled.length;
      const f16 = (await createWebGpuBackend(spec, weights, { context: substituting(ctx, compiled), f16Math: true })) as WebGpuBackend;
      const f32 = await createWebGpuBackend(spec, weights, { context: ctx });
      try {
        expect(f16.f16MathSummary).toBe('f16 arithmetic');
        // precompile: the GEMM and GEMV of every matrix shape and the fused q|k|v and gate/up GEMVs, all f16
        const labels = compiled.slice(before);
        expect(labels.filter((l) => l.startsWith('matmul-gemm-f16-f16math')).length).toBeGreaterThan(0);
        expect(labels.filter((l) => l.startsWith('norm-gemv-f16-f16math')).length).toBe(2);
        const plan = makePlan(spec.layers);
        const ids = [1, 17, 300, 42, 9, 1000, 77, 5];
        const caches = [f32.createCache(ids.length + 6, plan), f16.createCache(ids.length + 6, plan)];
        const all = { ids, plan, logits: 'all' as const, nll: true };
        const [want, got] = [await f32.forward(all), await f16.forward(all)];
        expect(maxAbsDiff(got.logits as Float32Array, want.logits as Float32Array)).toBeLessThanOrEqual(2e-4);
        let input = ids;
        for (let step = 0; step < 7; step++) {
          const a = (await f32.forward({ ids: input, plan, logits: 'last', cache: caches[0] })).logits as Float32Array;
          const b = (await f16.forward({ ids: input, plan, logits: 'last', cache: caches[1] })).logits as Float32Array;
          expect(maxAbsDiff(b, a), `step ${step}`).toBeLessThanOrEqual(2e-4);
          input = [a.indexOf(Math.max(...a))];
        }
        for (const c of caches) c.dispose();
      } finally {
        f16.dispose();
        f32.dispose();
      }
    },
    HOOK_TIMEOUT_MS * 2,
  );
});
