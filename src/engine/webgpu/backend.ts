/**
 * The WebGPU backend. Weights are uploaded once; every WGSL variant is compiled once per device. A
 * forward walks the plan's blocks with the same step names as the CPU reference (embedTokens, normalize,
 * linear, attention, mlp, blockStats, head), records every dispatch into one command encoder, submits
 * once and reads back one staging buffer: logits, three floats per block of statistics, the NLL sum,
 * and (capture 'states') the residual states. A skipped block records nothing.
 *
 * A weight matrix larger than one storage binding is uploaded as row chunks (tensors.ts) and every
 * matmul / gather over it is one dispatch per chunk (kernels/matmul.ts, kernels/embedding.ts); the head
 * runs in groups of rows when all rows' logits would not fit one binding. With one chunk and one group
 * (everything fits) the recorded forward is the unsplit one.
 */
import type { Backend, BackendInfo, BlockStatSums, ForwardRequest, ForwardResult, KVCache } from '../backend.ts';
import type { ModelSpec } from '../config.ts';
import { PruneLabError } from '../errors.ts';
import { type Plan, planKey } from '../plan.ts';
import type { HostTensor } from '../safetensors.ts';
import type { Linear, ModelWeights, Norm } from '../weights.ts';
import { acquireGpu, type BindingLimit, bindingLimit, checkFits, checkNotLost, type DeviceOptions, formatBytes, type GpuContext } from './device.ts';
import { activation, activationPipeline } from './kernels/activation.ts';
import { attentionPipeline, causalAttention, MAX_HEAD_DIM } from './kernels/attention.ts';
import { PipelineCache } from './kernels/common.ts';
import { embeddingPipeline, embedTokens } from './kernels/embedding.ts';
import { matmulMatrix, matmulPipeline } from './kernels/matmul.ts';
import { nllPipeline, tokenNll } from './kernels/nll.ts';
import { norm, normPipeline } from './kernels/norm.ts';
import { rope, ropePipeline, ropeTable } from './kernels/rope.ts';
import { blockStats, sumRows, sumRowsPipeline, tokenStatsPipeline } from './kernels/stats.ts';
import { Recorder, UniformArena, Workspace } from './recorder.ts';
import { type GpuMatrix, uploadF32Array, uploadMatrix, uploadVector } from './tensors.ts';

interface GpuLinear {
  w: GpuMatrix;
  b: GPUBuffer | null;
  out: number;
  inp: number;
}
interface GpuNorm {
  w: GPUBuffer;
  b: GPUBuffer | null;
}
interface GpuBlock {
  attnNorm: GpuNorm;
  q: GpuLinear;
  k: GpuLinear;
  v: GpuLinear;
  o: GpuLinear;
  qNorm: GPUBuffer | null;
  kNorm: GPUBuffer | null;
  mlpNorm: GpuNorm;
  gate: GpuLinear | null;
  up: GpuLinear;
  down: GpuLinear;
}

const F32 = 4;
const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

class WebGpuCache implements KVCache {
  length = 0;
  private readonly layers = new Map<number, { keys: GPUBuffer; values: GPUBuffer }>();
  constructor(
    private readonly ctx: GpuContext,
    readonly capacity: number,
    readonly planKey: string,
    private readonly rowWidth: number,
  ) {}
  /** The block's key and value buffers, [capacity, kvHeads, headDim] each, made on first use. */
  layer(i: number): { keys: GPUBuffer; values: GPUBuffer } {
    let l = this.layers.get(i);
    if (!l) {
      const bytes = this.capacity * this.rowWidth * F32;
      checkFits(this.ctx, bytes, { field: `KV cache of block ${i}` });
      const make = (label: string) => this.ctx.device.createBuffer({ label, size: Math.max(16, bytes), usage: STORAGE() });
      l = { keys: make(`cache.${i}.keys`), values: make(`cache.${i}.values`) };
      this.layers.set(i, l);
    }
    return l;
  }
  dispose(): void {
    for (const l of this.layers.values()) {
      l.keys.destroy();
      l.values.destroy();
    }
    this.layers.clear();
  }
}

