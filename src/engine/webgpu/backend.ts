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
 *
 * Block streaming (`streaming`, for models larger than the memory budget): a backend created with no
 * blocks holds only the final norm (and learned positions) on the GPU. `embed` uploads just the rows of
 * the embedding a sequence uses and writes its residual stream into a buffer of its own; `loadBlock`
 * uploads one block, `runBlock` records that block and its statistics with the same steps as `forward`
 * (so the numbers are the resident ones), `releaseBlock` destroys its buffers; `head` uploads the lm head
 * when a pass reaches it (released when the next pass begins) and runs it in groups of rows. Every
 * buffer goes through one meter (meter.ts): `memory` is measured, not estimated.
 *
 * A resident model is created the same way, block by block (`blocksHandedOver`): the ends are uploaded at
 * creation and each block through `loadBlock` as it is read, where it stays; the host then holds the ends
 * but no block's bytes.
 */
import type { Backend, BackendInfo, BlockStatSums, BlockStreaming, ForwardRequest, ForwardResult, KVCache, ResidualStream } from '../backend.ts';
import { distinctRopes, type LayerKind, type ModelSpec, type RopeSpec } from '../config.ts';
import { PruneLabError } from '../errors.ts';
import { checkForward } from '../forward-checks.ts';
import { STREAMED_LOGITS_BYTES } from '../memory.ts';
import { type Plan, planKey } from '../plan.ts';
import { pickToken } from '../sampling.ts';
import type { HostTensor } from '../safetensors.ts';
import type { BlockWeights, ModelWeights } from '../weights.ts';
import { WebGpuCache } from './cache.ts';
import { acquireGpu, type BindingLimit, bindingLimit, checkFits, checkNotLost, type DeviceOptions, F16MathUnavailable, type GpuContext } from './device.ts';
import { activation, activationPipeline, finalLogits, finalLogitsPipeline } from './kernels/activation.ts';
import { attentionPipeline, causalAttention, MAX_HEAD_DIM } from './kernels/attention.ts';
import { PipelineCache, type WeightMath } from './kernels/common.ts';
import { embeddingPipeline, embedTokens } from './kernels/embedding.ts';
import { matmulMatrix, matmulPipeline } from './kernels/matmul.ts';
import { nllPipeline, tokenNll } from './kernels/nll.ts';
import { norm, normPipeline } from './kernels/norm.ts';
import { rope, ropePipeline, ropeTable } from './kernels/rope.ts';
import { argmaxIndex, argmaxPipeline, attentionDecode, attentionDecodePipeline, normGemv, normGemvPipeline } from './kernels/decode.ts';
import { NO_PICK, sampleFitsKernel, sampleIndex } from './kernels/sample.ts';
import { blockStats, sumRows, sumRowsPipeline, tokenStats, tokenStatsPipeline } from './kernels/stats.ts';
import { ReadbackLayout } from './readback.ts';
import { GpuBufferMeter } from './meter.ts';
import { Recorder, UniformArena, Workspace } from './recorder.ts';
import { type GpuBlock, type GpuLinear, type GpuMatrix, type GpuNorm, Uploader, uploadF32Array, uploadModel } from './tensors.ts';

const F32 = 4;
const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export interface WebGpuBackendOptions extends DeviceOptions {
  /** Compile every kernel variant the model can use at creation (default), not at first use. */
  precompile?: boolean;
  /** Subgroup reductions in the decode kernels (default: when the adapter offers `subgroups`; false forces the shared-memory trees). */
  subgroups?: boolean;
  /** The fused one-token decode step (default true; false records decode with the general kernels, for comparisons). */
  fuseDecode?: boolean;
  /** Run on this device instead of acquiring one; it is shared (not destroyed by dispose) and so is its pipeline cache. */
  context?: GpuContext;
  /**
   * Split weights (and group logits rows) as if one storage binding could hold at most this many bytes.
   * Only lowers the device's own limit (maxStorageBufferBindingSize / maxBufferSize), which is what is
   * used without it; tests force splits on tiny models with a few KB.
   */
  maxBindingBytes?: number;
  /**
   * f16 arithmetic in the weight matmuls (kernels/common.ts WeightMath): F16-stored matrices (even width)
   * multiply in f16 and add in f32; F32 and BF16 matrices keep f32 arithmetic (BF16 → f16 would lose range).
   * Needs the adapter feature shader-f16 (device.ts F16MathUnavailable otherwise). Default off: validated by naga and
   * emulated on the CPU, not yet run on an adapter that has the feature (README).
   */
  f16Math?: boolean;
  /**
   * A backend created with no blocks (weights.blocks empty) for a resident model: the ends are uploaded now,
   * as a resident backend's, and every block comes afterwards through streaming.loadBlock and stays (Model.open
   * hands them over one at a time, so the host never holds every block's bytes beside their GPU copies).
   * Without it a backend created with no blocks streams them.
   */
  blocksHandedOver?: boolean;
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

/** One sequence's residual stream on the GPU (block streaming): x and the token ids, in buffers of its own. */
class GpuStream implements ResidualStream {
  constructor(
    readonly ids: readonly number[],
    readonly x: GPUBuffer,
    readonly idsBuffer: GPUBuffer,
    private readonly release: (buffers: GPUBuffer[]) => void,
  ) {}
  disposed = false;
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.release([this.x, this.idsBuffer]);
  }
}

