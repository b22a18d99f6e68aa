/** The non-finite scan on raw bits agrees with decoding every value and asking Number.isFinite. */
import { describe, expect, it } from 'vitest';
import { assertFiniteScores, scanTensor } from '../../src/engine/finite.ts';
import { decodeToF32, type HostTensor } from '../../src/engine/safetensors.ts';

/** Random bits, with the edge patterns (±0, ±max finite, ±Inf, NaNs, subnormals) mixed in. */
function randomBytes(count: number, size: 2 | 4, seed: number): Uint8Array {
  let state = seed;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state;
  };
  const edges16 = [0x0000, 0x8000, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0x0001, 0x7f7f, 0x7f80, 0xff80, 0x7fc0];
  const edges32 = [0, 0x80000000, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 1];
  const bytes = new Uint8Array(count * size + 1);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < count; i++) {
    const r = next();
    const edge = r % 7 === 0;
    if (size === 2) view.setUint16(1 + 2 * i, edge ? edges16[r % edges16.length] : r >>> 16, true);
    else view.setUint32(1 + 4 * i, edge ? edges32[r % edges32.length] : r, true);
  }
  return bytes;
}

describe('scanTensor', () => {
  it.each(['F32', 'F16', 'BF16'] as const)('%s: counts and the first index equal a full decode, aligned and unaligned', (dtype) => {
    const size = dtype === 'F32' ? 4 : 2;
    for (const [count, offset] of [
      [5000, 0],
      [5000, 1],
      [5001, 0],
      [5001, 1],
    ]) {
      const all = randomBytes(count, size, 7 + count);
      const bytes = offset === 1 ? all.subarray(1) : all.slice(1);
      const t: HostTensor = { name: 'w', file: 'f.safetensors', dtype, shape: [count], bytes };
      const decoded = decodeToF32(t);
      const bad = [...decoded.keys()].filter((i) => !Number.isFinite(decoded[i]));
      expect(bad.length).toBeGreaterThan(10);
      const found = scanTensor(t);
      expect(found?.count).toBe(bad.length);
      expect(found?.index).toBe(bad[0]);
      expect(Object.is(found?.value, decoded[bad[0]]) || (Number.isNaN(found?.value) && Number.isNaN(decoded[bad[0]]))).toBe(true);
    }
  });

  it('a finite tensor (max finite values included) is clean', () => {
    const values = new Float32Array([0, -0, 3.4028234663852886e38, -3.4028234663852886e38, 1e-45, 1]);
    expect(scanTensor({ name: 'w', file: 'f', dtype: 'F32', shape: [6], bytes: new Uint8Array(values.buffer) })).toBeNull();
  });
});

describe('assertFiniteScores', () => {
  it('names the first block with a non-finite statistic', () => {
    const ok = { index: 0, bi: 0.1, angular: 0.2, relMagnitude: 0.3 };
    expect(() => assertFiniteScores([ok])).not.toThrow();
    expect(() =>
      assertFiniteScores([ok, { index: 5, bi: 0.1, angular: 0.2, relMagnitude: Number.POSITIVE_INFINITY }, { index: 6, bi: Number.NaN, angular: 0, relMagnitude: 0 }]),
    ).toThrow(/statistics of block 5 are not finite .*relative magnitude Infinity\), and of 1 later block/);
  });
});
