/**
 * Causal attention with GQA over a key/value buffer laid out [position, kvHeads, headDim] (the KV cache,
 * or this call's k/v). One workgroup per (query row, head); keys are visited in chunks of 64 with an
 * online softmax (running max and sum), so memory does not grow with the sequence. Query row r sits at
 * absolute position P = firstPosition + r and sees positions 0..P, or P − window < k ≤ P with a sliding
 * window; head h reads KV head h / (heads / kvHeads). Scores are q·k × scale (1/√head_dim, Gemma's
 * query_pre_attn_scalar, Granite's attention_multiplier), then cap · tanh(score / cap) when soft-capped
 * (Gemma 2), before the softmax.
 */
import type { Recorder } from '../recorder.ts';
import { MATH_WGSL, reductions, uniforms } from './common.ts';

const WG = 64;
/** Largest head_dim this kernel handles (4 output dims per lane). */
export const MAX_HEAD_DIM = 256;

/** window 0 = full causal; softcap 0 = none. */
const PARAMS = uniforms({ heads: 'u32', kvHeads: 'u32', headDim: 'u32', firstPosition: 'u32', window: 'u32', scale: 'f32', softcap: 'f32' });

/**
 * The online-softmax loop both attention kernels run (this one and decode.ts's fused one): the visible keys
 * first … visible − 1 in chunks of WG, one key per lane; running max m and sum l; acc[j] accumulates the
 * weighted values of the lane's dims (i = lane + j · WG). `dot` is WGSL that adds q · key(pos) into `dot`,
 * `value` WGSL that sets `val` = dim i of value row `at`; `reduce` the extra reduction arguments (subgroups).
 * Needs in scope: qs, weights, DIMS_PER_LANE, reduceMax/reduceSum, tanhExp, p.scale/p.softcap, first, visible, d.
 */
export function onlineSoftmaxWgsl(o: { dot: string; value: string; reduce: string }): string {
  return `  var m = -3.0e38;
  var l = 0.0;
  var acc: array<f32, DIMS_PER_LANE>;
  for (var c0 = first; c0 < visible; c0 = c0 + WG) {
    let pos = c0 + lane;
    var s = -3.0e38;
    if (pos < visible) {
      var dot = 0.0;
      ${o.dot}
      s = dot * p.scale;
      if (p.softcap > 0.0) { s = p.softcap * tanhExp(s / p.softcap); }
    }
    let mNew = max(m, reduceMax(s, lane${o.reduce}));
    var e = 0.0;
    if (pos < visible) { e = exp(s - mNew); }
    weights[lane] = e;
    let chunkSum = reduceSum(e, lane${o.reduce});
    let correction = exp(m - mNew);
    l = l * correction + chunkSum;
    m = mNew;
    let count = min(WG, visible - c0);
    for (var j = 0u; j < DIMS_PER_LANE; j = j + 1u) {
      let i = lane + j * WG;
      if (i < d) {
        var a = acc[j] * correction;
        for (var t = 0u; t < count; t = t + 1u) {
          let at = c0 + t;
          ${o.value}
          a = fma(weights[t], val, a);
        }
        acc[j] = a;
      }
    }
    workgroupBarrier();
  }`;
}

function code(): string {
  return `
${PARAMS.wgsl}
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> keys: array<f32>;
@group(0) @binding(3) var<storage, read> values: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
${reductions(WG)}
${MATH_WGSL}
var<workgroup> qs: array<f32, ${MAX_HEAD_DIM}>;
var<workgroup> weights: array<f32, ${WG}>;
const DIMS_PER_LANE = ${MAX_HEAD_DIM / WG}u;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let h = wid.x;
  let r = wid.y;
  let d = p.headDim;
  let kvh = h / (p.heads / p.kvHeads);
  let kvStride = p.kvHeads * d;
  let qo = (r * p.heads + h) * d;
  for (var i = lane; i < d; i = i + WG) { qs[i] = q[qo + i]; }
  workgroupBarrier();
  let visible = p.firstPosition + r + 1u;
  var first = 0u;
  if (p.window > 0u && visible > p.window) { first = visible - p.window; }
${onlineSoftmaxWgsl({
  dot: `let ko = pos * kvStride + kvh * d;
      for (var i = 0u; i < d; i = i + 1u) { dot = fma(qs[i], keys[ko + i], dot); }`,
  value: 'let val = values[at * kvStride + kvh * d + i];',
  reduce: '',
})}
  for (var j = 0u; j < DIMS_PER_LANE; j = j + 1u) {
    let i = lane + j * WG;
    if (i < d) { out[qo + i] = acc[j] / l; }
  }
}`;
}

export function attentionPipeline(rec: Pick<Recorder, 'pipelines'>): GPUComputePipeline {
  return rec.pipelines.get('attention', code);
}

export interface AttentionArgs {
  q: GPUBuffer;
  rows: number;
  keys: GPUBuffer;
  values: GPUBuffer;
  firstPosition: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Score scale (1/√head_dim unless the family says otherwise). */
  scale: number;
  /** cap · tanh(score / cap), or null. */
  softcap: number | null;
  /** Keys visible to query position P: P − window < k ≤ P; null = all earlier keys. */
  window: number | null;
  out: GPUBuffer;
}

export function causalAttention(rec: Recorder, a: AttentionArgs): void {
  const params = PARAMS.pack({
    heads: a.heads,
    kvHeads: a.kvHeads,
    headDim: a.headDim,
    firstPosition: a.firstPosition,
    window: a.window ?? 0,
    scale: a.scale,
    softcap: a.softcap ?? 0,
  });
  rec.dispatch(attentionPipeline(rec), params, [a.q, a.keys, a.values, a.out], [a.heads, a.rows]);
}