export class WebGpuBackend implements Backend {
  readonly info: BackendInfo;
  /** Live and peak bytes of every buffer this backend made (weights, workspace, uniforms, staging, streams, caches). */
  readonly memory: GpuBufferMeter;
  private readonly pipelines: PipelineCache;
  private readonly uniforms: UniformArena;
  private readonly workspace: Workspace;
  /**
   * Null when created for streaming: a sequence's embedding rows are uploaded for it (embedRows); a forward
   * over the blocks loaded now (a pruned model held to decode) uploads it with the head (uploadForwardEnds).
   */
  private embed: GpuMatrix | null;
  private readonly positions: GPUBuffer | null;
  /** Every block when resident; when streaming, or while blocks are handed over, the loaded ones. */
  private readonly blocks: (GpuBlock | undefined)[];
  /** Buffers and distinct matrices of each block loaded by streaming.loadBlock. */
  private readonly loadedBlocks = new Map<number, { buffers: GPUBuffer[]; matrices: GpuMatrix[] }>();
  /** The matrices uploaded at creation (every one when created with the blocks). */
  private readonly createdMatrices: GpuMatrix[];
  /** Created with no blocks for a resident model (WebGpuBackendOptions.blocksHandedOver): the ends stay, each block is loaded once and stays. */
  private readonly handedOver: boolean;
  private readonly finalNorm: GpuNorm;
  /** Null when streaming until a pass reaches the head. */
  private lmHead: GpuMatrix | null;
  /** The lm head's buffers when uploaded for one pass (streaming), released when the next pass begins. */
  private passHead: GPUBuffer[] | null = null;
  private readonly hostEmbed: HostTensor;
  private readonly hostHead: HostTensor;
  /** Created with no blocks: blocks and the head come and go (streaming). */
  readonly streamedEnds: boolean;
  /** What one split piece (weight chunk, logits row group) may bind. */
  readonly bindingLimit: BindingLimit;
  /** One cos/sin table per distinct RopeSpec, each covering positions [0, ropePositions). */
  private readonly ropeTables = new Map<RopeSpec, GPUBuffer>();
  private ropePositions = 0;
  /** Forwards and streamed steps run one at a time (they share the workspace and the staging buffer). */
  private tail: Promise<unknown> = Promise.resolve();
  /** Dispatches recorded by the last forward (tests: a skipped block costs nothing). */
  lastDispatchCount = 0;
  /** Sampled picks made on the host since creation (the row read back: candidates beyond kernels/sample.ts SAMPLE_CAP). */
  hostPicks = 0;
  /** Decode kernels reduce with subgroup operations (set by createWebGpuBackend from the adapter and options). */
  useSubgroups = false;
  /** One-token forwards use the fused decode kernels where a block allows (set by createWebGpuBackend). */
  fuseDecode = true;
  /** Time every dispatch of the next forwards with timestamp-query (bench --profile); results in lastProfile. */
  profile = false;
  /** Per dispatch of the last profiled forward: kernel, scope (embed / block / head), weight bytes read, GPU time. */
  lastProfile: { kernel: string; scope: string; weightBytes: number; ns: number }[] | null = null;

  constructor(
    private readonly ctx: GpuContext,
    private readonly spec: ModelSpec,
    weights: ModelWeights,
    private readonly ownsDevice = true,
    maxBindingBytes?: number,
    /** f16 arithmetic for F16-stored matrices (WebGpuBackendOptions.f16Math; createWebGpuBackend checks the feature). */
    readonly f16Math = false,
    /** WebGpuBackendOptions.blocksHandedOver. */
    blocksHandedOver = false,
  ) {
    if (spec.headDim > MAX_HEAD_DIM) throw new PruneLabError(`head_dim ${spec.headDim} exceeds the WebGPU attention kernel's ${MAX_HEAD_DIM}`, { field: 'head_dim' });
    if (weights.blocks.length !== 0 && weights.blocks.length !== spec.layers) {
      throw new PruneLabError(`got ${weights.blocks.length} of ${spec.layers} blocks: a backend holds every block (resident) or none (streaming)`, { field: 'weights' });
    }
    const { device } = ctx;
    this.memory = new GpuBufferMeter(device);
    this.pipelines = pipelineCacheFor(device);
    this.uniforms = new UniformArena(this.memory);
    this.workspace = new Workspace(this.memory);
    this.bindingLimit = bindingLimit(ctx, maxBindingBytes);
    this.handedOver = weights.blocks.length === 0 && blocksHandedOver;
    this.streamedEnds = weights.blocks.length === 0 && !blocksHandedOver;
    this.hostEmbed = weights.embed;
    this.hostHead = weights.lmHead;
    let matrices: GpuMatrix[];
    try {
      if (this.streamedEnds) {
        const up = new Uploader(ctx, this.bindingLimit, this.memory);
        this.positions = weights.positions ? up.vector(weights.positions) : null;
        this.finalNorm = up.norm(weights.finalNorm) as GpuNorm;
        this.embed = null;
        this.lmHead = null;
        this.blocks = Array.from({ length: spec.layers }, () => undefined);
        matrices = [];
      } else {
        const model = uploadModel(ctx, weights, this.bindingLimit, this.memory);
        ({ embed: this.embed, positions: this.positions, blocks: this.blocks, finalNorm: this.finalNorm, lmHead: this.lmHead, matrices } = model);
        if (this.handedOver) this.blocks = Array.from({ length: spec.layers }, () => undefined);
      }
      this.ensureRopeTables(Math.min(spec.maxPositions, 2048));
    } catch (e) {
      // Nothing uploaded so far may outlive a failed creation (the device may be shared).
      this.releaseBuffers();
      throw e;
    }
    this.createdMatrices = matrices;
    const createdBytes = this.memory.liveBytes;
    const backend = this;
    // Getters: blocks handed over (or streamed) after creation count while they are held.
    this.info = {
      kind: 'webgpu',
      get description() {
        const matrices = backend.matrices;
        const formats = [...new Set(matrices.map((m) => m.format))].join('+');
        const split = matrices.filter((m) => m.chunks.length > 1).length;
        const splitNote = split > 0 ? `, ${split} matrices split across bindings` : '';
        const held = backend.streamedEnds ? 'blocks streamed' : `${formats} weights${splitNote}`;
        const f16 = backend.f16MathSummary;
        return `WebGPU: ${ctx.adapterDescription} (${held}${f16 ? `; ${f16}` : ''})`;
      },
      get weightBytes() {
        let bytes = createdBytes;
        for (const { buffers } of backend.loadedBlocks.values()) for (const b of buffers) bytes += b.size;
        return bytes;
      },
    };
  }