export interface WebGpuBackendOptions extends DeviceOptions {
  /** Compile every kernel variant the model can use at creation (default), not at first use. */
  precompile?: boolean;
  /** Run on this device instead of acquiring one; it is shared (not destroyed by dispose) and so is its pipeline cache. */
  context?: GpuContext;
  /**
   * Split weights (and group logits rows) as if one storage binding could hold at most this many bytes.
   * Only lowers the device's own limit (maxStorageBufferBindingSize / maxBufferSize), which is what is
   * used without it; tests force splits on tiny models with a few KB.
   */
  maxBindingBytes?: number;
}

/** One pipeline cache per device, so backends sharing a device compile each variant once. */
const pipelineCaches = new WeakMap<GPUDevice, PipelineCache>();
function pipelineCacheFor(device: GPUDevice): PipelineCache {
  let cache = pipelineCaches.get(device);
  if (!cache) {
    cache = new PipelineCache(device);
    pipelineCaches.set(device, cache);
  }
  return cache;
}

export class WebGpuBackend implements Backend {
  readonly info: BackendInfo;
  private readonly pipelines: PipelineCache;
  private readonly uniforms: UniformArena;
  private readonly workspace: Workspace;
  private readonly owned: GPUBuffer[] = [];
  private readonly embed: GpuMatrix;
  private readonly positions: GPUBuffer | null;
  private readonly blocks: GpuBlock[];
  private readonly finalNorm: GpuNorm;
  private readonly lmHead: GpuMatrix;
  /** What one split piece (weight chunk, logits row group) may bind. */
  readonly bindingLimit: BindingLimit;
  private ropeTable: GPUBuffer | null = null;
  private ropePositions = 0;
  /** Forwards run one at a time (they share the workspace and the staging buffer). */
  private tail: Promise<unknown> = Promise.resolve();
  /** Dispatches recorded by the last forward (tests: a skipped block costs nothing). */
  lastDispatchCount = 0;

  constructor(
    private readonly ctx: GpuContext,
    private readonly spec: ModelSpec,
    weights: ModelWeights,
    private readonly ownsDevice = true,
    maxBindingBytes?: number,
  ) {
    if (spec.headDim > MAX_HEAD_DIM) throw new PruneLabError(`head_dim ${spec.headDim} exceeds the WebGPU attention kernel's ${MAX_HEAD_DIM}`, { field: 'head_dim' });
    const { device } = ctx;
    this.pipelines = pipelineCacheFor(device);
    this.uniforms = new UniformArena(device);
    this.workspace = new Workspace(device);
    this.bindingLimit = bindingLimit(ctx, maxBindingBytes);
    const matrices = new Map<HostTensor, GpuMatrix>();
    const vectors = new Map<HostTensor, GPUBuffer>();
    const matrix = (t: HostTensor) => {
      let m = matrices.get(t);
      if (!m) {
        m = uploadMatrix(ctx, t, this.bindingLimit, (b) => this.owned.push(b));
        matrices.set(t, m);
      }
      return m;
    };
    const vector = (t: HostTensor) => {
      let v = vectors.get(t);
      if (!v) {
        v = uploadVector(ctx, t);
        vectors.set(t, v);
        this.owned.push(v);
      }
      return v;
    };
    try {
      const lin = (l: Linear): GpuLinear => ({ w: matrix(l.weight), b: l.bias ? vector(l.bias) : null, out: l.weight.shape[0], inp: l.weight.shape[1] });
      const nrm = (n: Norm): GpuNorm => ({ w: vector(n.weight), b: n.bias ? vector(n.bias) : null });
      this.embed = matrix(weights.embed);
      this.positions = weights.positions ? vector(weights.positions) : null;
      this.blocks = weights.blocks.map((b) => ({
        attnNorm: nrm(b.attnNorm),
        q: lin(b.q),
        k: lin(b.k),
        v: lin(b.v),
        o: lin(b.o),
        qNorm: b.qNorm ? vector(b.qNorm) : null,
        kNorm: b.kNorm ? vector(b.kNorm) : null,
        mlpNorm: nrm(b.mlpNorm),
        gate: b.gate ? lin(b.gate) : null,
        up: lin(b.up),
        down: lin(b.down),
      }));
      this.finalNorm = nrm(weights.finalNorm);
      this.lmHead = matrix(weights.lmHead);
      if (spec.ropeInvFreq) this.ensureRopeTable(Math.min(spec.maxPositions, 2048));
    } catch (e) {
      // Nothing uploaded so far may outlive a failed creation (the device may be shared).
      this.releaseBuffers();
      throw e;
    }
    const weightBytes = this.owned.reduce((s, b) => s + b.size, 0);
    const formats = [...new Set([...matrices.values()].map((m) => m.format))].join('+');
    const split = [...matrices.values()].filter((m) => m.chunks.length > 1).length;
    const splitNote = split > 0 ? `, ${split} matrices split across bindings` : '';
    this.info = { kind: 'webgpu', description: `WebGPU: ${ctx.adapterDescription} (${formats} weights${splitNote})`, weightBytes };
  }

