/**
 * The fast CPU kernels (onnxruntime) against the TypeScript reference, the oracle: each kernel on random
 * data, then whole forwards of every fixture and the embedded model — block statistics, NLL, logits and
 * greedy continuations — through createCpuBackend(spec, weights, kernels) vs createCpuBackend(spec, weights).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/engine/backend.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { createCpuBackend } from '../../src/engine/cpu/backend.ts';
import { loadFastKernels } from '../../src/engine/cpu/fast.ts';
import { type CpuKernels, referenceKernels } from '../../src/engine/cpu/kernels.ts';
import { ACTIVATIONS, type AttentionShape, causalAttention, gated, mapInPlace, matmul } from '../../src/engine/cpu/ops.ts';
import { type Activation, type OrtKernels, type OrtModule, ortKernels } from '../../src/engine/cpu/ort-kernels.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan, withCapture } from '../../src/engine/plan.ts';
import type { HostTensor } from '../../src/engine/safetensors.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { allFixtures, maxRelativeError, readGolden } from './fixtures.ts';

const ROOT = join(import.meta.dirname, '..', '..');

/** Deterministic values in [-1, 1). */
function random(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 2 ** 31 - 1;
  });
}

/** A weight as the checkpoint would hold it, in F32, F16 or BF16 (rounded from `values`). */
function hostTensor(values: Float32Array, shape: number[], dtype: 'F32' | 'F16' | 'BF16', name = 'w'): HostTensor {
  if (dtype === 'F32') return { name, file: 'test', dtype, shape, bytes: new Uint8Array(values.slice().buffer) };
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  for (let i = 0; i < values.length; i++) {
    if (dtype === 'BF16') out[i] = bits[i] >>> 16;
    else {
      // F16 by truncation, enough for a test weight: sign, rebased exponent, top 10 mantissa bits.
      const b = bits[i];
      const exp = ((b >>> 23) & 0xff) - 127 + 15;
      out[i] = ((b >>> 16) & 0x8000) | (exp <= 0 ? 0 : exp >= 31 ? 0x7c00 : (exp << 10) | ((b >>> 13) & 0x3ff));
    }
  }
  return { name, file: 'test', dtype, shape, bytes: new Uint8Array(out.buffer) };
}

const ort = (await import('onnxruntime-node')) as unknown as OrtModule;
// The browser's runtime, run here on its wasm build (Node resolves onnxruntime-web to it): the lab's kernels.
const ortWeb = (await import('onnxruntime-web')) as unknown as OrtModule & { env: { wasm: { numThreads: number } } };
ortWeb.env.wasm.numThreads = 1;
const runtimes = [
  { label: 'onnxruntime-node, weights as inputs', runtime: ort, weights: 'input', executionProviders: ['cpu'] },
  { label: 'onnxruntime-node, weights as initializers', runtime: ort, weights: 'initializer', executionProviders: ['cpu'] },
  { label: 'onnxruntime-web (wasm), weights as initializers', runtime: ortWeb, weights: 'initializer', executionProviders: ['wasm'] },
] as const;