  /** Every distinct matrix held now: those uploaded at creation and those of the loaded blocks. */
  private get matrices(): GpuMatrix[] {
    return [...this.createdMatrices, ...[...this.loadedBlocks.values()].flatMap((b) => b.matrices)];
  }

  /**
   * Compiles every variant this model can dispatch (each block's matmuls in both shapes, its norms with
   * and without the residual epilogue, each layer kind's RoPE), so neither a plan, a capture nor a decode
   * step compiles anything. A streaming backend compiles a block's variants when it is loaded.
   */
  precompile(): void {
    const rec = { pipelines: this.pipelines };
    const { spec } = this;
    if (this.lmHead) this.precompileMatmuls(this.lmHead, null, false);
    normPipeline(rec, { kind: spec.norm, accumulate: false });
    for (let i = 0; i < spec.layers; i++) this.precompileBlock(i);
    if (this.embed) embeddingPipeline(rec, this.embed.format, this.positions !== null);
    attentionPipeline(rec);
    if (spec.logitScale !== 1 || spec.finalSoftcap !== null) finalLogitsPipeline(rec);
    tokenStatsPipeline(rec, this.useSubgroups);
    sumRowsPipeline(rec);
    nllPipeline(rec);
  }

  /** With f16Math, what runs in f16 (every F16-stored matrix of even width) and what stays f32: said in info.description and by the CLI. */
  get f16MathSummary(): string | null {
    return this.f16Math ? this.summarizeF16Math(this.matrices) : null;
  }

  private summarizeF16Math(matrices: GpuMatrix[]): string {
    if (this.streamedEnds) return 'f16 arithmetic on the F16-stored matrices, f32 on the others';
    const f16 = matrices.filter((m) => this.mathOf(m) === 'f16').length;
    if (f16 === matrices.length) return 'f16 arithmetic';
    if (f16 === 0) return 'f16 arithmetic asked for, but no matrix is stored F16 (F32 and BF16 keep f32 arithmetic: BF16 → f16 would lose range)';
    return `f16 arithmetic on ${f16} of ${matrices.length} matrices (the F16-stored ones; the others keep f32)`;
  }

  /** The arithmetic of a matrix's products: f16 only with f16Math, an F16-stored matrix and an even width (kernels read f16 pairs and quads). */
  private mathOf(w: GpuMatrix): WeightMath {
    return this.f16Math && w.format === 'f16' && w.cols % 2 === 0 ? 'f16' : 'f32';
  }

  private precompileMatmuls(w: GpuMatrix, b: GPUBuffer | null, accumulate: boolean): void {
    const math = this.mathOf(w);
    for (const kind of ['gemm', 'gemv'] as const) matmulPipeline({ pipelines: this.pipelines }, kind, { format: w.format, math, bias: b !== null, accumulate });
  }

  private precompileBlock(i: number): void {
    const b = this.blocks[i];
    if (!b) return;
    const rec = { pipelines: this.pipelines };
    const { spec } = this;
    const kind = spec.layerKinds[i];
    for (const l of [b.q, b.k, b.v, b.up, b.gate]) if (l) this.precompileMatmuls(l.w, l.b, false);
    this.precompileMatmuls(b.o.w, b.o.b, b.attnPostNorm === null);
    this.precompileMatmuls(b.down.w, b.down.b, b.mlpPostNorm === null);
    if (b.attnPostNorm || b.mlpPostNorm) normPipeline(rec, { kind: spec.norm, accumulate: true });
    if (spec.qkNorm === 'projection') normPipeline(rec, { kind: 'rms', accumulate: false });
    const headNorm = spec.qkNorm === 'head';
    if (headNorm || kind.rope) ropePipeline(rec, { norm: headNorm, rope: kind.rope !== null });
    activationPipeline(rec, { act: spec.activation, gated: b.gate !== null });
    this.precompileDecode(b);
  }

  // ---- decode (one token): 5 dispatches per block where the block's shape allows (kernels/decode.ts) ----

  /** The fused decode step of a block's halves, or null for a half that takes the general path (and why not, for the README's list). */
  private decodeFusion(b: GpuBlock): { attention: boolean; mlp: boolean } {
    const { spec } = this;
    const single = (...ls: (GpuLinear | null)[]) => ls.every((l) => l && l.w.chunks.length === 1 && l.w.format === ls[0]?.w.format);
    const allOrNone = (...ls: GpuLinear[]) => ls.every((l) => l.b !== null) || ls.every((l) => l.b === null);
    const rmsOrNone = (n: GpuNorm | null) => n === null || (spec.norm === 'rms' && n.b === null);
    const storage = this.ctx.limits.maxStorageBuffersPerShaderStage;
    if (spec.parallelResidual || !this.fuseDecode) return { attention: false, mlp: false };
    const attention = spec.qkNorm !== 'projection' && rmsOrNone(b.attnNorm) && single(b.q, b.k, b.v) && allOrNone(b.q, b.k, b.v) && storage >= (b.q.b ? 9 : 7);
    const mlp = b.gate !== null && rmsOrNone(b.mlpNorm) && single(b.gate, b.up) && allOrNone(b.gate, b.up) && storage >= 7;
    return { attention, mlp };
  }

  private precompileDecode(b: GpuBlock): void {
    const rec = { pipelines: this.pipelines };
    const fuse = this.decodeFusion(b);
    const subgroups = this.useSubgroups;
    if (fuse.attention) {
      normGemvPipeline(rec, { format: b.q.w.format, math: this.mathOf(b.q.w), norm: b.attnNorm !== null, parts: 3, bias: b.q.b !== null, gated: null, subgroups });
      const headNorm = this.spec.qkNorm === 'head';
      for (const rope of new Set(this.spec.layerKinds.map((k) => k.rope !== null))) attentionDecodePipeline(rec, { rope, headNorm, subgroups });
    }
    if (fuse.mlp && b.gate)
      normGemvPipeline(rec, {
        format: b.gate.w.format,
        math: this.mathOf(b.gate.w),
        norm: b.mlpNorm !== null,
        parts: 2,
        bias: b.gate.b !== null,
        gated: this.spec.activation,
        subgroups,
      });
    argmaxPipeline(rec);
    // the sampling kernel compiles on the first sampled step (~1.5 s on SwiftShader): greedy runs and tests never pay it
  }

