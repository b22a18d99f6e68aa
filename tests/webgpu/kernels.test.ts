/**
 * Each WGSL kernel against the CPU reference step of src/engine/cpu/ops.ts, on small random shapes that
 * are deliberately not multiples of the tiles (GEMM 32×64×16, GEMV 4 outputs, attention chunks of 64),
 * with every option the families need: residual scale, (1 + w) norms, post-norm accumulation, partial
 * rotary with an attention factor, sliding windows, soft-caps, the three activations gated and plain.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import * as ops from '../../src/engine/cpu/ops.ts';
import { activation, finalLogits } from '../../src/engine/webgpu/kernels/activation.ts';
import { causalAttention } from '../../src/engine/webgpu/kernels/attention.ts';
import { embedTokens } from '../../src/engine/webgpu/kernels/embedding.ts';
import { matmul, matmulMatrix } from '../../src/engine/webgpu/kernels/matmul.ts';
import { tokenNll } from '../../src/engine/webgpu/kernels/nll.ts';
import { norm } from '../../src/engine/webgpu/kernels/norm.ts';
import { rope, ropeTable } from '../../src/engine/webgpu/kernels/rope.ts';
import { blockStats, sumRows, tokenStats } from '../../src/engine/webgpu/kernels/stats.ts';
import { KernelHarness, maxAbsDiff, roundAs } from './harness.ts';
import { randomNormal } from './random-model.ts';
import { uniforms } from '../../src/engine/webgpu/kernels/common.ts';
import { describeGpu, HOOK_TIMEOUT_MS } from './setup.ts';

const rand = randomNormal(7);
const randomArray = (n: number, scale = 1, offset = 0) => Float32Array.from({ length: n }, () => offset + scale * rand());
const measured: Record<string, number> = {};

describeGpu('WebGPU kernels vs the CPU reference ops', () => {
  let h: KernelHarness;
  beforeAll(async () => {
    h = await KernelHarness.create();
  }, HOOK_TIMEOUT_MS);
  afterAll(() => {
    h?.destroy();
    console.log('[tests/webgpu] kernel max abs errors:', JSON.stringify(measured));
  });
  const record = (name: string, err: number) => {
    measured[name] = Math.max(measured[name] ?? 0, Number(err.toExponential(2)));
    return err;
  };

  for (const format of ['f32', 'f16', 'bf16'] as const) {
    for (const [rows, n, k, withBias] of [
      [1, 70, 37, true],
      [1, 5, 130, false],
      [5, 70, 37, true],
      [33, 65, 17, false],
      [40, 129, 50, true],
    ] as const) {
      test(`matmul ${format} ${rows}×${k} · (${n}×${k})ᵀ${withBias ? ' + bias' : ''} matches ops.matmul within 2e-5`, async () => {
        const x = randomArray(rows * k);
        const wValues = randomArray(n * k, 1 / Math.sqrt(k));
        const wRef = roundAs(wValues, format);
        const bias = withBias ? randomArray(n, 0.1) : null;
        const y = h.buffer(rows * n * 4);
        await h.run((rec) => matmul(rec, { x: h.buffer(x), rows, w: h.weights(wValues, format), format, bias: bias ? h.buffer(bias) : null, y, n, k }));
        const want = ops.matmul(x, rows, wRef, n, k, bias);
        expect(record(`matmul-${format}`, maxAbsDiff(await h.read(y, rows * n), want))).toBeLessThan(2e-5);
      });
    }
    test(`matmul ${format} with residual accumulate (residual scale 1 and 0.37) and a destination row offset (KV-cache write)`, async () => {
      for (const [rows, alpha] of [
        [1, 1],
        [3, 1],
        [1, 0.37],
        [3, 0.37],
      ]) {
        const [n, k, offset] = [19, 23, 2];
        const x = randomArray(rows * k);
        const wValues = randomArray(n * k, 0.2);
        const wRef = roundAs(wValues, format);
        const before = randomArray((offset + rows) * n);
        const y = h.buffer(before);
        await h.run((rec) => matmul(rec, { x: h.buffer(x), rows, w: h.weights(wValues, format), format, bias: null, y, n, k, accumulate: true, alpha, outRowOffset: offset }));
        const want = before.slice();
        const product = ops.matmul(x, rows, wRef, n, k, null);
        for (let i = 0; i < product.length; i++) want[offset * n + i] += alpha * product[i];
        expect(record(`matmul-acc-${format}`, maxAbsDiff(await h.read(y, want.length), want))).toBeLessThan(2e-5);
      }
    });
    test(`matmul ${format} over a matrix split into row chunks (not a divisor of n, odd k) equals the unsplit matmul exactly`, async () => {
      // n 70, k 37: f32 rows are 148 bytes → 6 rows per 1000-byte chunk (11×6 + 4); f16 / bf16 rows 74 bytes → 13 per chunk (5×13 + 5).
      const [n, k, offset] = [70, 37, 1];
      const wValues = randomArray(n * k, 1 / Math.sqrt(k));
      const whole = h.matrix(wValues, n, k, format);
      const split = h.matrix(wValues, n, k, format, 1000);
      expect(split.chunks.map((c) => c.rows)).toEqual(format === 'f32' ? [...Array(11).fill(6), 4] : [...Array(5).fill(13), 5]);
      const bias = h.buffer(randomArray(n, 0.1));
      for (const rows of [1, 5]) {
        const x = h.buffer(randomArray(rows * k));
        for (const accumulate of [false, true]) {
          const before = randomArray((offset + rows) * n);
          const [a, b] = [h.buffer(before), h.buffer(before)];
          await h.run((rec) => matmulMatrix(rec, { x, rows, w: whole, bias, y: a, accumulate, outRowOffset: offset }));
          const dispatches = await h.run((rec) => matmulMatrix(rec, { x, rows, w: split, bias, y: b, accumulate, outRowOffset: offset }));
          expect(dispatches).toBe(split.chunks.length);
          const [got, want] = [await h.read(b, before.length), await h.read(a, before.length)];
          expect(maxAbsDiff(got, want)).toBe(0);
          expect(maxAbsDiff(got.subarray(0, offset * n), before.subarray(0, offset * n))).toBe(0);
        }
      }
    });
  }

  for (const width of [48, 33, 130]) {
    test(`RMSNorm, Gemma's (1 + w) RMSNorm and LayerNorm over width ${width} (rows from an offset) match ops within 1e-5`, async () => {
      const rows = 5;
      const x = randomArray(rows * width, 2, 0.5);
      const w = randomArray(width, 0.1, 1);
      const b = randomArray(width, 0.1);
      for (const [kind, offset] of [
        ['rms', 0],
        ['rms', 1],
        ['layer', 0],
      ] as const) {
        const y = h.buffer(3 * width * 4);
        await h.run((rec) => norm(rec, { kind, x: h.buffer(x), rows: 3, width, w: h.buffer(w), b: kind === 'layer' ? h.buffer(b) : null, y, eps: 1e-5, offset, inRowOffset: 2 }));
        const tail = x.slice(2 * width);
        const want = kind === 'rms' ? ops.rmsNorm(tail, width, w, 1e-5, offset) : ops.layerNorm(tail, width, w, b, 1e-5);
        expect(record(`norm-${kind}${offset ? '-offset' : ''}`, maxAbsDiff(await h.read(y, 3 * width), want))).toBeLessThan(1e-5);
      }
    });
  }

  test('a post-norm adds alpha · norm(branch) into the residual rows at an output row offset (rms + offset, layer)', async () => {
    const [rows, width, outOffset, alpha] = [4, 37, 2, 0.22];
    const branch = randomArray(rows * width, 3);
    const w = randomArray(width, 0.1);
    const b = randomArray(width, 0.1);
    for (const [kind, offset] of [
      ['rms', 1],
      ['layer', 0],
    ] as const) {
      const before = randomArray((outOffset + rows) * width);
      const y = h.buffer(before);
      await h.run((rec) =>
        norm(rec, {
          kind,
          x: h.buffer(branch),
          rows,
          width,
          w: h.buffer(w),
          b: kind === 'layer' ? h.buffer(b) : null,
          y,
          eps: 1e-6,
          offset,
          outRowOffset: outOffset,
          accumulate: true,
          alpha,
        }),
      );
      const normed = kind === 'rms' ? ops.rmsNorm(branch, width, w, 1e-6, offset) : ops.layerNorm(branch, width, w, b, 1e-6);
      const want = before.slice();
      ops.addInPlace(want.subarray(outOffset * width), normed, alpha);
      expect(record(`norm-accumulate-${kind}`, maxAbsDiff(await h.read(y, want.length), want))).toBeLessThan(2e-6);
    }
  });

  // [headDim, rotaryDim, attentionFactor, norm: none | per-head RMSNorm | per-head (1 + w) RMSNorm (gemma3)]
  for (const [headDim, rotaryDim, factor, normKind] of [
    [32, 32, 1, 'none'],
    [64, 64, 1, 'rms'],
    [32, 32, 1, 'rms+1'],
    [32, 8, 1, 'none'],
    [64, 16, 1.19, 'rms'],
    [32, 0, 1, 'rms+1'],
  ] as const) {
    const what = `${rotaryDim === 0 ? 'no RoPE' : rotaryDim < headDim ? `partial RoPE (${rotaryDim} of ${headDim} dims)` : `RoPE head_dim ${headDim}`}${factor !== 1 ? ` × attention factor ${factor}` : ''}${normKind === 'none' ? '' : ` with per-head q/k ${normKind === 'rms' ? 'RMSNorm' : '(1 + w) RMSNorm'}`}`;
    test(`${what}, rows placed at a cache offset, matches ops within 2e-6`, async () => {
      const [heads, rows, first] = [3, 4, 5];
      const invFreq = Float64Array.from({ length: rotaryDim / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / rotaryDim));
      const rowWidth = heads * headDim;
      const buffer = randomArray((first + rows) * rowWidth);
      const offset = normKind === 'rms+1' ? 1 : 0;
      const w = randomArray(headDim, 0.1, 1 - offset);
      const x = h.buffer(buffer);
      const table = rotaryDim > 0 ? h.buffer(ropeTable(invFreq, factor, first + rows)) : null;
      const normWeight = normKind === 'none' ? null : h.buffer(w);
      await h.run((rec) => rope(rec, { x, rows, heads, headDim, rowOffset: first, firstPosition: first, table, rotaryDim, normWeight, eps: 1e-6, offset }));
      const part = buffer.slice(first * rowWidth);
      const want = normKind === 'none' ? part : ops.rmsNorm(part, headDim, w, 1e-6, offset);
      if (rotaryDim > 0) ops.rope(want, rows, heads, headDim, rotaryDim, invFreq, factor, first);
      const got = await h.read(x, (first + rows) * rowWidth);
      expect(maxAbsDiff(got.subarray(0, first * rowWidth), buffer.subarray(0, first * rowWidth))).toBe(0);
      expect(record('rope', maxAbsDiff(got.subarray(first * rowWidth), want))).toBeLessThan(2e-6);
    });
  }

  for (const headDim of [32, 64]) {
    for (const kvHeads of [4, 2, 1]) {
      for (const [rows, first] of [
        [7, 0],
        [3, 70],
      ] as const) {
        test(`causal attention GQA ${4 / kvHeads} head_dim ${headDim}, ${rows} rows after ${first} cached positions, matches ops within 1e-5`, async () => {
          const heads = 4;
          const positions = first + rows;
          const q = randomArray(rows * heads * headDim);
          const keys = randomArray(positions * kvHeads * headDim);
          const values = randomArray(positions * kvHeads * headDim);
          const out = h.buffer(rows * heads * headDim * 4);
          const shape = { heads, kvHeads, headDim, scale: 1 / Math.sqrt(headDim), softcap: null, window: null };
          await h.run((rec) => causalAttention(rec, { q: h.buffer(q), rows, keys: h.buffer(keys), values: h.buffer(values), firstPosition: first, ...shape, out }));
          const want = ops.causalAttention(q, rows, keys, values, first, shape);
          expect(record('attention', maxAbsDiff(await h.read(out, want.length), want))).toBeLessThan(1e-5);
        });
      }
    }
  }

  // Windows shorter than the sequence (and than one 64-key chunk, and longer), soft-capped and rescaled scores.
  for (const [rows, first, window, softcap, scale] of [
    [20, 0, 5, null, 0.25],
    [3, 90, 70, null, 0.25],
    [1, 130, 1, null, 0.25],
    [9, 0, null, 2, 0.6],
    [12, 40, 16, 3, 0.6],
  ] as const) {
    test(`attention with ${window === null ? 'no window' : `a ${window}-key sliding window`}${softcap ? `, scores soft-capped at ${softcap}` : ''}, scale ${scale}: ${rows} rows after ${first} cached positions match ops within 1e-5`, async () => {
      const [heads, kvHeads, headDim] = [4, 2, 32];
      const positions = first + rows;
      const q = randomArray(rows * heads * headDim);
      const keys = randomArray(positions * kvHeads * headDim);
      const values = randomArray(positions * kvHeads * headDim);
      const out = h.buffer(rows * heads * headDim * 4);
      const shape = { heads, kvHeads, headDim, scale, softcap, window };
      await h.run((rec) => causalAttention(rec, { q: h.buffer(q), rows, keys: h.buffer(keys), values: h.buffer(values), firstPosition: first, ...shape, out }));
      const want = ops.causalAttention(q, rows, keys, values, first, shape);
      expect(record('attention-window-softcap', maxAbsDiff(await h.read(out, want.length), want))).toBeLessThan(1e-5);
    });
  }

  for (const act of ['silu', 'gelu_new', 'gelu'] as const) {
    test(`${act}, gated (act(gate) · up) and plain, over 1000 elements matches ops within 1e-6 relative`, async () => {
      const n = 1000;
      const gate = randomArray(n, 4);
      const up = randomArray(n, 2);
      const relative = (got: Float32Array, want: Float32Array) => maxAbsDiff(got, want) / Math.max(...want.map(Math.abs));
      const g = h.buffer(gate);
      await h.run((rec) => activation(rec, act, g, h.buffer(up), n));
      expect(record(`${act}-gated`, relative(await h.read(g, n), ops.gated(gate, up, ops.ACTIVATIONS[act])))).toBeLessThan(1e-6);
      const x = h.buffer(gate);
      await h.run((rec) => activation(rec, act, x, null, n));
      expect(record(act, relative(await h.read(x, n), ops.mapInPlace(gate.slice(), ops.ACTIVATIONS[act])))).toBeLessThan(1e-6);
    });
  }

  test('the logits map (× scale, then cap · tanh(z / cap)) matches ops.finalLogits within 1e-6 relative; scale 1 without a cap records nothing', async () => {
    const n = 777;
    const z = randomArray(n, 20);
    for (const [scale, cap] of [
      [0.125, null],
      [1, 30],
      [0.5, 3],
    ] as const) {
      const buffer = h.buffer(z);
      await h.run((rec) => finalLogits(rec, buffer, n, scale, cap));
      const want = ops.finalLogits(z.slice(), scale, cap);
      // f32 rounding of values up to the cap: relative to the largest logit.
      expect(record('final-logits (relative)', maxAbsDiff(await h.read(buffer, n), want) / Math.max(...want.map(Math.abs)))).toBeLessThan(1e-6);
    }
    expect(await h.run((rec) => finalLogits(rec, h.buffer(z), n, 1, null))).toBe(0);
  });

  test('a uniform layout declares its WGSL struct and packs the same fields in the same order', () => {
    const layout = uniforms({ rows: 'u32', eps: 'f32', window: 'u32' });
    expect(layout.wgsl).toContain('struct Params { rows: u32, eps: f32, window: u32 }');
    const view = new DataView(layout.pack({ rows: 7, eps: 0.5, window: 4096 }).buffer);
    expect([view.getUint32(0, true), view.getFloat32(4, true), view.getUint32(8, true)]).toEqual([7, 0.5, 4096]);
    expect(() => layout.pack({ rows: -1, eps: 0, window: 0 })).toThrow(/rows must be a u32/);
  });

  for (const format of ['f32', 'f16', 'bf16'] as const) {
    for (const split of [false, true]) {
      // Four 70-wide rows per binding: 11 rows become chunks of 4 + 4 + 3.
      const limit = split ? 4 * 70 * (format === 'f32' ? 4 : 2) : 2 ** 30;
      test(`embedding gather (${format}${split ? ', split into row chunks 4+4+3' : ''}) × embed scale plus learned positions from an offset matches the CPU gather exactly`, async () => {
        const [vocab, hidden, rows, first] = [11, 70, 5, 3];
        // Gemma's √hidden rounded to f32, as the spec holds it (f32 × f32 is exact in float64, so rounding once matches).
        const scale = split ? 1 : Math.fround(Math.sqrt(hidden));
        const embed = randomArray(vocab * hidden);
        const positions = randomArray(16 * hidden);
        const ids = Uint32Array.from([3, 0, 10, 3, 9]);
        const matrix = h.matrix(embed, vocab, hidden, format, limit);
        expect(matrix.chunks.map((c) => c.rows)).toEqual(split ? [4, 4, 3] : [vocab]);
        const x = h.buffer(rows * hidden * 4);
        // Chunk 1 (rows 4..7) holds no token: with the CPU ids it records no dispatch.
        const dispatches = await h.run((rec) =>
          embedTokens(rec, { ids: h.buffer(ids), tokenIds: ids, rows, embed: matrix, positions: h.buffer(positions), firstPosition: first, hidden, scale, x }),
        );
        expect(dispatches).toBe(split ? 2 : 1);
        const ref = roundAs(embed, format);
        const want = new Float32Array(rows * hidden);
        ids.forEach((id, t) => {
          for (let i = 0; i < hidden; i++) want[t * hidden + i] = Math.fround(ref[id * hidden + i] * scale) + positions[(first + t) * hidden + i];
        });
        expect(maxAbsDiff(await h.read(x, want.length), want)).toBe(0);
      });
    }
  }

  for (const subgroups of [false, true]) {
    const path = subgroups ? 'subgroups' : 'tree';
    test(`[${path}] block statistics sums match ops.blockStatSums within 1e-6 per token, also for nearly equal states`, async (ctx) => {
      // the subgroup path runs where the adapter offers `subgroups` (SwiftShader does); elsewhere the test says it skipped
      if (subgroups && !h.ctx.features.has('subgroups')) ctx.skip();
      for (const [width, noise] of [
        [48, 1],
        [67, 1e-3],
        [130, 0.3],
      ] as const) {
        const rows = 9;
        const a = randomArray(rows * width);
        const b = a.map((v) => v * 1.1 + noise * rand());
        const results = h.buffer(4 * 3 * 4);
        await h.run((rec) => blockStats(rec, h.buffer(a), h.buffer(b), rows, width, h.buffer(rows * 3 * 4), results, 2, subgroups));
        const got = await h.read(results, 3, 6);
        const want = ops.blockStatSums(a, b, width);
        const err = maxAbsDiff(got, [want.cosSum, want.angularSum, want.relMagnitudeSum]) / rows;
        expect(record('block-stats', err)).toBeLessThan(1e-6);
      }
    });

    test(`[${path}] a forward’s shared stats table: strided per-token rows, x_in advanced in place, one sumRows for every block`, async (ctx) => {
      if (subgroups && !h.ctx.features.has('subgroups')) ctx.skip();
      // three "blocks" x0 → x1 → x2 → x3, as run() records them: x_in copied once, each tokenStats advances it
      const [rows, width, slots] = [5, 70, 3];
      const states = [randomArray(rows * width)];
      for (let s = 0; s < slots; s++) states.push(states[s].map((v) => v * 0.9 + 0.2 * rand()));
      const xin = h.buffer(states[0]);
      const outs = states.slice(1).map((s) => h.buffer(s));
      const perToken = h.buffer(rows * slots * 3 * 4);
      const results = h.buffer(slots * 3 * 4);
      await h.run((rec) => {
        for (const [slot, x] of outs.entries()) tokenStats(rec, xin, x, rows, width, perToken, { stride: slots * 3, offset: slot * 3, advance: true, subgroups });
        sumRows(rec, perToken, rows, slots * 3, results, 0);
      });
      const got = await h.read(results, slots * 3);
      for (let slot = 0; slot < slots; slot++) {
        const want = ops.blockStatSums(states[slot], states[slot + 1], width);
        const err = maxAbsDiff(got.slice(slot * 3, slot * 3 + 3), [want.cosSum, want.angularSum, want.relMagnitudeSum]) / rows;
        expect(record('block-stats', err)).toBeLessThan(1e-6);
      }
      // after the last block x_in holds x_3 exactly (a copy, not arithmetic)
      expect(maxAbsDiff(await h.read(xin, rows * width), states[slots])).toBe(0);
    });
  }

  test('per-token NLL summed on the GPU matches ops.nll within 1e-6 relative', async () => {
    const [rows, vocab] = [6, 333];
    const logits = randomArray(rows * vocab, 3);
    const ids = Uint32Array.from([5, 300, 2, 332, 0, 17]);
    const perToken = h.buffer((rows - 1) * 4);
    const total = h.buffer(16);
    await h.run((rec) => {
      tokenNll(rec, h.buffer(logits), h.buffer(ids), rows - 1, vocab, perToken);
      sumRows(rec, perToken, rows - 1, 1, total, 1);
    });
    let want = 0;
    for (let t = 0; t + 1 < rows; t++) want += ops.nll(logits, t * vocab, vocab, ids[t + 1]);
    const [got] = await h.read(total, 1, 1);
    expect(record('nll', Math.abs(got - want) / want)).toBeLessThan(1e-6);
    // The same rows' logits in groups of 2 rows (the head's row groups): each group writes its rows' NLLs.
    const grouped = h.buffer((rows - 1) * 4);
    const idsBuffer = h.buffer(ids);
    for (let g = 0; g < rows - 1; g += 2) {
      const group = h.buffer(logits.subarray(g * vocab, (g + 2) * vocab));
      await h.run((rec) => tokenNll(rec, group, idsBuffer, Math.min(2, rows - 1 - g), vocab, grouped, g));
    }
    expect(maxAbsDiff(await h.read(grouped, rows - 1), await h.read(perToken, rows - 1))).toBe(0);
  });
});
