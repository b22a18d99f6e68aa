/** How many parameters each block holds (attention half, MLP half) and what share a removal set cuts. */
import type { Removal } from '../engine/plan.ts';
import type { HostTensor } from '../engine/safetensors.ts';
import type { BlockWeights, Linear, Norm } from '../engine/weights.ts';

export interface BlockParameters {
  index: number;
  /** Pre-attention norm, q/k/v/o (+ biases), q/k norms. */
  attention: number;
  /** Pre-MLP norm, gate/up/down (+ biases). */
  mlp: number;
  total: number;
}

const count = (t: HostTensor | null | undefined) => (t ? t.shape.reduce((a, b) => a * b, 1) : 0);
const linear = (l: Linear | null) => (l ? count(l.weight) + count(l.bias) : 0);
const norm = (n: Norm | null) => (n ? count(n.weight) + count(n.bias) : 0);

/** Parameters per block, counted from the tensors the recipe bound (so biases and q/k norms are included). */
export function blockParameters(blocks: readonly BlockWeights[]): BlockParameters[] {
  return blocks.map((b, index) => {
    const attention = norm(b.attnNorm) + norm(b.attnPostNorm) + linear(b.q) + linear(b.k) + linear(b.v) + linear(b.o) + count(b.qNorm) + count(b.kNorm);
    const mlp = norm(b.mlpNorm) + norm(b.mlpPostNorm) + linear(b.gate) + linear(b.up) + linear(b.down);
    return { index, attention, mlp, total: attention + mlp };
  });
}

/** Parameters a removal set cuts: whole blocks, plus attention-only and MLP-only halves (never counted twice). */
export function removedParameters(perBlock: readonly BlockParameters[], removal: Removal): number {
  const whole = new Set(removal.blocks ?? []);
  let removed = 0;
  for (const b of perBlock) {
    if (whole.has(b.index)) {
      removed += b.total;
      continue;
    }
    if (removal.attention?.includes(b.index)) removed += b.attention;
    if (removal.mlp?.includes(b.index)) removed += b.mlp;
  }
  return removed;
}
