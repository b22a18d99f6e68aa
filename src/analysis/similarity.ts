/**
 * Layer × layer similarity of residual states (the heatmap, and Gromov et al.'s window choice): for every
 * pair of states x_i, x_j (0 ≤ i < j ≤ active blocks) the mean over all calibration tokens of cos(x_i,t,
 * x_j,t) and of arccos(cos)/π, pooled over sequences exactly like the engine's per-block sums (so the
 * j = i + 1 cells equal the engine's BI and angular numbers).
 */
import type { Model, RunOptions } from '../engine/model.ts';
import { makePlan, type Plan } from '../engine/plan.ts';

export interface SimilarityMatrix {
  /** Original indices of the blocks between the states: state i is the input of blocks[i]. */
  blocks: number[];
  /** cos[i][j] for i < j (states 0 … blocks.length); NaN on and below the diagonal. */
  cos: number[][];
  /** angular[i][j] = mean arccos(cos)/π, same layout. */
  angular: number[][];
  tokens: number;
}

/** Running sums over state pairs, so sequences (and batches) accumulate. */
export interface StatePairSums {
  states: number;
  cosSum: Float64Array;
  angularSum: Float64Array;
  tokens: number;
}

export function emptyPairSums(states: number): StatePairSums {
  return { states, cosSum: new Float64Array(states * states), angularSum: new Float64Array(states * states), tokens: 0 };
}

/** cos between two rows in float64, clamped to [−1, 1] (the engine's blockStatSums does the same). */
function rowCos(a: Float32Array, b: Float32Array, offset: number, width: number): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let k = offset; k < offset + width; k++) {
    ab += a[k] * b[k];
    aa += a[k] * a[k];
    bb += b[k] * b[k];
  }
  return Math.min(1, Math.max(-1, ab / Math.sqrt(aa * bb)));
}

/**
 * Adds state x_j of one sequence (j = earlier.length) paired with each of its earlier states x_0 … x_{j−1}
 * (each tokens × hidden) into the pair sums: the incremental form, for states that arrive one at a time as
 * a block-streamed pass goes. The sequence's tokens count once, with x_0. Each cell gets the same per-sequence
 * sum in the same sequence order as from accumulateStatePairs, so both give identical numbers.
 */
export function accumulateStatePairsOf(sums: StatePairSums, earlier: readonly Float32Array[], state: Float32Array, hidden: number): void {
  const n = sums.states;
  const j = earlier.length;
  if (j >= n) throw new Error(`expected ${n} states, got a state ${j}`);
  const tokens = state.length / hidden;
  for (let i = 0; i < j; i++) {
    if (earlier[i].length !== state.length) throw new Error(`state ${i} has ${earlier[i].length / hidden} tokens, state ${j} has ${tokens}`);
    let cosSum = 0;
    let angularSum = 0;
    for (let t = 0; t < tokens; t++) {
      const c = rowCos(earlier[i], state, t * hidden, hidden);
      cosSum += c;
      angularSum += Math.acos(c) / Math.PI;
    }
    sums.cosSum[i * n + j] += cosSum;
    sums.angularSum[i * n + j] += angularSum;
  }
  if (j === 0) sums.tokens += tokens;
}

/** Adds one sequence's states [x_0, x_1, …] (each tokens × hidden) into the pair sums. */
export function accumulateStatePairs(sums: StatePairSums, states: readonly Float32Array[], hidden: number): void {
  if (states.length !== sums.states) throw new Error(`expected ${sums.states} states, got ${states.length}`);
  for (let j = 0; j < states.length; j++) accumulateStatePairsOf(sums, states.slice(0, j), states[j], hidden);
}

export function similarityFromSums(sums: StatePairSums, blocks: readonly number[]): SimilarityMatrix {
  const n = sums.states;
  const grid = (source: Float64Array) => Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (j > i ? source[i * n + j] / sums.tokens : Number.NaN)));
  return { blocks: [...blocks], cos: grid(sums.cosSum), angular: grid(sums.angularSum), tokens: sums.tokens };
}

/**
 * The similarity matrix of a plan's residual states (the full model by default) over a sequence set, in
 * either memory mode (Model.forEachState): each state is paired with the same sequence's earlier states as
 * it arrives, and a sequence's states are dropped after its last one.
 */
export async function layerSimilarity(
  model: Model,
  sequences: readonly (readonly number[])[],
  plan: Plan = makePlan(model.spec.layers),
  options: RunOptions = {},
): Promise<SimilarityMatrix> {
  const sums = emptyPairSums(plan.blocks.length + 1);
  const kept: Float32Array[][] = sequences.map(() => []);
  await model.forEachState(
    sequences,
    plan,
    (s, _, x) => {
      accumulateStatePairsOf(sums, kept[s], x, model.spec.hidden);
      kept[s].push(x);
      if (kept[s].length === sums.states) kept[s] = [];
    },
    options,
  );
  return similarityFromSums(sums, plan.blocks);
}

/** A clicked cell (i, j), i < j, removes the blocks between state i and state j: blocks[i … j−1]. */
export function cellRemoval(matrix: Pick<SimilarityMatrix, 'blocks'>, i: number, j: number): number[] {
  const n = matrix.blocks.length;
  if (!Number.isInteger(i) || !Number.isInteger(j) || i < 0 || j > n || i >= j) {
    throw new RangeError(`cell (${i}, ${j}) is not a pair of states 0 ≤ i < j ≤ ${n}`);
  }
  return matrix.blocks.slice(i, j).sort((a, b) => a - b);
}

export interface Window {
  /** First state of the window: the window removes blocks[start … start + n − 1]. */
  start: number;
  n: number;
  /** Mean angular distance between x_start and x_start+n. */
  distance: number;
  removed: number[];
}

/**
 * Gromov et al.: the n-block window whose input and output states are closest in angular distance
 * (smallest start on ties). `minStart` excludes earlier windows (healing needs a block before the window).
 */
export function bestWindow(matrix: SimilarityMatrix, n: number, minStart = 0): Window {
  const blocks = matrix.blocks.length;
  if (!Number.isInteger(n) || n < 1 || n > blocks - minStart) throw new RangeError(`window size ${n} must be 1 … ${blocks - minStart}`);
  let start = minStart;
  for (let l = minStart + 1; l + n <= blocks; l++) if (matrix.angular[l][l + n] < matrix.angular[start][start + n]) start = l;
  return { start, n, distance: matrix.angular[start][start + n], removed: cellRemoval(matrix, start, start + n) };
}
