/**
 * y[r, o] (+)= Σ_i x[r, i] · W[o, i] + b[o], W in nn.Linear layout [out, in], f32 or packed f16.
 * Fused: the bias, the residual add (`accumulate`: y += alpha · (…), used by o_proj and down_proj, alpha
 * being the residual scale, 1 except Granite's residual_multiplier) and the
 * destination row offset (`outRowOffset`: k/v projections write straight into the KV cache).
 * Two shapes: a tiled, register-blocked GEMM for prefill (rows > 1) and a GEMV for decode (rows = 1).
 * A matrix split into row chunks (tensors.ts) is several matmuls, one per chunk, each writing its own
 * column range [colOffset, colOffset + n) of y's rows (row stride `ldy`, the whole matrix's out).
 * With math 'f16' (common.ts WeightMath: f16 weights, shader-f16) the same kernels multiply in f16: the GEMM
 * stages x and W as f16 tiles, the GEMV reads four weights per step; every product is added in f32.
 */
import type { Binding, Recorder } from '../recorder.ts';
import type { GpuMatrix } from '../tensors.ts';
import { f16Header, grid, LINEAR_ID, uniforms, WEIGHT_ELEMENT_BYTES, type WeightFormat, type WeightMath, weightBinding, weightDot } from './common.ts';

/** GEMM tile: BM rows × BN outputs per workgroup, each of the 8×16 threads holding a 4×4 block. */
const BM = 32;
const BN = 64;
const BK = 16;
/** GEMV: 64 lanes split the inner dimension of each of 4 outputs per workgroup. */
const GEMV_LANES = 8;
const GEMV_OUTS = 8;

export interface MatmulVariant {
  format: WeightFormat;
  /** Arithmetic of the weight products (common.ts WeightMath; absent = 'f32'). */
  math?: WeightMath;
  bias: boolean;
  accumulate: boolean;
}

const PARAMS = uniforms({ rows: 'u32', n: 'u32', k: 'u32', outRowOffset: 'u32', ldy: 'u32', colOffset: 'u32', alpha: 'f32' });

function header(v: MatmulVariant): string {
  return `${v.math === 'f16' ? f16Header() : ''}
${PARAMS.wgsl}
@group(0) @binding(1) var<storage, read> x: array<f32>;
${weightBinding(2, 'w', v.format, v.math)}
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${v.bias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}
fn storeOut(r: u32, c: u32, acc: f32) {
  let v = acc${v.bias ? ' + bias[p.colOffset + c]' : ''};
  let at = (p.outRowOffset + r) * p.ldy + p.colOffset + c;
  y[at] = ${v.accumulate ? 'y[at] + p.alpha * v' : 'v'};
}`;
}

function gemmCode(v: MatmulVariant): string {
  // f16 math: the tiles hold f16 (x rounded once, on staging) and each product is widened before the f32 add
  const t = v.math === 'f16' ? 'f16' : 'f32';
  const mac = (a: string, acc: string) => (v.math === 'f16' ? `${acc} + vec4<f32>(${a} * wv)` : `fma(vec4<f32>(${a}), wv, ${acc})`);
  return `${header(v)}
const BM = ${BM}u; const BN = ${BN}u; const BK = ${BK}u;
var<workgroup> xs: array<${t}, ${BM * BK}>;
var<workgroup> ws: array<${t}, ${BN * BK}>;
/** Row r, columns c, c + 16, c + 32, c + 48 (a thread's outputs are strided so stores coalesce). */
fn storeRow(r: u32, c: u32, v: vec4<f32>) {
  if (r >= p.rows) { return; }
  if (c < p.n) { storeOut(r, c, v.x); }
  if (c + 16u < p.n) { storeOut(r, c + 16u, v.y); }
  if (c + 32u < p.n) { storeOut(r, c + 32u, v.z); }
  if (c + 48u < p.n) { storeOut(r, c + 48u, v.w); }
}
@compute @workgroup_size(16, 8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row0 = wid.y * BM;
  let col0 = wid.x * BN;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
    for (var e = li; e < BM * BK; e = e + 128u) {
      let r = row0 + e / BK;
      let kk = k0 + e % BK;
      var v = 0.0;
      if (r < p.rows && kk < p.k) { v = x[r * p.k + kk]; }
      xs[e] = ${v.math === 'f16' ? 'f16(v)' : 'v'};
    }
    for (var e = li; e < BN * BK; e = e + 128u) {
      let c = col0 + e / BK;
      let kk = k0 + e % BK;
      var v = 0.0;
      if (c < p.n && kk < p.k) { v = wAt(c * p.k + kk); }
      ws[e] = ${v.math === 'f16' ? 'f16(v)' : 'v'};
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk = kk + 1u) {
      let wv = vec4<${t}>(ws[lid.x * BK + kk], ws[(lid.x + 16u) * BK + kk], ws[(lid.x + 32u) * BK + kk], ws[(lid.x + 48u) * BK + kk]);
      acc0 = ${mac('xs[lid.y * BK + kk]', 'acc0')};
      acc1 = ${mac('xs[(lid.y + 8u) * BK + kk]', 'acc1')};
      acc2 = ${mac('xs[(lid.y + 16u) * BK + kk]', 'acc2')};
      acc3 = ${mac('xs[(lid.y + 24u) * BK + kk]', 'acc3')};
    }
    workgroupBarrier();
  }
  storeRow(row0 + lid.y, col0 + lid.x, acc0);
  storeRow(row0 + lid.y + 8u, col0 + lid.x, acc1);
  storeRow(row0 + lid.y + 16u, col0 + lid.x, acc2);
  storeRow(row0 + lid.y + 24u, col0 + lid.x, acc3);
}`;
}

