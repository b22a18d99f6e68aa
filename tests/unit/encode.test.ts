import { describe, expect, it } from 'vitest';
import { decodeToF32, encodeAs, encodeBF16 } from '../../src/engine/safetensors.ts';
import { seededRandom } from '../../src/engine/sampling.ts';

const decode = (bytes: Uint8Array, dtype: string, n: number) => decodeToF32({ name: 't', file: 'f', dtype, shape: [n], bytes });

/** The two BF16 values around x (upper 16 bits truncated, and one step away from zero), as floats. */
function neighbours(x: number): [number, number] {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  const low = u[0] & 0xffff0000;
  const out = new Uint32Array([low, low + 0x10000]);
  const v = new Float32Array(out.buffer);
  return [v[0], v[1]];
}

describe('writing weights in their stored dtype (healed down projections)', () => {
  const random = seededRandom(11);
  const values = Float32Array.from({ length: 2000 }, () => (random() - 0.5) * 10 ** Math.floor(random() * 8 - 4));

  it('F32 round-trips exactly', () => {
    expect(decode(encodeAs(values, 'F32'), 'F32', values.length)).toEqual(values);
  });

  it('BF16 rounds each value to the nearest BF16 (ties to even), keeps NaN and ±Inf', () => {
    const back = decode(encodeBF16(values), 'BF16', values.length);
    for (let i = 0; i < values.length; i++) {
      const [a, b] = neighbours(values[i]);
      const best = Math.abs(values[i] - a) <= Math.abs(values[i] - b) ? a : b;
      if (Math.abs(values[i] - a) !== Math.abs(values[i] - b)) expect(back[i]).toBe(best);
      else expect([a, b]).toContain(back[i]);
    }
    // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even mantissa (1).
    const ties = decode(encodeBF16(Float32Array.from([1 + 2 ** -8, 1 + 3 * 2 ** -8])), 'BF16', 2);
    expect(Array.from(ties)).toEqual([1, 1 + 2 ** -6]);
    const special = decode(encodeBF16(Float32Array.from([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0])), 'BF16', 4);
    expect(Number.isNaN(special[0])).toBe(true);
    expect(Array.from(special.subarray(1))).toEqual([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0]);
  });

  it('F16 matches the F16 encoder, and other dtypes are refused naming the tensor', () => {
    const back = decode(encodeAs(Float32Array.from([0.5, -2.25, 1e-3]), 'F16'), 'F16', 3);
    expect(back[0]).toBe(0.5);
    expect(back[1]).toBe(-2.25);
    expect(Math.abs(back[2] - 1e-3)).toBeLessThan(1e-6);
    expect(() => encodeAs(values, 'I8', { tensor: 'layers.3.mlp.down_proj.weight' })).toThrow(/tensor layers\.3\.mlp\.down_proj\.weight: dtype I8 cannot be written/);
  });
});
