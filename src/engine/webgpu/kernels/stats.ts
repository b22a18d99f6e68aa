/**
 * Block statistics on the GPU. `tokenStats`: per token t, with a = x_in,t and b = x_out,t:
 * cos(a, b), arccos(cos)/π and ‖b − a‖/‖b‖ (one workgroup per token), written at column `offset` of a
 * row of `stride` floats, so a whole forward's blocks share one per-token table and one `sumRows` at the
 * end reduces it to three floats per block. With `advance` the kernel then overwrites x_in with x_out:
 * the next block's input is ready without a copy (each lane rewrites only the elements it read).
 * arccos is evaluated from 1 − cos = ‖â − b̂‖²/2 (no cancellation when cos ≈ 1, where residual streams
 * live) with Abramowitz–Stegun 4.4.46 (|error| ≤ 2e-8), not the platform's acos.
 */
import type { Binding, Recorder } from '../recorder.ts';
import { grid, LINEAR_ID, reductions, subgroupHeader, uniforms } from './common.ts';

const WG = 64;

const TOKEN_STATS_PARAMS = uniforms({ rows: 'u32', width: 'u32', stride: 'u32', offset: 'u32', advance: 'u32' });
const SUM_ROWS_PARAMS = uniforms({ rows: 'u32', cols: 'u32', dstOffset: 'u32' });

/** With subgroups, each reduction takes two workgroup barriers instead of log2(WG) + 2 (what this kernel mostly waits on). */
function tokenStatsCode(subgroups: boolean): string {
  const sg = subgroups ? ', sgSize, sgLane' : '';
  return `${subgroups ? subgroupHeader() : ''}
${TOKEN_STATS_PARAMS.wgsl}
@group(0) @binding(1) var<storage, read_write> xin: array<f32>;
@group(0) @binding(2) var<storage, read> xout: array<f32>;
@group(0) @binding(3) var<storage, read_write> perToken: array<f32>;
${reductions(WG, subgroups)}
const PI = 3.14159265358979;
/** acos(c) for c in [0, 1] given oneMinus = 1 − c computed without cancellation. */
fn acosFrom(c: f32, oneMinus: f32) -> f32 {
  let poly = 1.5707963050 + c * (-0.2145988016 + c * (0.0889789874 + c * (-0.0501743046 + c * (0.0308918810
    + c * (-0.0170881256 + c * (0.0066700901 + c * -0.0012624911))))));
  return sqrt(max(oneMinus, 0.0)) * poly;
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lane: u32${subgroups ? ', @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgLane: u32' : ''}) {
  let t = ${LINEAR_ID};
  if (t >= p.rows) { return; }
  let o = t * p.width;
  var s = vec4<f32>(0.0);
  for (var i = lane; i < p.width; i = i + WG) {
    let a = xin[o + i];
    let b = xout[o + i];
    s = s + vec4<f32>(a * b, a * a, b * b, (b - a) * (b - a));
  }
  let sums = reduceSum4(s, lane${sg});
  let na = sqrt(sums.y);
  let nb = sqrt(sums.z);
  var e = 0.0;
  for (var i = lane; i < p.width; i = i + WG) {
    let diff = xin[o + i] / na - xout[o + i] / nb;
    e = fma(diff, diff, e);
  }
  let unitDist = reduceSum(e, lane${sg});
  if (p.advance != 0u) {
    for (var i = lane; i < p.width; i = i + WG) { xin[o + i] = xout[o + i]; }
  }
  if (lane == 0u) {
    let cosine = clamp(sums.x / sqrt(sums.y * sums.z), -1.0, 1.0);
    let oneMinus = unitDist * 0.5;
    var angle: f32;
    if (cosine >= 0.0) { angle = acosFrom(cosine, oneMinus); }
    else { angle = PI - acosFrom(-cosine, 1.0 + cosine); }
    let at = t * p.stride + p.offset;
    perToken[at] = cosine;
    perToken[at + 1u] = angle / PI;
    perToken[at + 2u] = sqrt(sums.w) / nb;
  }
}`;
}

function sumRowsCode(): string {
  return `
${SUM_ROWS_PARAMS.wgsl}
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
${reductions(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let c = wid.x;
  var s = 0.0;
  for (var r = lane; r < p.rows; r = r + WG) { s = s + src[r * p.cols + c]; }
  let total = reduceSum(s, lane);
  if (lane == 0u) { dst[p.dstOffset + c] = total; }
}`;
}

export function tokenStatsPipeline(rec: Pick<Recorder, 'pipelines'>, subgroups = false): GPUComputePipeline {
  return rec.pipelines.get(subgroups ? 'token-stats-sg' : 'token-stats', () => tokenStatsCode(subgroups));
}

export function sumRowsPipeline(rec: Pick<Recorder, 'pipelines'>): GPUComputePipeline {
  return rec.pipelines.get('sum-rows', sumRowsCode);
}

/** Where tokenStats writes: row t's three floats at t · stride + offset; advance = then copy x_out into x_in; subgroups = the subgroup reductions. */
export interface TokenStatsLayout {
  stride: number;
  offset: number;
  advance: boolean;
  subgroups?: boolean;
}

/** perToken[t · stride + offset …] = (cos, angular, relMagnitude) of x_in,t vs x_out,t (default: rows × 3 floats). */
export function tokenStats(
  rec: Recorder,
  xin: GPUBuffer,
  xout: GPUBuffer,
  rows: number,
  width: number,
  perToken: GPUBuffer,
  layout: TokenStatsLayout = { stride: 3, offset: 0, advance: false },
): void {
  const { stride, offset, advance, subgroups = false } = layout;
  rec.dispatch(tokenStatsPipeline(rec, subgroups), TOKEN_STATS_PARAMS.pack({ rows, width, stride, offset, advance: advance ? 1 : 0 }), [xin, xout, perToken], grid(rows));
}

/** dst[dstOffset + c] = Σ_r src[r · cols + c] for c < cols. */
export function sumRows(rec: Recorder, src: Binding, rows: number, cols: number, dst: GPUBuffer, dstOffset: number): void {
  rec.dispatch(sumRowsPipeline(rec), SUM_ROWS_PARAMS.pack({ rows, cols, dstOffset }), [src, dst], [cols]);
}

/** Per-token statistics of one block summed into slot `slot` (3 floats) of `results`. */
export function blockStats(
  rec: Recorder,
  xin: GPUBuffer,
  xout: GPUBuffer,
  rows: number,
  width: number,
  perToken: GPUBuffer,
  results: GPUBuffer,
  slot: number,
  subgroups = false,
): void {
  tokenStats(rec, xin, xout, rows, width, perToken, { stride: 3, offset: 0, advance: false, subgroups });
  sumRows(rec, perToken, rows, 3, results, slot * 3);
}
