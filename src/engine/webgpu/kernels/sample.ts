/**
 * Temperature + top-k + top-p sampling of one logits row on the GPU, so a sampled decode step reads back
 * one u32 token id, not a vocabulary row. The rule is sampling.ts sampleToken's, in f32 (the uniform u is
 * drawn on the CPU from the same seeded RNG and passed in, so the random stream is the CPU sampler's):
 * order by logit desc (ties: lower id first), keep the first topK, softmax with the temperature, keep the
 * shortest prefix whose probability reaches topP (at least one), renormalise, and walk the cumulative sum
 * to u. One workgroup, without sorting the vocabulary:
 *   1. M = max (reduction);
 *   2. top-k: the key of the k-th largest logit by a radix descent (8 passes of 4-bit digits, each a
 *      16-bin count histogram per lane, summed across lanes) over an order-preserving u32 key of the f32;
 *   3. top-p with no top-k (or one above CAP): Z = Σ exp((x − M)/T) over the row (or the top-k set, ties at its
 *      last key counted k − #above times), then the same descent over probability mass finds the largest key
 *      t with mass(key ≥ t) ≥ topP · Z, aimed a little high (1 + MASS_SLACK) so f32 rounding gathers a superset
 *      of the prefix, never a subset;
 *   4. gather every logit with key ≥ the threshold into workgroup memory (at most CAP), bitonic-sort them by
 *      (logit desc, id asc), cut to topK, then one lane walks the sorted list: the topP cut against Z (with a
 *      top-k ≤ CAP, Z summed over the sorted set, as sampleToken does), the renormalised sum, and the first
 *      token whose cumulative weight reaches u · sum.
 * When the candidate set exceeds CAP (e.g. top-p near 1 and no top-k over a flat row), or the f32 sum of
 * the whole set falls short of topP · Z, the kernel writes NO_PICK and the backend reads the row back and
 * runs sampleToken itself (counted: ForwardResult.pickedOnHost). With `subgroups` the reductions use
 * subgroup operations (common.ts reductions).
 */
import type { Binding, Recorder } from '../recorder.ts';
import { reductions, subgroupHeader, uniforms } from './common.ts';

const WG = 256;
/** Candidates the kernel sorts in workgroup memory (8 bytes each; a power of two for the bitonic sort). */
export const SAMPLE_CAP = 1024;
/** Written instead of a token id when the candidate set is beyond the kernel: the caller samples on the host. */
export const NO_PICK = 0xffffffff;
/** Relative headroom on the top-p mass target of the threshold search (f32 sums over a row differ from float64 by far less). */
const MASS_SLACK = 1e-4;

/** topK 0 = no cut; topP ≥ 1 = no cut. */
const PARAMS = uniforms({ n: 'u32', topK: 'u32', topP: 'f32', temperature: 'f32', u: 'f32', outIndex: 'u32' });

