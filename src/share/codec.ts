/**
 * Byte-level pieces of the share link: base64url, UTF-8 JSON, a text fingerprint, and the uint16
 * quantisation that keeps per-block scores small enough for a URL. Decoders return null on bad input
 * rather than throwing, so the URL decoder can turn every failure into a notice.
 */

const BASE64URL = /^[A-Za-z0-9_-]*$/;

export function bytesToBase64url(bytes: Uint8Array): string {
  let binary = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** null when the text is not unpadded base64url (wrong characters, or a length no encoder makes). */
export function base64urlToBytes(text: string): Uint8Array | null {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return null;
  let binary: string;
  try {
    binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  } catch {
    return null;
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function jsonToBase64url(value: unknown): string {
  return bytesToBase64url(new TextEncoder().encode(JSON.stringify(value)));
}

/** The parsed JSON value, or null for bad base64url, bad UTF-8 or bad JSON. Never evaluates anything. */
export function base64urlToJson(text: string): { value: unknown } | null {
  const bytes = base64urlToBytes(text);
  if (bytes === null) return null;
  try {
    return { value: JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) };
  } catch {
    return null;
  }
}

/**
 * FNV-1a (64-bit) of the text's UTF-8 bytes as 16 hex digits: identifies pasted calibration text in a
 * link without putting the text there. A fingerprint, not a cryptographic hash.
 */
export function textFingerprint(text: string): string {
  const bytes = new TextEncoder().encode(text);
  const prime = 0x100000001b3n;
  const mask = 0xffffffffffffffffn;
  let hash = 0xcbf29ce484222325n;
  for (const b of bytes) hash = ((hash ^ BigInt(b)) * prime) & mask;
  return hash.toString(16).padStart(16, '0');
}

/** Codes 0..QUANT_STEPS map linearly onto [min, max]; QUANT_MISSING marks a non-finite value. */
export const QUANT_STEPS = 65534;
export const QUANT_MISSING = 65535;

export interface Quantised {
  min: number;
  max: number;
  codes: Uint16Array;
}

/**
 * Quantises values into uint16 codes over [min, max] of the finite values. The decoded value differs
 * from the original by at most (max − min) / (2 · 65534) (plus float64 rounding); NaN and ±Infinity
 * decode as NaN.
 */
export function quantise(values: readonly number[]): Quantised {
  const finite = values.filter(Number.isFinite);
  const min = finite.length ? Math.min(...finite) : 0;
  const max = finite.length ? Math.max(...finite) : 0;
  const span = max - min;
  const codes = new Uint16Array(values.length);
  values.forEach((v, i) => {
    if (!Number.isFinite(v)) codes[i] = QUANT_MISSING;
    else codes[i] = span > 0 ? Math.min(QUANT_STEPS, Math.max(0, Math.round(((v - min) / span) * QUANT_STEPS))) : 0;
  });
  return { min, max, codes };
}

export function dequantise({ min, max, codes }: Quantised): number[] {
  return Array.from(codes, (code) => (code === QUANT_MISSING ? Number.NaN : code === QUANT_STEPS ? max : min + (code / QUANT_STEPS) * (max - min)));
}

/** Little-endian uint16 arrays, one after another. */
export function packUint16(arrays: readonly Uint16Array[]): Uint8Array {
  const total = arrays.reduce((a, x) => a + x.length, 0);
  const bytes = new Uint8Array(total * 2);
  const view = new DataView(bytes.buffer);
  let at = 0;
  for (const array of arrays) {
    for (const v of array) {
      view.setUint16(at, v, true);
      at += 2;
    }
  }
  return bytes;
}

export function unpackUint16(bytes: Uint8Array, count: number, length: number): Uint16Array[] | null {
  if (bytes.length !== count * length * 2) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: count }, (_, k) => Uint16Array.from({ length }, (_, i) => view.getUint16((k * length + i) * 2, true)));
}
