/**
 * The reference backend: plain TypeScript over Float32Array, clarity over speed. Its `forward` walks the
 * plan's blocks calling the named steps of ops.ts; the WebGPU backend mirrors these step names.
 */
import type { Backend, BlockStatSums, ForwardRequest, ForwardResult, KVCache } from '../backend.ts';
import type { ModelSpec } from '../config.ts';
import { PruneLabError } from '../errors.ts';
import { planKey, type Plan } from '../plan.ts';
import { decodeToF32, type HostTensor } from '../safetensors.ts';
import type { Linear, ModelWeights, Norm } from '../weights.ts';
import { addInPlace, blockStatSums, causalAttention, gelu_new, layerNorm, mapInPlace, matmul, nll, rmsNorm, rope, swiglu } from './ops.ts';

interface F32Linear {
  w: Float32Array;
  b: Float32Array | null;
  out: number;
  inp: number;
}
interface F32Norm {
  w: Float32Array;
  b: Float32Array | null;
}
interface F32Block {
  attnNorm: F32Norm;
  q: F32Linear;
  k: F32Linear;
  v: F32Linear;
  o: F32Linear;
  qNorm: Float32Array | null;
  kNorm: Float32Array | null;
  mlpNorm: F32Norm;
  gate: F32Linear | null;
  up: F32Linear;
  down: F32Linear;
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

export class CpuBackend implements Backend {
  readonly info;
  private readonly embed: Float32Array;
  private readonly positions: Float32Array | null;
  private readonly blocks: F32Block[];
  private readonly finalNorm: F32Norm;
  private readonly lmHead: Float32Array;

  constructor(
    private readonly spec: ModelSpec,
    weights: ModelWeights,
  ) {
    const cache = new Map<HostTensor, Float32Array>();
    const f32 = (t: HostTensor) => {
      let v = cache.get(t);
      if (!v) cache.set(t, (v = decodeToF32(t)));
      return v;
    };
    const lin = (l: Linear): F32Linear => ({ w: f32(l.weight), b: l.bias ? f32(l.bias) : null, out: l.weight.shape[0], inp: l.weight.shape[1] });
    const norm = (n: Norm): F32Norm => ({ w: f32(n.weight), b: n.bias ? f32(n.bias) : null });
    this.embed = f32(weights.embed);
    this.positions = weights.positions ? f32(weights.positions) : null;
    this.blocks = weights.blocks.map((b) => ({
      attnNorm: norm(b.attnNorm),
      q: lin(b.q),
      k: lin(b.k),
      v: lin(b.v),
      o: lin(b.o),
      qNorm: b.qNorm ? f32(b.qNorm) : null,
      kNorm: b.kNorm ? f32(b.kNorm) : null,
      mlpNorm: norm(b.mlpNorm),
      gate: b.gate ? lin(b.gate) : null,
      up: lin(b.up),
      down: lin(b.down),
    }));
    this.finalNorm = norm(weights.finalNorm);
    this.lmHead = f32(weights.lmHead);
    let weightBytes = 0;
    for (const v of cache.values()) weightBytes += v.byteLength;
    this.info = { kind: 'cpu' as const, description: 'CPU (TypeScript reference)', weightBytes };
  }

  createCache(capacity: number, plan: Plan): KVCache {
    return new CpuCache(capacity, planKey(plan), this.spec.kvHeads * this.spec.headDim);
  }

  dispose(): void {}

  private normalize(x: Float32Array, n: F32Norm): Float32Array {
    const { hidden, normEps } = this.spec;
    return this.spec.norm === 'rms' ? rmsNorm(x, hidden, n.w, normEps) : layerNorm(x, hidden, n.w, n.b as Float32Array, normEps);
  }

  private linear(x: Float32Array, rows: number, l: F32Linear): Float32Array {
    return matmul(x, rows, l.w, l.out, l.inp, l.b);
  }