function code(subgroups: boolean): string {
  const sg = subgroups ? ', sgSize, sgLane' : '';
  const sgParams = subgroups ? ', sgSize: u32, sgLane: u32' : '';
  return `${subgroups ? subgroupHeader() : ''}
${PARAMS.wgsl}
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
${reductions(WG, subgroups)}
const CAP = ${SAMPLE_CAP}u;
const NO_PICK = ${NO_PICK}u;
var<workgroup> candV: array<f32, ${SAMPLE_CAP}>;
var<workgroup> candI: array<u32, ${SAMPLE_CAP}>;
var<workgroup> slots: atomic<u32>;
var<workgroup> gathered: u32;

/** An order-preserving u32 of a finite f32 (−0 and +0 are the same logit, as in sampleToken's comparison). */
fn keyOf(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if (x == 0.0) { return 0x80000000u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn valueOf(k: u32) -> f32 {
  return select(bitcast<f32>(~k), bitcast<f32>(k & 0x7fffffffu), (k & 0x80000000u) != 0u);
}
/** The unnormalised softmax weight, as sampleToken's exp((x − max) / temperature). */
fn weight(x: f32, m: f32) -> f32 { return exp((x - m) / p.temperature); }

/**
 * The largest key t with F(key ≥ t) ≥ goal, F = count or Σ weight over the logits with key ≥ floorKey:
 * one 16-bin histogram pass per 4-bit digit, most significant first. A digit no bin reaches falls to 0
 * (the threshold only moves down: a superset). Call from uniform control flow.
 */
fn descend(goal: f32, mass: bool, floorKey: u32, m: f32, lane: u32${sgParams}) -> u32 {
  var prefix = 0u;
  var above = 0.0;
  for (var r = 0u; r < 8u; r = r + 1u) {
    let shift = 28u - 4u * r;
    // zeroed explicitly each round (a bare declaration in a loop body kept the last round's bins on SwiftShader)
    var bins = array<f32, 16>();
    for (var i = lane; i < p.n; i = i + WG) {
      let x = logits[i];
      let key = keyOf(x);
      if (key >= floorKey && ((key >> shift) >> 4u) == prefix) {
        let d = (key >> shift) & 15u;
        if (mass) { bins[d] = bins[d] + weight(x, m); } else { bins[d] = bins[d] + 1.0; }
      }
    }
    var all: array<vec4<f32>, 4>;
    for (var q = 0u; q < 4u; q = q + 1u) {
      all[q] = reduceSum4(vec4<f32>(bins[4u * q], bins[4u * q + 1u], bins[4u * q + 2u], bins[4u * q + 3u]), lane${sg});
    }
    var digit = 0u;
    for (var d = 15u; d > 0u; d = d - 1u) {
      let b = all[d / 4u][d % 4u];
      if (above + b >= goal) { digit = d; break; }
      above = above + b;
    }
    prefix = (prefix << 4u) | digit;
  }
  return prefix;
}

/** (va, ia) sorts before (vb, ib): larger logit, or the same logit at a lower id; padding (id NO_PICK) last. */
fn before(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
  if (ia == NO_PICK) { return false; }
  if (ib == NO_PICK) { return true; }
  return va > vb || (va == vb && ia < ib);
}

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lane: u32${subgroups ? ', @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgLane: u32' : ''}) {
  let n = p.n;
  var mx = -3.4028234663852886e38;
  for (var i = lane; i < n; i = i + WG) { mx = max(mx, logits[i]); }
  let m = reduceMax(mx, lane${sg});

  // top-k: every key ≥ kKey is in the set, ties at kKey up to topK in all
  let topK = select(0u, p.topK, p.topK < n);
  var kKey = 0u;
  if (topK > 0u) { kKey = descend(f32(topK), false, 0u, m, lane${sg}); }

  // top-p without a top-k set that fits: Z over the top-k set (or the row), then the mass threshold. With
  // topK ≤ CAP the whole top-k set is gathered and the walk below makes the top-p cut in it.
  var z = 0.0;
  var threshold = kKey;
  let massSearch = p.topP < 1.0 && (topK == 0u || topK > CAP);
  if (massSearch) {
    var s = 0.0;
    var c = 0.0;
    for (var i = lane; i < n; i = i + WG) {
      let x = logits[i];
      let key = keyOf(x);
      if (topK == 0u || key > kKey) { s = s + weight(x, m); c = c + 1.0; }
    }
    z = reduceSum(s, lane${sg});
    if (topK > 0u) { z = z + (f32(topK) - reduceSum(c, lane${sg})) * weight(valueOf(kKey), m); }
    threshold = max(kKey, descend(p.topP * z * (1.0 + ${MASS_SLACK}), true, kKey, m, lane${sg}));
  }

  // gather the candidates (any order), then sort them
  if (lane == 0u) { atomicStore(&slots, 0u); }
  workgroupBarrier();
  for (var i = lane; i < n; i = i + WG) {
    let x = logits[i];
    if (keyOf(x) >= threshold) {
      let at = atomicAdd(&slots, 1u);
      if (at < CAP) { candV[at] = x; candI[at] = i; }
    }
  }
  workgroupBarrier();
  if (lane == 0u) { gathered = atomicLoad(&slots); }
  let count = workgroupUniformLoad(&gathered);
  if (count > CAP) {
    if (lane == 0u) { out[p.outIndex] = NO_PICK; }
    return;
  }
  var size = 1u;
  while (size < count) { size = size << 1u; }
  for (var t = count + lane; t < size; t = t + WG) { candV[t] = 0.0; candI[t] = NO_PICK; }
  workgroupBarrier();
  for (var k = 2u; k <= size; k = k << 1u) {
    for (var j = k >> 1u; j > 0u; j = j >> 1u) {
      for (var t = lane; t < size; t = t + WG) {
        let l = t ^ j;
        if (l > t) {
          let forward = (t & k) == 0u;
          let swap = select(before(candV[t], candI[t], candV[l], candI[l]), before(candV[l], candI[l], candV[t], candI[t]), forward);
          if (swap) {
            let v = candV[t];
            let id = candI[t];
            candV[t] = candV[l];
            candI[t] = candI[l];
            candV[l] = v;
            candI[l] = id;
          }
        }
      }
      workgroupBarrier();
    }
  }

  if (lane != 0u) { return; }
  let kept = select(count, min(count, topK), topK > 0u);
  var keep = kept;
  if (p.topP < 1.0) {
    var reach = p.topP * z;
    if (!massSearch) {
      // Z of the gathered top-k set, summed in its sorted order as sampleToken sums it
      var s = 0.0;
      for (var i = 0u; i < kept; i = i + 1u) { s = s + weight(candV[i], m); }
      reach = p.topP * s;
    }
    var cum = 0.0;
    keep = 0u;
    while (keep < kept && cum < reach) {
      cum = cum + weight(candV[keep], m);
      keep = keep + 1u;
    }
    // the whole set's f32 sum short of topP · Z (a mass search's Z summed in another order): float64 decides, on the host
    if (cum < reach) {
      out[p.outIndex] = NO_PICK;
      return;
    }
    keep = max(keep, 1u);
  }
  var total = 0.0;
  for (var i = 0u; i < keep; i = i + 1u) { total = total + weight(candV[i], m); }
  let goal = p.u * total;
  var acc = 0.0;
  var picked = candI[keep - 1u];
  for (var i = 0u; i < keep; i = i + 1u) {
    acc = acc + weight(candV[i], m);
    if (acc >= goal) {
      picked = candI[i];
      break;
    }
  }
  out[p.outIndex] = picked;
}`;
}

