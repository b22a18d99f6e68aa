/**
 * Logit lens: what each residual state would predict if the model stopped there. For a prompt and a
 * plan, every state x_0 … x_A (A = active blocks; x_0 the embedding) goes through the final norm and
 * the LM head; per position we report the most likely tokens and their probabilities. The last row is
 * the model's own output, so its top token is the model's next-token prediction.
 *
 * The engine has no "head on a state" call, so this reads the final norm and head from the checkpoint
 * and applies them on the CPU with the reference backend's own steps (the same float32 numbers as the
 * CPU backend's logits, logit scale and soft cap included), decoding the head from its stored bytes a chunk
 * of rows at a time (~16 MiB of f32 on the host, not vocab × hidden × 4 bytes). The states
 * come from Model.forEachState, so a block-streamed model gives the same lens, in one pass over its blocks.
 */
import type { Checkpoint } from '../engine/checkpoint.ts';
import { finalLogits, layerNorm, matmul, rmsNorm } from '../engine/cpu/ops.ts';
import { PruneLabError } from '../engine/errors.ts';
import type { Model, RunOptions } from '../engine/model.ts';
import type { Plan } from '../engine/plan.ts';
import { decodeRow, decodeToF32 } from '../engine/safetensors.ts';

export interface LensToken {
  id: number;
  prob: number;
}

export interface LensRow {
  /** State index: 0 = embedding, i = after the i-th active block. */
  state: number;
  /** Original index of the block that produced this state (null for the embedding). */
  afterBlock: number | null;
  /** Per position: the top tokens, most likely first. */
  positions: LensToken[][];
}

export interface LogitLens {
  /** The plan's active blocks in order; any block not listed was skipped. */
  blocks: number[];
  /** Positions reported (indices into the prompt). */
  positions: number[];
  rows: LensRow[];
}

/** Vocabulary rows of the LM head decoded at a time: the lens holds ~16 MiB of f32 head, never the whole head (2 GiB at 8B). */
const HEAD_CHUNK_BYTES = 16 * 2 ** 20;

const finalNorms = new WeakMap<Checkpoint, { weight: Float32Array; bias: Float32Array | null }>();

/** The final norm's f32 weights (small; kept per checkpoint). */
function finalNormOf(checkpoint: Checkpoint): { weight: Float32Array; bias: Float32Array | null } {
  let n = finalNorms.get(checkpoint);
  if (!n) {
    const { finalNorm } = checkpoint.weights;
    n = { weight: decodeToF32(finalNorm.weight), bias: finalNorm.bias ? decodeToF32(finalNorm.bias) : null };
    finalNorms.set(checkpoint, n);
  }
  return n;
}

/**
 * Final norm + LM head + the family's logit scale / soft cap on rows × hidden states — the CPU backend's own
 * steps (cpu/backend.ts head), so the last state's row is the model's next-token distribution — keeping per row
 * only the k most likely tokens (larger logit first, lower id on ties) and softmax probabilities (float64, by a
 * running log-sum-exp). The head is decoded from its stored bytes in chunks of rows (HEAD_CHUNK_BYTES).
 */
export function headTop(checkpoint: Checkpoint, states: Float32Array, rows: number, k: number, chunkBytes = HEAD_CHUNK_BYTES): LensToken[][] {
  const { hidden, vocabSize, norm, normEps, normOffset, logitScale, finalSoftcap } = checkpoint.spec;
  const n = finalNormOf(checkpoint);
  const normed = norm === 'rms' ? rmsNorm(states, hidden, n.weight, normEps, normOffset) : layerNorm(states, hidden, n.weight, n.bias as Float32Array, normEps);
  const lmHead = checkpoint.weights.lmHead;
  const chunk = Math.max(1, Math.min(vocabSize, Math.floor(chunkBytes / (hidden * 4))));
  const w = new Float32Array(chunk * hidden);
  const max = new Float64Array(rows).fill(Number.NEGATIVE_INFINITY);
  const sum = new Float64Array(rows);
  const best: { id: number; v: number }[][] = Array.from({ length: rows }, () => []);
  for (let v0 = 0; v0 < vocabSize; v0 += chunk) {
    const count = Math.min(chunk, vocabSize - v0);
    for (let j = 0; j < count; j++) decodeRow(lmHead, v0 + j, hidden, w.subarray(j * hidden, (j + 1) * hidden));
    const logits = finalLogits(matmul(normed, rows, w.subarray(0, count * hidden), count, hidden, null), logitScale, finalSoftcap);
    for (let r = 0; r < rows; r++) {
      const top = best[r];
      for (let j = 0; j < count; j++) {
        const v = logits[r * count + j];
        if (v > max[r]) {
          sum[r] = sum[r] * Math.exp(max[r] - v) + 1;
          max[r] = v;
        } else sum[r] += Math.exp(v - max[r]);
        if (top.length === k && v <= top[k - 1].v) continue;
        let at = top.length === k ? k - 1 : top.length;
        while (at > 0 && top[at - 1].v < v) at--;
        top.splice(at, 0, { id: v0 + j, v });
        if (top.length > k) top.pop();
      }
    }
  }
  return best.map((top, r) => top.map(({ id, v }) => ({ id, prob: Math.exp(v - max[r]) / sum[r] })));
}

/** The k most likely tokens of one logit row with softmax probabilities (float64), by one linear pass. */
export function topOfRow(row: Float32Array, k: number): LensToken[] {
  let max = Number.NEGATIVE_INFINITY;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const best: number[] = [];
  for (let id = 0; id < row.length; id++) {
    if (best.length === k && row[id] <= row[best[k - 1]]) continue;
    let at = best.length === k ? k - 1 : best.length;
    while (at > 0 && row[best[at - 1]] < row[id]) at--;
    best.splice(at, 0, id);
    if (best.length > k) best.pop();
  }
  return best.map((id) => ({ id, prob: Math.exp(row[id] - max) / sum }));
}

export interface LensOptions {
  /** Which positions: every one (the tokens × layers grid) or only the last; default 'all'. */
  positions?: 'all' | 'last';
  /** Tokens reported per cell; default 1. */
  top?: number;
}

/** In either memory mode (Model.forEachState): each state is read through the head as it arrives, and only its top tokens kept. */
export async function logitLens(model: Model, ids: readonly number[], plan: Plan, options: LensOptions & RunOptions = {}): Promise<LogitLens> {
  if (ids.length === 0) throw new PruneLabError('the prompt has no tokens', { field: 'prompt' });
  const { hidden } = model.spec;
  const top = options.top ?? 1;
  const positions = options.positions === 'last' ? [ids.length - 1] : ids.map((_, t) => t);
  const rows: LensRow[] = [];
  await model.forEachState(
    [ids],
    plan,
    (_, s, state) => {
      const picked = new Float32Array(positions.length * hidden);
      positions.forEach((t, k) => {
        picked.set(state.subarray(t * hidden, (t + 1) * hidden), k * hidden);
      });
      rows.push({ state: s, afterBlock: s === 0 ? null : plan.blocks[s - 1], positions: headTop(model.checkpoint, picked, positions.length, top) });
    },
    { signal: options.signal, onProgress: options.onProgress },
  );
  return { blocks: [...plan.blocks], positions, rows };
}
