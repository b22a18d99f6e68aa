/**
 * Decode-step kernels (one token, rows = 1), fatter than the general ones so a block is 5 dispatches:
 *   normGemv        the block's pre-norm (RMSNorm, or none) folded into the prologue of a GEMV over up to
 *                   three weight matrices bound side by side (q | k | v into one output row), or over gate
 *                   and up with the gated activation as epilogue (y = act(x·Wgᵀ) · x·Wuᵀ);
 *   attentionDecode per q head: q and the new k get the per-head q/k norm and RoPE in the prologue, the
 *                   first q head of each KV group writes the new k / v row into the cache, and the
 *                   online-softmax attention reads rows < P from the cache and row P from workgroup memory;
 *   argmax          the greedy next token on the GPU (ties → lowest id, as sampling.ts argmax), so a decode
 *                   step reads back one u32, not a vocabulary row.
 * The per-element arithmetic is the general kernels' (norm.ts, rope.ts, matmul.ts GEMV, attention.ts) in the
 * same order, so the fused step gives the same floats. With `subgroups` (adapter feature) the reductions
 * use subgroup operations (common.ts reductions).
 */
import type { Binding, Recorder } from '../recorder.ts';
import type { GpuMatrix } from '../tensors.ts';
import {
  f16Header,
  grid,
  LINEAR_ID,
  MATH_WGSL,
  reductions,
  subgroupHeader,
  uniforms,
  WEIGHT_ELEMENT_BYTES,
  type WeightFormat,
  type WeightMath,
  weightBinding,
  weightDot,
} from './common.ts';
import { MAX_HEAD_DIM, onlineSoftmaxWgsl } from './attention.ts';

/** GEMV shape, as matmul.ts: 8 lanes split the inner dimension of each of 8 outputs per workgroup. */
const LANES = 8;
const OUTS = 8;
const NORM_WG = LANES * OUTS;

export type DecodeActivation = 'silu' | 'gelu_new' | 'gelu';

export interface NormGemvVariant {
  format: WeightFormat;
  /** Arithmetic of the weight products (common.ts WeightMath; absent = 'f32'). */
  math?: WeightMath;
  /** RMSNorm prologue over x (with the family's weight offset), or x as it is. */
  norm: boolean;
  /** Weight matrices bound: 1–3 stacked outputs, or 2 (gate, up) when gated. */
  parts: 1 | 2 | 3;
  bias: boolean;
  /** Gated epilogue: y[o] = act(gate·x + bg) · (up·x + bu), parts = 2. */
  gated: DecodeActivation | null;
  subgroups: boolean;
}

const GEMV_PARAMS = uniforms({ n0: 'u32', n1: 'u32', n2: 'u32', k: 'u32', eps: 'f32', offset: 'f32' });

const ACT_WGSL = `${MATH_WGSL}
fn silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }
fn gelu_new(v: f32) -> f32 { return 0.5 * v * (1.0 + tanhExp(0.7978845608028654 * (v + 0.044715 * v * v * v))); }
fn gelu(v: f32) -> f32 { return 0.5 * v * (1.0 + erfAS(v * 0.7071067811865476)); }`;

