/**
 * Elementwise MLP activations: SwiGLU (gate ← silu(gate) · up) and gelu_new in place (tanh form, tanh
 * written with exp so it does not depend on the platform's tanh).
 */
import type { Recorder } from '../recorder.ts';
import { grid, LINEAR_ID } from './common.ts';

const WG = 256;
export type Activation = 'swiglu' | 'gelu_new';

function code(kind: Activation): string {
  return `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
${kind === 'swiglu' ? '@group(0) @binding(2) var<storage, read> up: array<f32>;' : ''}
fn silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }
fn tanhExp(u: f32) -> f32 {
  let a = min(abs(u), 20.0);
  let t = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
  return select(t, -t, u < 0.0);
}
fn geluNew(v: f32) -> f32 { return 0.5 * v * (1.0 + tanhExp(0.7978845608028654 * (v + 0.044715 * v * v * v))); }
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let i = (${LINEAR_ID}) * ${WG}u + lane;
  if (i >= p.n) { return; }
  ${kind === 'swiglu' ? 'x[i] = silu(x[i]) * up[i];' : 'x[i] = geluNew(x[i]);'}
}`;
}

export function activationPipeline(rec: Pick<Recorder, 'pipelines'>, kind: Activation): GPUComputePipeline {
  return rec.pipelines.get(`activation-${kind}`, () => code(kind));
}

/** swiglu: x ← silu(x) · up; gelu_new: x ← gelu_new(x). Over n elements. */
export function activation(rec: Recorder, kind: Activation, x: GPUBuffer, up: GPUBuffer | null, n: number): void {
  const buffers = kind === 'swiglu' ? [x, up as GPUBuffer] : [x];
  rec.dispatch(activationPipeline(rec, kind), { u32: [n] }, buffers, grid(Math.ceil(n / WG)));
}