  /** Compiles every variant this model can dispatch, so neither a plan nor a capture change compiles. */
  precompile(): void {
    const rec = { pipelines: this.pipelines };
    const b0 = this.blocks[0];
    const linears = [{ w: this.lmHead, b: null }, ...(b0 ? [b0.q, b0.k, b0.v, b0.gate, b0.up] : [])];
    for (const l of linears) {
      if (!l) continue;
      for (const kind of ['gemm', 'gemv'] as const) matmulPipeline(rec, kind, { format: l.w.format, bias: l.b !== null, accumulate: false });
    }
    for (const l of b0 ? [b0.o, b0.down] : []) {
      for (const kind of ['gemm', 'gemv'] as const) matmulPipeline(rec, kind, { format: l.w.format, bias: l.b !== null, accumulate: true });
    }
    embeddingPipeline(rec, this.embed.format, this.positions !== null);
    normPipeline(rec, this.spec.norm);
    if (this.spec.ropeInvFreq || this.spec.qkNorm) ropePipeline(rec, { norm: this.spec.qkNorm, rope: this.spec.ropeInvFreq !== null });
    attentionPipeline(rec);
    activationPipeline(rec, this.spec.activation === 'silu' ? 'swiglu' : 'gelu_new');
    tokenStatsPipeline(rec);
    sumRowsPipeline(rec);
    nllPipeline(rec);
  }

  private ensureRopeTable(positions: number): void {
    const inv = this.spec.ropeInvFreq;
    if (!inv || positions <= this.ropePositions) return;
    const size = Math.max(positions, this.ropePositions * 2);
    this.ropeTable?.destroy();
    this.ropeTable = uploadF32Array(this.ctx, ropeTable(inv, size), 'rope cos/sin table');
    this.ropePositions = size;
  }

  createCache(capacity: number, plan: Plan): KVCache {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new PruneLabError(`KV cache capacity must be a positive integer, got ${capacity}`, { field: 'cache' });
    return new WebGpuCache(this.ctx, capacity, planKey(plan), this.spec.kvHeads * this.spec.headDim);
  }

  /** Frees every buffer this backend made (weights, tables, workspace, uniforms); the device stays. */
  private releaseBuffers(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
    this.ropeTable?.destroy();
    this.ropeTable = null;
    this.ropePositions = 0;
    this.workspace.destroy();
    this.uniforms.destroy();
  }

  dispose(): void {
    this.releaseBuffers();
    if (this.ownsDevice) this.ctx.device.destroy();
  }

  forward(request: ForwardRequest): Promise<ForwardResult> {
    const run = this.tail.then(() => this.run(request));
    this.tail = run.catch(() => undefined);
    return run;
  }

  // ---- the steps, named as in the CPU reference ----

  private buffer(name: string, bytes: number): GPUBuffer {
    checkFits(this.ctx, bytes, { field: `activation buffer ${name}` });
    return this.workspace.get(name, bytes, STORAGE());
  }

