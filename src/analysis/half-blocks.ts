/**
 * Block Influence of each half of a block (He et al., "What matters in transformers?"): with
 * h_i = x_i + attn_i(x_i) the stream between the halves of block i on the full model,
 *   attentionBi_i = 1 − mean_t cos(x_i,t, h_i,t),   mlpBi_i = 1 − mean_t cos(h_i,t, x_i+1,t).
 *
 * The engine captures states only between blocks, so h_i comes from a prefix plan that runs blocks
 * 0 … i with block i's MLP skipped (its last state is h_i, its stats entry for block i is the attention
 * half's cos). That costs (L + 1)/2 full forwards per sequence; an engine capture of mid-block states
 * would make it one.
 */
import type { Model, RunOptions } from '../engine/model.ts';
import type { Plan } from '../engine/plan.ts';

export interface HalfBlockScore {
  index: number;
  attentionBi: number;
  mlpBi: number;
  tokens: number;
}

function cosSum(a: Float32Array, b: Float32Array, hidden: number): number {
  let sum = 0;
  for (let r = 0; r < a.length / hidden; r++) {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let k = r * hidden; k < (r + 1) * hidden; k++) {
      ab += a[k] * b[k];
      aa += a[k] * a[k];
      bb += b[k] * b[k];
    }
    sum += Math.min(1, Math.max(-1, ab / Math.sqrt(aa * bb)));
  }
  return sum;
}

/** Attention-half and MLP-half BI of every block of the full model, over a sequence set. */
export async function halfBlockScores(model: Model, sequences: readonly (readonly number[])[], options: RunOptions = {}): Promise<HalfBlockScore[]> {
  const { layers, hidden } = model.spec;
  const attentionCos = new Float64Array(layers);
  const mlpCos = new Float64Array(layers);
  let tokens = 0;
  const all = Array.from({ length: layers }, (_, i) => i);
  for (let s = 0; s < sequences.length; s++) {
    const ids = sequences[s];
    const full: Plan = { blocks: all, skipAttention: [], skipMlp: [], capture: 'states' };
    if (options.signal?.aborted) throw new DOMException('cancelled', 'AbortError');
    const states = (await model.forward({ ids, plan: full, logits: 'none' })).states as Float32Array[];
    for (let i = 0; i < layers; i++) {
      if (options.signal?.aborted) throw new DOMException('cancelled', 'AbortError');
      const prefix: Plan = { blocks: all.slice(0, i + 1), skipAttention: [], skipMlp: [i], capture: 'states' };
      const prefixStates = (await model.forward({ ids, plan: prefix, logits: 'none' })).states as Float32Array[];
      const between = prefixStates[i + 1];
      attentionCos[i] += cosSum(states[i], between, hidden);
      mlpCos[i] += cosSum(between, states[i + 1], hidden);
    }
    tokens += ids.length;
    options.onProgress?.(s + 1, sequences.length, tokens);
  }
  return all.map((index) => ({ index, attentionBi: 1 - attentionCos[index] / tokens, mlpBi: 1 - mlpCos[index] / tokens, tokens }));
}

/** Block indices whose given half matters least first (ties by index). */
export function rankHalves(scores: readonly HalfBlockScore[], half: 'attention' | 'mlp'): number[] {
  const key = half === 'attention' ? 'attentionBi' : 'mlpBi';
  return [...scores].sort((a, b) => a[key] - b[key] || a.index - b.index).map((s) => s.index);
}
