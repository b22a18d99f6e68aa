/**
 * The CPU backend: plain TypeScript over Float32Array, clarity over speed. Its `forward` walks the plan's
 * blocks calling the named steps of ops.ts, and reads like the math; every matrix product goes through a
 * kernel set (kernels.ts: the TypeScript reference, or a fast one), so the recipe is written once. The
 * WebGPU backend mirrors these step names.
 */
import type { Backend, BlockStatSums, BlockStreaming, ForwardRequest, ForwardResult, KVCache, ResidualStream } from '../backend.ts';
import type { LayerKind, ModelSpec } from '../config.ts';
import { PruneLabError } from '../errors.ts';
import { checkForward } from '../forward-checks.ts';
import { planKey, type Plan } from '../plan.ts';
import { decodeRow, decodeToF32, type HostTensor } from '../safetensors.ts';
import { pickToken } from '../sampling.ts';
import type { BlockWeights, Linear, ModelWeights, Norm } from '../weights.ts';
import { type CpuKernels, type PreparedLinear, referenceKernels } from './kernels.ts';
import { addInPlace, blockStatSums, finalLogits, layerNorm, rmsNorm, rope } from './ops.ts';

interface F32Norm {
  w: Float32Array;
  b: Float32Array | null;
}
interface CpuBlock {
  attnNorm: F32Norm | null;
  q: PreparedLinear;
  k: PreparedLinear;
  v: PreparedLinear;
  o: PreparedLinear;
  qNorm: Float32Array | null;
  kNorm: Float32Array | null;
  attnPostNorm: F32Norm | null;
  mlpNorm: F32Norm | null;
  /** act(x·Wᵀ) for a plain MLP, act(x·Gᵀ) ⊙ (x·Uᵀ) for a gated one: one kernel call. */
  up: PreparedLinear;
  down: PreparedLinear;
  mlpPostNorm: F32Norm | null;
}

class CpuCache implements KVCache {
  length = 0;
  readonly keys = new Map<number, Float32Array>();
  readonly values = new Map<number, Float32Array>();
  constructor(
    readonly capacity: number,
    readonly planKey: string,
    private readonly rowWidth: number,
  ) {}
  layer(i: number): { keys: Float32Array; values: Float32Array } {
    if (!this.keys.has(i)) {
      this.keys.set(i, new Float32Array(this.capacity * this.rowWidth));
      this.values.set(i, new Float32Array(this.capacity * this.rowWidth));
    }
    return { keys: this.keys.get(i) as Float32Array, values: this.values.get(i) as Float32Array };
  }
  dispose(): void {
    this.keys.clear();
    this.values.clear();
  }
}

class CpuStream implements ResidualStream {
  constructor(
    readonly ids: readonly number[],
    public x: Float32Array,
  ) {}
  dispose(): void {
    this.x = new Float32Array(0);
  }
}

export class CpuBackend implements Backend {
  readonly info;
  /** As stored: embedding a token decodes its row (an f32 copy of the table would be twice a 2-byte one, for a few rows per pass). */
  private readonly embed: HostTensor;
  private readonly positions: HostTensor | null;
  /** Every block when resident; in block streaming only the loaded ones. */
  private readonly blocks: (CpuBlock | undefined)[];
  private readonly finalNorm: F32Norm;
  private readonly lmHead: PreparedLinear;
  private readonly prepareBlock: (b: BlockWeights) => CpuBlock;

