/**
 * The checks every backend runs before a forward, in one place: tokens present and inside the
 * vocabulary, the KV cache made by this backend under this plan with room left, positions inside what
 * the model can address (learned positions, longrope's original context), every planned block real.
 */
import type { ForwardRequest, KVCache } from './backend.ts';
import type { ModelSpec } from './config.ts';
import { PruneLabError } from './errors.ts';
import { planKey } from './plan.ts';

// biome-ignore lint/suspicious/noExplicitAny: a cache class of any constructor shape
type CacheClass = abstract new (...args: any[]) => KVCache;

export function checkForward(spec: ModelSpec, request: ForwardRequest, cacheClass: CacheClass, blockCount: number): { rows: number; firstPosition: number } {
  const { ids, plan } = request;
  const rows = ids.length;
  if (rows === 0) throw new PruneLabError('cannot run a forward pass on zero tokens', { field: 'ids' });
  const cache = request.cache ?? null;
  if (cache && !(cache instanceof cacheClass)) throw new PruneLabError('the KV cache was made by another backend', { field: 'cache' });
  if (cache && cache.planKey !== planKey(plan)) throw new PruneLabError('the KV cache was filled under a different plan', { field: 'cache' });
  const firstPosition = cache ? cache.length : 0;
  if (cache && firstPosition + rows > cache.capacity) throw new PruneLabError(`KV cache holds ${cache.capacity} positions`, { field: 'cache' });
  for (let t = 0; t < rows; t++) {
    const id = ids[t];
    if (!Number.isInteger(id) || id < 0 || id >= spec.vocabSize) throw new PruneLabError(`token id ${id} is outside the vocabulary (0..${spec.vocabSize - 1})`, { field: 'ids' });
  }
  if (request.pick !== undefined) checkPick(request);
  const lastPosition = firstPosition + rows - 1;
  if (spec.learnedPositions && lastPosition >= spec.maxPositions) {
    throw new PruneLabError(`position ${lastPosition} exceeds the model's ${spec.maxPositions} learned positions`, { field: 'seq-len' });
  }
  for (const i of plan.blocks) {
    if (!Number.isInteger(i) || i < 0 || i >= blockCount) throw new PruneLabError(`block ${i} does not exist`, { field: 'plan' });
    const limit = spec.layerKinds[i].rope?.maxPosition ?? null;
    if (limit !== null && lastPosition >= limit) {
      throw new PruneLabError(`position ${lastPosition} is beyond the ${limit}-token original context of longrope; long-context factors are not supported`, { field: 'seq-len' });
    }
  }
  return { rows, firstPosition };
}

/** A pick reads the last position's logits row: with logits 'none' or 'last' and no nll; a sample's numbers in range. */
function checkPick(request: ForwardRequest): void {
  const { pick } = request;
  if (request.logits === 'all' || request.nll) throw new PruneLabError("pick works with logits 'last' or 'none' and no nll (it picks from the last position)", { field: 'pick' });
  if (pick === 'argmax') return;
  if (typeof pick !== 'object' || pick === null) throw new PruneLabError(`pick must be 'argmax' or a sample, got ${String(pick)}`, { field: 'pick' });
  const { temperature, topK, topP, u } = pick;
  if (!Number.isFinite(temperature) || temperature <= 0)
    throw new PruneLabError(`a sampled pick needs a temperature > 0 (greedy is 'argmax'), got ${temperature}`, { field: 'temperature' });
  if (!Number.isInteger(topK) || topK < 0 || topK > 0xffffffff) throw new PruneLabError(`top-k must be a whole number ≥ 0 (0 = no cut), got ${topK}`, { field: 'top-k' });
  if (!(topP > 0 && topP <= 1)) throw new PruneLabError(`top-p must be in (0, 1], got ${topP}`, { field: 'top-p' });
  if (!(u >= 0 && u < 1)) throw new PruneLabError(`the sample's uniform draw must be in [0, 1), got ${u}`, { field: 'pick' });
}
