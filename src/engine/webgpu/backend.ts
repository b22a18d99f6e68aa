/**
 * The WebGPU backend. Weights are uploaded once (tensors.ts); every WGSL variant is compiled once per
 * device. A forward walks the plan's blocks with the same step names as the CPU reference (embedTokens,
 * normalize, attention, mlp, residual, blockStats, head) and reads like the same math: pre-norms (or none),
 * post-norms before the residual add, a parallel residual where both halves read the block input, the
 * residual scale on every add. Every dispatch goes into one command encoder, submitted once; one staging
 * buffer is read back (readback.ts): three floats per block of statistics, the NLL sum, logits, and
 * (capture 'states') the residual states. A skipped block records nothing.
 *
 * A weight matrix larger than one storage binding is uploaded as row chunks (tensors.ts) and every
 * matmul / gather over it is one dispatch per chunk (kernels/matmul.ts, kernels/embedding.ts); the head
 * runs in groups of rows when all rows' logits would not fit one binding. With one chunk and one group
 * (everything fits) the recorded forward is the unsplit one.
 */
import type { Backend, BackendInfo, ForwardRequest, ForwardResult, KVCache } from '../backend.ts';
import { distinctRopes, type LayerKind, type ModelSpec, type RopeSpec } from '../config.ts';
import { PruneLabError } from '../errors.ts';
import { checkForward } from '../forward-checks.ts';
import { type Plan, planKey } from '../plan.ts';
import type { ModelWeights } from '../weights.ts';
import { WebGpuCache } from './cache.ts';
import { acquireGpu, type BindingLimit, bindingLimit, checkFits, checkNotLost, type DeviceOptions, type GpuContext } from './device.ts';
import { activation, activationPipeline, finalLogits, finalLogitsPipeline } from './kernels/activation.ts';
import { attentionPipeline, causalAttention, MAX_HEAD_DIM } from './kernels/attention.ts';
import { PipelineCache } from './kernels/common.ts';
import { embeddingPipeline, embedTokens } from './kernels/embedding.ts';
import { matmulMatrix, matmulPipeline } from './kernels/matmul.ts';
import { nllPipeline, tokenNll } from './kernels/nll.ts';
import { norm, normPipeline } from './kernels/norm.ts';
import { rope, ropePipeline, ropeTable } from './kernels/rope.ts';
import { blockStats, sumRows, sumRowsPipeline, tokenStatsPipeline } from './kernels/stats.ts';
import { ReadbackLayout } from './readback.ts';
import { Recorder, UniformArena, Workspace } from './recorder.ts';
import { type GpuBlock, type GpuLinear, type GpuMatrix, type GpuNorm, uploadF32Array, uploadModel } from './tensors.ts';

const F32 = 4;
const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

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

