/**
 * NaN / Inf detection. A checkpoint with one non-finite weight turns every number downstream into NaN,
 * and a NaN chart looks like a chart: the weights are checked at load (on the raw bits, no decoding:
 * a float is non-finite exactly when its exponent bits are all ones), the block statistics after a run.
 */
import type { BlockScore } from '../analysis/influence.ts';
import { PruneLabError } from './errors.ts';
import type { HostTensor } from './safetensors.ts';
import type { ModelWeights } from './weights.ts';

/** Exponent mask per dtype, on the element's bits (u32 for F32, u16 for F16 / BF16). */
const EXPONENT: Record<string, { bits: 16 | 32; mask: number }> = {
  F32: { bits: 32, mask: 0x7f800000 },
  F16: { bits: 16, mask: 0x7c00 },
  BF16: { bits: 16, mask: 0x7f80 },
};

export interface NonFinite {
  tensor: string;
  file: string;
  /** Non-finite elements in the tensor. */
  count: number;
  /** The first one's flat index and value. */
  index: number;
  value: number;
}

function elements(t: HostTensor, bits: 16 | 32): Uint16Array | Uint32Array {
  const size = bits / 8;
  // Tensors inside a safetensors file need not be aligned; an unaligned one is copied once.
  const bytes = t.bytes.byteOffset % size === 0 ? t.bytes : t.bytes.slice();
  const length = bytes.byteLength / size;
  return bits === 32 ? new Uint32Array(bytes.buffer, bytes.byteOffset, length) : new Uint16Array(bytes.buffer, bytes.byteOffset, length);
}

function decodeOne(t: HostTensor, bits: number): number {
  if (t.dtype === 'F32') return new Float32Array(new Uint32Array([bits]).buffer)[0];
  if (t.dtype === 'BF16') return new Float32Array(new Uint32Array([bits << 16]).buffer)[0];
  return (bits & 0x3ff) === 0 ? (bits & 0x8000 ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY) : Number.NaN;
}

/** Index of the first element whose exponent bits are all ones, or -1. 16-bit dtypes are read two per u32. */
function firstNonFinite(t: HostTensor, exponent: { bits: 16 | 32; mask: number }): number {
  const { mask } = exponent;
  if (exponent.bits === 32 || t.bytes.byteLength % 4 !== 0) {
    const values = elements(t, exponent.bits);
    for (let i = 0; i < values.length; i++) if ((values[i] & mask) === mask) return i;
    return -1;
  }
  const pairs = elements(t, 32);
  const high = (mask << 16) >>> 0;
  for (let i = 0; i < pairs.length; i++) {
    const v = pairs[i];
    // Little-endian: the low half is element 2i, the high half element 2i + 1.
    if ((v & mask) === mask) return 2 * i;
    if ((v & high) >>> 0 === high) return 2 * i + 1;
  }
  return -1;
}

/** The non-finite elements of one tensor, or null when all are finite (or the dtype is not a float). */
export function scanTensor(t: HostTensor): NonFinite | null {
  const exponent = EXPONENT[t.dtype];
  if (!exponent) return null;
  // The fast pass finds whether there is any; only a bad tensor pays for counting.
  const first = firstNonFinite(t, exponent);
  if (first < 0) return null;
  const values = elements(t, exponent.bits);
  const { mask } = exponent;
  let count = 0;
  for (let i = first; i < values.length; i++) if ((values[i] & mask) === mask) count++;
  return { tensor: t.name, file: t.file, count, index: first, value: decodeOne(t, values[first]) };
}

function isHostTensor(x: unknown): x is HostTensor {
  return typeof x === 'object' && x !== null && (x as HostTensor).bytes instanceof Uint8Array && typeof (x as HostTensor).dtype === 'string';
}

/** Every tensor a recipe bound, wherever it sits in the weights (new families add fields; all are seen). */
function boundTensors(weights: ModelWeights): HostTensor[] {
  const out = new Set<HostTensor>();
  const walk = (x: unknown) => {
    if (isHostTensor(x)) out.add(x);
    else if (Array.isArray(x)) for (const item of x) walk(item);
    else if (typeof x === 'object' && x !== null) for (const value of Object.values(x)) walk(value);
  };
  walk(weights);
  return [...out];
}

export function findNonFiniteWeights(weights: ModelWeights): NonFinite[] {
  return boundTensors(weights)
    .map(scanTensor)
    .filter((f): f is NonFinite => f !== null);
}

/** Refuses a checkpoint whose weights hold NaN or Inf, naming the tensor(s). */
export function assertFiniteWeights(weights: ModelWeights): void {
  const bad = findNonFiniteWeights(weights);
  if (bad.length === 0) return;
  const [first] = bad;
  const others =
    bad.length > 1
      ? `; also ${bad.length - 1} more tensor(s): ${bad
          .slice(1, 4)
          .map((b) => b.tensor)
          .join(', ')}${bad.length > 4 ? ', …' : ''}`
      : '';
  throw new PruneLabError(
    `holds ${first.count.toLocaleString('en-US')} non-finite value(s) (first: ${first.value} at element ${first.index}); every number computed from it would be NaN${others}`,
    {
      file: first.file,
      tensor: first.tensor,
    },
  );
}

/**
 * Block scores with NaN / Inf: the residual stream overflowed (or a weight was non-finite). Names the
 * first block whose statistics are not finite; the blocks after it inherit the damage.
 */
export function assertFiniteScores(scores: readonly Pick<BlockScore, 'index' | 'bi' | 'angular' | 'relMagnitude'>[]): void {
  const bad = scores.filter((s) => !Number.isFinite(s.bi) || !Number.isFinite(s.angular) || !Number.isFinite(s.relMagnitude));
  if (bad.length === 0) return;
  const first = bad[0];
  throw new PruneLabError(
    `the statistics of block ${first.index} are not finite (BI ${first.bi}, angular ${first.angular}, relative magnitude ${first.relMagnitude})` +
      `${bad.length > 1 ? `, and of ${bad.length - 1} later block(s)` : ''}: the residual stream overflowed to Inf/NaN at or before block ${first.index}`,
  );
}