  private normalize(rec: Recorder, x: GPUBuffer, rows: number, n: GpuNorm, out: GPUBuffer, inRowOffset = 0): void {
    norm(rec, { kind: this.spec.norm, x, rows, width: this.spec.hidden, w: n.w, b: n.b, y: out, eps: this.spec.normEps, inRowOffset });
  }

  private linear(rec: Recorder, x: GPUBuffer, rows: number, l: GpuLinear, y: GPUBuffer, options: { accumulate?: boolean; outRowOffset?: number } = {}): void {
    matmulMatrix(rec, { x, rows, w: l.w, bias: l.b, y, ...options });
  }

  private attention(rec: Recorder, xn: GPUBuffer, x: GPUBuffer, rows: number, block: GpuBlock, index: number, firstPosition: number, cache: WebGpuCache | null): void {
    const { heads, kvHeads, headDim, normEps } = this.spec;
    const q = this.buffer('q', rows * heads * headDim * F32);
    const layer = cache ? cache.layer(index) : { keys: this.buffer('k', rows * kvHeads * headDim * F32), values: this.buffer('v', rows * kvHeads * headDim * F32) };
    const kvRow = cache ? firstPosition : 0;
    this.linear(rec, xn, rows, block.q, q);
    this.linear(rec, xn, rows, block.k, layer.keys, { outRowOffset: kvRow });
    this.linear(rec, xn, rows, block.v, layer.values, { outRowOffset: kvRow });
    const table = this.ropeTable;
    rope(rec, { x: q, rows, heads, headDim, rowOffset: 0, firstPosition, table, normWeight: block.qNorm, eps: normEps });
    rope(rec, { x: layer.keys, rows, heads: kvHeads, headDim, rowOffset: kvRow, firstPosition, table, normWeight: block.kNorm, eps: normEps });
    const attended = this.buffer('attended', rows * heads * headDim * F32);
    causalAttention(rec, { q, rows, keys: layer.keys, values: layer.values, firstPosition: kvRow, heads, kvHeads, headDim, out: attended });
    this.linear(rec, attended, rows, block.o, x, { accumulate: true });
  }

  private mlp(rec: Recorder, xn: GPUBuffer, x: GPUBuffer, rows: number, block: GpuBlock): void {
    const width = block.up.out;
    const up = this.buffer('up', rows * width * F32);
    this.linear(rec, xn, rows, block.up, up);
    if (block.gate) {
      const gate = this.buffer('gate', rows * width * F32);
      this.linear(rec, xn, rows, block.gate, gate);
      activation(rec, 'swiglu', gate, up, rows * width);
      this.linear(rec, gate, rows, block.down, x, { accumulate: true });
    } else {
      activation(rec, 'gelu_new', up, null, rows * width);
      this.linear(rec, up, rows, block.down, x, { accumulate: true });
    }
  }

  private validate(request: ForwardRequest): { rows: number; firstPosition: number; cache: WebGpuCache | null } {
    const { ids, plan } = request;
    const { vocabSize, maxPositions } = this.spec;
    const rows = ids.length;
    if (rows === 0) throw new PruneLabError('cannot run a forward pass on zero tokens', { field: 'ids' });
    const cache = (request.cache as WebGpuCache | undefined) ?? null;
    if (cache && !(cache instanceof WebGpuCache)) throw new PruneLabError('the KV cache was made by another backend', { field: 'cache' });
    if (cache && cache.planKey !== planKey(plan)) throw new PruneLabError('the KV cache was filled under a different plan', { field: 'cache' });
    const firstPosition = cache ? cache.length : 0;
    if (cache && firstPosition + rows > cache.capacity) throw new PruneLabError(`KV cache holds ${cache.capacity} positions`, { field: 'cache' });
    for (let t = 0; t < rows; t++) {
      const id = ids[t];
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new PruneLabError(`token id ${id} is outside the vocabulary (0..${vocabSize - 1})`, { field: 'ids' });
    }
    if (this.positions && firstPosition + rows > maxPositions) {
      throw new PruneLabError(`position ${firstPosition + rows - 1} exceeds the model's ${maxPositions} learned positions`, { field: 'seq-len' });
    }
    for (const i of plan.blocks) if (!this.blocks[i]) throw new PruneLabError(`block ${i} does not exist`, { field: 'plan' });
    return { rows, firstPosition, cache };
  }