  /** x += o(attention(q, k, v)) for one token: the pre-norm and q | k | v in one GEMV, RoPE / q-k norms / cache write inside the attention kernel. */
  private decodeAttention(rec: Recorder, x: GPUBuffer, block: GpuBlock, kind: LayerKind, index: number, firstPosition: number, cache: WebGpuCache | null): void {
    const { heads, kvHeads, headDim, qkNorm, attnScale, attnSoftcap, normEps, normOffset } = this.spec;
    const qkv = this.buffer('qkv', (heads + 2 * kvHeads) * headDim * F32);
    const layer = cache ? cache.layer(index) : { keys: this.buffer('k', kvHeads * headDim * F32), values: this.buffer('v', kvHeads * headDim * F32) };
    const biases = block.q.b && block.k.b && block.v.b ? [block.q.b, block.k.b, block.v.b] : null;
    const subgroups = this.useSubgroups;
    normGemv(rec, {
      x,
      normWeight: block.attnNorm?.w ?? null,
      eps: normEps,
      offset: normOffset,
      weights: [block.q.w, block.k.w, block.v.w],
      math: this.mathOf(block.q.w),
      biases,
      y: qkv,
      gated: null,
      subgroups,
    });
    const attended = this.buffer('attended', heads * headDim * F32);
    const headNorm = qkNorm === 'head';
    attentionDecode(rec, {
      qkv,
      keys: layer.keys,
      values: layer.values,
      position: cache ? firstPosition : 0,
      heads,
      kvHeads,
      headDim,
      scale: attnScale,
      softcap: attnSoftcap,
      window: kind.window,
      table: kind.rope ? (this.ropeTables.get(kind.rope) ?? null) : null,
      rotaryDim: kind.rope?.rotaryDim ?? 0,
      qNorm: headNorm ? block.qNorm : null,
      kNorm: headNorm ? block.kNorm : null,
      eps: normEps,
      offset: normOffset,
      out: attended,
      subgroups,
    });
    this.residual(rec, x, 1, block.attnPostNorm, (y, output) => this.linear(rec, attended, 1, block.o, y, output));
  }

  /** x += down(act(gate) · up) for one token: the pre-norm, gate, up and the activation in one GEMV. */
  private decodeMlp(rec: Recorder, x: GPUBuffer, block: GpuBlock): void {
    const gate = block.gate as GpuLinear;
    const act = this.buffer('gate', block.up.w.rows * F32);
    const { normEps, normOffset, activation: gated } = this.spec;
    const biases = gate.b && block.up.b ? [gate.b, block.up.b] : null;
    normGemv(rec, {
      x,
      normWeight: block.mlpNorm?.w ?? null,
      eps: normEps,
      offset: normOffset,
      weights: [gate.w, block.up.w],
      math: this.mathOf(gate.w),
      biases,
      y: act,
      gated,
      subgroups: this.useSubgroups,
    });
    this.residual(rec, x, 1, block.mlpPostNorm, (y, output) => this.linear(rec, act, 1, block.down, y, output));
  }

  /** Grows every RoPE table to cover `positions` (doubling, so a decode loop re-uploads rarely). */
  private ensureRopeTables(positions: number): void {
    if (positions <= this.ropePositions) return;
    const size = Math.max(positions, this.ropePositions * 2);
    for (const r of distinctRopes(this.spec)) {
      const old = this.ropeTables.get(r);
      if (old) this.memory.destroy(old);
      this.ropeTables.set(r, uploadF32Array(this.ctx, this.memory, ropeTable(r.invFreq, r.attentionFactor, size), `rope cos/sin table (theta ${r.theta}, ${r.rotaryDim} dims)`));
    }
    this.ropePositions = size;
  }

  createCache(capacity: number, plan: Plan): KVCache {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new PruneLabError(`KV cache capacity must be a positive integer, got ${capacity}`, { field: 'cache' });
    return new WebGpuCache(this.ctx, capacity, planKey(plan), this.spec.kvHeads * this.spec.headDim, this.memory);
  }

  /** Frees every buffer this backend made (weights, tables, workspace, uniforms, streams, caches); the device stays. */
  private releaseBuffers(): void {
    this.memory.destroyAll();
    this.ropeTables.clear();
    this.ropePositions = 0;
    this.loadedBlocks.clear();
    this.passHead = null;
    this.workspace.destroy();
    this.uniforms.destroy();
  }

  dispose(): void {
    this.releaseBuffers();
    if (this.ownsDevice) this.ctx.device.destroy();
  }

  forward(request: ForwardRequest): Promise<ForwardResult> {
    return this.serial(() => this.run(request));
  }

