/**
 * The decode-step kernels (kernels/decode.ts) against the CPU reference ops, each on the plain (shared-
 * memory tree) and the subgroup reduction path: norm folded into a GEMV over q | k | v (with and without
 * norm / bias, f32 and packed f16), the gated gate/up GEMV for the three activations, decode attention
 * with RoPE (full and partial), per-head q/k norms, windows, soft-caps and GQA writing its new k / v
 * row into the cache, and the GPU argmax (ties → first index, as sampling.ts).
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import * as ops from '../../src/engine/cpu/ops.ts';
import { argmax } from '../../src/engine/sampling.ts';
import { argmaxIndex, attentionDecode, normGemv } from '../../src/engine/webgpu/kernels/decode.ts';
import { ropeTable } from '../../src/engine/webgpu/kernels/rope.ts';
import { KernelHarness, maxAbsDiff, roundF16 } from './harness.ts';
import { randomNormal } from './random-model.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

const rand = randomNormal(11);
const randomArray = (n: number, scale = 1, offset = 0) => Float32Array.from({ length: n }, () => offset + scale * rand());
const measured: Record<string, number> = {};
const ACTS = { silu: ops.silu, gelu_new: ops.gelu_new, gelu: ops.gelu } as const;

describeGpu('WebGPU decode kernels vs the CPU reference ops (tree and subgroup reductions)', () => {
  let h: KernelHarness;
  beforeAll(async () => {
    h = await KernelHarness.create();
  }, HOOK_TIMEOUT_MS);
  afterAll(() => {
    h?.destroy();
    console.log('[tests/webgpu] decode kernel max abs errors:', JSON.stringify(measured));
  });
  const record = (name: string, err: number) => {
    measured[name] = Math.max(measured[name] ?? 0, Number(err.toExponential(2)));
    return err;
  };
  /** The subgroup path runs where the adapter offers `subgroups` (SwiftShader does); elsewhere the test says it skipped. */
  const needSubgroups = (subgroups: boolean, skip: () => void) => {
    if (subgroups && !h.ctx.features.has('subgroups')) skip();
  };

  for (const subgroups of [false, true]) {
    const path = subgroups ? 'subgroups' : 'tree';
    for (const format of ['f32', 'f16'] as const) {
      for (const [norm, bias] of [
        [true, false],
        [true, true],
        [false, false],
      ] as const) {
        test(`[${path}] ${norm ? 'RMSNorm + ' : ''}q|k|v GEMV ${format}${bias ? ' + biases' : ''} matches ops.rmsNorm + ops.matmul within 2e-5`, async (ctx) => {
          needSubgroups(subgroups, () => ctx.skip());
          const [k, nq, nkv, offset] = [70, 48, 16, norm && bias ? 1 : 0];
          const x = randomArray(k);
          const nw = randomArray(k, 0.1, 1 - offset);
          const ws = [nq, nkv, nkv].map((n) => randomArray(n * k, 1 / Math.sqrt(k)));
          const bs = [nq, nkv, nkv].map((n) => randomArray(n, 0.1));
          const y = h.buffer((nq + 2 * nkv) * 4);
          await h.run((rec) =>
            normGemv(rec, {
              x: h.buffer(x),
              normWeight: norm ? h.buffer(nw) : null,
              eps: 1e-5,
              offset,
              weights: ws.map((w, i) => h.matrix(w, [nq, nkv, nkv][i], k, format)),
              biases: bias ? bs.map((b) => h.buffer(b)) : null,
              y,
              gated: null,
              subgroups,
            }),
          );
          const xn = norm ? ops.rmsNorm(x, k, nw, 1e-5, offset) : x;
          const want = new Float32Array(nq + 2 * nkv);
          let at = 0;
          ws.forEach((w, i) => {
            const n = [nq, nkv, nkv][i];
            want.set(ops.matmul(xn, 1, format === 'f16' ? roundF16(w) : w, n, k, bias ? bs[i] : null), at);
            at += n;
          });
          expect(record(`norm-gemv-${path}`, maxAbsDiff(await h.read(y, want.length), want))).toBeLessThan(2e-5);
        });
      }
      for (const act of ['silu', 'gelu_new', 'gelu'] as const) {
        test(`[${path}] RMSNorm + gated ${act}(gate) · up GEMV ${format} matches ops within 2e-5`, async (ctx) => {
          needSubgroups(subgroups, () => ctx.skip());
          const [k, f] = [37, 61];
          const x = randomArray(k);
          const nw = randomArray(k, 0.1, 1);
          const wg = randomArray(f * k, 1 / Math.sqrt(k));
          const wu = randomArray(f * k, 1 / Math.sqrt(k));
          const y = h.buffer(f * 4);
          await h.run((rec) =>
            normGemv(rec, {
              x: h.buffer(x),
              normWeight: h.buffer(nw),
              eps: 1e-6,
              offset: 0,
              weights: [h.matrix(wg, f, k, format), h.matrix(wu, f, k, format)],
              biases: null,
              y,
              gated: act,
              subgroups,
            }),
          );
          const xn = ops.rmsNorm(x, k, nw, 1e-6, 0);
          const round = (w: Float32Array) => (format === 'f16' ? roundF16(w) : w);
          const want = ops.gated(ops.matmul(xn, 1, round(wg), f, k, null), ops.matmul(xn, 1, round(wu), f, k, null), ACTS[act]);
          expect(record(`gated-gemv-${path}`, maxAbsDiff(await h.read(y, f), want))).toBeLessThan(2e-5);
        });
      }
    }

    // [headDim, rotaryDim, heads, kvHeads, position, window, softcap, head norm]
    for (const [headDim, rotaryDim, heads, kvHeads, position, window, softcap, headNorm] of [
      [32, 32, 4, 2, 0, null, null, false],
      [32, 32, 4, 2, 9, null, null, false],
      [64, 16, 6, 3, 70, null, null, true],
      [32, 0, 4, 4, 5, null, null, true],
      [32, 32, 4, 1, 80, 16, 30, false],
    ] as const) {
      const what = `head_dim ${headDim}, ${rotaryDim === 0 ? 'no RoPE' : rotaryDim < headDim ? `RoPE on ${rotaryDim} dims` : 'RoPE'}, ${heads}/${kvHeads} heads at position ${position}${window ? `, window ${window}` : ''}${softcap ? `, soft-cap ${softcap}` : ''}${headNorm ? ', per-head q/k norm' : ''}`;
      test(`[${path}] decode attention ${what}: output and the cache row it writes match ops within 1e-5`, async (ctx) => {
        needSubgroups(subgroups, () => ctx.skip());
        const d = headDim;
        const invFreq = Float64Array.from({ length: rotaryDim / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / rotaryDim));
        const qkv = randomArray((heads + 2 * kvHeads) * d);
        const stride = kvHeads * d;
        const oldKeys = randomArray((position + 1) * stride);
        const oldValues = randomArray((position + 1) * stride);
        const keys = h.buffer(oldKeys);
        const values = h.buffer(oldValues);
        const qw = randomArray(d, 0.1, 1);
        const kw = randomArray(d, 0.1, 1);
        const out = h.buffer(heads * d * 4);
        const scale = 1 / Math.sqrt(d);
        await h.run((rec) =>
          attentionDecode(rec, {
            qkv: h.buffer(qkv),
            keys,
            values,
            position,
            heads,
            kvHeads,
            headDim: d,
            scale,
            softcap,
            window,
            table: rotaryDim > 0 ? h.buffer(ropeTable(invFreq, 1, position + 1)) : null,
            rotaryDim,
            qNorm: headNorm ? h.buffer(qw) : null,
            kNorm: headNorm ? h.buffer(kw) : null,
            eps: 1e-6,
            offset: 0,
            out,
            subgroups,
          }),
        );
        let q: Float32Array = qkv.slice(0, heads * d);
        let k: Float32Array = qkv.slice(heads * d, (heads + kvHeads) * d);
        const v = qkv.slice((heads + kvHeads) * d);
        if (headNorm) {
          q = ops.rmsNorm(q, d, qw, 1e-6, 0);
          k = ops.rmsNorm(k, d, kw, 1e-6, 0);
        }
        if (rotaryDim > 0) {
          ops.rope(q, 1, heads, d, rotaryDim, invFreq, 1, position);
          ops.rope(k, 1, kvHeads, d, rotaryDim, invFreq, 1, position);
        }
        const wantKeys = oldKeys.slice();
        wantKeys.set(k, position * stride);
        const wantValues = oldValues.slice();
        wantValues.set(v, position * stride);
        const want = ops.causalAttention(q, 1, wantKeys, wantValues, position, { heads, kvHeads, headDim: d, scale, softcap, window });
        expect(record(`attention-decode-${path}`, maxAbsDiff(await h.read(out, heads * d), want))).toBeLessThan(1e-5);
        expect(maxAbsDiff(await h.read(keys, wantKeys.length), wantKeys)).toBeLessThan(2e-6);
        expect(maxAbsDiff(await h.read(values, wantValues.length), wantValues)).toBe(0);
      });
    }
  }

  test('argmax on the GPU equals sampling.ts argmax: random rows, ties (first index wins), all equal, a maximum at the last index', async () => {
    const rows: Float32Array[] = [randomArray(4096), randomArray(1000), new Float32Array(300).fill(-2), randomArray(777)];
    rows[1][17] = 9;
    rows[1][600] = 9;
    rows[3][776] = 50;
    for (const row of rows) {
      const out = h.buffer(16);
      await h.run((rec) => argmaxIndex(rec, h.buffer(row), row.length, out, 1));
      const got = new Uint32Array((await h.read(out, 2)).buffer)[1];
      expect(got).toBe(argmax(row));
    }
  });
});