function normGemvCode(v: NormGemvVariant): string {
  let b = 1;
  const decl: string[] = [`@group(0) @binding(${b++}) var<storage, read> x: array<f32>;`];
  if (v.norm) decl.push(`@group(0) @binding(${b++}) var<storage, read> nw: array<f32>;`);
  for (let i = 0; i < v.parts; i++) decl.push(weightBinding(b++, `w${i}`, v.format, v.math));
  decl.push(`@group(0) @binding(${b++}) var<storage, read_write> y: array<f32>;`);
  if (v.bias) for (let i = 0; i < v.parts; i++) decl.push(`@group(0) @binding(${b++}) var<storage, read> b${i}: array<f32>;`);
  // the normalised input element, exactly as norm.ts writes it
  const xn = (i: string) => (v.norm ? `x[${i}] * scale * (p.offset + nw[${i}])` : `x[${i}]`);
  const dot = (i: number) => `fn dot${i}(row: u32, lane: u32, scale: f32) -> f32 {
  var acc = 0.0;
  let wo = row * p.k;
  ${weightDot({ w: `w${i}`, math: v.math, x: xn, rowStart: 'wo', k: 'p.k', lane: 'lane', lanes: 'LANES', acc: 'acc' })}
  return acc;
}`;
  const dots = Array.from({ length: v.parts }, (_, i) => dot(i)).join('\n');
  const bias = (i: number, row: string) => (v.bias ? ` + b${i}[${row}]` : '');
  let body: string;
  if (v.gated) {
    body = `  let o = (${LINEAR_ID}) * ${OUTS}u + lid.y;
  var g = 0.0;
  var u = 0.0;
  if (o < p.n0) { g = dot0(o, lid.x, scale); u = dot1(o, lid.x, scale); }
  let gs = LANE_SUM(g);
  let us = LANE_SUM(u);
  if (lid.x == 0u && o < p.n0) { y[o] = ${v.gated}(gs${bias(0, 'o')}) * (us${bias(1, 'o')}); }`;
  } else {
    const pick = [`if (o < p.n0) { acc = dot0(o, lid.x, scale); }`];
    if (v.parts > 1) pick.push(`else if (o < p.n0 + p.n1) { acc = dot1(o - p.n0, lid.x, scale); }`);
    if (v.parts > 2) pick.push(`else if (o < n) { acc = dot2(o - p.n0 - p.n1, lid.x, scale); }`);
    const store = [`if (o < p.n0) { y[o] = s${bias(0, 'o')}; }`];
    if (v.parts > 1) store.push(`else if (o < p.n0 + p.n1) { y[o] = s${bias(1, 'o - p.n0')}; }`);
    if (v.parts > 2) store.push(`else if (o < n) { y[o] = s${bias(2, 'o - p.n0 - p.n1')}; }`);
    body = `  let n = p.n0 + p.n1 + p.n2;
  let o = (${LINEAR_ID}) * ${OUTS}u + lid.y;
  var acc = 0.0;
  ${pick.join(' ')}
  let s = LANE_SUM(acc);
  if (lid.x == 0u) { ${store.join(' ')} }`;
  }
  body = body.replace(/LANE_SUM\((\w+)\)/g, v.subgroups ? 'laneSum($1, lid, sgSize)' : 'laneSumTree($1, lid)');
  return `${v.subgroups ? subgroupHeader() : ''}
${v.math === 'f16' ? f16Header() : ''}
${GEMV_PARAMS.wgsl}
${decl.join('\n')}
${v.gated ? ACT_WGSL : ''}
const LANES = ${LANES}u;
${reductions(NORM_WG, v.subgroups)}
var<workgroup> part: array<f32, ${NORM_WG}>;
${
  v.subgroups
    ? `/**
 * Σ of acc over the LANES lanes of one output: a butterfly of subgroupShuffleXor within the subgroup (lanes of
 * one output are consecutive and aligned), then, when a subgroup is narrower than LANES, its partials in
 * workgroup memory. Call from uniform control flow.
 */
fn laneSum(acc: f32, lid: vec3<u32>, sgSize: u32) -> f32 {
  var v = acc;
  let span = min(sgSize, LANES);
  for (var o = 1u; o < span; o = o << 1u) { v = v + subgroupShuffleXor(v, o); }
  let slot = lid.y * LANES + lid.x;
  part[slot] = v;
  workgroupBarrier();
  var r = 0.0;
  for (var j = 0u; j < LANES; j = j + span) { r = r + part[lid.y * LANES + j]; }
  workgroupBarrier();
  return r;
}`
    : ''
}
/** Σ of acc over the LANES lanes of one output (tree, as matmul.ts GEMV); call from uniform control flow. */
fn laneSumTree(acc: f32, lid: vec3<u32>) -> f32 {
  let slot = lid.y * LANES + lid.x;
  part[slot] = acc;
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
    if (lid.x < s) { part[slot] = part[slot] + part[slot + s]; }
    workgroupBarrier();
  }
  let r = part[lid.y * LANES];
  workgroupBarrier();
  return r;
}
${dots}
@compute @workgroup_size(${LANES}, ${OUTS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32${v.subgroups ? ', @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgLane: u32' : ''}) {
${
  v.norm
    ? `  var ss = 0.0;
  for (var i = li; i < p.k; i = i + WG) { let t = x[i]; ss = fma(t, t, ss); }
  let scale = 1.0 / sqrt(reduceSum(ss, li${v.subgroups ? ', sgSize, sgLane' : ''}) / f32(p.k) + p.eps);`
    : '  let scale = 1.0;'
}
${body}
}`;
}