  constructor(
    private readonly spec: ModelSpec,
    weights: ModelWeights,
    private readonly kernels: CpuKernels = referenceKernels(),
  ) {
    // Weak: a streamed block's tensors (and what was made from them) go when the block is released.
    const decoded = new WeakMap<HostTensor, Float32Array>();
    const f32 = (t: HostTensor) => {
      let v = decoded.get(t);
      if (!v) decoded.set(t, (v = decodeToF32(t)));
      return v;
    };
    const prepared = new WeakMap<HostTensor, PreparedLinear>();
    const lin = (l: Linear): PreparedLinear => {
      let p = prepared.get(l.weight);
      if (!p) prepared.set(l.weight, (p = kernels.prepareLinear(l.weight, l.bias)));
      return p;
    };
    const norm = (n: Norm | null): F32Norm | null => (n ? { w: f32(n.weight), b: n.bias ? f32(n.bias) : null } : null);
    this.embed = weights.embed;
    this.positions = weights.positions;
    this.prepareBlock = (b) => ({
      attnNorm: norm(b.attnNorm),
      q: lin(b.q),
      k: lin(b.k),
      v: lin(b.v),
      o: lin(b.o),
      qNorm: b.qNorm ? f32(b.qNorm) : null,
      kNorm: b.kNorm ? f32(b.kNorm) : null,
      attnPostNorm: norm(b.attnPostNorm),
      mlpNorm: norm(b.mlpNorm),
      up: b.gate ? kernels.prepareGated(b.gate, b.up, spec.activation) : kernels.prepareLinear(b.up.weight, b.up.bias, spec.activation),
      down: lin(b.down),
      mlpPostNorm: norm(b.mlpPostNorm),
    });
    this.blocks = Array.from({ length: spec.layers }, (_, i) => (weights.blocks[i] ? this.prepareBlock(weights.blocks[i]) : undefined));
    this.finalNorm = norm(weights.finalNorm) as F32Norm;
    this.lmHead = lin({ weight: weights.lmHead, bias: null });
    const endsBytes = this.embed.bytes.byteLength + (this.positions?.bytes.byteLength ?? 0);
    const threads = kernels.threads > 1 ? `, ${kernels.threads} threads` : '';
    // A getter: blocks handed over or streamed after construction count while they are held.
    this.info = {
      kind: 'cpu' as const,
      description: `CPU (${kernels.description}${threads})`,
      get weightBytes() {
        return kernels.weightBytes + endsBytes;
      },
    };
  }

  createCache(capacity: number, plan: Plan): KVCache {
    return new CpuCache(capacity, planKey(plan), this.spec.kvHeads * this.spec.headDim);
  }

  dispose(): void {
    this.kernels.dispose();
  }

  /** The family's norm (RMSNorm, Gemma's (1 + w) RMSNorm, or LayerNorm); a missing norm is the identity. */
  private normalize(x: Float32Array, n: F32Norm | null): Float32Array {
    if (!n) return x;
    const { hidden, normEps, normOffset } = this.spec;
    return this.spec.norm === 'rms' ? rmsNorm(x, hidden, n.w, normEps, normOffset) : layerNorm(x, hidden, n.w, n.b as Float32Array, normEps);
  }

  private async linear(x: Float32Array, rows: number, l: PreparedLinear): Promise<Float32Array> {
    return this.kernels.linear(x, rows, l);
  }

  /** x_0: token embedding × embedScale (+ learned position embedding). */
  private embedTokens(ids: ArrayLike<number>, firstPosition: number): Float32Array {
    const { hidden, embedScale } = this.spec;
    const x = new Float32Array(ids.length * hidden);
    const position = new Float32Array(this.positions ? hidden : 0);
    for (let t = 0; t < ids.length; t++) {
      const row = x.subarray(t * hidden, (t + 1) * hidden);
      decodeRow(this.embed, ids[t], hidden, row);
      for (let i = 0; i < hidden; i++) row[i] *= embedScale;
      if (this.positions) {
        decodeRow(this.positions, firstPosition + t, hidden, position);
        for (let i = 0; i < hidden; i++) row[i] += position[i];
      }
    }
    return x;
  }