  /** x_0: token embedding (+ learned position embedding). */
  private embedTokens(ids: ArrayLike<number>, firstPosition: number): Float32Array {
    const { hidden, vocabSize, maxPositions } = this.spec;
    const x = new Float32Array(ids.length * hidden);
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t];
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new PruneLabError(`token id ${id} is outside the vocabulary (0..${vocabSize - 1})`, { field: 'ids' });
      x.set(this.embed.subarray(id * hidden, (id + 1) * hidden), t * hidden);
      if (this.positions) {
        const pos = firstPosition + t;
        if (pos >= maxPositions) throw new PruneLabError(`position ${pos} exceeds the model's ${maxPositions} learned positions`, { field: 'seq-len' });
        for (let i = 0; i < hidden; i++) x[t * hidden + i] += this.positions[pos * hidden + i];
      }
    }
    return x;
  }

  private attention(xNorm: Float32Array, rows: number, block: F32Block, index: number, firstPosition: number, cache: CpuCache | null): Float32Array {
    const { heads, kvHeads, headDim, normEps, ropeInvFreq } = this.spec;
    const q = this.linear(xNorm, rows, block.q);
    let k = this.linear(xNorm, rows, block.k);
    const v = this.linear(xNorm, rows, block.v);
    const qn = block.qNorm ? rmsNorm(q, headDim, block.qNorm, normEps) : q;
    if (block.kNorm) k = rmsNorm(k, headDim, block.kNorm, normEps);
    if (ropeInvFreq) {
      rope(qn, rows, heads, headDim, ropeInvFreq, firstPosition);
      rope(k, rows, kvHeads, headDim, ropeInvFreq, firstPosition);
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
    const attended = causalAttention(qn, rows, keys, values, cache ? firstPosition : 0, heads, kvHeads, headDim);
    return this.linear(attended, rows, block.o);
  }

  private mlp(xNorm: Float32Array, rows: number, block: F32Block): Float32Array {
    const up = this.linear(xNorm, rows, block.up);
    const act = block.gate ? swiglu(this.linear(xNorm, rows, block.gate), up) : mapInPlace(up, gelu_new);
    return this.linear(act, rows, block.down);
  }

  async forward(request: ForwardRequest): Promise<ForwardResult> {
    const { ids, plan } = request;
    const { hidden, vocabSize } = this.spec;
    const rows = ids.length;
    if (rows === 0) throw new PruneLabError('cannot run a forward pass on zero tokens', { field: 'ids' });
    const cache = (request.cache as CpuCache | undefined) ?? null;
    if (cache && cache.planKey !== planKey(plan)) throw new PruneLabError('the KV cache was filled under a different plan', { field: 'cache' });
    const firstPosition = cache ? cache.length : 0;
    if (cache && firstPosition + rows > cache.capacity) throw new PruneLabError(`KV cache holds ${cache.capacity} positions`, { field: 'cache' });
    const skipAttention = new Set(plan.skipAttention);
    const skipMlp = new Set(plan.skipMlp);

    let x = this.embedTokens(ids, firstPosition);
    const states: Float32Array[] | null = plan.capture === 'states' ? [x.slice()] : null;
    const stats: BlockStatSums[] | null = plan.capture === 'none' ? null : [];
    for (const i of plan.blocks) {
      const block = this.blocks[i];
      if (!block) throw new PruneLabError(`block ${i} does not exist`, { field: 'plan' });
      const input = stats ? x.slice() : x;
      if (!skipAttention.has(i)) addInPlace(x, this.attention(this.normalize(x, block.attnNorm), rows, block, i, firstPosition, cache));
      if (!skipMlp.has(i)) addInPlace(x, this.mlp(this.normalize(x, block.mlpNorm), rows, block));
      if (stats) stats.push({ index: i, ...blockStatSums(input, x, hidden), tokens: rows });
      if (states) states.push(x.slice());
      x = x.slice();
    }
    if (cache) cache.length += rows;

    let logits: Float32Array | null = null;
    let nllSum = 0;
    let nllCount = 0;
    if (request.logits !== 'none' || request.nll) {
      const wantRows = request.logits === 'last' && !request.nll ? [rows - 1] : Array.from({ length: rows }, (_, t) => t);
      const picked = new Float32Array(wantRows.length * hidden);
      for (const [k, t] of wantRows.entries()) picked.set(x.subarray(t * hidden, (t + 1) * hidden), k * hidden);
      const all = matmul(this.normalize(picked, this.finalNorm), wantRows.length, this.lmHead, vocabSize, hidden, null);
      if (request.nll) {
        for (let t = 0; t + 1 < rows; t++) nllSum += nll(all, t * vocabSize, vocabSize, ids[t + 1]);
        nllCount = rows - 1;
      }
      if (request.logits === 'all') logits = all;
      else if (request.logits === 'last') logits = all.slice((wantRows.length - 1) * vocabSize);
    }
    return { logits, stats, states, nllSum, nllCount };
  }
}

export async function createCpuBackend(spec: ModelSpec, weights: ModelWeights): Promise<Backend> {
  return new CpuBackend(spec, weights);
}