describe.each(runtimes)('$label: kernels vs the TypeScript reference', ({ runtime, weights, executionProviders }) => {
  const fast = ortKernels(runtime, { threads: 2, runtime: 'test', weights, executionProviders });
  const reference = referenceKernels();

  it.each(['F32', 'F16', 'BF16'] as const)('linear with and without bias, %s weights, 1 and 7 rows, within 1e-5', async (dtype) => {
    const w = hostTensor(random(96 * 40, 1), [96, 40], dtype);
    const b = hostTensor(random(96, 2), [96], dtype, 'b');
    for (const bias of [null, b]) {
      const f = fast.prepareLinear(w, bias);
      const r = reference.prepareLinear(w, bias);
      await fast.ready();
      for (const rows of [1, 7]) {
        const x = random(rows * 40, 3 + rows);
        const y = await fast.linear(x, rows, f);
        expect(y).toHaveLength(rows * 96);
        expect(maxRelativeError(y, await reference.linear(x, rows, r))).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  it.each(['silu', 'gelu', 'gelu_new'] as const)('the MLP first half with %s: act(x·Wᵀ + b) and act(x·Gᵀ) ⊙ (x·Uᵀ) within 1e-5', async (act: Activation) => {
    const [ffn, hidden, rows] = [48, 32, 5];
    const wg = random(ffn * hidden, 7).map((v) => v * 3);
    const wu = random(ffn * hidden, 8);
    const bias = random(ffn, 9);
    const x = random(rows * hidden, 10);
    const plain = fast.prepareLinear(hostTensor(wu, [ffn, hidden], 'F32'), hostTensor(bias, [ffn], 'F32', 'b'), act);
    const gate = { weight: hostTensor(wg, [ffn, hidden], 'F32', 'g'), bias: null };
    const up = { weight: hostTensor(wu, [ffn, hidden], 'F32', 'u'), bias: null };
    const fused = fast.prepareGated(gate, up, act);
    await fast.ready();
    const f = ACTIVATIONS[act];
    expect(maxRelativeError(await fast.linear(x, rows, plain), mapInPlace(matmul(x, rows, wu, ffn, hidden, bias), f))).toBeLessThanOrEqual(1e-5);
    const expected = gated(matmul(x, rows, wg, ffn, hidden, null), matmul(x, rows, wu, ffn, hidden, null), f);
    expect(maxRelativeError(await fast.linear(x, rows, fused), expected)).toBeLessThanOrEqual(1e-5);
  });

  it('attention: GQA, sliding window, softcap, KV-cache offsets; within 1e-5', async () => {
    const cases: [AttentionShape, number, number][] = [
      [{ heads: 4, kvHeads: 2, headDim: 16, scale: 0.25, softcap: null, window: null }, 7, 0],
      [{ heads: 9, kvHeads: 3, headDim: 64, scale: 0.125, softcap: null, window: null }, 1, 20],
      [{ heads: 4, kvHeads: 4, headDim: 8, scale: 0.3, softcap: 5, window: null }, 3, 5],
      [{ heads: 6, kvHeads: 2, headDim: 8, scale: 0.35, softcap: 2, window: 4 }, 12, 3],
      [{ heads: 2, kvHeads: 1, headDim: 8, scale: 0.35, softcap: null, window: 1 }, 5, 0],
    ];
    for (const [shape, rows, first] of cases) {
      const width = shape.kvHeads * shape.headDim;
      // Keys/values longer than needed, as a KV cache's buffers are: positions past first + rows are never read.
      const q = random(rows * shape.heads * shape.headDim, rows).map((v) => v * 4);
      const keys = random((first + rows + 3) * width, 11 + first);
      const values = random((first + rows + 3) * width, 12 + first);
      const y = await fast.attention(q, rows, keys, values, first, shape);
      expect(maxRelativeError(y, causalAttention(q, rows, keys, values, first, shape)), JSON.stringify(shape)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('logSumExp of logit rows matches a float64 computation within 1e-6 relative', async () => {
    const [rows, width] = [3, 5000];
    const x = random(rows * width, 13).map((v) => v * 30);
    const y = await fast.logSumExp(x, rows, width);
    for (let r = 0; r < rows; r++) {
      let max = Number.NEGATIVE_INFINITY;
      for (let i = 0; i < width; i++) max = Math.max(max, x[r * width + i]);
      let sum = 0;
      for (let i = 0; i < width; i++) sum += Math.exp(x[r * width + i] - max);
      const expected = max + Math.log(sum);
      expect(Math.abs(y[r] - expected) / Math.abs(expected)).toBeLessThanOrEqual(1e-6);
    }
  });

  it('releaseLinear (block streaming) drops a weight: its bytes leave weightBytes, and preparing it again works', async () => {
    const k = ortKernels(runtime, { threads: 1, runtime: 'test', weights, executionProviders });
    const w = hostTensor(random(16 * 8, 21), [16, 8], 'F32');
    const l = k.prepareLinear(w, null);
    expect(k.weightBytes).toBe(16 * 8 * 4);
    expect(k.prepareLinear(w, null)).toBe(l);
    k.releaseLinear?.(l);
    expect(k.weightBytes).toBe(0);
    const again = k.prepareLinear(w, null);
    expect(again).not.toBe(l);
    await k.ready();
    const x = random(8, 22);
    expect(maxRelativeError(await k.linear(x, 1, again), matmul(x, 1, random(16 * 8, 21), 16, 8, null))).toBeLessThanOrEqual(1e-5);
    k.dispose();
  });

  it('a gate and up of different shapes are refused, naming both tensors', () => {
    const gate = { weight: hostTensor(random(6, 1), [3, 2], 'F32', 'mlp.gate_proj.weight'), bias: null };
    const up = { weight: hostTensor(random(8, 1), [4, 2], 'F32', 'mlp.up_proj.weight'), bias: null };
    expect(() => fast.prepareGated(gate, up, 'silu')).toThrow(/mlp\.gate_proj\.weight \[3,2\] and up mlp\.up_proj\.weight \[4,2\] differ in shape/);
  });
});

describe('onnxruntime kernels when the runtime fails', () => {
  it('ready() rejects with the runtime’s message, which model.ts turns into the fallback reason', async () => {
    const failing = {
      InferenceSession: { create: async () => Promise.reject(new Error('wasm out of memory')) },
      Tensor: ort.Tensor,
    } as unknown as OrtModule;
    const k = ortKernels(failing, { threads: 1, runtime: 'broken', weights: 'input' });
    k.prepareLinear(hostTensor(random(4, 1), [2, 2], 'F32'), null);
    await expect(k.ready()).rejects.toThrow('wasm out of memory');
    k.dispose();
  });
});

interface Pair {
  reference: Backend;
  fast: Backend;
  kernels: CpuKernels;
}

async function backends(dir: string): Promise<{ pair: Pair; checkpoint: Awaited<ReturnType<typeof loadCheckpoint>> }> {
  const checkpoint = await loadCheckpoint(directorySource(dir));
  const kernels = (await loadFastKernels()) as OrtKernels;
  const fast = await createCpuBackend(checkpoint.spec, checkpoint.weights, kernels);
  await kernels.ready();
  const reference = await createCpuBackend(checkpoint.spec, checkpoint.weights);
  return { pair: { reference, fast, kernels }, checkpoint };
}

/** One sequence through both backends: statistics, NLL and every logit row. */
async function compareForward(pair: Pair, ids: readonly number[], layers: number, removed: number[]) {
  const plan = withCapture(makePlan(layers, { blocks: removed }), 'stats');
  const [r, f] = await Promise.all([pair.reference, pair.fast].map((b) => b.forward({ ids, plan, logits: 'all', nll: true })));
  expect(f.stats?.map((s) => s.index)).toEqual(r.stats?.map((s) => s.index));
  for (const [k, s] of (r.stats ?? []).entries()) {
    const g = f.stats?.[k];
    for (const key of ['cosSum', 'angularSum', 'relMagnitudeSum'] as const) {
      // per-token means: the sums of up to seq-len terms each in [0, 2]
      expect(Math.abs((g?.[key] ?? Number.NaN) - s[key]) / s.tokens, `${key} of block ${s.index}`).toBeLessThanOrEqual(1e-4);
    }
  }
  expect(f.nllCount).toBe(r.nllCount);
  expect(Math.abs(f.nllSum - r.nllSum) / Math.abs(r.nllSum), 'NLL').toBeLessThanOrEqual(1e-4);
  expect(maxRelativeError(f.logits as Float32Array, r.logits as Float32Array), 'logits').toBeLessThanOrEqual(1e-4);
}

describe.each(allFixtures())('fast CPU backend vs the reference: $label', ({ name, dir }) => {
  const golden = readGolden(name, dir);
  const loaded = backends(join(dir, name));
  loaded.catch(() => {}); // reported by the tests that await it

  it(`statistics, NLL and logits of ${name} agree within 1e-4, all blocks and with blocks ${golden.removal.removed.join(',')} removed`, async () => {
    const { pair, checkpoint } = await loaded;
    for (const ids of golden.ids) {
      await compareForward(pair, ids, checkpoint.spec.layers, []);
      await compareForward(pair, ids, checkpoint.spec.layers, golden.removal.removed);
    }
  });

  it(`greedy continuations of ${name} (KV cache) are the same tokens`, async () => {
    const { pair, checkpoint } = await loaded;
    const plan = makePlan(checkpoint.spec.layers);
    const prompt = golden.ids[0].slice(0, 6);
    const steps = Math.min(10, checkpoint.spec.maxPositions - prompt.length);
    const [r, f] = await Promise.all([pair.reference, pair.fast].map((b) => new Model(checkpoint, b).generate(prompt, plan, { maxNewTokens: steps })));
    expect(f).toEqual(r);
  });
});

describe('fast CPU backend vs the reference: the embedded model', () => {
  const loaded = backends(join(ROOT, 'public', 'models', 'sotu-llama'));
  loaded.catch(() => {}); // reported by the tests that await it

  it('statistics, NLL and logits on two 48-token windows agree within 1e-4; greedy continuations match', async () => {
    const { pair, checkpoint } = await loaded;
    const model = new Model(checkpoint, pair.reference);
    const text = 'Mr. Speaker, Mr. Vice President, members of Congress, my fellow Americans: tonight we meet in a time of change and of hope for our nation and the world.';
    const ids = model.requireTokenizer().encode(text.repeat(5));
    expect(ids.length).toBeGreaterThanOrEqual(96);
    for (const window of [ids.slice(0, 48), ids.slice(48, 96)]) await compareForward(pair, window, checkpoint.spec.layers, [3, 7]);
    const plan = makePlan(checkpoint.spec.layers);
    const [r, f] = await Promise.all([pair.reference, pair.fast].map((b) => new Model(checkpoint, b).generate(ids.slice(0, 12), plan, { maxNewTokens: 10 })));
    expect(f).toEqual(r);
  });

  it('the fast backend says what it runs on, with its thread count', async () => {
    const { pair } = await loaded;
    expect(pair.fast.info.description).toMatch(/^CPU \(onnxruntime-node 1\.\d+\.\d+(, \d+ threads)?\)$/);
    expect(pair.reference.info.description).toBe('CPU (TypeScript reference)');
  });
});
