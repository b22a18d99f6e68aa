/**
 * RMSNorm (x · rsqrt(mean(x²) + eps) · (offset + w); Gemma's offset is 1) and LayerNorm ((x − mean) /
 * sqrt(var + eps) · w + b) over rows of `width`, one workgroup per row. Row offsets on both sides: the
 * head normalises only its rows, and a k norm writes into the KV cache rows. The `accumulate` epilogue
 * adds the result into y instead (y += alpha · norm(x)): a post-norm's residual add (gemma, olmo2) with
 * the residual scale, in the same dispatch.
 */
import type { Binding, Recorder } from '../recorder.ts';
import { grid, LINEAR_ID, reductions, uniforms } from './common.ts';

const WG = 64;

const PARAMS = uniforms({ rows: 'u32', width: 'u32', inRowOffset: 'u32', outRowOffset: 'u32', eps: 'f32', offset: 'f32', alpha: 'f32' });

export interface NormVariant {
  kind: 'rms' | 'layer';
  /** y += alpha · norm(x) instead of y = norm(x). */
  accumulate: boolean;
}

function code(v: NormVariant): string {
  const store = v.accumulate ? 'y[yo + i] = y[yo + i] + p.alpha * n;' : 'y[yo + i] = n;';
  return `
${PARAMS.wgsl}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${v.kind === 'layer' ? '@group(0) @binding(4) var<storage, read> b: array<f32>;' : ''}
${reductions(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let row = ${LINEAR_ID};
  if (row >= p.rows) { return; }
  let xo = (p.inRowOffset + row) * p.width;
  let yo = (p.outRowOffset + row) * p.width;
  let count = f32(p.width);
${
  v.kind === 'rms'
    ? `  var ss = 0.0;
  for (var i = lane; i < p.width; i = i + WG) { let t = x[xo + i]; ss = fma(t, t, ss); }
  let scale = 1.0 / sqrt(reduceSum(ss, lane) / count + p.eps);
  for (var i = lane; i < p.width; i = i + WG) { let n = x[xo + i] * scale * (p.offset + w[i]); ${store} }`
    : `  var s = 0.0;
  for (var i = lane; i < p.width; i = i + WG) { s = s + x[xo + i]; }
  let mean = reduceSum(s, lane) / count;
  var vs = 0.0;
  for (var i = lane; i < p.width; i = i + WG) { let d = x[xo + i] - mean; vs = fma(d, d, vs); }
  let scale = 1.0 / sqrt(reduceSum(vs, lane) / count + p.eps);
  for (var i = lane; i < p.width; i = i + WG) { let n = (x[xo + i] - mean) * scale * w[i] + b[i]; ${store} }`
}
}`;
}

export function normPipeline(rec: Pick<Recorder, 'pipelines'>, v: NormVariant): GPUComputePipeline {
  return rec.pipelines.get(`norm-${v.kind}${v.accumulate ? '-acc' : ''}`, () => code(v));
}

export interface NormArgs {
  kind: 'rms' | 'layer';
  x: Binding;
  rows: number;
  width: number;
  w: GPUBuffer;
  /** LayerNorm's bias (required for 'layer'). */
  b: GPUBuffer | null;
  y: GPUBuffer;
  eps: number;
  /** RMSNorm's weight offset: 1 for Gemma's (1 + w), else 0 (LayerNorm ignores it). */
  offset?: number;
  inRowOffset?: number;
  outRowOffset?: number;
  /** y += alpha · norm(x) (post-norm residual add). */
  accumulate?: boolean;
  alpha?: number;
}

export function norm(rec: Recorder, a: NormArgs): void {
  const v: NormVariant = { kind: a.kind, accumulate: a.accumulate ?? false };
  const buffers: Binding[] = [a.x, a.w, a.y];
  if (a.kind === 'layer') {
    if (!a.b) throw new Error('LayerNorm needs its bias buffer');
    buffers.push(a.b);
  }
  const params = PARAMS.pack({
    rows: a.rows,
    width: a.width,
    inRowOffset: a.inRowOffset ?? 0,
    outRowOffset: a.outRowOffset ?? 0,
    eps: a.eps,
    offset: a.offset ?? 0,
    alpha: a.alpha ?? 1,
  });
  rec.dispatch(normPipeline(rec, v), params, buffers, grid(a.rows));
}
