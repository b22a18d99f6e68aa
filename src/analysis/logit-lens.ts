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
 * The k most likely tokens of a stream of (id, logit) pairs, ids ascending (larger logit first, lower id on ties),
 * with softmax probabilities over every pair seen (float64, by a running log-sum-exp): one row at a time
 * (topOfRow) or a row read in chunks of the vocabulary (headTop).
 */
class RunningTop {
  private max = Number.NEGATIVE_INFINITY;
  private sum = 0;
  private readonly best: { id: number; v: number }[] = [];
  constructor(private readonly k: number) {}

  push(id: number, v: number): void {
    if (v > this.max) {
      this.sum = this.sum * Math.exp(this.max - v) + 1;
      this.max = v;
    } else this.sum += Math.exp(v - this.max);
    const { best, k } = this;
    if (best.length === k && v <= best[k - 1].v) return;
    let at = best.length === k ? k - 1 : best.length;
    while (at > 0 && best[at - 1].v < v) at--;
    best.splice(at, 0, { id, v });
    if (best.length > k) best.pop();
  }

  tokens(): LensToken[] {
    return this.best.map(({ id, v }) => ({ id, prob: Math.exp(v - this.max) / this.sum }));
  }
}

/**
 * Final norm + LM head + the family's logit scale / soft cap on rows × hidden states — the CPU backend's own
 * steps (cpu/backend.ts head), so the last state's row is the model's next-token distribution — keeping per row
 * only the k most likely tokens and their softmax probabilities (RunningTop). The head is decoded from its
 * stored bytes in chunks of rows (HEAD_CHUNK_BYTES).
 */
export function headTop(checkpoint: Checkpoint, states: Float32Array, rows: number, k: number, chunkBytes = HEAD_CHUNK_BYTES): LensToken[][] {
  const { hidden, vocabSize, norm, normEps, normOffset, logitScale, finalSoftcap } = checkpoint.spec;
  const n = finalNormOf(checkpoint);
  const normed = norm === 'rms' ? rmsNorm(states, hidden, n.weight, normEps, normOffset) : layerNorm(states, hidden, n.weight, n.bias as Float32Array, normEps);
  const lmHead = checkpoint.weights.lmHead;
  const chunk = Math.max(1, Math.min(vocabSize, Math.floor(chunkBytes / (hidden * 4))));
  const w = new Float32Array(chunk * hidden);
  const tops = Array.from({ length: rows }, () => new RunningTop(k));
  for (let v0 = 0; v0 < vocabSize; v0 += chunk) {
    const count = Math.min(chunk, vocabSize - v0);
    for (let j = 0; j < count; j++) decodeRow(lmHead, v0 + j, hidden, w.subarray(j * hidden, (j + 1) * hidden));
    const logits = finalLogits(matmul(normed, rows, w.subarray(0, count * hidden), count, hidden, null), logitScale, finalSoftcap);
    for (let r = 0; r < rows; r++) for (let j = 0; j < count; j++) tops[r].push(v0 + j, logits[r * count + j]);
  }
  return tops.map((top) => top.tokens());
}

/** The k most likely tokens of one logit row with softmax probabilities (float64), by one linear pass. */
export function topOfRow(row: Float32Array, k: number): LensToken[] {
  const top = new RunningTop(k);
  for (let id = 0; id < row.length; id++) top.push(id, row[id]);
  return top.tokens();
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