/** How a matmul writes y: overwrite, or add alpha · result into it (the residual add with its scale). */
interface LinearOutput {
  accumulate?: boolean;
  alpha?: number;
  outRowOffset?: number;
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
  /** One cos/sin table per distinct RopeSpec, each covering positions [0, ropePositions). */
  private readonly ropeTables = new Map<RopeSpec, GPUBuffer>();
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
    let matrices: GpuMatrix[];
    try {
      const model = uploadModel(ctx, weights, this.bindingLimit, (b) => this.owned.push(b));
      ({ embed: this.embed, positions: this.positions, blocks: this.blocks, finalNorm: this.finalNorm, lmHead: this.lmHead, matrices } = model);
      this.ensureRopeTables(Math.min(spec.maxPositions, 2048));
    } catch (e) {
      // Nothing uploaded so far may outlive a failed creation (the device may be shared).
      this.releaseBuffers();
      throw e;
    }
    const weightBytes = this.owned.reduce((s, b) => s + b.size, 0);
    const formats = [...new Set(matrices.map((m) => m.format))].join('+');
    const split = matrices.filter((m) => m.chunks.length > 1).length;
    const splitNote = split > 0 ? `, ${split} matrices split across bindings` : '';
    this.info = { kind: 'webgpu', description: `WebGPU: ${ctx.adapterDescription} (${formats} weights${splitNote})`, weightBytes };
  }

  /**
   * Compiles every variant this model can dispatch (each block's matmuls in both shapes, its norms with
   * and without the residual epilogue, each layer kind's RoPE), so neither a plan, a capture nor a decode
   * step compiles anything.
   */
  precompile(): void {
    const rec = { pipelines: this.pipelines };
    const { spec } = this;
    const matmuls = (l: GpuLinear, accumulate: boolean) => {
      for (const kind of ['gemm', 'gemv'] as const) matmulPipeline(rec, kind, { format: l.w.format, bias: l.b !== null, accumulate });
    };
    matmuls({ w: this.lmHead, b: null }, false);
    normPipeline(rec, { kind: spec.norm, accumulate: false });
    spec.layerKinds.forEach((kind, i) => {
      const b = this.blocks[i];
      for (const l of [b.q, b.k, b.v, b.up, b.gate]) if (l) matmuls(l, false);
      matmuls(b.o, b.attnPostNorm === null);
      matmuls(b.down, b.mlpPostNorm === null);
      if (b.attnPostNorm || b.mlpPostNorm) normPipeline(rec, { kind: spec.norm, accumulate: true });
      if (spec.qkNorm === 'projection') normPipeline(rec, { kind: 'rms', accumulate: false });
      const headNorm = spec.qkNorm === 'head';
      if (headNorm || kind.rope) ropePipeline(rec, { norm: headNorm, rope: kind.rope !== null });
      activationPipeline(rec, { act: spec.activation, gated: b.gate !== null });
    });
    embeddingPipeline(rec, this.embed.format, this.positions !== null);
    attentionPipeline(rec);
    if (spec.logitScale !== 1 || spec.finalSoftcap !== null) finalLogitsPipeline(rec);
    tokenStatsPipeline(rec);
    sumRowsPipeline(rec);
    nllPipeline(rec);
  }

  /** Grows every RoPE table to cover `positions` (doubling, so a decode loop re-uploads rarely). */
  private ensureRopeTables(positions: number): void {
    if (positions <= this.ropePositions) return;
    const size = Math.max(positions, this.ropePositions * 2);
    for (const r of distinctRopes(this.spec)) {
      this.ropeTables.get(r)?.destroy();
      this.ropeTables.set(r, uploadF32Array(this.ctx, ropeTable(r.invFreq, r.attentionFactor, size), `rope cos/sin table (theta ${r.theta}, ${r.rotaryDim} dims)`));
    }
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
    for (const t of this.ropeTables.values()) t.destroy();
    this.ropeTables.clear();
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

  /** The family's norm of `rows` rows of x into `out` (or added into it); a missing norm is the identity (x itself, no dispatch). */
  private normalize(
    rec: Recorder,
    x: GPUBuffer,
    rows: number,
    n: GpuNorm | null,
    out: GPUBuffer,
    options: { inRowOffset?: number; accumulate?: boolean; alpha?: number } = {},
  ): GPUBuffer {
    if (!n) return x;
    const { norm: kind, hidden, normEps, normOffset } = this.spec;
    norm(rec, { kind, x, rows, width: hidden, w: n.w, b: n.b, y: out, eps: normEps, offset: normOffset, ...options });
    return out;
  }

  private linear(rec: Recorder, x: GPUBuffer, rows: number, l: GpuLinear, y: GPUBuffer, output: LinearOutput = {}): void {
    matmulMatrix(rec, { x, rows, w: l.w, bias: l.b, y, ...output });
  }

  /** x_0: token embedding × embedScale (+ learned position embedding). */
  private embedTokens(rec: Recorder, idsBuffer: GPUBuffer, ids: ArrayLike<number>, firstPosition: number, x: GPUBuffer): void {
    const { hidden, embedScale } = this.spec;
    embedTokens(rec, { ids: idsBuffer, tokenIds: ids, rows: ids.length, embed: this.embed, positions: this.positions, firstPosition, hidden, scale: embedScale, x });
  }

  /**
   * x += residualScale · post(branch). Without a post-norm the branch's last projection adds into x
   * itself; with one it writes a scratch buffer that the norm kernel normalises and adds.
   */
  private residual(rec: Recorder, x: GPUBuffer, rows: number, postNorm: GpuNorm | null, project: (y: GPUBuffer, output: LinearOutput) => void): void {
    const alpha = this.spec.residualScale;
    if (!postNorm) {
      project(x, { accumulate: true, alpha });
      return;
    }
    const branch = this.buffer('branch', rows * this.spec.hidden * F32);
    project(branch, {});
    this.normalize(rec, branch, rows, postNorm, x, { accumulate: true, alpha });
  }

  /** RMSNorm of q or k over the whole projection (olmo2), from a scratch buffer into its place. */
  private projectionNorm(rec: Recorder, raw: GPUBuffer, rows: number, width: number, w: GPUBuffer, out: GPUBuffer, outRowOffset: number): void {
    norm(rec, { kind: 'rms', x: raw, rows, width, w, b: null, y: out, eps: this.spec.normEps, offset: this.spec.normOffset, outRowOffset });
  }

  /** Per-head q/k norm (fused) and the layer's RoPE, in place on rows [rowOffset, rowOffset + rows) of x. */
  private rope(rec: Recorder, x: GPUBuffer, rows: number, heads: number, rowOffset: number, firstPosition: number, kind: LayerKind, headNorm: GPUBuffer | null): void {
    const { headDim, normEps, normOffset } = this.spec;
    const table = kind.rope ? (this.ropeTables.get(kind.rope) ?? null) : null;
    rope(rec, { x, rows, heads, headDim, rowOffset, firstPosition, table, rotaryDim: kind.rope?.rotaryDim ?? 0, normWeight: headNorm, eps: normEps, offset: normOffset });
  }

  /** x += residualScale · post(o(attention(q, k, v))) with q, k, v projected from xNorm; k and v go straight into the KV cache rows. */
  private attention(
    rec: Recorder,
    xNorm: GPUBuffer,
    x: GPUBuffer,
    rows: number,
    block: GpuBlock,
    kind: LayerKind,
    index: number,
    firstPosition: number,
    cache: WebGpuCache | null,
  ): void {
    const { heads, kvHeads, headDim, qkNorm, attnScale, attnSoftcap } = this.spec;
    const q = this.buffer('q', rows * heads * headDim * F32);
    const layer = cache ? cache.layer(index) : { keys: this.buffer('k', rows * kvHeads * headDim * F32), values: this.buffer('v', rows * kvHeads * headDim * F32) };
    const kvRow = cache ? firstPosition : 0;
    if (qkNorm === 'projection' && block.qNorm && block.kNorm) {
      // OLMo 2 normalises q and k over all heads together: project into scratch rows, norm into place.
      const qRaw = this.buffer('qRaw', rows * heads * headDim * F32);
      const kRaw = this.buffer('kRaw', rows * kvHeads * headDim * F32);
      this.linear(rec, xNorm, rows, block.q, qRaw);
      this.linear(rec, xNorm, rows, block.k, kRaw);
      this.projectionNorm(rec, qRaw, rows, heads * headDim, block.qNorm, q, 0);
      this.projectionNorm(rec, kRaw, rows, kvHeads * headDim, block.kNorm, layer.keys, kvRow);
    } else {
      this.linear(rec, xNorm, rows, block.q, q);
      this.linear(rec, xNorm, rows, block.k, layer.keys, { outRowOffset: kvRow });
    }
    this.linear(rec, xNorm, rows, block.v, layer.values, { outRowOffset: kvRow });
    const headNorm = qkNorm === 'head';
    this.rope(rec, q, rows, heads, 0, firstPosition, kind, headNorm ? block.qNorm : null);
    this.rope(rec, layer.keys, rows, kvHeads, kvRow, firstPosition, kind, headNorm ? block.kNorm : null);
    const attended = this.buffer('attended', rows * heads * headDim * F32);
    const shape = { heads, kvHeads, headDim, scale: attnScale, softcap: attnSoftcap, window: kind.window };
    causalAttention(rec, { q, rows, keys: layer.keys, values: layer.values, firstPosition: kvRow, ...shape, out: attended });
    this.residual(rec, x, rows, block.attnPostNorm, (y, output) => this.linear(rec, attended, rows, block.o, y, output));
  }

  /** x += residualScale · post(down(act(gate) · up)), or down(act(up)) without a gate. */
  private mlp(rec: Recorder, xNorm: GPUBuffer, x: GPUBuffer, rows: number, block: GpuBlock): void {
    const width = block.up.w.rows;
    const up = this.buffer('up', rows * width * F32);
    this.linear(rec, xNorm, rows, block.up, up);
    let act = up;
    if (block.gate) {
      act = this.buffer('gate', rows * width * F32);
      this.linear(rec, xNorm, rows, block.gate, act);
      activation(rec, this.spec.activation, act, up, rows * width);
    } else {
      activation(rec, this.spec.activation, up, null, rows * width);
    }
    this.residual(rec, x, rows, block.mlpPostNorm, (y, output) => this.linear(rec, act, rows, block.down, y, output));
  }

  /**
   * The final norm, lm head, logits scale / soft-cap and per-token NLL over the last `headRows` rows, in
   * groups whose logits fit one binding (one group unless rows × vocab is huge); the wanted logits rows
   * are copied into the staging buffer.
   */
  private head(rec: Recorder, x: GPUBuffer, rows: number, headRows: number, idsBuffer: GPUBuffer, nllInto: GPUBuffer | null, out: ReadbackLayout, staging: GPUBuffer): void {
    const { hidden, vocabSize, logitScale, finalSoftcap } = this.spec;
    const logitRowBytes = vocabSize * F32;
    const groupRows = Math.max(1, Math.min(headRows, Math.floor(this.bindingLimit.bytes / logitRowBytes)));
    const headIn = this.buffer('headIn', groupRows * hidden * F32);
    const logits = this.buffer('logits', groupRows * logitRowBytes);
    const nllPerToken = nllInto && rows > 1 ? this.buffer('nllPerToken', (rows - 1) * F32) : null;
    const firstLogitRow = headRows - out.shape.logitRows;
    for (let g = 0; g < headRows; g += groupRows) {
      const count = Math.min(groupRows, headRows - g);
      this.normalize(rec, x, count, this.finalNorm, headIn, { inRowOffset: rows - headRows + g });
      matmulMatrix(rec, { x: headIn, rows: count, w: this.lmHead, bias: null, y: logits });
      finalLogits(rec, logits, count * vocabSize, logitScale, finalSoftcap);
      // nll implies headRows = rows, so g is the sequence row; the last row predicts nothing.
      const predicted = Math.min(count, rows - 1 - g);
      if (nllPerToken && predicted > 0) tokenNll(rec, logits, idsBuffer, predicted, vocabSize, nllPerToken, g);
      const from = Math.max(g, firstLogitRow);
      if (g + count > from) rec.copy(logits, (from - g) * logitRowBytes, staging, out.logitsRow(from - firstLogitRow), (g + count - from) * logitRowBytes);
    }
    if (nllInto && nllPerToken) sumRows(rec, nllPerToken, rows - 1, 1, nllInto, out.nllIndex);
  }

  private async run(request: ForwardRequest): Promise<ForwardResult> {
    checkNotLost(this.ctx);
    const { ids, plan } = request;
    const { hidden, vocabSize, parallelResidual } = this.spec;
    const { rows, firstPosition } = checkForward(this.spec, request, WebGpuCache, this.blocks.length);
    const cache = (request.cache as WebGpuCache | undefined) ?? null;
    this.ensureRopeTables(firstPosition + rows);
    const device = this.ctx.device;
    const rec = new Recorder(device, this.pipelines, this.uniforms);
    const skipAttention = new Set(plan.skipAttention);
    const skipMlp = new Set(plan.skipMlp);
    const wantStats = plan.capture !== 'none';
    const wantStates = plan.capture === 'states';
    const wantHead = request.logits !== 'none' || request.nll === true;
    const headRows = request.nll || request.logits === 'all' ? rows : 1;
    const logitRows = request.logits === 'all' ? rows : request.logits === 'last' ? 1 : 0;
    const out = new ReadbackLayout({ slots: plan.blocks.length, rows, hidden, vocab: vocabSize, logitRows, states: wantStates }, this.ctx.limits.maxBufferSize);
    const staging = this.workspace.get('staging', out.bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    const results = this.buffer('results', out.resultFloats * F32);
    const idsBuffer = this.buffer('ids', rows * 4);
    device.queue.writeBuffer(idsBuffer, 0, Uint32Array.from(ids as ArrayLike<number>));
    const stateBytes = rows * hidden * F32;
    const x = this.buffer('x', stateBytes);
    const xIn = wantStats ? this.buffer('xIn', stateBytes) : null;
    const xn = this.buffer('xn', stateBytes);
    const perToken = wantStats ? this.buffer('perToken', Math.max(rows * 3, 1) * F32) : null;

    this.embedTokens(rec, idsBuffer, ids, firstPosition, x);
    if (wantStates) rec.copy(x, 0, staging, out.state(0), stateBytes);
    plan.blocks.forEach((i, slot) => {
      const block = this.blocks[i];
      const kind = this.spec.layerKinds[i];
      if (xIn) rec.copy(x, 0, xIn, 0, stateBytes);
      const attend = !skipAttention.has(i);
      const feed = !skipMlp.has(i);
      if (parallelResidual) {
        // GPT-NeoX: both halves read the block input, so both are normalised before either adds to x.
        const xn2 = this.buffer('xn2', stateBytes);
        const attnIn = attend ? this.normalize(rec, x, rows, block.attnNorm, xn) : null;
        let mlpIn: GPUBuffer | null = null;
        if (feed && block.mlpNorm) mlpIn = this.normalize(rec, x, rows, block.mlpNorm, xn2);
        else if (feed) {
          rec.copy(x, 0, xn2, 0, stateBytes);
          mlpIn = xn2;
        }
        if (attnIn) this.attention(rec, attnIn, x, rows, block, kind, i, firstPosition, cache);
        if (mlpIn) this.mlp(rec, mlpIn, x, rows, block);
      } else {
        if (attend) this.attention(rec, this.normalize(rec, x, rows, block.attnNorm, xn), x, rows, block, kind, i, firstPosition, cache);
        if (feed) this.mlp(rec, this.normalize(rec, x, rows, block.mlpNorm, xn), x, rows, block);
      }
      if (xIn && perToken) blockStats(rec, xIn, x, rows, hidden, perToken, results, slot);
      if (wantStates) rec.copy(x, 0, staging, out.state(slot + 1), stateBytes);
    });
    if (wantHead) this.head(rec, x, rows, headRows, idsBuffer, request.nll ? results : null, out, staging);
    if (wantStats || request.nll) rec.copy(results, 0, staging, 0, out.resultFloats * F32);

    device.pushErrorScope('validation');
    rec.submit();
    const error = await device.popErrorScope();
    if (error) throw new PruneLabError(`WebGPU rejected the forward pass: ${error.message}`);
    this.lastDispatchCount = rec.dispatchCount;
    await staging.mapAsync(GPUMapMode.READ, 0, out.mappedBytes);
    checkNotLost(this.ctx);
    const decoded = out.decode(staging.getMappedRange(0, out.mappedBytes), plan.blocks, wantStats);
    staging.unmap();
    if (cache) cache.length += rows;
    const nllCount = request.nll ? rows - 1 : 0;
    return { logits: decoded.logits, stats: decoded.stats, states: decoded.states, nllSum: nllCount > 0 ? decoded.nllSum : 0, nllCount };
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