export function samplePipeline(rec: Pick<Recorder, 'pipelines'>, subgroups: boolean): GPUComputePipeline {
  return rec.pipelines.get(`sample${subgroups ? '-sg' : ''}`, () => code(subgroups));
}

/** The sampling rule of one request (sampling.ts TokenSample): temperature > 0, topK 0 = none, topP 1 = none, u in [0, 1). */
export interface SampleArgs {
  logits: Binding;
  /** Logits in the row (the vocabulary). */
  n: number;
  temperature: number;
  topK: number;
  topP: number;
  u: number;
  out: GPUBuffer;
  outIndex: number;
  subgroups: boolean;
}

/**
 * Whether the kernel can pick for this rule at all: a candidate set known in advance to exceed SAMPLE_CAP
 * (no top-p cut, and no top-k or one larger than the cap) would only come back NO_PICK, so the caller
 * reads the row back in the same submit instead.
 */
export function sampleFitsKernel(n: number, topK: number, topP: number): boolean {
  if (topP < 1) return true;
  const k = topK > 0 && topK < n ? topK : n;
  return k <= SAMPLE_CAP;
}

/** out[outIndex] = the sampled token id (u32), or NO_PICK when the candidates exceed the kernel. One workgroup. */
export function sampleIndex(rec: Recorder, a: SampleArgs): void {
  const params = PARAMS.pack({ n: a.n, topK: a.topK, topP: a.topP, temperature: a.temperature, u: a.u, outIndex: a.outIndex });
  rec.dispatch(samplePipeline(rec, a.subgroups), params, [a.logits, a.out], [1]);
}
