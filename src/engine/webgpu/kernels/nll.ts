/**
 * Per-token negative log-likelihood: nll[t] = log Σ_v exp(logits[t, v] − max_t) + max_t − logits[t, ids[t + 1]]
 * for t < rows − 1 (one workgroup per row); stats.ts's sumRows reduces them to one float. The logits may
 * be a group of rows starting at sequence row `rowOffset` (the head runs in row groups when all rows'
 * logits would not fit one binding); each row's whole vocabulary is in the buffer.
 */
import type { Recorder } from '../recorder.ts';
import { grid, LINEAR_ID, reductions, uniforms } from './common.ts';

const WG = 64;

const PARAMS = uniforms({ predicted: 'u32', vocab: 'u32', rowOffset: 'u32' });

function code(): string {
  return `
${PARAMS.wgsl}
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> nll: array<f32>;
${reductions(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let t = ${LINEAR_ID};
  if (t >= p.predicted) { return; }
  let o = t * p.vocab;
  var m = -3.0e38;
  for (var i = lane; i < p.vocab; i = i + WG) { m = max(m, logits[o + i]); }
  let mx = reduceMax(m, lane);
  var s = 0.0;
  for (var i = lane; i < p.vocab; i = i + WG) { s = s + exp(logits[o + i] - mx); }
  let total = reduceSum(s, lane);
  let at = p.rowOffset + t;
  if (lane == 0u) { nll[at] = log(total) + mx - logits[o + ids[at + 1u]]; }
}`;
}

export function nllPipeline(rec: Pick<Recorder, 'pipelines'>): GPUComputePipeline {
  return rec.pipelines.get('nll', code);
}

/**
 * nll[rowOffset + t] for t < predicted, from logits [≥ predicted, vocab] holding sequence rows
 * rowOffset.. and the sequence's ids.
 */
export function tokenNll(rec: Recorder, logits: GPUBuffer, ids: GPUBuffer, predicted: number, vocab: number, nll: GPUBuffer, rowOffset = 0): void {
  rec.dispatch(nllPipeline(rec), PARAMS.pack({ predicted, vocab, rowOffset }), [logits, ids, nll], grid(predicted));
}
