/**
 * In place on [rows, heads, headDim] (rows starting at `rowOffset` of the buffer, so k can be rotated
 * inside the KV cache): optional per-head RMSNorm (qwen3 q_norm / k_norm), then rotate_half RoPE. The
 * angles come from a cos/sin table computed on the CPU in float64 (no sin/cos in WGSL: SwiftShader's
 * are too coarse), laid out [position][i] as (cos, sin) pairs for i < headDim/2.
 */
import type { Recorder } from '../recorder.ts';
import { reductions } from './common.ts';

const WG = 64;

export interface RopeVariant {
  norm: boolean;
  rope: boolean;
}

function code(v: RopeVariant): string {
  return `
struct Params { heads: u32, headDim: u32, rowOffset: u32, firstPosition: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
${v.rope ? '@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;' : ''}
${v.norm ? `@group(0) @binding(${v.rope ? 3 : 2}) var<storage, read> w: array<f32>;` : ''}
${reductions(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let h = wid.x;
  let r = wid.y;
  let base = ((p.rowOffset + r) * p.heads + h) * p.headDim;
  let half = p.headDim / 2u;
  var scale = 1.0;
${
  v.norm
    ? `  var ss = 0.0;
  for (var i = lane; i < p.headDim; i = i + WG) { let t = x[base + i]; ss = fma(t, t, ss); }
  scale = 1.0 / sqrt(reduceSum(ss, lane) / f32(p.headDim) + p.eps);`
    : ''
}
  for (var i = lane; i < half; i = i + WG) {
    var a = x[base + i] * scale;
    var b = x[base + i + half] * scale;
${v.norm ? '    a = a * w[i];\n    b = b * w[i + half];' : ''}
${
  v.rope
    ? `    let cs = table[(p.firstPosition + r) * half + i];
    x[base + i] = a * cs.x - b * cs.y;
    x[base + i + half] = b * cs.x + a * cs.y;`
    : `    x[base + i] = a;
    x[base + i + half] = b;`
}
  }
}`;
}

export function ropePipeline(rec: Pick<Recorder, 'pipelines'>, v: RopeVariant): GPUComputePipeline {
  return rec.pipelines.get(`rope${v.norm ? '-norm' : ''}${v.rope ? '' : '-norope'}`, () => code(v));
}

/** float64 cos/sin of position · invFreq[i], rounded to f32, for positions [0, positions). */
export function ropeTable(invFreq: Float64Array, positions: number): Float32Array {
  const half = invFreq.length;
  const table = new Float32Array(positions * half * 2);
  for (let pos = 0; pos < positions; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = pos * invFreq[i];
      table[(pos * half + i) * 2] = Math.cos(angle);
      table[(pos * half + i) * 2 + 1] = Math.sin(angle);
    }
  }
  return table;
}

export interface RopeArgs {
  x: GPUBuffer;
  rows: number;
  heads: number;
  headDim: number;
  rowOffset: number;
  firstPosition: number;
  table: GPUBuffer | null;
  normWeight: GPUBuffer | null;
  eps: number;
}

/** Records the fused qk-norm + RoPE step; records nothing when the model has neither. */
export function rope(rec: Recorder, a: RopeArgs): void {
  const v: RopeVariant = { norm: a.normWeight !== null, rope: a.table !== null };
  if (!v.norm && !v.rope) return;
  const buffers: GPUBuffer[] = [a.x];
  if (a.table) buffers.push(a.table);
  if (a.normWeight) buffers.push(a.normWeight);
  rec.dispatch(ropePipeline(rec, v), { u32: [a.heads, a.headDim, a.rowOffset, a.firstPosition], f32: [a.eps] }, buffers, [a.heads, a.rows]);
}
