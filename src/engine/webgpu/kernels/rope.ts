/**
 * In place on [rows, heads, headDim] (rows starting at `rowOffset` of the buffer, so k can be rotated
 * inside the KV cache): optional per-head RMSNorm (qwen3 / gemma3 q_norm and k_norm, with the family's
 * weight offset), then rotate_half RoPE over the first rotaryDim dims of each head (the pair
 * (i, i + rotaryDim/2)); the remaining dims pass through (partial rotary, GPT-NeoX / Phi-3). The angles
 * come from a cos/sin table computed on the CPU in float64 (no sin/cos in WGSL: SwiftShader's are too
 * coarse), laid out [position][i] as (cos, sin) pairs for i < rotaryDim/2, already multiplied by the
 * rope's attention factor. One table per distinct RopeSpec (config.ts distinctRopes).
 */
import type { Recorder } from '../recorder.ts';
import { reductions, uniforms } from './common.ts';

const WG = 64;

const PARAMS = uniforms({ heads: 'u32', headDim: 'u32', rotaryHalf: 'u32', rowOffset: 'u32', firstPosition: 'u32', eps: 'f32', offset: 'f32' });

export interface RopeVariant {
  norm: boolean;
  rope: boolean;
}

function code(v: RopeVariant): string {
  const weight = (i: string) => (v.norm ? ` * (p.offset + w[${i}])` : '');
  return `
${PARAMS.wgsl}
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
${v.rope ? '@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;' : ''}
${v.norm ? `@group(0) @binding(${v.rope ? 3 : 2}) var<storage, read> w: array<f32>;` : ''}
${reductions(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let h = wid.x;
  let r = wid.y;
  let base = ((p.rowOffset + r) * p.heads + h) * p.headDim;
  var scale = 1.0;
${
  v.norm
    ? `  var ss = 0.0;
  for (var i = lane; i < p.headDim; i = i + WG) { let t = x[base + i]; ss = fma(t, t, ss); }
  scale = 1.0 / sqrt(reduceSum(ss, lane) / f32(p.headDim) + p.eps);`
    : ''
}
${
  v.rope
    ? `  let half = p.rotaryHalf;
  for (var i = lane; i < half; i = i + WG) {
    let a = x[base + i] * scale${weight('i')};
    let b = x[base + i + half] * scale${weight('i + half')};
    let cs = table[(p.firstPosition + r) * half + i];
    x[base + i] = a * cs.x - b * cs.y;
    x[base + i + half] = b * cs.x + a * cs.y;
  }
  let passFrom = 2u * half;`
    : '  let passFrom = 0u;'
}
${v.norm ? `  for (var i = passFrom + lane; i < p.headDim; i = i + WG) { x[base + i] = x[base + i] * scale${weight('i')}; }` : ''}
}`;
}

export function ropePipeline(rec: Pick<Recorder, 'pipelines'>, v: RopeVariant): GPUComputePipeline {
  return rec.pipelines.get(`rope${v.norm ? '-norm' : ''}${v.rope ? '' : '-norope'}`, () => code(v));
}

/** float64 cos/sin of position · invFreq[i], times attentionFactor, rounded to f32, for positions [0, positions). */
export function ropeTable(invFreq: Float64Array, attentionFactor: number, positions: number): Float32Array {
  const half = invFreq.length;
  const table = new Float32Array(positions * half * 2);
  for (let pos = 0; pos < positions; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = pos * invFreq[i];
      table[(pos * half + i) * 2] = Math.cos(angle) * attentionFactor;
      table[(pos * half + i) * 2 + 1] = Math.sin(angle) * attentionFactor;
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
  /** The layer's cos/sin table (ropeTable), or null for a layer without RoPE. */
  table: GPUBuffer | null;
  /** Dims rotated per head (≤ headDim, even); ignored without a table. */
  rotaryDim: number;
  /** Per-head RMSNorm weight [headDim], or null. */
  normWeight: GPUBuffer | null;
  eps: number;
  /** RMSNorm weight offset (Gemma's 1 + w). */
  offset?: number;
}

/** Records the fused per-head qk-norm + RoPE step; records nothing when the layer has neither. */
export function rope(rec: Recorder, a: RopeArgs): void {
  const v: RopeVariant = { norm: a.normWeight !== null, rope: a.table !== null };
  if (!v.norm && !v.rope) return;
  const buffers: GPUBuffer[] = [a.x];
  if (a.table) buffers.push(a.table);
  if (a.normWeight) buffers.push(a.normWeight);
  const params = PARAMS.pack({
    heads: a.heads,
    headDim: a.headDim,
    rotaryHalf: a.table ? a.rotaryDim / 2 : 0,
    rowOffset: a.rowOffset,
    firstPosition: a.firstPosition,
    eps: a.eps,
    offset: a.offset ?? 0,
  });
  rec.dispatch(ropePipeline(rec, v), params, buffers, [a.heads, a.rows]);
}