  private async run(request: ForwardRequest): Promise<ForwardResult> {
    checkNotLost(this.ctx);
    const { ids, plan } = request;
    const { hidden, vocabSize } = this.spec;
    const { rows, firstPosition, cache } = this.validate(request);
    this.ensureRopeTable(firstPosition + rows);
    const device = this.ctx.device;
    const rec = new Recorder(device, this.pipelines, this.uniforms);
    const skipAttention = new Set(plan.skipAttention);
    const skipMlp = new Set(plan.skipMlp);
    const wantStats = plan.capture !== 'none';
    const wantStates = plan.capture === 'states';
    const slots = plan.blocks.length;
    const stateBytes = rows * hidden * F32;

    // Readback layout: [stats: slots × 3][nll: 1][logits][states...]
    const statsFloats = slots * 3 + 1;
    const headRows = request.nll || request.logits === 'all' ? rows : 1;
    const logitRows = request.logits === 'all' ? rows : request.logits === 'last' ? 1 : 0;
    const logitsOffset = Math.ceil((statsFloats * F32) / 16) * 16;
    const statesOffset = logitsOffset + logitRows * vocabSize * F32;
    const stagingBytes = statesOffset + (wantStates ? (slots + 1) * stateBytes : 0);
    if (stagingBytes > this.ctx.limits.maxBufferSize) {
      throw new PruneLabError(
        `reading back ${logitRows} logits rows${wantStates ? ' and every state' : ''} needs a ${formatBytes(stagingBytes)} buffer but this device's maxBufferSize is ${formatBytes(this.ctx.limits.maxBufferSize)}; ask for fewer rows`,
        { field: 'logits' },
      );
    }
    const staging = this.workspace.get('staging', stagingBytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    const results = this.buffer('results', statsFloats * F32);

    const idsBuffer = this.buffer('ids', rows * 4);
    device.queue.writeBuffer(idsBuffer, 0, Uint32Array.from(ids as ArrayLike<number>));
    const x = this.buffer('x', stateBytes);
    const xIn = wantStats ? this.buffer('xIn', stateBytes) : null;
    const xn = this.buffer('xn', stateBytes);
    const perToken = wantStats ? this.buffer('perToken', Math.max(rows * 3, 1) * F32) : null;

    embedTokens(rec, { ids: idsBuffer, tokenIds: ids, rows, embed: this.embed, positions: this.positions, firstPosition, hidden, x });
    if (wantStates) rec.copy(x, 0, staging, statesOffset, stateBytes);
    plan.blocks.forEach((i, slot) => {
      const block = this.blocks[i];
      if (xIn) rec.copy(x, 0, xIn, 0, stateBytes);
      if (!skipAttention.has(i)) {
        this.normalize(rec, x, rows, block.attnNorm, xn);
        this.attention(rec, xn, x, rows, block, i, firstPosition, cache);
      }
      if (!skipMlp.has(i)) {
        this.normalize(rec, x, rows, block.mlpNorm, xn);
        this.mlp(rec, xn, x, rows, block);
      }
      if (xIn && perToken) blockStats(rec, xIn, x, rows, hidden, perToken, results, slot);
      if (wantStates) rec.copy(x, 0, staging, statesOffset + (slot + 1) * stateBytes, stateBytes);
    });

    if (request.logits !== 'none' || request.nll) {
      // The last headRows rows, in groups whose logits fit one binding (one group unless rows × vocab is huge).
      const logitRowBytes = vocabSize * F32;
      const groupRows = Math.max(1, Math.min(headRows, Math.floor(this.bindingLimit.bytes / logitRowBytes)));
      const headIn = this.buffer('headIn', groupRows * hidden * F32);
      const logits = this.buffer('logits', groupRows * logitRowBytes);
      const nllTok = request.nll && rows > 1 ? this.buffer('nllPerToken', (rows - 1) * F32) : null;
      const firstLogitRow = headRows - logitRows;
      for (let g = 0; g < headRows; g += groupRows) {
        const count = Math.min(groupRows, headRows - g);
        this.normalize(rec, x, count, this.finalNorm, headIn, rows - headRows + g);
        matmulMatrix(rec, { x: headIn, rows: count, w: this.lmHead, bias: null, y: logits });
        // nll implies headRows = rows, so g is the sequence row; the last row predicts nothing.
        const predicted = Math.min(count, rows - 1 - g);
        if (nllTok && predicted > 0) tokenNll(rec, logits, idsBuffer, predicted, vocabSize, nllTok, g);
        const from = Math.max(g, firstLogitRow);
        if (g + count > from) rec.copy(logits, (from - g) * logitRowBytes, staging, logitsOffset + (from - firstLogitRow) * logitRowBytes, (g + count - from) * logitRowBytes);
      }
      if (nllTok) sumRows(rec, nllTok, rows - 1, 1, results, slots * 3);
    }
    if (wantStats || request.nll) rec.copy(results, 0, staging, 0, statsFloats * F32);

    device.pushErrorScope('validation');
    rec.submit();
    const error = await device.popErrorScope();
    if (error) throw new PruneLabError(`WebGPU rejected the forward pass: ${error.message}`);
    this.lastDispatchCount = rec.dispatchCount;
    await staging.mapAsync(GPUMapMode.READ, 0, Math.ceil(stagingBytes / 8) * 8);
    checkNotLost(this.ctx);
    const mapped = staging.getMappedRange(0, Math.ceil(stagingBytes / 8) * 8);
    const floats = (offset: number, count: number) => new Float32Array(mapped.slice(offset, offset + count * F32));
    const head = floats(0, statsFloats);
    const logits = logitRows > 0 ? floats(logitsOffset, logitRows * vocabSize) : null;
    const states = wantStates ? Array.from({ length: slots + 1 }, (_, s) => floats(statesOffset + s * stateBytes, rows * hidden)) : null;
    staging.unmap();
    if (cache) cache.length += rows;

    const stats: BlockStatSums[] | null = wantStats
      ? plan.blocks.map((index, slot) => ({ index, cosSum: head[slot * 3], angularSum: head[slot * 3 + 1], relMagnitudeSum: head[slot * 3 + 2], tokens: rows }))
      : null;
    const nllCount = request.nll ? rows - 1 : 0;
    return { logits, stats, states, nllSum: nllCount > 0 ? head[slots * 3] : 0, nllCount };
  }
}

/** The factory model.ts loads: acquires a device, uploads the weights, compiles the kernels. */
export async function createWebGpuBackend(spec: ModelSpec, weights: ModelWeights, options: WebGpuBackendOptions = {}): Promise<Backend> {
  const owns = !options.context;
  const ctx = options.context ?? (await acquireGpu(options));
  checkNotLost(ctx);
  ctx.device.pushErrorScope('validation');
  ctx.device.pushErrorScope('out-of-memory');
  let backend: WebGpuBackend | null = null;
  try {
    backend = new WebGpuBackend(ctx, spec, weights, owns, options.maxBindingBytes);
    if (options.precompile ?? true) backend.precompile();
  } catch (e) {
    await ctx.device.popErrorScope();
    await ctx.device.popErrorScope();
    // A failed constructor has already freed what it uploaded; a failed precompile frees it here.
    if (backend) backend.dispose();
    else if (owns) ctx.device.destroy();
    throw e;
  }
  const oom = await ctx.device.popErrorScope();
  const invalid = await ctx.device.popErrorScope();
  if (oom || invalid) {
    backend.dispose();
    throw new PruneLabError(`WebGPU could not hold the model: ${(oom ?? invalid)?.message}`);
  }
  return backend;
}
