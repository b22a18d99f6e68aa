/**
 * Elementwise maps, in place. The MLP activation: gated (x ← act(x) · up, x being the gate: SwiGLU for
 * silu, GeGLU for the gelus) or plain (x ← act(x)), with act one of silu, gelu_new (tanh form) and exact
 * gelu (erf by A&S 7.1.26, as the CPU reference). And the head's logits map: z ← z · scale, then
 * cap · tanh(z / cap) when soft-capped (Granite's 1/logits_scaling, Gemma 2's final soft-cap).
 */
import type { ModelSpec } from '../../config.ts';
import type { Recorder } from '../recorder.ts';
import { grid, LINEAR_ID, MATH_WGSL, uniforms } from './common.ts';

const WG = 256;

export type ActivationKind = ModelSpec['activation'];

export interface ActivationVariant {
  act: ActivationKind;
  /** act(x) · up rather than act(x). */
  gated: boolean;
}

const ACTIVATION_PARAMS = uniforms({ n: 'u32' });

const ACTIVATION_WGSL = `${MATH_WGSL}
fn silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }
fn gelu_new(v: f32) -> f32 { return 0.5 * v * (1.0 + tanhExp(0.7978845608028654 * (v + 0.044715 * v * v * v))); }
fn gelu(v: f32) -> f32 { return 0.5 * v * (1.0 + erfAS(v * 0.7071067811865476)); }`;

function activationCode(v: ActivationVariant): string {
  return `
${ACTIVATION_PARAMS.wgsl}
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
${v.gated ? '@group(0) @binding(2) var<storage, read> up: array<f32>;' : ''}
${ACTIVATION_WGSL}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let i = (${LINEAR_ID}) * ${WG}u + lane;
  if (i >= p.n) { return; }
  x[i] = ${v.act}(x[i])${v.gated ? ' * up[i]' : ''};
}`;
}

export function activationPipeline(rec: Pick<Recorder, 'pipelines'>, v: ActivationVariant): GPUComputePipeline {
  return rec.pipelines.get(`activation-${v.act}${v.gated ? '-gated' : ''}`, () => activationCode(v));
}

/** Gated: x ← act(x) · up; plain (up null): x ← act(x). Over n elements. */
export function activation(rec: Recorder, act: ActivationKind, x: GPUBuffer, up: GPUBuffer | null, n: number): void {
  const v: ActivationVariant = { act, gated: up !== null };
  const buffers = up ? [x, up] : [x];
  rec.dispatch(activationPipeline(rec, v), ACTIVATION_PARAMS.pack({ n }), buffers, grid(Math.ceil(n / WG)));
}

/** cap 0 = no soft-cap. */
const LOGITS_PARAMS = uniforms({ n: 'u32', scale: 'f32', cap: 'f32' });

function logitsCode(): string {
  return `
${LOGITS_PARAMS.wgsl}
@group(0) @binding(1) var<storage, read_write> z: array<f32>;
${MATH_WGSL}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let i = (${LINEAR_ID}) * ${WG}u + lane;
  if (i >= p.n) { return; }
  let v = z[i] * p.scale;
  z[i] = select(v, p.cap * tanhExp(v / p.cap), p.cap > 0.0);
}`;
}

export function finalLogitsPipeline(rec: Pick<Recorder, 'pipelines'>): GPUComputePipeline {
  return rec.pipelines.get('final-logits', logitsCode);
}

/** z ← z · scale, then cap · tanh(z / cap) when cap is set, over n logits; records nothing for scale 1 without a cap. */
export function finalLogits(rec: Recorder, z: GPUBuffer, n: number, scale: number, cap: number | null): void {
  if (scale === 1 && cap === null) return;
  rec.dispatch(finalLogitsPipeline(rec), LOGITS_PARAMS.pack({ n, scale, cap: cap ?? 0 }), [z], grid(Math.ceil(n / WG)));
}
