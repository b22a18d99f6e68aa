/**
 * Healing a cut without training (ReplaceMe, Shopkhoev et al. 2025). A removed contiguous span of blocks
 * [i, j) is replaced by one linear map T fitted on calibration activations and folded into the block
 * before it, so the healed model is an ordinary checkpoint with fewer blocks.
 *
 * For block p = i − 1: H = the residual stream before its MLP's add, M = its MLP output (before the add),
 * Y = x_j, the output of block j − 1 in the original model. T minimises ‖H + M T − Y‖² + λ‖T‖², so block
 * p's MLP writes M T instead of M: its down projection W (nn.Linear layout [hidden, intermediate]) becomes
 * Tᵀ W and its bias b becomes b T. Exact only for a block whose MLP output is added to the stream as is
 * (pre-norm, sequential): a post-norm or parallel-residual block is refused, never folded wrongly.
 *
 * Several spans are healed in order, each into its own preceding block. Span k's H and M come from the
 * model with spans 1 … k−1 already removed and healed (the activations the healed model will really see
 * there), while its target Y is always the original model's x_j: so a later fit also absorbs what the
 * earlier maps left unexplained, instead of fitting activations the healed model never produces.
 *
 * Engine-agnostic: activations come from plans (prefix blocks, skipMlp, capture 'states'); the sums
 * MᵀM, Mᵀ(Y − H) are accumulated on the CPU in float64 (hidden² each, independent of the calibration
 * size) and solved by Cholesky (linear-fit.ts).
 */
import type { Backend } from '../engine/backend.ts';
import type { Checkpoint } from '../engine/checkpoint.ts';
import type { ModelSpec } from '../engine/config.ts';
import { familyByName } from '../engine/arch/registry.ts';
import { PruneLabError } from '../engine/errors.ts';
import { Model, type RunOptions } from '../engine/model.ts';
import type { Plan } from '../engine/plan.ts';
import { decodeToF32, encodeAs, type HostTensor } from '../engine/safetensors.ts';
import { transposed } from '../engine/weights.ts';
import { healCutProblem, removedSpans, type Span } from './heal-spans.ts';
import { LeastSquaresSums, solveRidge } from './linear-fit.ts';
import { bestWindow, layerSimilarity, type Window } from './similarity.ts';

export { removedSpans, type Span, spanLabel } from './heal-spans.ts';

/** Relative ridge: λ = DEFAULT_RIDGE · trace(MᵀM) / hidden (chosen on the embedded model, see README). */
export const DEFAULT_RIDGE = 1e-4;

/** Why healing cannot fold into this model's blocks (the family says), or null when it can. */
export function healUnavailableReason(spec: ModelSpec): string | null {
  const reason = familyByName(spec.family).healUnsupported;
  if (reason) return `healing is not available for ${spec.modelType}: ${reason}`;
  // The family's word, checked against the spec: a parallel-residual MLP does not read H + attention.
  if (spec.parallelResidual) return `healing is not available for ${spec.modelType}: its blocks are parallel-residual, so the MLP does not read the stream a fold assumes`;
  return null;
}

/** Throws unless every span can be healed into the block before it. */
export function checkHealable(spec: ModelSpec, removed: readonly number[]): Span[] {
  const reason = healUnavailableReason(spec);
  if (reason) throw new PruneLabError(reason, { field: 'model_type' });
  for (const i of removed) {
    if (!Number.isInteger(i) || i < 0 || i >= spec.layers) throw new PruneLabError(`block ${i} does not exist (0..${spec.layers - 1})`, { field: 'remove' });
  }
  const problem = healCutProblem({ blocks: removed });
  if (problem) throw new PruneLabError(problem, { field: 'remove' });
  return removedSpans(removed);
}

export interface SpanHeal {
  start: number;
  end: number;
  /** The block the map was folded into (start − 1). */
  block: number;
  /** ‖H + M T − Y‖² / ‖Y − H‖² over the calibration tokens. */
  residual: number;
  /** The same for plain removal (T = I): ‖x_start − Y‖² / ‖Y − H‖². */
  removalResidual: number;
  /** The absolute ridge λ used. */
  lambda: number;
  tokens: number;
}

export interface HealOptions extends Omit<RunOptions, 'onProgress'> {
  /** Relative ridge (default DEFAULT_RIDGE). */
  ridge?: number;
  /** A backend for a healed checkpoint: the same kind as the original's, so both give comparable numbers. */
  openBackend: (checkpoint: Checkpoint) => Promise<Backend>;
  /** After each calibration sequence of each span. */
  onProgress?: (done: number, total: number, span: Span) => void;
}