export function normGemvPipeline(rec: Pick<Recorder, 'pipelines'>, v: NormGemvVariant): GPUComputePipeline {
  const key = `norm-gemv-${v.format}${v.math === 'f16' ? '-f16math' : ''}${v.norm ? '-norm' : ''}-${v.parts}${v.bias ? '-bias' : ''}${v.gated ? `-${v.gated}` : ''}${v.subgroups ? '-sg' : ''}`;
  return rec.pipelines.get(key, () => normGemvCode(v));
}

export interface NormGemvArgs {
  x: Binding;
  /** RMSNorm weight, or null for no prologue. */
  normWeight: GPUBuffer | null;
  eps: number;
  offset: number;
  /** One chunk each, same format. */
  weights: GpuMatrix[];
  /** Arithmetic of the weight products (common.ts WeightMath; default 'f32'). */
  math?: WeightMath;
  biases: GPUBuffer[] | null;
  y: GPUBuffer;
  gated: DecodeActivation | null;
  subgroups: boolean;
}

/** y = [x̂·W0ᵀ | x̂·W1ᵀ | x̂·W2ᵀ] (+ biases), or act(x̂·Wgᵀ) · x̂·Wuᵀ when gated, x̂ = rmsnorm(x) or x. One dispatch. */
export function normGemv(rec: Recorder, a: NormGemvArgs): void {
  const parts = a.weights.length as 1 | 2 | 3;
  const v: NormGemvVariant = {
    format: a.weights[0].format,
    math: a.math ?? 'f32',
    norm: a.normWeight !== null,
    parts,
    bias: a.biases !== null,
    gated: a.gated,
    subgroups: a.subgroups,
  };
  if (v.math === 'f16' && (v.format !== 'f16' || a.weights[0].cols % 2 !== 0))
    throw new Error(`f16 arithmetic needs f16 weights of even width, got ${v.format} × ${a.weights[0].cols}`);
  const buffers: Binding[] = [a.x];
  if (a.normWeight) buffers.push(a.normWeight);
  for (const w of a.weights) buffers.push(w.chunks[0].buffer);
  buffers.push(a.y);
  if (a.biases) buffers.push(...a.biases);
  const n = a.weights.map((w) => w.rows);
  const params = GEMV_PARAMS.pack({ n0: n[0], n1: n[1] ?? 0, n2: n[2] ?? 0, k: a.weights[0].cols, eps: a.eps, offset: a.offset });
  const outputs = a.gated ? n[0] : n.reduce((s, x) => s + x, 0);
  const weightBytes = a.weights.reduce((sum, w) => sum + w.rows * w.cols * WEIGHT_ELEMENT_BYTES[w.format], 0);
  rec.dispatch(normGemvPipeline(rec, v), params, buffers, grid(Math.ceil(outputs / OUTS)), weightBytes);
}

// ---------------------------------------------------------------- attention for one new token

const ATT_WG = 64;

export interface AttentionDecodeVariant {
  rope: boolean;
  headNorm: boolean;
  subgroups: boolean;
}

/** window 0 = full causal; softcap 0 = none; q/k/v at qkv[0..), [kOffset..), [vOffset..). */
const ATT_PARAMS = uniforms({
  heads: 'u32',
  kvHeads: 'u32',
  headDim: 'u32',
  position: 'u32',
  window: 'u32',
  rotaryHalf: 'u32',
  kOffset: 'u32',
  vOffset: 'u32',
  scale: 'f32',
  softcap: 'f32',
  eps: 'f32',
  offset: 'f32',
});