function gemvCode(v: MatmulVariant): string {
  return `${header(v)}
const LANES = ${GEMV_LANES}u;
var<workgroup> part: array<f32, ${GEMV_LANES * GEMV_OUTS}>;
@compute @workgroup_size(${GEMV_LANES}, ${GEMV_OUTS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let o = (${LINEAR_ID}) * ${GEMV_OUTS}u + lid.y;
  var acc = 0.0;
  if (o < p.n) {
    let wo = o * p.k;
    ${weightDot({ w: 'w', math: v.math, x: (i) => `x[${i}]`, rowStart: 'wo', k: 'p.k', lane: 'lid.x', lanes: 'LANES', acc: 'acc' })}
  }
  let slot = lid.y * LANES + lid.x;
  part[slot] = acc;
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
    if (lid.x < s) { part[slot] = part[slot] + part[slot + s]; }
    workgroupBarrier();
  }
  if (lid.x == 0u && o < p.n) { storeOut(0u, o, part[slot]); }
}`;
}

export function matmulPipeline(rec: Pick<Recorder, 'pipelines'>, kind: 'gemm' | 'gemv', v: MatmulVariant): GPUComputePipeline {
  const key = `matmul-${kind}-${v.format}${v.math === 'f16' ? '-f16math' : ''}${v.bias ? '-bias' : ''}${v.accumulate ? '-acc' : ''}`;
  return rec.pipelines.get(key, () => (kind === 'gemm' ? gemmCode(v) : gemvCode(v)));
}

export interface MatmulArgs {
  x: Binding;
  rows: number;
  w: GPUBuffer;
  format: WeightFormat;
  /** Arithmetic (common.ts WeightMath; default 'f32'). */
  math?: WeightMath;
  bias: GPUBuffer | null;
  y: GPUBuffer;
  n: number;
  k: number;
  accumulate?: boolean;
  /** With accumulate: y += alpha · (x · Wᵀ + b) (default 1). */
  alpha?: number;
  outRowOffset?: number;
  /** Row stride of y (default n): the full output width when W is one row chunk of a larger matrix. */
  ldy?: number;
  /** First column of y (and element of the bias) this W's rows produce (default 0). */
  colOffset?: number;
}

/** Records y (+)= x · Wᵀ + b for one weight buffer; GEMV when there is one row. */
export function matmul(rec: Recorder, a: MatmulArgs): void {
  const variant: MatmulVariant = { format: a.format, math: a.math ?? 'f32', bias: a.bias !== null, accumulate: a.accumulate ?? false };
  if (variant.math === 'f16' && (a.format !== 'f16' || a.k % 2 !== 0)) throw new Error(`f16 arithmetic needs f16 weights of even width, got ${a.format} × ${a.k}`);
  const buffers: Binding[] = [a.x, a.w, a.y];
  if (a.bias) buffers.push(a.bias);
  const params = PARAMS.pack({ rows: a.rows, n: a.n, k: a.k, outRowOffset: a.outRowOffset ?? 0, ldy: a.ldy ?? a.n, colOffset: a.colOffset ?? 0, alpha: a.alpha ?? 1 });
  const weightBytes = a.n * a.k * WEIGHT_ELEMENT_BYTES[a.format];
  if (a.rows === 1) {
    rec.dispatch(matmulPipeline(rec, 'gemv', variant), params, buffers, grid(Math.ceil(a.n / GEMV_OUTS)), weightBytes);
  } else {
    rec.dispatch(matmulPipeline(rec, 'gemm', variant), params, buffers, [Math.ceil(a.n / BN), Math.ceil(a.rows / BM)], weightBytes);
  }
}

export interface MatrixMatmulArgs {
  x: Binding;
  rows: number;
  w: GpuMatrix;
  /** Arithmetic (common.ts WeightMath; default 'f32'). */
  math?: WeightMath;
  bias: GPUBuffer | null;
  y: GPUBuffer;
  accumulate?: boolean;
  alpha?: number;
  outRowOffset?: number;
}

/** y (+)= x · Wᵀ + b for an uploaded matrix: one matmul per row chunk, each into its columns of y. */
export function matmulMatrix(rec: Recorder, a: MatrixMatmulArgs): void {
  const { w, ...rest } = a;
  for (const chunk of w.chunks) {
    matmul(rec, { ...rest, w: chunk.buffer, format: w.format, n: chunk.rows, k: w.cols, ldy: w.rows, colOffset: chunk.firstRow });
  }
}