export interface Healed {
  /** Ascending removed blocks. */
  removed: number[];
  spans: SpanHeal[];
  ridge: number;
  /** The original checkpoint with the healed down projections (all blocks still present). */
  checkpoint: Checkpoint;
  /** That checkpoint on its own backend; run it with the removal plan. Dispose when done. */
  model: Model;
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from) }, (_, k) => from + k);

function statesPlan(blocks: number[], skipMlp: number[] = []): Plan {
  return { blocks, skipAttention: [], skipMlp, capture: 'states' };
}

function lastState(states: Float32Array[] | null): Float32Array {
  if (!states || states.length === 0) throw new PruneLabError('the backend returned no residual states', { field: 'capture' });
  return states[states.length - 1];
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
const sameBytes = (a: Uint8Array, b: Uint8Array) => a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);

/**
 * The stored form of a folded down projection: as bound (nn.Linear [hidden, inter]) or transposed when
 * the family stores it transposed (GPT-2's Conv1D [inter, hidden]): told apart by comparing the bound
 * tensor with the stored one, so no family needs to be named here.
 */
function storedForm(stored: HostTensor, bound: HostTensor, folded: HostTensor): HostTensor {
  if (stored === bound || (sameShape(stored.shape, bound.shape) && sameBytes(stored.bytes, bound.bytes))) return folded;
  const flipped = transposed(bound);
  if (sameShape(stored.shape, flipped.shape) && sameBytes(stored.bytes, flipped.bytes)) return transposed(folded);
  throw new PruneLabError('is stored in a layout the fold does not know (neither the bound matrix nor its transpose)', { file: stored.file, tensor: stored.name });
}

/** W' = Tᵀ W (W: [hidden, inter] Linear layout) and b' = b T, computed in float64, encoded in the stored dtype. */
function foldDown(weight: HostTensor, bias: HostTensor | null, transform: Float64Array, hidden: number): { weight: HostTensor; bias: HostTensor | null } {
  const inter = weight.shape[1];
  const w = decodeToF32(weight);
  const acc = new Float64Array(hidden * inter);
  for (let b = 0; b < hidden; b++) {
    const wRow = b * inter;
    for (let a = 0; a < hidden; a++) {
      const t = transform[b * hidden + a];
      if (t === 0) continue;
      const out = a * inter;
      for (let c = 0; c < inter; c++) acc[out + c] += t * w[wRow + c];
    }
  }
  const folded: HostTensor = { ...weight, bytes: encodeAs(Float32Array.from(acc), weight.dtype, weight) };
  let foldedBias: HostTensor | null = null;
  if (bias) {
    const bv = decodeToF32(bias);
    const out = new Float32Array(hidden);
    for (let a = 0; a < hidden; a++) {
      let s = 0;
      for (let b = 0; b < hidden; b++) s += bv[b] * transform[b * hidden + a];
      out[a] = s;
    }
    foldedBias = { ...bias, bytes: encodeAs(out, bias.dtype, bias) };
  }
  return { weight: folded, bias: foldedBias };
}

/**
 * The checkpoint with each map T (keyed by the block it folds into) folded into that block's down
 * projection: both the bound weights (what a backend runs) and the stored files (what an export writes),
 * in the stored dtype and layout. Always folds into the original weights, so applying a set twice is safe.
 */
export function healedCheckpoint(checkpoint: Checkpoint, transforms: ReadonlyMap<number, Float64Array>): Checkpoint {
  const { spec } = checkpoint;
  if (!checkpoint.resident) throw new PruneLabError('healing needs every block in memory; this checkpoint streams its blocks', { field: 'heal' });
  const blocks = [...checkpoint.weights.blocks];
  /** Stored tensor key -> (bound original, folded). */
  const replaced = new Map<string, { bound: HostTensor; folded: HostTensor }>();
  const key = (t: HostTensor) => `${t.file}\u0000${t.name}`;
  for (const [p, transform] of transforms) {
    const block = blocks[p];
    if (!block) throw new PruneLabError(`block ${p} does not exist`, { field: 'heal' });
    if (block.mlpPostNorm || spec.parallelResidual) throw new PruneLabError(`block ${p}'s MLP output is not added to the stream as is; a fold would be wrong`, { field: 'heal' });
    if (transform.length !== spec.hidden * spec.hidden) throw new RangeError(`the map for block ${p} has ${transform.length} entries, not ${spec.hidden}²`);
    const folded = foldDown(block.down.weight, block.down.bias, transform, spec.hidden);
    blocks[p] = { ...block, down: folded };
    replaced.set(key(block.down.weight), { bound: block.down.weight, folded: folded.weight });
    if (block.down.bias && folded.bias) replaced.set(key(block.down.bias), { bound: block.down.bias, folded: folded.bias });
  }
  const files = checkpoint.files.map((file) => {
    const tensors = new Map(file.tensors);
    for (const [name, t] of file.tensors) {
      const swap = replaced.get(key(t));
      if (swap) {
        tensors.set(name, swap.bound.shape.length === 1 ? swap.folded : storedForm(t, swap.bound, swap.folded));
        replaced.delete(key(t));
      }
    }
    return { name: file.name, tensors };
  });
  if (replaced.size > 0) {
    const missing = [...replaced.values()][0].bound;
    throw new PruneLabError('is not among the stored tensors, so the healed down projection cannot be written', { file: missing.file, tensor: missing.name });
  }
  return {
    ...checkpoint,
    weights: { ...checkpoint.weights, blocks },
    files,
    loadBlock: async (i) => blocks[i] ?? checkpoint.loadBlock(i),
    // Folded tensors exist only here: every block is handed from memory, never read again.
    forEachBlock: async (take) => {
      for (const [i, block] of blocks.entries()) await take(i, block);
    },
  };
}