function attentionDecodeCode(v: AttentionDecodeVariant): string {
  let b = 1;
  const decl = [
    `@group(0) @binding(${b++}) var<storage, read> qkv: array<f32>;`,
    `@group(0) @binding(${b++}) var<storage, read_write> keys: array<f32>;`,
    `@group(0) @binding(${b++}) var<storage, read_write> values: array<f32>;`,
    `@group(0) @binding(${b++}) var<storage, read_write> out: array<f32>;`,
  ];
  if (v.rope) decl.push(`@group(0) @binding(${b++}) var<storage, read> table: array<vec2<f32>>;`);
  if (v.headNorm) decl.push(`@group(0) @binding(${b++}) var<storage, read> qw: array<f32>;`, `@group(0) @binding(${b++}) var<storage, read> kw: array<f32>;`);
  const sg = v.subgroups ? ', sgSize, sgLane' : '';
  const w = (name: string, i: string) => (v.headNorm ? ` * (p.offset + ${name}[${i}])` : '');
  // rope.ts's per-head norm + rotate_half, on a head held in workgroup memory
  const prepare = (buf: string, weight: string) => `
  {
    var scale = 1.0;
${
  v.headNorm
    ? `    var ss = 0.0;
    for (var i = lane; i < d; i = i + WG) { let t = ${buf}[i]; ss = fma(t, t, ss); }
    scale = 1.0 / sqrt(reduceSum(ss, lane${sg}) / f32(d) + p.eps);`
    : ''
}
${
  v.rope
    ? `    let half = p.rotaryHalf;
    for (var i = lane; i < half; i = i + WG) {
      let a = ${buf}[i] * scale${w(weight, 'i')};
      let b = ${buf}[i + half] * scale${w(weight, 'i + half')};
      let cs = table[p.position * half + i];
      ${buf}[i] = a * cs.x - b * cs.y;
      ${buf}[i + half] = b * cs.x + a * cs.y;
    }
    let passFrom = 2u * half;`
    : '    let passFrom = 0u;'
}
${v.headNorm ? `    for (var i = passFrom + lane; i < d; i = i + WG) { ${buf}[i] = ${buf}[i] * scale${w(weight, 'i')}; }` : ''}
    workgroupBarrier();
  }`;
  return `${v.subgroups ? subgroupHeader() : ''}
${ATT_PARAMS.wgsl}
${decl.join('\n')}
${reductions(ATT_WG, v.subgroups)}
${MATH_WGSL}
var<workgroup> qs: array<f32, ${MAX_HEAD_DIM}>;
var<workgroup> kn: array<f32, ${MAX_HEAD_DIM}>;
var<workgroup> vn: array<f32, ${MAX_HEAD_DIM}>;
var<workgroup> weights: array<f32, ${ATT_WG}>;
const DIMS_PER_LANE = ${MAX_HEAD_DIM / ATT_WG}u;
@compute @workgroup_size(${ATT_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32${v.subgroups ? ', @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgLane: u32' : ''}) {
  let h = wid.x;
  let d = p.headDim;
  let group = p.heads / p.kvHeads;
  let kvh = h / group;
  let kvStride = p.kvHeads * d;
  for (var i = lane; i < d; i = i + WG) {
    qs[i] = qkv[h * d + i];
    kn[i] = qkv[p.kOffset + kvh * d + i];
    vn[i] = qkv[p.vOffset + kvh * d + i];
  }
  workgroupBarrier();
${prepare('qs', 'qw')}
${prepare('kn', 'kw')}
  let P = p.position;
  // the new row goes into the cache once per KV head; every head of the group reads it from workgroup memory
  if (h % group == 0u) {
    for (var i = lane; i < d; i = i + WG) {
      keys[P * kvStride + kvh * d + i] = kn[i];
      values[P * kvStride + kvh * d + i] = vn[i];
    }
  }
  let visible = P + 1u;
  var first = 0u;
  if (p.window > 0u && visible > p.window) { first = visible - p.window; }
${onlineSoftmaxWgsl({
  // the new token's key and value come from workgroup memory (this kernel wrote them to the cache above)
  dot: `if (pos == P) {
        for (var i = 0u; i < d; i = i + 1u) { dot = fma(qs[i], kn[i], dot); }
      } else {
        let ko = pos * kvStride + kvh * d;
        for (var i = 0u; i < d; i = i + 1u) { dot = fma(qs[i], keys[ko + i], dot); }
      }`,
  value: 'var val: f32;\n          if (at == P) { val = vn[i]; } else { val = values[at * kvStride + kvh * d + i]; }',
  reduce: sg,
})}
  for (var j = 0u; j < DIMS_PER_LANE; j = j + 1u) {
    let i = lane + j * WG;
    if (i < d) { out[h * d + i] = acc[j] / l; }
  }
}`;
}

