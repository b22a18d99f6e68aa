/**
 * The one staging buffer a forward reads back, and where each result sits in it:
 * [stats: 3 floats per active block][NLL sum][picked token id (u32)][logits rows][states: x_0, then after each active block].
 */
import type { BlockStatSums } from '../backend.ts';
import { PruneLabError } from '../errors.ts';
import { formatBytes } from './device.ts';

const F32 = 4;

export interface ReadbackShape {
  /** Active blocks (one stats slot each). */
  slots: number;
  rows: number;
  hidden: number;
  vocab: number;
  /** Logits rows read back (0, 1 for the last, rows for all). */
  logitRows: number;
  states: boolean;
}

export class ReadbackLayout {
  /** Floats of the results buffer: 3 per slot, the NLL sum, the picked token (a u32 in a float's place). */
  readonly resultFloats: number;
  readonly nllIndex: number;
  readonly pickIndex: number;
  readonly logitsOffset: number;
  readonly statesOffset: number;
  readonly stateBytes: number;
  readonly bytes: number;

  constructor(
    readonly shape: ReadbackShape,
    maxBufferSize: number,
  ) {
    const { slots, rows, hidden, vocab, logitRows, states } = shape;
    this.nllIndex = slots * 3;
    this.pickIndex = slots * 3 + 1;
    this.resultFloats = slots * 3 + 2;
    this.logitsOffset = Math.ceil((this.resultFloats * F32) / 16) * 16;
    this.stateBytes = rows * hidden * F32;
    this.statesOffset = this.logitsOffset + logitRows * vocab * F32;
    this.bytes = this.statesOffset + (states ? (slots + 1) * this.stateBytes : 0);
    if (this.bytes > maxBufferSize) {
      throw new PruneLabError(
        `reading back ${logitRows} logits rows${states ? ' and every state' : ''} needs a ${formatBytes(this.bytes)} buffer but this device's maxBufferSize is ${formatBytes(maxBufferSize)}; ask for fewer rows`,
        { field: 'logits' },
      );
    }
  }

  /** Byte offset of logits row `row` (of the rows read back). */
  logitsRow(row: number): number {
    return this.logitsOffset + row * this.shape.vocab * F32;
  }

  /** Byte offset of state `index` (0 = x_0, k + 1 = after the k-th active block). */
  state(index: number): number {
    return this.statesOffset + index * this.stateBytes;
  }

  /** Mapping needs a multiple of 8 bytes. */
  get mappedBytes(): number {
    return Math.ceil(this.bytes / 8) * 8;
  }

  decode(
    mapped: ArrayBuffer,
    blocks: readonly number[],
    wantStats: boolean,
  ): { stats: BlockStatSums[] | null; nllSum: number; picked: number; logits: Float32Array | null; states: Float32Array[] | null } {
    const { slots, rows, hidden, vocab, logitRows, states } = this.shape;
    const floats = (offset: number, count: number) => new Float32Array(mapped.slice(offset, offset + count * F32));
    const results = floats(0, this.resultFloats);
    return {
      stats: wantStats ? blocks.map((index, s) => ({ index, cosSum: results[s * 3], angularSum: results[s * 3 + 1], relMagnitudeSum: results[s * 3 + 2], tokens: rows })) : null,
      nllSum: results[this.nllIndex],
      picked: new Uint32Array(results.buffer, results.byteOffset + this.pickIndex * F32, 1)[0],
      logits: logitRows > 0 ? floats(this.logitsOffset, logitRows * vocab) : null,
      states: states ? Array.from({ length: slots + 1 }, (_, s) => floats(this.state(s), rows * hidden)) : null,
    };
  }
}
