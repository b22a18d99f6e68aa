/**
 * safetensors: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
 * then the raw bytes. Validation is strict: every failure names the file and the tensor.
 */
import { PruneLabError } from './errors.ts';

export type DType = 'F32' | 'F16' | 'BF16';
const DTYPE_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const DECODABLE = new Set<string>(['F32', 'F16', 'BF16']);
/** Headers above this are refused: real ones are a few hundred KB at most. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** A tensor's raw bytes as stored, with its dtype. Decoding happens where it is needed. */
export interface HostTensor {
  name: string;
  file: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

export interface TensorEntry {
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** Parses and validates only the header; `headerLength` + 8 is where the data starts. */
export function parseHeader(prefix: Uint8Array, file: string, fileSize: number): { entries: Map<string, TensorEntry>; dataStart: number; metadata: Record<string, string> } {
  if (prefix.byteLength < 8 || fileSize < 8) throw new PruneLabError('is too short to be safetensors (no 8-byte header length)', { file });
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength < 2 || headerLength > MAX_HEADER_BYTES || 8 + headerLength > fileSize) {
    throw new PruneLabError(`header length ${headerLength} is out of bounds for a ${fileSize}-byte file (truncated or not safetensors)`, { file });
  }
  if (prefix.byteLength < 8 + headerLength) throw new PruneLabError('header is truncated', { file });
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(prefix.subarray(8, 8 + headerLength)));
  } catch (e) {
    throw new PruneLabError(`header is not valid JSON (${(e as Error).message})`, { file });
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new PruneLabError('header is not a JSON object', { file });
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const entries = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== 'object' || info === null) throw new PruneLabError('header entry is not an object', { file, tensor: name });
    const dtype = info.dtype;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) throw new PruneLabError(`unknown dtype ${JSON.stringify(dtype)}`, { file, tensor: name });
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new PruneLabError(`bad shape ${JSON.stringify(shape)}`, { file, tensor: name });
    }
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0)) {
      throw new PruneLabError(`bad data_offsets ${JSON.stringify(offsets)}`, { file, tensor: name });
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataSize) {
      throw new PruneLabError(`data_offsets [${begin}, ${end}] lie outside the ${dataSize} data bytes (truncated file?)`, { file, tensor: name });
    }
    const expected = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw new PruneLabError(`holds ${end - begin} bytes but shape [${shape.join(', ')}] × ${dtype} needs ${expected}`, { file, tensor: name });
    }
    entries.set(name, { dtype, shape: shape as number[], begin, end });
  }
  const sorted = [...entries.entries()].filter(([, e]) => e.end > e.begin).sort((a, b) => a[1].begin - b[1].begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i][1].begin < sorted[i - 1][1].end) {
      throw new PruneLabError(`bytes overlap tensor ${sorted[i - 1][0]}`, { file, tensor: sorted[i][0] });
    }
  }
  return { entries, dataStart, metadata };
}

/** Parses a whole in-memory safetensors file into tensor views (no copy). */
export function parseSafetensors(bytes: Uint8Array, file: string): Map<string, HostTensor> {
  const { entries, dataStart } = parseHeader(bytes, file, bytes.byteLength);
  const tensors = new Map<string, HostTensor>();
  for (const [name, e] of entries) {
    tensors.set(name, { name, file, dtype: e.dtype, shape: e.shape, bytes: bytes.subarray(dataStart + e.begin, dataStart + e.end) });
  }
  return tensors;
}

export function isDecodable(dtype: string): dtype is DType {
  return DECODABLE.has(dtype);
}

const f16Table = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * 2 ** -14 * (frac / 1024);
    else if (exp === 31) table[h] = frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else table[h] = sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return table;
})();