export function attentionDecodePipeline(rec: Pick<Recorder, 'pipelines'>, v: AttentionDecodeVariant): GPUComputePipeline {
  const key = `attention-decode${v.rope ? '-rope' : ''}${v.headNorm ? '-norm' : ''}${v.subgroups ? '-sg' : ''}`;
  return rec.pipelines.get(key, () => attentionDecodeCode(v));
}

export interface AttentionDecodeArgs {
  /** [q (heads·d) | k (kvHeads·d) | v (kvHeads·d)] of the new token, unrotated. */
  qkv: GPUBuffer;
  keys: GPUBuffer;
  values: GPUBuffer;
  /** The new token's position = its row in keys / values. */
  position: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  softcap: number | null;
  window: number | null;
  /** cos/sin table (rope.ts ropeTable) and rotated dims, or null for a layer without RoPE. */
  table: GPUBuffer | null;
  rotaryDim: number;
  /** Per-head q / k RMSNorm weights (qwen3, gemma3), or null. */
  qNorm: GPUBuffer | null;
  kNorm: GPUBuffer | null;
  eps: number;
  offset: number;
  out: GPUBuffer;
  subgroups: boolean;
}

export function attentionDecode(rec: Recorder, a: AttentionDecodeArgs): void {
  const headNorm = a.qNorm !== null && a.kNorm !== null;
  const v: AttentionDecodeVariant = { rope: a.table !== null, headNorm, subgroups: a.subgroups };
  const buffers: Binding[] = [a.qkv, a.keys, a.values, a.out];
  if (a.table) buffers.push(a.table);
  if (headNorm) buffers.push(a.qNorm as GPUBuffer, a.kNorm as GPUBuffer);
  const q = a.heads * a.headDim;
  const kv = a.kvHeads * a.headDim;
  const params = ATT_PARAMS.pack({
    heads: a.heads,
    kvHeads: a.kvHeads,
    headDim: a.headDim,
    position: a.position,
    window: a.window ?? 0,
    rotaryHalf: a.table ? a.rotaryDim / 2 : 0,
    kOffset: q,
    vOffset: q + kv,
    scale: a.scale,
    softcap: a.softcap ?? 0,
    eps: a.eps,
    offset: a.offset,
  });
  rec.dispatch(attentionDecodePipeline(rec, v), params, buffers, [a.heads]);
}

// ---------------------------------------------------------------- greedy pick

const ARGMAX_WG = 256;
const ARGMAX_PARAMS = uniforms({ n: 'u32', outIndex: 'u32' });

function argmaxCode(): string {
  return `
${ARGMAX_PARAMS.wgsl}
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
var<workgroup> bestV: array<f32, ${ARGMAX_WG}>;
var<workgroup> bestI: array<u32, ${ARGMAX_WG}>;
/** (v, i) beats (bv, bi): larger value, or the same value at a lower index (sampling.ts argmax keeps the first maximum). */
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool { return v > bv || (v == bv && i < bi); }
@compute @workgroup_size(${ARGMAX_WG})
fn main(@builtin(local_invocation_index) lane: u32) {
  var bv = -3.4028234663852886e38;
  var bi = 0xffffffffu;
  for (var i = lane; i < p.n; i = i + ${ARGMAX_WG}u) {
    let v = logits[i];
    if (beats(v, i, bv, bi)) { bv = v; bi = i; }
  }
  bestV[lane] = bv;
  bestI[lane] = bi;
  workgroupBarrier();
  for (var s = ${ARGMAX_WG / 2}u; s > 0u; s = s >> 1u) {
    if (lane < s && beats(bestV[lane + s], bestI[lane + s], bestV[lane], bestI[lane])) {
      bestV[lane] = bestV[lane + s];
      bestI[lane] = bestI[lane + s];
    }
    workgroupBarrier();
  }
  if (lane == 0u) { out[p.outIndex] = select(bestI[0], 0u, bestI[0] == 0xffffffffu); }
}`;
}

export function argmaxPipeline(rec: Pick<Recorder, 'pipelines'>): GPUComputePipeline {
  return rec.pipelines.get('argmax', argmaxCode);
}

/** out[outIndex] = the first index of the largest of n logits (u32). One workgroup. */
export function argmaxIndex(rec: Recorder, logits: Binding, n: number, out: GPUBuffer, outIndex = 0): void {
  rec.dispatch(argmaxPipeline(rec), ARGMAX_PARAMS.pack({ n, outIndex }), [logits, out], [1]);
}
