/**
 * Resident or block-streamed: a model runs resident (every block on the backend) when its weights, as
 * the backend holds them, plus a working set fit the memory budget; otherwise its blocks stream (read,
 * run over every calibration sequence, released). The choice is made from the safetensors headers,
 * before any block is read.
 */
import type { Checkpoint } from './checkpoint.ts';

export type MemoryMode = 'resident' | 'streamed';

/** The `memory` object of every --json output that ran the model. */
export interface MemoryReport {
  mode: MemoryMode;
  /** Peak of the engine's live GPU buffers, measured (0 on the CPU). */
  gpuPeakBytes: number;
  /** Checkpoint tensor bytes, as stored. */
  weightBytes: number;
}

export interface ModeChoice {
  /** WebGPU: device memory the engine may use, in bytes (CLI --gpu-memory); null = no budget given. */
  gpuMemoryBytes?: number | null;
  /** CPU: host bytes the backend may hold for weights; default half the machine's memory (Node) or 2 GiB (browser). */
  hostMemoryBytes?: number | null;
  /** 'auto' (default): resident when it fits; 'resident' / 'streamed' force a mode. */
  mode?: 'auto' | MemoryMode;
}

const MIB = 2 ** 20;

/** Bytes of the weights as the backend will hold them: WebGPU widens BF16 to f32; the fast CPU kernels hold f32. */
export function heldWeightBytes(checkpoint: Checkpoint, backend: string): { blocks: number[]; ends: number } {
  const widen = (dtypes: string[]) => (backend === 'webgpu' ? (dtypes.includes('BF16') ? 2 : 1) : backend === 'cpu' ? (dtypes.includes('F32') ? 1 : 2) : 1);
  const factor = widen(checkpoint.dtypes);
  return { blocks: checkpoint.blockBytes.map((b) => b * factor), ends: checkpoint.endsBytes * factor };
}

/** A working set for activations: 256 positions of every intermediate a block and the head write, in f32. */
export function workingSetBytes(checkpoint: Checkpoint): number {
  const s = checkpoint.spec;
  const perRow = 4 * s.hidden + 3 * s.heads * s.headDim + 2 * s.intermediate + Math.min(s.vocabSize, 65536);
  return 256 * perRow * 4;
}

async function defaultHostBudget(): Promise<number> {
  if (typeof process !== 'undefined' && process.versions?.node) {
    const { totalmem } = await import('node:os');
    return totalmem() / 2;
  }
  return 2 * 1024 * MIB;
}

export async function chooseMemoryMode(checkpoint: Checkpoint, backend: string, choice: ModeChoice): Promise<{ mode: MemoryMode; reason: string }> {
  if (choice.mode === 'resident' || choice.mode === 'streamed') return { mode: choice.mode, reason: `${choice.mode} mode was asked for` };
  const held = heldWeightBytes(checkpoint, backend);
  const need = held.ends + held.blocks.reduce((a, b) => a + b, 0) + workingSetBytes(checkpoint);
  const budget = backend === 'webgpu' ? (choice.gpuMemoryBytes ?? null) : (choice.hostMemoryBytes ?? (await defaultHostBudget()));
  const mib = (b: number) => `${(b / MIB).toFixed(0)} MiB`;
  if (budget === null) return { mode: 'resident', reason: 'no memory budget given' };
  if (need <= budget) return { mode: 'resident', reason: `the model needs about ${mib(need)}, within the ${mib(budget)} budget` };
  return { mode: 'streamed', reason: `the model needs about ${mib(need)} resident, more than the ${mib(budget)} budget` };
}
