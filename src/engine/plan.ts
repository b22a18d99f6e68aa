/**
 * What one forward runs and captures. Observation is part of the plan (not flags in kernels): which
 * blocks run and in what order, which halves of a block are skipped, and what is captured.
 */
import { PruneLabError } from './errors.ts';

export type Capture = 'none' | 'stats' | 'states';

export interface Plan {
  /** Blocks to run, in order. A block not listed costs nothing. */
  blocks: number[];
  /** Blocks whose attention half is skipped (the residual stream passes through unchanged). */
  skipAttention: number[];
  /** Blocks whose MLP half is skipped. */
  skipMlp: number[];
  /** 'stats': per-active-block sums; 'states': also every residual state (heatmap, logit lens). */
  capture: Capture;
}

/** What is cut, by original block index: the one removal type (engine, analysis, worker, UI, URL). */
export interface Removal {
  /** Whole blocks removed. */
  blocks?: readonly number[];
  /** Only the attention half removed. */
  attention?: readonly number[];
  /** Only the MLP half removed. */
  mlp?: readonly number[];
}

/** A Removal with every list present, ascending, without duplicates (so equal sets compare and print equal). */
export interface RemovalSet {
  blocks: number[];
  attention: number[];
  mlp: number[];
}

const ascending = (list: readonly number[] | undefined) => [...new Set(list ?? [])].sort((a, b) => a - b);

export function normalizeRemoval(removal: Removal): RemovalSet {
  return { blocks: ascending(removal.blocks), attention: ascending(removal.attention), mlp: ascending(removal.mlp) };
}

/** The one key of a removal set: "b1,3|a|m2" (memoising, matching results to the cut they were run under). */
export function removalKey(removal: Removal): string {
  const r = normalizeRemoval(removal);
  return `b${r.blocks.join(',')}|a${r.attention.join(',')}|m${r.mlp.join(',')}`;
}

/** The removal set a key names, or null for anything that is not a key. */
export function parseRemovalKey(key: string): RemovalSet | null {
  const m = /^b([\d,]*)\|a([\d,]*)\|m([\d,]*)$/.exec(key);
  if (!m) return null;
  const list = (s: string) => (s === '' ? [] : s.split(',').map(Number));
  return normalizeRemoval({ blocks: list(m[1]), attention: list(m[2]), mlp: list(m[3]) });
}

function checkIndices(layers: number, list: readonly number[], what: string): void {
  for (const i of list) {
    if (!Number.isInteger(i) || i < 0 || i >= layers) {
      throw new PruneLabError(`block ${i} does not exist (the model has blocks 0..${layers - 1})`, { field: what });
    }
  }
}

/** All blocks in order, minus a removal set. */
export function makePlan(layers: number, removal: Removal = {}, capture: Capture = 'none'): Plan {
  const removed = removal.blocks ?? [];
  checkIndices(layers, removed, 'remove');
  checkIndices(layers, removal.attention ?? [], 'remove-attention');
  checkIndices(layers, removal.mlp ?? [], 'remove-mlp');
  const gone = new Set(removed);
  return {
    blocks: Array.from({ length: layers }, (_, i) => i).filter((i) => !gone.has(i)),
    skipAttention: [...(removal.attention ?? [])],
    skipMlp: [...(removal.mlp ?? [])],
    capture,
  };
}

export function withCapture(plan: Plan, capture: Capture): Plan {
  return { ...plan, capture };
}

/** A short stable key for a plan's compute (not its capture), e.g. to tie a KV cache to it. */
export function planKey(plan: Plan): string {
  return `${plan.blocks.join(',')}|a${plan.skipAttention.join(',')}|m${plan.skipMlp.join(',')}`;
}
