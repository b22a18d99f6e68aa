/**
 * Fast CPU kernels on onnxruntime (onnxruntime-node in Node, onnxruntime-web's wasm build in the browser
 * worker): one tiny ONNX graph per weight — Gemm(x, W, b) with transB, the weight as an initializer, so
 * onnxruntime prepacks it once (optionally with the MLP's activation, or gate and up fused into one call) —
 * plus one attention graph per head layout and a log-sum-exp for the NLL. Sessions are created once at
 * load; a forward is a sequence of `run` calls (~10 µs each in Node), so a plan change only skips calls.
 * The rest of the forward stays in TypeScript (cpu/backend.ts).
 */
import { decodeToF32, type HostTensor } from '../safetensors.ts';
import type { CpuKernels, PreparedLinear } from './kernels.ts';
import type { AttentionShape } from './ops.ts';
import { DataType, type Dim, encodeModel, type GraphSpec, type Initializer, type ValueInfo } from './onnx-proto.ts';

/** The part of onnxruntime-common's API used here (both onnxruntime-node and onnxruntime-web provide it). */
export interface OrtTensor {
  readonly data: unknown;
  readonly dims: readonly number[];
  dispose?(): void;
}
export interface OrtSession {
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
export interface OrtModule {
  InferenceSession: { create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
}

export interface OrtKernelOptions {
  /** Intra-op threads per session (the calling thread counts as one). */
  threads: number;
  /** e.g. "onnxruntime-node 1.30.0" (the backend's description adds the thread count). */
  runtime: string;
  /** Execution providers, default ['cpu'] (onnxruntime-web: ['wasm']). */
  executionProviders?: readonly string[];
  /**
   * Where the weights live. 'input' (Node): a few shared sessions take the weight as an input on each run —
   * onnxruntime-node feeds typed arrays without copying, so this costs ~5–10% of Gemm time (B is packed per
   * call) and saves hundreds of sessions: onnxruntime-node gives every session its own thread pool, and
   * creating them made the load slow. 'initializer' (browser): one session per weight, prepacked once —
   * onnxruntime-web copies every input into the wasm heap on each run, which for weights would be all of
   * them per token; its threads are one pool per module anyway.
   */
  weights: 'input' | 'initializer';
}

interface OrtLinear extends PreparedLinear {
  session: Promise<OrtSession>;
  /** The weight operands when they are inputs (wrapped once). */
  weights: Record<string, OrtTensor>;
  /** Bytes counted in weightBytes for this prepared weight. */
  bytes: number;
  /** The memo list it sits in (releaseLinear takes it out without holding the stored tensor). */
  memo: MemoEntry[];
}
interface MemoEntry {
  /** Numbers and names only (tensorId): a key holding a tensor would keep its block's stored bytes alive. */
  key: readonly (string | number)[];
  l: OrtLinear;
}

export type Activation = 'silu' | 'gelu_new' | 'gelu';

/** A CpuKernels on onnxruntime; `ready()` resolves once every session created so far exists (or rejects with the first failure). */
export interface OrtKernels extends CpuKernels {
  ready(): Promise<void>;
  /** As CpuKernels.prepareLinear; with an activation, `linear` returns act(x·Wᵀ + b) (a plain MLP's up projection). */
  prepareLinear(weight: HostTensor, bias: HostTensor | null, activation?: Activation): PreparedLinear;
  /** A gated MLP's first half in one call: `linear` returns act(x·Gᵀ + b_g) ⊙ (x·Uᵀ + b_u), [rows, ffn]. */
  prepareGated(gate: { weight: HostTensor; bias: HostTensor | null }, up: { weight: HostTensor; bias: HostTensor | null }, activation: Activation): PreparedLinear;
  /** log Σ_j exp(x[r, j]) per row of x [rows, width] (the NLL's normalizer). */
  logSumExp(x: Float32Array, rows: number, width: number): Promise<Float32Array>;
  /**
   * Causal attention with grouped KV heads, the contract of ops.ts's causalAttention: q [rows, heads·d],
   * keys/values [firstPosition + rows (or more), kvHeads·d]; row r sees positions ≤ firstPosition + r
   * (within the window).
   */
  attention(q: Float32Array, rows: number, keys: Float32Array, values: Float32Array, firstPosition: number, shape: AttentionShape): Promise<Float32Array>;
}

type Node = GraphSpec['nodes'][number];

/** Nodes computing `out` = act(`x`) elementwise, names prefixed with `p`; the constants they need. */
function activationNodes(act: Activation, x: string, out: string, p: string): { nodes: Node[]; constants: { name: string; value: number }[] } {
  if (act === 'silu') {
    return {
      nodes: [
        { op: 'Sigmoid', inputs: [x], outputs: [`${p}sig`] },
        { op: 'Mul', inputs: [x, `${p}sig`], outputs: [out] },
      ],
      constants: [],
    };
  }
  if (act === 'gelu') {
    // 0.5 · x · (1 + erf(x / √2))
    return {
      nodes: [
        { op: 'Mul', inputs: [x, `${p}rsqrt2`], outputs: [`${p}xs`] },
        { op: 'Erf', inputs: [`${p}xs`], outputs: [`${p}erf`] },
        { op: 'Add', inputs: [`${p}erf`, `${p}one`], outputs: [`${p}erf1`] },
        { op: 'Mul', inputs: [x, `${p}erf1`], outputs: [`${p}xe`] },
        { op: 'Mul', inputs: [`${p}xe`, `${p}half`], outputs: [out] },
      ],
      constants: [
        { name: `${p}rsqrt2`, value: Math.SQRT1_2 },
        { name: `${p}one`, value: 1 },
        { name: `${p}half`, value: 0.5 },
      ],
    };
  }
  // gelu_new: 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
  return {
    nodes: [
      { op: 'Mul', inputs: [x, x], outputs: [`${p}x2`] },
      { op: 'Mul', inputs: [`${p}x2`, x], outputs: [`${p}x3`] },
      { op: 'Mul', inputs: [`${p}x3`, `${p}c`], outputs: [`${p}cx3`] },
      { op: 'Add', inputs: [x, `${p}cx3`], outputs: [`${p}inner`] },
      { op: 'Mul', inputs: [`${p}inner`, `${p}k`], outputs: [`${p}arg`] },
      { op: 'Tanh', inputs: [`${p}arg`], outputs: [`${p}tanh`] },
      { op: 'Add', inputs: [`${p}tanh`, `${p}one`], outputs: [`${p}t1`] },
      { op: 'Mul', inputs: [x, `${p}t1`], outputs: [`${p}xt`] },
      { op: 'Mul', inputs: [`${p}xt`, `${p}half`], outputs: [out] },
    ],
    constants: [
      { name: `${p}c`, value: 0.044715 },
      { name: `${p}k`, value: Math.sqrt(2 / Math.PI) },
      { name: `${p}one`, value: 1 },
      { name: `${p}half`, value: 0.5 },
    ],
  };
}

interface Projection {
  out: number;
  inp: number;
  weight: Float32Array;
  bias: Float32Array | null;
}

/** A projection's operands: graph inputs (shared sessions) or initializers (one session per weight). */
interface Operands {
  nodes: Node[];
  initializers: Initializer[];
  inputs: ValueInfo[];
  /** Feeds for the weight inputs (empty for initializers). */
  weightFeeds: Record<string, { data: Float32Array; dims: number[] }>;
}

/** Gemm(x, W, b) with transB: W stays in nn.Linear layout [out, in]. */
function gemm(p: Projection, x: string, y: string, prefix: string, mode: OrtKernelOptions['weights']): Operands {
  const w = `${prefix}w`;
  const b = `${prefix}b`;
  const ops: Operands = {
    nodes: [{ op: 'Gemm', inputs: p.bias ? [x, w, b] : [x, w], outputs: [y], attributes: [{ name: 'transB', int: 1 }] }],
    initializers: [],
    inputs: [],
    weightFeeds: {},
  };
  const operands: [string, Float32Array, number[], Dim[]][] = [[w, p.weight, [p.out, p.inp], [`${prefix}out`, 'in']]];
  if (p.bias) operands.push([b, p.bias, [p.out], [`${prefix}out`]]);
  for (const [name, data, dims, symbolic] of operands) {
    if (mode === 'initializer') ops.initializers.push({ name, dims, data });
    else {
      ops.inputs.push({ name, type: DataType.FLOAT, dims: symbolic });
      ops.weightFeeds[name] = { data, dims };
    }
  }
  return ops;
}

const scalar = (c: { name: string; value: number }) => ({ name: c.name, dims: [], data: Float32Array.of(c.value) });
const io = (name: string, width: Dim) => ({ name, type: DataType.FLOAT, dims: ['rows', width] });

/** y = x·Wᵀ + b, or act(x·Wᵀ + b). */
function linearGraph(p: Projection, activation: Activation | null, mode: OrtKernelOptions['weights']): { graph: GraphSpec; weightFeeds: Operands['weightFeeds'] } {
  const g = gemm(p, 'x', activation ? 'z' : 'y', '', mode);
  const a = activation ? activationNodes(activation, 'z', 'y', 'act_') : { nodes: [], constants: [] };
  const width = (n: number): Dim => (mode === 'initializer' ? n : 'out');
  const graph = {
    name: 'linear',
    nodes: [...g.nodes, ...a.nodes],
    initializers: [...g.initializers, ...a.constants.map(scalar)],
    inputs: [io('x', mode === 'initializer' ? p.inp : 'in'), ...g.inputs],
    outputs: [io('y', width(p.out))],
  };
  return { graph, weightFeeds: g.weightFeeds };
}

/** y = act(x·Gᵀ + b_g) ⊙ (x·Uᵀ + b_u). */
function gatedGraph(gate: Projection, up: Projection, activation: Activation, mode: OrtKernelOptions['weights']): { graph: GraphSpec; weightFeeds: Operands['weightFeeds'] } {
  const g = gemm(gate, 'x', 'g', 'gate_', mode);
  const u = gemm(up, 'x', 'u', 'up_', mode);
  const a = activationNodes(activation, 'g', 'ag', 'act_');
  const graph = {
    name: 'gated',
    nodes: [...g.nodes, ...u.nodes, ...a.nodes, { op: 'Mul', inputs: ['ag', 'u'], outputs: ['y'] }],
    initializers: [...g.initializers, ...u.initializers, ...a.constants.map(scalar)],
    inputs: [io('x', mode === 'initializer' ? gate.inp : 'in'), ...g.inputs, ...u.inputs],
    outputs: [io('y', mode === 'initializer' ? gate.out : 'gate_out')],
  };
  return { graph, weightFeeds: { ...g.weightFeeds, ...u.weightFeeds } };
}

/** y[r] = max_r + log Σ exp(x[r] − max_r), x [rows, width] → y [rows, 1]. */
function logSumExpGraph(width: number): GraphSpec {
  return {
    name: 'logsumexp',
    nodes: [
      { op: 'ReduceMax', inputs: ['x'], outputs: ['m'], attributes: [{ name: 'axes', ints: [1] }] },
      { op: 'Sub', inputs: ['x', 'm'], outputs: ['d'] },
      { op: 'Exp', inputs: ['d'], outputs: ['e'] },
      { op: 'ReduceSum', inputs: ['e', 'axes'], outputs: ['s'] },
      { op: 'Log', inputs: ['s'], outputs: ['l'] },
      { op: 'Add', inputs: ['l', 'm'], outputs: ['y'] },
    ],
    initializers: [],
    int64Initializers: [{ name: 'axes', values: [1] }],
    inputs: [io('x', width)],
    outputs: [io('y', 1)],
  };
}

const i64 = (name: string, values: readonly number[]) => ({ name, values });

/**
 * softmax(softcap(q·kᵀ·scale) + mask)·v per head, KV heads shared by `heads / kvHeads` query heads (head h uses KV head
 * ⌊h / group⌋, as the reference). Shapes: q [S, H·d], k/v [T, KV·d], mask [G·S, T] (0 or −∞, the causal
 * mask repeated per query head of a group) → y [S, H·d]. Queries are grouped per KV head so each product is
 * one batched MatMul over KV heads: scores [KV, G·S, T].
 */
function attentionGraph({ heads, kvHeads, headDim: d, scale, softcap }: AttentionShape): GraphSpec {
  const group = heads / kvHeads;
  const shapes = [
    i64('q4', [0, kvHeads, group, d]), // [S, KV, G, d]
    i64('qg', [kvHeads, -1, d]), // [KV, G·S, d]
    i64('kv3', [0, kvHeads, d]), // [T, KV, d]
    i64('o4', [kvHeads, group, -1, d]), // [KV, G, S, d]
    i64('y2', [0, heads * d]), // [S, H·d]
  ];
  return {
    name: 'attention',
    nodes: [
      { op: 'Reshape', inputs: ['q', 'q4'], outputs: ['q_4'] },
      { op: 'Transpose', inputs: ['q_4'], outputs: ['q_t'], attributes: [{ name: 'perm', ints: [1, 2, 0, 3] }] },
      { op: 'Reshape', inputs: ['q_t', 'qg'], outputs: ['q_g'] },
      { op: 'Reshape', inputs: ['k', 'kv3'], outputs: ['k_3'] },
      { op: 'Transpose', inputs: ['k_3'], outputs: ['k_t'], attributes: [{ name: 'perm', ints: [1, 2, 0] }] },
      { op: 'MatMul', inputs: ['q_g', 'k_t'], outputs: ['s_raw'] },
      { op: 'Mul', inputs: ['s_raw', 'scale'], outputs: softcap === null ? ['s_scaled'] : ['s_uncapped'] },
      // Gemma 2: cap · tanh(s / cap)
      ...(softcap === null
        ? []
        : [
            { op: 'Mul', inputs: ['s_uncapped', 'inv_cap'], outputs: ['s_over'] },
            { op: 'Tanh', inputs: ['s_over'], outputs: ['s_tanh'] },
            { op: 'Mul', inputs: ['s_tanh', 'cap'], outputs: ['s_scaled'] },
          ]),
      { op: 'Add', inputs: ['s_scaled', 'mask'], outputs: ['s_masked'] },
      { op: 'Softmax', inputs: ['s_masked'], outputs: ['p_3'], attributes: [{ name: 'axis', int: -1 }] },
      { op: 'Reshape', inputs: ['v', 'kv3'], outputs: ['v_3'] },
      { op: 'Transpose', inputs: ['v_3'], outputs: ['v_t'], attributes: [{ name: 'perm', ints: [1, 0, 2] }] },
      { op: 'MatMul', inputs: ['p_3', 'v_t'], outputs: ['o_3'] },
      { op: 'Reshape', inputs: ['o_3', 'o4'], outputs: ['o_4'] },
      { op: 'Transpose', inputs: ['o_4'], outputs: ['o_t'], attributes: [{ name: 'perm', ints: [2, 0, 1, 3] }] },
      { op: 'Reshape', inputs: ['o_t', 'y2'], outputs: ['y'] },
    ],
    initializers: [
      { name: 'scale', dims: [], data: Float32Array.of(scale) },
      ...(softcap === null
        ? []
        : [
            { name: 'inv_cap', dims: [], data: Float32Array.of(1 / softcap) },
            { name: 'cap', dims: [], data: Float32Array.of(softcap) },
          ]),
    ],
    int64Initializers: shapes,
    inputs: [
      { name: 'q', type: DataType.FLOAT, dims: ['S', heads * d] },
      { name: 'k', type: DataType.FLOAT, dims: ['T', kvHeads * d] },
      { name: 'v', type: DataType.FLOAT, dims: ['T', kvHeads * d] },
      { name: 'mask', type: DataType.FLOAT, dims: ['GS', 'T'] },
    ],
    outputs: [{ name: 'y', type: DataType.FLOAT, dims: ['S', heads * d] }],
  };
}

/** Additive causal mask [group·rows, total]: row g·rows + r sees positions last − window < p ≤ last = firstPosition + r. */
function causalMask(group: number, rows: number, total: number, firstPosition: number, window: number | null): Float32Array {
  const mask = new Float32Array(group * rows * total);
  for (let g = 0; g < group; g++) {
    for (let r = 0; r < rows; r++) {
      const row = (g * rows + r) * total;
      const last = firstPosition + r;
      if (window !== null && last - window + 1 > 0) mask.fill(Number.NEGATIVE_INFINITY, row, row + last - window + 1);
      mask.fill(Number.NEGATIVE_INFINITY, row + last + 1, row + total);
    }
  }
  return mask;
}

export function ortKernels(ort: OrtModule, options: OrtKernelOptions): OrtKernels {
  const sessionOptions = {
    executionProviders: options.executionProviders ?? ['cpu'],
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Hundreds of sessions each own a thread pool; spinning workers of the session that just ran would
    // steal the cores from the next one (and from the TypeScript between calls).
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
  const pending: Promise<OrtSession>[] = [];
  const create = (graph: GraphSpec) => {
    const session = ort.InferenceSession.create(encodeModel(graph), sessionOptions);
    // Avoid an unhandled rejection before ready()/linear() observe it.
    session.catch(() => {});
    pending.push(session);
    return session;
  };
  // Weights shared between calls (tied heads, repeated prepares) get one session. Weak: once its f32 copy
  // exists a weight's stored bytes are not needed, and the memo must not be what keeps them alive.
  let prepared = new WeakMap<HostTensor, MemoEntry[]>();
  const ids = new WeakMap<HostTensor, number>();
  let lastId = 0;
  const tensorId = (t: HostTensor | null) => {
    if (!t) return 0;
    let id = ids.get(t);
    if (id === undefined) ids.set(t, (id = ++lastId));
    return id;
  };
  const attentions = new Map<string, Promise<OrtSession>>();
  const logSumExps = new Map<number, Promise<OrtSession>>();
  let weightBytes = 0;
  const tensor = (data: Float32Array, dims: readonly number[]) => new ort.Tensor('float32', data, dims);
  const output = (result: Record<string, OrtTensor>) => {
    const y = result.y;
    const data = y.data as Float32Array;
    y.dispose?.();
    return data;
  };
  // f16/bf16 are decoded to f32 here: onnxruntime's x64 CPU Gemm is f32 (its f16 kernels are ARM-only), so
  // the prepared weights take 4 bytes per parameter (twice a BF16 checkpoint).
  const projection = (weight: HostTensor, bias: HostTensor | null): Projection => {
    const [out, inp] = weight.shape;
    return { out, inp, weight: decodeToF32(weight), bias: bias ? decodeToF32(bias) : null };
  };
  const bytesOf = (...ps: Projection[]) => ps.reduce((a, p) => a + p.weight.byteLength + (p.bias?.byteLength ?? 0), 0);
  const memo = (weight: HostTensor, key: readonly (string | number)[], make: (list: MemoEntry[]) => OrtLinear): OrtLinear => {
    let list = prepared.get(weight);
    if (!list) prepared.set(weight, (list = []));
    const hit = list.find((e) => e.key.length === key.length && e.key.every((k, i) => k === key[i]));
    if (hit) return hit.l;
    const l = make(list);
    weightBytes += l.bytes;
    list.push({ key, l });
    return l;
  };
  // With weights as inputs, graphs of one structure share a session (keyed by that structure).
  const shared = new Map<string, Promise<OrtSession>>();
  const session = (structure: string, graph: GraphSpec) => {
    if (options.weights === 'initializer') return create(graph);
    let s = shared.get(structure);
    if (!s) shared.set(structure, (s = create(graph)));
    return s;
  };
  const bind = (p: Projection, built: { graph: GraphSpec; weightFeeds: Operands['weightFeeds'] }, structure: string, bytes: number, memo: MemoEntry[]): OrtLinear => ({
    out: p.out,
    inp: p.inp,
    session: session(structure, built.graph),
    weights: Object.fromEntries(Object.entries(built.weightFeeds).map(([name, f]) => [name, tensor(f.data, f.dims)])),
    bytes,
    memo,
  });

  return {
    description: options.runtime,
    threads: options.threads,
    prepareLinear(weight, bias, activation) {
      return memo(weight, [tensorId(bias), activation ?? ''], (list) => {
        const p = projection(weight, bias);
        return bind(p, linearGraph(p, activation ?? null, options.weights), `linear/${!!bias}/${activation ?? ''}`, bytesOf(p), list);
      });
    },
    prepareGated(gate, up, activation) {
      if (gate.weight.shape[0] !== up.weight.shape[0] || gate.weight.shape[1] !== up.weight.shape[1]) {
        throw new Error(`gate ${gate.weight.name} [${gate.weight.shape}] and up ${up.weight.name} [${up.weight.shape}] differ in shape`);
      }
      return memo(gate.weight, [tensorId(gate.bias), tensorId(up.weight), tensorId(up.bias), activation, 'gated'], (list) => {
        const g = projection(gate.weight, gate.bias);
        const u = projection(up.weight, up.bias);
        return bind(g, gatedGraph(g, u, activation, options.weights), `gated/${!!gate.bias}/${!!up.bias}/${activation}`, bytesOf(g, u), list);
      });
    },
    releaseLinear(l) {
      const gone = l as OrtLinear;
      const at = gone.memo.findIndex((e) => e.l === gone);
      if (at < 0) return;
      gone.memo.splice(at, 1);
      weightBytes -= gone.bytes;
      // A per-weight session goes with its weight; shared sessions stay for the next block.
      if (options.weights === 'initializer') {
        pending.splice(pending.indexOf(gone.session), 1);
        gone.session.then((s) => s.release()).catch(() => {});
      }
    },
    async linear(x, rows, l) {
      const { session, inp, weights } = l as OrtLinear;
      return output(await (await session).run({ x: tensor(x, [rows, inp]), ...weights }));
    },
    async logSumExp(x, rows, width) {
      let session = logSumExps.get(width);
      if (!session) logSumExps.set(width, (session = create(logSumExpGraph(width))));
      return output(await (await session).run({ x: tensor(x.subarray(0, rows * width), [rows, width]) }));
    },
    async attention(q, rows, keys, values, firstPosition, shape) {
      const { heads, kvHeads, headDim, scale, softcap, window } = shape;
      // The window lives in the mask, so one graph serves local and global layers.
      const key = `${heads}/${kvHeads}/${headDim}/${scale}/${softcap}`;
      let session = attentions.get(key);
      if (!session) attentions.set(key, (session = create(attentionGraph(shape))));
      const total = firstPosition + rows;
      const width = kvHeads * headDim;
      return output(
        await (await session).run({
          q: tensor(q, [rows, heads * headDim]),
          k: tensor(keys.subarray(0, total * width), [total, width]),
          v: tensor(values.subarray(0, total * width), [total, width]),
          mask: tensor(causalMask(heads / kvHeads, rows, total, firstPosition, window), [(heads / kvHeads) * rows, total]),
        }),
      );
    },
    async ready() {
      await Promise.all(pending);
    },
    get weightBytes() {
      return weightBytes;
    },
    dispose() {
      for (const s of pending) s.then((x) => x.release()).catch(() => {});
      pending.length = 0;
      prepared = new WeakMap();
      attentions.clear();
      logSumExps.clear();
      shared.clear();
    },
  };
}
