/**
 * RMSNorm (x · rsqrt(mean(x²) + eps) · w) and LayerNorm ((x − mean) / sqrt(var + eps) · w + b) over rows
 * of `width`, one workgroup per row. `inRowOffset` lets the head normalise only the last row.
 */
import type { Binding, Recorder } from '../recorder.ts';
import { grid, LINEAR_ID, reductions } from './common.ts';

const WG = 64;

function code(kind: 'rms' | 'layer'): string {
  return `
struct Params { rows: u32, width: u32, inRowOffset: u32, pad: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${kind === 'layer' ? '@group(0) @binding(4) var<storage, read> b: array<f32>;' : ''}
${reductions(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let row = ${LINEAR_ID};
  if (row >= p.rows) { return; }
  let xo = (p.inRowOffset + row) * p.width;
  let yo = row * p.width;
  let n = f32(p.width);
${
  kind === 'rms'
    ? `  var ss = 0.0;
  for (var i = lane; i < p.width; i = i + WG) { let v = x[xo + i]; ss = fma(v, v, ss); }
  let scale = 1.0 / sqrt(reduceSum(ss, lane) / n + p.eps);
  for (var i = lane; i < p.width; i = i + WG) { y[yo + i] = x[xo + i] * scale * w[i]; }`
    : `  var s = 0.0;
  for (var i = lane; i < p.width; i = i + WG) { s = s + x[xo + i]; }
  let mean = reduceSum(s, lane) / n;
  var vs = 0.0;
  for (var i = lane; i < p.width; i = i + WG) { let d = x[xo + i] - mean; vs = fma(d, d, vs); }
  let scale = 1.0 / sqrt(reduceSum(vs, lane) / n + p.eps);
  for (var i = lane; i < p.width; i = i + WG) { y[yo + i] = (x[xo + i] - mean) * scale * w[i] + b[i]; }`
}
}`;
}

export function normPipeline(rec: Pick<Recorder, 'pipelines'>, kind: 'rms' | 'layer'): GPUComputePipeline {
  return rec.pipelines.get(`norm-${kind}`, () => code(kind));
}

export interface NormArgs {
  kind: 'rms' | 'layer';
  x: Binding;
  rows: number;
  width: number;
  w: GPUBuffer;
  b: GPUBuffer | null;
  y: GPUBuffer;
  eps: number;
  inRowOffset?: number;
}

export function norm(rec: Recorder, a: NormArgs): void {
  const buffers: Binding[] = [a.x, a.w, a.y];
  if (a.kind === 'layer') buffers.push(a.b as GPUBuffer);
  rec.dispatch(normPipeline(rec, a.kind), { u32: [a.rows, a.width, a.inRowOffset ?? 0, 0], f32: [a.eps] }, buffers, grid(a.rows));
}