  private async attention(
    xNorm: Float32Array,
    rows: number,
    block: CpuBlock,
    kind: LayerKind,
    index: number,
    firstPosition: number,
    cache: CpuCache | null,
  ): Promise<Float32Array> {
    const { heads, kvHeads, headDim, normEps, normOffset, qkNorm, attnScale, attnSoftcap } = this.spec;
    let q = await this.linear(xNorm, rows, block.q);
    let k = await this.linear(xNorm, rows, block.k);
    const v = await this.linear(xNorm, rows, block.v);
    if (block.qNorm && block.kNorm) {
      // Per head (qwen3, gemma3) or over the whole projection (olmo2).
      q = rmsNorm(q, qkNorm === 'head' ? headDim : heads * headDim, block.qNorm, normEps, normOffset);
      k = rmsNorm(k, qkNorm === 'head' ? headDim : kvHeads * headDim, block.kNorm, normEps, normOffset);
    }
    if (kind.rope) {
      const { rotaryDim, invFreq, attentionFactor } = kind.rope;
      rope(q, rows, heads, headDim, rotaryDim, invFreq, attentionFactor, firstPosition);
      rope(k, rows, kvHeads, headDim, rotaryDim, invFreq, attentionFactor, firstPosition);
    }
    let keys = k;
    let values = v;
    if (cache) {
      const layer = cache.layer(index);
      layer.keys.set(k, firstPosition * kvHeads * headDim);
      layer.values.set(v, firstPosition * kvHeads * headDim);
      keys = layer.keys;
      values = layer.values;
    }
    const shape = { heads, kvHeads, headDim, scale: attnScale, softcap: attnSoftcap, window: kind.window };
    const attended = await this.kernels.attention(q, rows, keys, values, cache ? firstPosition : 0, shape);
    return this.linear(attended, rows, block.o);
  }

  private async mlp(xNorm: Float32Array, rows: number, block: CpuBlock): Promise<Float32Array> {
    return this.linear(await this.linear(xNorm, rows, block.up), rows, block.down);
  }

  /** One block on the residual stream x (in place): the halves the plan keeps, as the family wires them. */
  private async block(x: Float32Array, rows: number, i: number, skipAttention: boolean, skipMlp: boolean, firstPosition: number, cache: CpuCache | null): Promise<void> {
    const block = this.blocks[i];
    if (!block) throw new PruneLabError(`block ${i} is not loaded`, { field: 'plan' });
    const { residualScale } = this.spec;
    const kind = this.spec.layerKinds[i];
    const attend = async (from: Float32Array) =>
      this.normalize(await this.attention(this.normalize(from, block.attnNorm), rows, block, kind, i, firstPosition, cache), block.attnPostNorm);
    const feed = async (from: Float32Array) => this.normalize(await this.mlp(this.normalize(from, block.mlpNorm), rows, block), block.mlpPostNorm);
    if (this.spec.parallelResidual) {
      // GPT-NeoX: both halves read the block input.
      const input = x.slice();
      if (!skipAttention) addInPlace(x, await attend(input), residualScale);
      if (!skipMlp) addInPlace(x, await feed(input), residualScale);
    } else {
      if (!skipAttention) addInPlace(x, await attend(x), residualScale);
      if (!skipMlp) addInPlace(x, await feed(x), residualScale);
    }
  }

  /** Final norm, head, logit scale / soft-cap over the given rows of x. */
  private async logitsOf(x: Float32Array, rows: number[]): Promise<Float32Array> {
    const { hidden } = this.spec;
    const picked = new Float32Array(rows.length * hidden);
    for (const [k, t] of rows.entries()) picked.set(x.subarray(t * hidden, (t + 1) * hidden), k * hidden);
    return finalLogits(await this.linear(this.normalize(picked, this.finalNorm), rows.length, this.lmHead), this.spec.logitScale, this.spec.finalSoftcap);
  }

  /** Σ_t −log softmax(logits_t)[ids_{t+1}] = Σ_t lse_t − logit_t[ids_{t+1}]. */
  private async sumNll(all: Float32Array, ids: ArrayLike<number>): Promise<number> {
    const { vocabSize } = this.spec;
    const lse = await this.kernels.logSumExp(all, ids.length - 1, vocabSize);
    let sum = 0;
    for (let t = 0; t + 1 < ids.length; t++) sum += lse[t] - all[t * vocabSize + ids[t + 1]];
    return sum;
  }