/** Decodes F32/F16/BF16 bytes to a fresh Float32Array. */
export function decodeToF32(t: HostTensor): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  if (t.dtype === 'F32') {
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  } else if (t.dtype === 'F16') {
    for (let i = 0; i < n; i++) out[i] = f16Table[view.getUint16(i * 2, true)];
  } else if (t.dtype === 'BF16') {
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u32[i] = view.getUint16(i * 2, true) << 16;
  } else {
    throw new PruneLabError(`dtype ${t.dtype} cannot be used as a weight (supported: F32, F16, BF16)`, { file: t.file, tensor: t.name });
  }
  return out;
}

/** Decodes row `r` (of `width` elements) of a stored 2-D tensor into `out` (the CPU kernels' weights stay stored). */
export function decodeRow(t: HostTensor, r: number, width: number, out: Float32Array): void {
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const base = r * width;
  if (t.dtype === 'F32') for (let i = 0; i < width; i++) out[i] = view.getFloat32((base + i) * 4, true);
  else if (t.dtype === 'F16') for (let i = 0; i < width; i++) out[i] = f16Table[view.getUint16((base + i) * 2, true)];
  else if (t.dtype === 'BF16') {
    const u32 = new Uint32Array(out.buffer, out.byteOffset, width);
    for (let i = 0; i < width; i++) u32[i] = view.getUint16((base + i) * 2, true) << 16;
  } else throw new PruneLabError(`dtype ${t.dtype} cannot be used as a weight (supported: F32, F16, BF16)`, { file: t.file, tensor: t.name });
}

/** Encodes float32 values as safetensors F16 (round to nearest even), for export. */
export function encodeF16(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    let h: number;
    if (exp === 0xff) h = sign | 0x7c00 | (mant ? 0x200 : 0);
    else {
      const e = exp - 127 + 15;
      if (e >= 31) h = sign | 0x7c00;
      else if (e <= 0) {
        if (e < -10) h = sign;
        else {
          mant |= 0x800000;
          const shift = 14 - e;
          let hm = mant >>> shift;
          const rem = mant & ((1 << shift) - 1);
          const half = 1 << (shift - 1);
          if (rem > half || (rem === half && hm & 1)) hm++;
          h = sign | hm;
        }
      } else {
        let hm = mant >>> 13;
        const rem = mant & 0x1fff;
        let he = e;
        if (rem > 0x1000 || (rem === 0x1000 && hm & 1)) {
          hm++;
          if (hm === 0x400) {
            hm = 0;
            he++;
          }
        }
        h = he >= 31 ? sign | 0x7c00 : sign | (he << 10) | hm;
      }
    }
    view.setUint16(i * 2, h, true);
  }
  return out;
}

/** Encodes float32 values as safetensors BF16 (round to nearest even; NaN stays NaN), for export. */
export function encodeBF16(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    const x = u[i];
    const nan = (x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0;
    view.setUint16(i * 2, nan ? (x >>> 16) | 0x40 : ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff, true);
  }
  return out;
}

/** Encodes float32 values in a weight dtype (F32, F16, BF16), for export. */
export function encodeAs(values: Float32Array, dtype: string, where: { file?: string; tensor?: string } = {}): Uint8Array {
  if (dtype === 'F32') {
    const out = new Uint8Array(values.length * 4);
    const view = new DataView(out.buffer);
    for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
    return out;
  }
  if (dtype === 'F16') return encodeF16(values);
  if (dtype === 'BF16') return encodeBF16(values);
  throw new PruneLabError(`dtype ${dtype} cannot be written as a weight (supported: F32, F16, BF16)`, where);
}

export interface TensorToWrite {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** Serialises tensors (already encoded) to one safetensors file, header padded to 8 bytes. */
export function writeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.byteLength] };
    offset += t.bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (new TextEncoder().encode(json).byteLength % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.byteLength), true);
  out.set(head, 8);
  let at = 8 + head.byteLength;
  for (const t of tensors) {
    out.set(t.bytes, at);
    at += t.bytes.byteLength;
  }
  return out;
}
