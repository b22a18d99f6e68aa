import { describe, expect, it } from 'vitest';
import { decodeToF32, encodeF16, parseSafetensors, writeSafetensors } from '../../src/engine/safetensors.ts';

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

/** Builds a file from a raw header object and data bytes (so tests can write broken headers). */
function rawFile(header: unknown, data: Uint8Array, lengthOverride?: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(lengthOverride ?? json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

describe('safetensors', () => {
  it('round-trips F32 and F16 tensors through write and parse', () => {
    const a = f32Bytes([1, -2.5, 3.25, 0]);
    const b = encodeF16(new Float32Array([0.5, -65504, 1e-7, 3.140625]));
    const file = writeSafetensors([
      { name: 'a', dtype: 'F32', shape: [2, 2], bytes: a },
      { name: 'b', dtype: 'F16', shape: [4], bytes: b },
    ]);
    const tensors = parseSafetensors(file, 'x.safetensors');
    expect(Array.from(decodeToF32(tensors.get('a')!))).toEqual([1, -2.5, 3.25, 0]);
    const decoded = Array.from(decodeToF32(tensors.get('b')!));
    expect(decoded[0]).toBe(0.5);
    expect(decoded[1]).toBe(-65504);
    expect(decoded[2]).toBeCloseTo(1.1920928955078125e-7, 12); // nearest f16 subnormal
    expect(decoded[3]).toBe(3.140625);
  });

  it('decodes BF16 as the top 16 bits of a float32', () => {
    const bits = new Uint16Array([0x3f80, 0xc040, 0x4049]); // 1, -3, 3.140625
    const file = rawFile({ t: { dtype: 'BF16', shape: [3], data_offsets: [0, 6] } }, new Uint8Array(bits.buffer));
    expect(Array.from(decodeToF32(parseSafetensors(file, 'bf.safetensors').get('t')!))).toEqual([1, -3, 3.140625]);
  });

  it('rejects a truncated file, naming the file', () => {
    const file = writeSafetensors([{ name: 'w', dtype: 'F32', shape: [4], bytes: f32Bytes([1, 2, 3, 4]) }]);
    expect(() => parseSafetensors(file.subarray(0, file.byteLength - 4), 'cut.safetensors')).toThrow(/cut\.safetensors.*tensor w.*outside/);
    expect(() => parseSafetensors(file.subarray(0, 5), 'tiny.safetensors')).toThrow(/tiny\.safetensors.*too short/);
  });

  it('rejects a header length beyond the file', () => {
    const file = rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32Bytes([1]), 1 << 20);
    expect(() => parseSafetensors(file, 'big.safetensors')).toThrow(/big\.safetensors.*header length/);
  });

  it('rejects overlapping data offsets, naming both tensors', () => {
    const file = rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32Bytes([1, 2, 3]));
    expect(() => parseSafetensors(file, 'o.safetensors')).toThrow(/o\.safetensors.*tensor b.*overlap tensor a/);
  });

  it('rejects an unknown dtype, naming the tensor', () => {
    const file = rawFile({ w: { dtype: 'F8_E9', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1));
    expect(() => parseSafetensors(file, 'd.safetensors')).toThrow(/d\.safetensors.*tensor w.*unknown dtype "F8_E9"/);
  });

  it('rejects a shape whose byte size disagrees with the offsets', () => {
    const file = rawFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32Bytes([1, 2]));
    expect(() => parseSafetensors(file, 's.safetensors')).toThrow(/tensor w.*holds 8 bytes but shape \[3\] × F32 needs 12/);
  });

  it('rejects a header that is not JSON', () => {
    const bad = new Uint8Array(8 + 4);
    new DataView(bad.buffer).setBigUint64(0, 4n, true);
    bad.set(new TextEncoder().encode('{no}'), 8);
    expect(() => parseSafetensors(bad, 'j.safetensors')).toThrow(/j\.safetensors.*not valid JSON/);
  });
});
