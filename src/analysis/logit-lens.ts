/**
 * Logit lens: what each residual state would predict if the model stopped there. For a prompt and a
 * plan, every state x_0 … x_A (A = active blocks; x_0 the embedding) goes through the final norm and
 * the LM head; per position we report the most likely tokens and their probabilities. The last row is
 * the model's own output, so its top token is the model's next-token prediction.
 *
 * The engine has no "head on a state" call, so this reads the final norm and head from the checkpoint
 * and applies them on the CPU with the reference backend's own steps (the same float32 numbers as the
 * CPU backend's logits), keeping an f32 copy of the head on the host (vocab × hidden × 4 bytes). The states
 * come from Model.forEachState, so a block-streamed model gives the same lens, in one pass over its blocks.
 */
import type { Checkpoint } from '../engine/checkpoint.ts';
import { layerNorm, matmul, rmsNorm } from '../engine/cpu/ops.ts';
import { PruneLabError } from '../engine/errors.ts';
import type { Model, RunOptions } from '../engine/model.ts';
import type { Plan } from '../engine/plan.ts';
import { decodeToF32 } from '../engine/safetensors.ts';

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

interface Head {
  normWeight: Float32Array;
  normBias: Float32Array | null;
  lmHead: Float32Array;
}

const heads = new WeakMap<Checkpoint, Head>();

function headOf(checkpoint: Checkpoint): Head {
  let head = heads.get(checkpoint);
  if (!head) {
    const { finalNorm, lmHead } = checkpoint.weights;
    head = { normWeight: decodeToF32(finalNorm.weight), normBias: finalNorm.bias ? decodeToF32(finalNorm.bias) : null, lmHead: decodeToF32(lmHead) };
    heads.set(checkpoint, head);
  }
  return head;
}

/** Final norm + LM head on rows × hidden states: rows × vocab logits (the CPU backend's arithmetic). */
export function headLogits(checkpoint: Checkpoint, states: Float32Array, rows: number): Float32Array {
  const { hidden, vocabSize, norm, normEps } = checkpoint.spec;
  const head = headOf(checkpoint);
  const normed = norm === 'rms' ? rmsNorm(states, hidden, head.normWeight, normEps) : layerNorm(states, hidden, head.normWeight, head.normBias as Float32Array, normEps);
  return matmul(normed, rows, head.lmHead, vocabSize, hidden, null);
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
  const { hidden, vocabSize } = model.spec;
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
      const logits = headLogits(model.checkpoint, picked, positions.length);
      rows.push({
        state: s,
        afterBlock: s === 0 ? null : plan.blocks[s - 1],
        positions: positions.map((_, k) => topOfRow(logits.subarray(k * vocabSize, (k + 1) * vocabSize), top)),
      });
    },
    { signal: options.signal, onProgress: options.onProgress },
  );
  return { blocks: [...plan.blocks], positions, rows };
}