/**
 * Fits and folds one map per removed span, in order (see the file comment). Returns the healed checkpoint
 * and a model running it; the original model is left as it was.
 */
export async function healSpans(model: Model, sequences: readonly (readonly number[])[], removed: readonly number[], options: HealOptions): Promise<Healed> {
  const { spec } = model;
  const spans = checkHealable(spec, removed);
  if (model.mode !== 'resident')
    throw new PruneLabError('healing needs every block in memory; this model runs block-streamed (raise --gpu-memory or use the CPU backend)', { field: 'heal' });
  // The fold rewrites stored tensors: a checkpoint whose blocks went to a backend that copied them (the fast
  // CPU kernels, WebGPU; memory.ts copiesWeights) reads them again.
  await model.checkpoint.makeResident(options.signal);
  const ridge = options.ridge ?? DEFAULT_RIDGE;
  const { openBackend } = options;
  const gone = new Set(removed);
  const transforms = new Map<number, Float64Array>();
  const fits: SpanHeal[] = [];
  let current: Model = model;
  try {
    for (const [k, span] of spans.entries()) {
      const p = span.start - 1;
      // Blocks the partly healed model runs up to block p: earlier spans are gone.
      const prefix = range(0, p + 1).filter((i) => !gone.has(i));
      const sums = new LeastSquaresSums(spec.hidden);
      for (const [s, ids] of sequences.entries()) {
        if (options.signal?.aborted) throw new DOMException('cancelled', 'AbortError');
        const original = await model.forward({ ids, plan: statesPlan(range(0, span.end)), logits: 'none' });
        const y = lastState(original.states);
        const h = lastState((await current.forward({ ids, plan: statesPlan(prefix, [p]), logits: 'none' })).states);
        // Before any fold the partly healed model is the original: x_start is already among its states.
        const xStart = k === 0 ? (original.states as Float32Array[])[span.start] : lastState((await current.forward({ ids, plan: statesPlan(prefix), logits: 'none' })).states);
        const m = new Float64Array(h.length);
        const d = new Float64Array(h.length);
        for (let e = 0; e < h.length; e++) {
          m[e] = xStart[e] - h[e];
          d[e] = y[e] - h[e];
        }
        sums.add(m, d, ids.length);
        options.onProgress?.(s + 1, sequences.length, span);
      }
      const fit = solveRidge(sums, ridge);
      transforms.set(p, fit.transform);
      fits.push({ start: span.start, end: span.end, block: p, residual: fit.residual, removalResidual: fit.identityResidual, lambda: fit.lambda, tokens: fit.rows });
      const checkpoint = healedCheckpoint(model.checkpoint, transforms);
      const next = new Model(checkpoint, await openBackend(checkpoint));
      if (current !== model) current.dispose();
      current = next;
    }
  } catch (e) {
    if (current !== model) current.dispose();
    throw e;
  }
  return { removed: [...gone].sort((a, b) => a - b), spans: fits, ridge, checkpoint: current.checkpoint, model: current };
}

/**
 * "n blocks, best span": the n-block window with the smallest angular distance between its input and
 * output states (Gromov et al.), among windows that have a block before them to heal into.
 */
export async function bestHealableSpan(model: Model, sequences: readonly (readonly number[])[], n: number, options: RunOptions = {}): Promise<Window> {
  const layers = model.spec.layers;
  if (!Number.isInteger(n) || n < 1 || n > layers - 1) throw new PruneLabError(`a healable span has 1 … ${layers - 1} blocks, got ${n}`, { field: 'best-span' });
  const matrix = await layerSimilarity(model, sequences, undefined, options);
  return bestWindow(matrix, n, 1);
}