  /** Runs `step` after every step already queued (they share the workspace and the staging buffer). */
  private serial<T>(step: () => Promise<T>): Promise<T> {
    const run = this.tail.then(step);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Records `record`, submits it and surfaces a validation error (naming `what`). */
  private async submit(rec: Recorder, what: string): Promise<void> {
    const { device } = this.ctx;
    device.pushErrorScope('validation');
    rec.submit();
    const error = await device.popErrorScope();
    if (error) throw new PruneLabError(`WebGPU rejected ${what}: ${error.message}`);
    this.lastDispatchCount = rec.dispatchCount;
  }

  /** Uploads under out-of-memory and validation scopes, so a device that cannot hold them fails here with `what`. */
  private async scoped<T>(what: string, upload: () => T): Promise<T> {
    const { device } = this.ctx;
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    let value: T | undefined;
    let failure: unknown = null;
    try {
      value = upload();
    } catch (e) {
      failure = e;
    }
    // Both pops are issued before any await, so a step running meanwhile cannot interleave its scopes.
    const [oom, invalid] = await Promise.all([device.popErrorScope(), device.popErrorScope()]);
    if (failure) throw failure;
    if (oom || invalid) throw new PruneLabError(`WebGPU could not hold ${what}: ${(oom ?? invalid)?.message}`);
    return value as T;
  }

  // ---- block streaming ----

  /** The lm head is uploaded for one pass: released when the next pass begins (embed, loadBlock). */
  private releasePassHead(): void {
    if (!this.passHead) return;
    for (const b of this.passHead) this.memory.destroy(b);
    this.passHead = null;
    this.lmHead = null;
    this.embed = null;
  }

  /**
   * A streaming backend runs a whole forward over the blocks loaded now (Model: a pruned model whose kept
   * blocks fit the budget is held to decode): the embedding and the lm head are uploaded for it (a tied head
   * once) and released with the pass head, when a pass or a block load begins.
   */
  private async uploadForwardEnds(): Promise<void> {
    if (this.embed && this.lmHead) return;
    this.releasePassHead();
    const up = new Uploader(this.ctx, this.bindingLimit, this.memory);
    try {
      const [embed, lmHead] = await this.scoped(`the embedding and the lm head (${this.hostEmbed.name}, ${this.hostHead.name})`, () => [
        up.matrix(this.hostEmbed),
        up.matrix(this.hostHead),
      ]);
      this.embed = embed;
      this.lmHead = lmHead;
    } catch (e) {
      up.release();
      throw e;
    }
    this.passHead = up.buffers;
  }

  private releaseLoadedBlock(index: number): void {
    const loaded = this.loadedBlocks.get(index);
    if (!loaded) return;
    for (const b of loaded.buffers) this.memory.destroy(b);
    this.loadedBlocks.delete(index);
    this.blocks[index] = undefined;
  }

  /**
   * The embedding rows of `ids` only, as a matrix of their own (same storage format, same kernel), and
   * the ids re-numbered into it: a streamed sequence's x_0 costs its rows, not the vocabulary.
   */
  private embedRows(ids: readonly number[]): { matrix: GpuMatrix; localIds: number[]; buffers: GPUBuffer[] } {
    const t = this.hostEmbed;
    const unique = [...new Set(ids)];
    const local = new Map(unique.map((id, k) => [id, k]));
    const rowBytes = t.bytes.byteLength / t.shape[0];
    const bytes = new Uint8Array(unique.length * rowBytes);
    for (const [k, id] of unique.entries()) bytes.set(t.bytes.subarray(id * rowBytes, (id + 1) * rowBytes), k * rowBytes);
    const up = new Uploader(this.ctx, this.bindingLimit, this.memory);
    const matrix = up.matrix({ ...t, shape: [unique.length, t.shape[1]], bytes });
    return { matrix, localIds: ids.map((id) => local.get(id) as number), buffers: up.buffers };
  }

  private async embedStream(ids: readonly number[]): Promise<GpuStream> {
    checkNotLost(this.ctx);
    checkForward(this.spec, { ids, plan: { blocks: [], skipAttention: [], skipMlp: [], capture: 'none' }, logits: 'none' }, WebGpuCache, this.blocks.length);
    if (this.streamedEnds) this.releasePassHead();
    this.ensureRopeTables(ids.length);
    const rows = ids.length;
    const stateBytes = rows * this.spec.hidden * F32;
    checkFits(this.ctx, stateBytes, { field: 'residual stream' });
    const x = this.memory.create({ label: 'stream x', size: Math.max(16, stateBytes), usage: STORAGE() });
    const idsBuffer = this.memory.create({ label: 'stream ids', size: Math.max(16, rows * 4), usage: STORAGE() });
    const stream = new GpuStream(ids, x, idsBuffer, (buffers) => {
      for (const b of buffers) this.memory.destroy(b);
    });
    const temporary: GPUBuffer[] = [];
    try {
      this.ctx.device.queue.writeBuffer(idsBuffer, 0, Uint32Array.from(ids));
      const rec = this.recorder();
      if (this.embed) this.embedTokens(rec, idsBuffer, ids, 0, x, this.embed);
      else {
        const own = this.embedRows(ids);
        temporary.push(...own.buffers);
        const localIds = this.workspace.get('localIds', rows * 4, STORAGE());
        this.ctx.device.queue.writeBuffer(localIds, 0, Uint32Array.from(own.localIds));
        this.embedTokens(rec, localIds, own.localIds, 0, x, own.matrix);
      }
      await this.submit(rec, 'the embedding');
    } catch (e) {
      stream.dispose();
      throw e;
    } finally {
      // Destroying after submit is safe: the device frees them once the submitted work is done.
      for (const b of temporary) this.memory.destroy(b);
    }
    return stream;
  }

  private async runStreamBlock(stream: GpuStream, index: number, plan: Plan): Promise<BlockStatSums | null> {
    checkNotLost(this.ctx);
    if (stream.disposed) throw new PruneLabError('this residual stream was disposed', { field: 'stream' });
    if (!this.blocks[index]) throw new PruneLabError(`block ${index} is not loaded`, { field: 'plan' });
    const rows = stream.ids.length;
    const { hidden } = this.spec;
    const wantStats = plan.capture !== 'none';
    const rec = this.recorder();
    const stateBytes = rows * hidden * F32;
    const xIn = wantStats ? this.buffer('xIn', stateBytes) : null;
    if (xIn) rec.copy(stream.x, 0, xIn, 0, stateBytes);
    this.recordBlock(rec, stream.x, rows, index, !plan.skipAttention.includes(index), !plan.skipMlp.includes(index), 0, null);
    if (!xIn) {
      await this.submit(rec, `block ${index}`);
      // Nothing to read back, but the block must finish before the pass moves on: a released block's
      // memory is only freed once the work using it is done, so running ahead would hold many blocks.
      await this.ctx.device.queue.onSubmittedWorkDone();
      return null;
    }
    const results = this.buffer('results', 3 * F32);
    const staging = this.workspace.get('statsStaging', 16, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    blockStats(rec, xIn, stream.x, rows, hidden, this.buffer('perToken', rows * 3 * F32), results, 0, this.useSubgroups);
    rec.copy(results, 0, staging, 0, 3 * F32);
    await this.submit(rec, `block ${index}`);
    await staging.mapAsync(GPUMapMode.READ, 0, 16);
    checkNotLost(this.ctx);
    const [cosSum, angularSum, relMagnitudeSum] = new Float32Array(staging.getMappedRange(0, 16).slice(0, 3 * F32));
    staging.unmap();
    return { index, cosSum, angularSum, relMagnitudeSum, tokens: rows };
  }

  private async streamHead(stream: GpuStream, want: { nll: boolean; lastLogits: boolean }): Promise<{ lastLogits: Float32Array | null; nllSum: number; nllCount: number }> {
    checkNotLost(this.ctx);
    if (!this.lmHead) {
      const up = new Uploader(this.ctx, this.bindingLimit, this.memory);
      try {
        this.lmHead = await this.scoped(`the lm head (${this.hostHead.name})`, () => up.matrix(this.hostHead));
      } catch (e) {
        up.release();
        throw e;
      }
      this.passHead = up.buffers;
    }
    const rows = stream.ids.length;
    const { hidden, vocabSize } = this.spec;
    const headRows = want.nll ? rows : 1;
    const out = new ReadbackLayout({ slots: 0, rows, hidden, vocab: vocabSize, logitRows: want.lastLogits ? 1 : 0, states: false }, this.ctx.limits.maxBufferSize);
    const staging = this.workspace.get('staging', out.bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    const results = this.buffer('results', out.resultFloats * F32);
    const rec = this.recorder();
    this.head(rec, stream.x, rows, headRows, stream.idsBuffer, want.nll ? results : null, out, staging, STREAMED_LOGITS_BYTES);
    if (want.nll) rec.copy(results, 0, staging, 0, out.resultFloats * F32);
    await this.submit(rec, 'the head');
    await staging.mapAsync(GPUMapMode.READ, 0, out.mappedBytes);
    checkNotLost(this.ctx);
    const decoded = out.decode(staging.getMappedRange(0, out.mappedBytes), [], false);
    staging.unmap();
    const nllCount = want.nll ? rows - 1 : 0;
    return { lastLogits: decoded.logits, nllSum: nllCount > 0 ? decoded.nllSum : 0, nllCount };
  }

  /** The stream's x copied to the host through the staging buffer (memory.ts planStreamBatches counts it when a pass reads states). */
  private async readStreamState(stream: GpuStream): Promise<Float32Array> {
    checkNotLost(this.ctx);
    if (stream.disposed) throw new PruneLabError('this residual stream was disposed', { field: 'stream' });
    const bytes = stream.ids.length * this.spec.hidden * F32;
    checkFits(this.ctx, bytes, { field: 'residual state readback' });
    const staging = this.workspace.get('staging', bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    const rec = this.recorder();
    rec.copy(stream.x, 0, staging, 0, bytes);
    await this.submit(rec, 'the residual state readback');
    await staging.mapAsync(GPUMapMode.READ, 0, bytes);
    checkNotLost(this.ctx);
    const state = new Float32Array(staging.getMappedRange(0, bytes).slice(0));
    staging.unmap();
    return state;
  }

  /** Block-major execution (backend.ts BlockStreaming): the same recorded steps as forward, one block at a time. */
  readonly streaming: BlockStreaming = {
    loadBlock: async (index, weights: BlockWeights) => {
      checkNotLost(this.ctx);
      if (!Number.isInteger(index) || index < 0 || index >= this.spec.layers) throw new PruneLabError(`block ${index} does not exist`, { field: 'plan' });
      // A backend created with every block of its checkpoint already holds them: nothing to load or release.
      if (!this.streamedEnds && !this.handedOver) return;
      // Streaming, the pass head goes before a block comes; handed over, the ends stay.
      if (this.streamedEnds) this.releasePassHead();
      this.releaseLoadedBlock(index);
      const up = new Uploader(this.ctx, this.bindingLimit, this.memory);
      let block: GpuBlock;
      try {
        block = await this.scoped(`block ${index}`, () => up.block(weights));
      } catch (e) {
        up.release();
        throw e;
      }
      this.blocks[index] = block;
      this.loadedBlocks.set(index, { buffers: up.buffers, matrices: up.matrices });
      this.precompileBlock(index);
    },
    releaseBlock: (index) => this.releaseLoadedBlock(index),
    embed: (ids) => this.serial(() => this.embedStream(ids)),
    runBlock: (stream, index, plan) => this.serial(() => this.runStreamBlock(stream as GpuStream, index, plan)),
    readState: (stream) => this.serial(() => this.readStreamState(stream as GpuStream)),
    head: (stream, want) => this.serial(() => this.streamHead(stream as GpuStream, want)),
  };

  /** Gives every dispatch of `rec` begin/end timestamps; the returned function reads them after the submit. */
  private armTimestamps(rec: Recorder): () => Promise<{ kernel: string; scope: string; weightBytes: number; ns: number }[]> {
    const { device } = this.ctx;
    const count = Math.max(1, rec.dispatchCount);
    const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * count });
    const resolve = device.createBuffer({ size: 16 * count, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const read = device.createBuffer({ size: 16 * count, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    rec.timestamps = { querySet, resolve, read };
    return async () => {
      await read.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap();
      for (const b of [read, resolve]) b.destroy();
      querySet.destroy();
      return rec.dispatches.map((d, i) => ({ ...d, ns: Number(t[2 * i + 1] - t[2 * i]) }));
    };
  }

  private recorder(): Recorder {
    return new Recorder(this.ctx.device, this.pipelines, this.uniforms);
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
    matmulMatrix(rec, { x, rows, w: l.w, math: this.mathOf(l.w), bias: l.b, y, ...output });
  }

  /** x_0: token embedding × embedScale (+ learned position embedding); `ids` index `embed`'s rows. */
  private embedTokens(rec: Recorder, idsBuffer: GPUBuffer, ids: ArrayLike<number>, firstPosition: number, x: GPUBuffer, embed: GpuMatrix): void {
    const { hidden, embedScale } = this.spec;
    embedTokens(rec, { ids: idsBuffer, tokenIds: ids, rows: ids.length, embed, positions: this.positions, firstPosition, hidden, scale: embedScale, x });
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
   * groups whose logits fit one binding (one group unless rows × vocab is huge) and `maxLogitsBytes`
   * (streaming keeps the logits inside the budget); the wanted logits rows are copied into the staging
   * buffer. Rows are independent, so the grouping does not change a number.
   */
  private head(
    rec: Recorder,
    x: GPUBuffer,
    rows: number,
    headRows: number,
    idsBuffer: GPUBuffer,
    nllInto: GPUBuffer | null,
    out: ReadbackLayout,
    staging: GPUBuffer,
    maxLogitsBytes = Number.POSITIVE_INFINITY,
  ): void {
    const { hidden, vocabSize, logitScale, finalSoftcap } = this.spec;
    const lmHead = this.lmHead as GpuMatrix;
    const logitRowBytes = vocabSize * F32;
    const groupRows = Math.max(1, Math.min(headRows, Math.floor(Math.min(this.bindingLimit.bytes, maxLogitsBytes) / logitRowBytes)));
    const headIn = this.buffer('headIn', groupRows * hidden * F32);
    const logits = this.buffer('logits', groupRows * logitRowBytes);
    const nllPerToken = nllInto && rows > 1 ? this.buffer('nllPerToken', (rows - 1) * F32) : null;
    const firstLogitRow = headRows - out.shape.logitRows;
    for (let g = 0; g < headRows; g += groupRows) {
      const count = Math.min(groupRows, headRows - g);
      this.normalize(rec, x, count, this.finalNorm, headIn, { inRowOffset: rows - headRows + g });
      matmulMatrix(rec, { x: headIn, rows: count, w: lmHead, math: this.mathOf(lmHead), bias: null, y: logits });
      finalLogits(rec, logits, count * vocabSize, logitScale, finalSoftcap);
      // nll implies headRows = rows, so g is the sequence row; the last row predicts nothing.
      const predicted = Math.min(count, rows - 1 - g);
      if (nllPerToken && predicted > 0) tokenNll(rec, logits, idsBuffer, predicted, vocabSize, nllPerToken, g);
      const from = Math.max(g, firstLogitRow);
      if (g + count > from) rec.copy(logits, (from - g) * logitRowBytes, staging, out.logitsRow(from - firstLogitRow), (g + count - from) * logitRowBytes);
    }
    if (nllInto && nllPerToken) sumRows(rec, nllPerToken, rows - 1, 1, nllInto, out.nllIndex);
  }

  /**
   * One block on the residual stream x (in place): the halves the plan keeps, as the family wires them.
   * forward and streaming.runBlock both record blocks through here.
   */
  private recordBlock(rec: Recorder, x: GPUBuffer, rows: number, i: number, attend: boolean, feed: boolean, firstPosition: number, cache: WebGpuCache | null): void {
    const block = this.blocks[i];
    if (!block) throw new PruneLabError(`block ${i} is not loaded`, { field: 'plan' });
    const kind = this.spec.layerKinds[i];
    const stateBytes = rows * this.spec.hidden * F32;
    const xn = this.buffer('xn', stateBytes);
    if (this.spec.parallelResidual) {
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
      // one token: the fused decode kernels where the block's shape allows (rows > 1 and other shapes: the general steps)
      const fuse = rows === 1 ? this.decodeFusion(block) : { attention: false, mlp: false };
      if (attend && fuse.attention) this.decodeAttention(rec, x, block, kind, i, firstPosition, cache);
      else if (attend) this.attention(rec, this.normalize(rec, x, rows, block.attnNorm, xn), x, rows, block, kind, i, firstPosition, cache);
      if (feed && fuse.mlp) this.decodeMlp(rec, x, block);
      else if (feed) this.mlp(rec, this.normalize(rec, x, rows, block.mlpNorm, xn), x, rows, block);
    }
  }

  private async run(request: ForwardRequest): Promise<ForwardResult> {
    checkNotLost(this.ctx);
    // Streaming: the plan's blocks must be loaded (recordBlock names one that is not); the ends come for the forward.
    if (this.streamedEnds) await this.uploadForwardEnds();
    if (!this.embed) throw new PruneLabError('the embedding is not on the GPU', { field: 'plan' });
    const { ids, plan } = request;
    const { hidden, vocabSize } = this.spec;
    const { rows, firstPosition } = checkForward(this.spec, request, WebGpuCache, this.blocks.length);
    const cache = (request.cache as WebGpuCache | undefined) ?? null;
    this.ensureRopeTables(firstPosition + rows);
    const device = this.ctx.device;
    const rec = this.recorder();
    const skipAttention = new Set(plan.skipAttention);
    const skipMlp = new Set(plan.skipMlp);
    const wantStats = plan.capture !== 'none';
    const wantStates = plan.capture === 'states';
    const pick = request.pick ?? null;
    // a sample whose candidates cannot fit the kernel (kernels/sample.ts) reads its row back in this submit and is picked on the host
    const hostPick = pick !== null && pick !== 'argmax' && !sampleFitsKernel(vocabSize, pick.topK, pick.topP);
    const wantHead = request.logits !== 'none' || request.nll === true || pick !== null;
    const headRows = request.nll || request.logits === 'all' ? rows : 1;
    const logitRows = request.logits === 'all' ? rows : request.logits === 'last' || hostPick ? 1 : 0;
    const out = new ReadbackLayout({ slots: plan.blocks.length, rows, hidden, vocab: vocabSize, logitRows, states: wantStates }, this.ctx.limits.maxBufferSize);
    const staging = this.workspace.get('staging', out.bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    const results = this.buffer('results', out.resultFloats * F32);
    const idsBuffer = this.buffer('ids', rows * 4);
    device.queue.writeBuffer(idsBuffer, 0, Uint32Array.from(ids as ArrayLike<number>));
    const stateBytes = rows * hidden * F32;
    const x = this.buffer('x', stateBytes);
    const xIn = wantStats ? this.buffer('xIn', stateBytes) : null;
    // one per-token table for every block (rows × slots × 3), reduced once after the last block
    const statsStride = plan.blocks.length * 3;
    const perToken = wantStats ? this.buffer('perToken', Math.max(rows * statsStride, 1) * F32) : null;

    rec.scope = 'embed';
    this.embedTokens(rec, idsBuffer, ids, firstPosition, x, this.embed as GpuMatrix);
    if (wantStates) rec.copy(x, 0, staging, out.state(0), stateBytes);
    rec.scope = 'block';
    // x_in is copied once; each block's stats kernel then advances it to that block's output
    if (xIn) rec.copy(x, 0, xIn, 0, stateBytes);
    plan.blocks.forEach((i, slot) => {
      this.recordBlock(rec, x, rows, i, !skipAttention.has(i), !skipMlp.has(i), firstPosition, cache);
      if (xIn && perToken) tokenStats(rec, xIn, x, rows, hidden, perToken, { stride: statsStride, offset: slot * 3, advance: true, subgroups: this.useSubgroups });
      if (wantStates) rec.copy(x, 0, staging, out.state(slot + 1), stateBytes);
    });
    if (perToken && statsStride > 0) sumRows(rec, perToken, rows, statsStride, results, 0);
    rec.scope = 'head';
    if (wantHead) this.head(rec, x, rows, headRows, idsBuffer, request.nll ? results : null, out, staging);
    // the head's one logits row is at the start of its 'logits' buffer
    const lastLogits = pick ? this.buffer('logits', vocabSize * F32) : null;
    if (pick === 'argmax') argmaxIndex(rec, lastLogits as GPUBuffer, vocabSize, results, out.pickIndex);
    else if (pick && !hostPick) sampleIndex(rec, { logits: lastLogits as GPUBuffer, n: vocabSize, ...pick, out: results, outIndex: out.pickIndex, subgroups: this.useSubgroups });
    if (wantStats || request.nll || pick) rec.copy(results, 0, staging, 0, out.resultFloats * F32);

    const timing = this.profile && this.ctx.features.has('timestamp-query') ? this.armTimestamps(rec) : null;
    await this.submit(rec, 'the forward pass');
    if (timing) this.lastProfile = await timing();
    await staging.mapAsync(GPUMapMode.READ, 0, out.mappedBytes);
    checkNotLost(this.ctx);
    const decoded = out.decode(staging.getMappedRange(0, out.mappedBytes), plan.blocks, wantStats);
    staging.unmap();
    if (cache) cache.length += rows;
    const nllCount = request.nll ? rows - 1 : 0;
    let picked = decoded.picked;
    // the sample is beyond the kernel (known before, or NO_PICK from it): sampleToken on the row, said in the result and counted
    const onHost = pick !== null && pick !== 'argmax' && (hostPick || picked === NO_PICK);
    if (onHost) {
      picked = pickToken(decoded.logits ?? (await this.readLogitsRow()), pick);
      this.hostPicks++;
    }
    return {
      logits: request.logits === 'none' ? null : decoded.logits,
      stats: decoded.stats,
      states: decoded.states,
      nllSum: nllCount > 0 ? decoded.nllSum : 0,
      nllCount,
      ...(pick ? { picked } : {}),
      ...(onHost ? { pickedOnHost: true } : {}),
    };
  }

  /** The last forward's logits row (the head's 'logits' buffer, row 0), read back for a pick the sampling kernel could not make. */
  private async readLogitsRow(): Promise<Float32Array> {
    const bytes = this.spec.vocabSize * F32;
    const staging = this.workspace.get('pickStaging', bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    const rec = this.recorder();
    rec.copy(this.buffer('logits', bytes), 0, staging, 0, bytes);
    await this.submit(rec, 'the logits row read-back');
    await staging.mapAsync(GPUMapMode.READ, 0, bytes);
    checkNotLost(this.ctx);
    const row = new Float32Array(staging.getMappedRange(0, bytes).slice(0));
    staging.unmap();
    return row;
  }
}

/** The factory model.ts loads: acquires a device, uploads the weights, compiles the kernels. */
export async function createWebGpuBackend(spec: ModelSpec, weights: ModelWeights, options: WebGpuBackendOptions = {}): Promise<Backend> {
  const owns = !options.context;
  const ctx = options.context ?? (await acquireGpu(options));
  checkNotLost(ctx);
  // acquireGpu requests shader-f16 whenever the adapter offers it; f16 arithmetic without it is refused before any upload
  if (options.f16Math && !ctx.features.has('shader-f16')) {
    if (owns) ctx.device.destroy();
    throw new F16MathUnavailable(ctx.adapterDescription);
  }
  ctx.device.pushErrorScope('validation');
  ctx.device.pushErrorScope('out-of-memory');
  let backend: WebGpuBackend | null = null;
  try {
    backend = new WebGpuBackend(ctx, spec, weights, owns, options.maxBindingBytes, options.f16Math ?? false, options.blocksHandedOver ?? false);
    backend.useSubgroups = (options.subgroups ?? true) && ctx.features.has('subgroups');
    backend.fuseDecode = options.fuseDecode ?? true;
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