  async forward(request: ForwardRequest): Promise<ForwardResult> {
    const { ids, plan } = request;
    const { hidden, vocabSize } = this.spec;
    const cache = (request.cache as CpuCache | undefined) ?? null;
    const { rows, firstPosition } = checkForward(this.spec, request, CpuCache, this.blocks.length);
    const skipAttention = new Set(plan.skipAttention);
    const skipMlp = new Set(plan.skipMlp);

    const x = this.embedTokens(ids, firstPosition);
    const states: Float32Array[] | null = plan.capture === 'states' ? [x.slice()] : null;
    const stats: BlockStatSums[] | null = plan.capture === 'none' ? null : [];
    for (const i of plan.blocks) {
      const input = stats ? x.slice() : x;
      await this.block(x, rows, i, skipAttention.has(i), skipMlp.has(i), firstPosition, cache);
      if (stats) stats.push({ index: i, ...blockStatSums(input, x, hidden), tokens: rows });
      if (states) states.push(x.slice());
    }
    if (cache) cache.length += rows;

    let logits: Float32Array | null = null;
    let nllSum = 0;
    let nllCount = 0;
    let picked: number | undefined;
    if (request.logits !== 'none' || request.nll || request.pick) {
      const wantRows = request.logits !== 'all' && !request.nll ? [rows - 1] : Array.from({ length: rows }, (_, t) => t);
      const all = await this.logitsOf(x, wantRows);
      if (request.nll) {
        nllSum = await this.sumNll(all, ids);
        nllCount = rows - 1;
      }
      if (request.logits === 'all') logits = all;
      else if (request.logits === 'last') logits = all.slice((wantRows.length - 1) * vocabSize);
      // the same pick rule the WebGPU backend runs on the device (sampling.ts)
      if (request.pick) picked = pickToken(all.subarray((wantRows.length - 1) * vocabSize), request.pick);
    }
    return { logits, stats, states, nllSum, nllCount, ...(picked !== undefined ? { picked } : {}) };
  }

  /** The same steps in block-major order: blocks arrive and leave while every sequence's stream stays. */
  readonly streaming: BlockStreaming = {
    loadBlock: async (index, weights) => {
      this.streaming.releaseBlock(index);
      this.blocks[index] = this.prepareBlock(weights);
    },
    releaseBlock: (index) => {
      const block = this.blocks[index];
      if (!block) return;
      for (const l of [block.q, block.k, block.v, block.o, block.up, block.down]) this.kernels.releaseLinear?.(l);
      this.blocks[index] = undefined;
    },
    embed: async (ids) => {
      checkForward(this.spec, { ids, plan: { blocks: [], skipAttention: [], skipMlp: [], capture: 'none' }, logits: 'none' }, CpuCache, this.blocks.length);
      return new CpuStream(ids, this.embedTokens(ids, 0));
    },
    runBlock: async (stream, index, plan) => {
      const { x, ids } = stream as CpuStream;
      const input = plan.capture === 'none' ? null : x.slice();
      await this.block(x, ids.length, index, plan.skipAttention.includes(index), plan.skipMlp.includes(index), 0, null);
      return input ? { index, ...blockStatSums(input, x, this.spec.hidden), tokens: ids.length } : null;
    },
    readState: async (stream) => (stream as CpuStream).x.slice(),
    head: async (stream, want) => {
      const { x, ids } = stream as CpuStream;
      const rows = want.nll ? Array.from({ length: ids.length }, (_, t) => t) : [ids.length - 1];
      const all = await this.logitsOf(x, rows);
      const vocab = this.spec.vocabSize;
      return {
        lastLogits: want.lastLogits ? all.slice((rows.length - 1) * vocab) : null,
        nllSum: want.nll ? await this.sumNll(all, ids) : 0,
        nllCount: want.nll ? ids.length - 1 : 0,
      };
    },
  };
}

export async function createCpuBackend(spec: ModelSpec, weights: ModelWeights, kernels?: CpuKernels): Promise<Backend> {
  return new CpuBackend(spec, weights, kernels);
}
