/** x_0[t] = embed[ids[t]] (+ positions[firstPosition + t] for GPT-2's learned positions). */
import type { Recorder } from '../recorder.ts';
import { type WeightFormat, weightBinding } from './common.ts';

const WG = 64;

function code(format: WeightFormat, positions: boolean): string {
  return `
struct Params { hidden: u32, firstPosition: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
${weightBinding(2, 'embed', format)}
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
${positions ? '@group(0) @binding(4) var<storage, read> positions: array<f32>;' : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let i = wid.x * ${WG}u + lane;
  let t = wid.y;
  if (i >= p.hidden) { return; }
  var v = embedAt(ids[t] * p.hidden + i);
  ${positions ? 'v = v + positions[(p.firstPosition + t) * p.hidden + i];' : ''}
  x[t * p.hidden + i] = v;
}`;
}

export function embeddingPipeline(rec: Pick<Recorder, 'pipelines'>, format: WeightFormat, positions: boolean): GPUComputePipeline {
  return rec.pipelines.get(`embedding-${format}${positions ? '-positions' : ''}`, () => code(format, positions));
}

export interface EmbeddingArgs {
  ids: GPUBuffer;
  rows: number;
  embed: GPUBuffer;
  format: WeightFormat;
  positions: GPUBuffer | null;
  firstPosition: number;
  hidden: number;
  x: GPUBuffer;
}

export function embedTokens(rec: Recorder, a: EmbeddingArgs): void {
  const buffers = [a.ids, a.embed, a.x];
  if (a.positions) buffers.push(a.positions);
  rec.dispatch(embeddingPipeline(rec, a.format, a.positions !== null), { u32: [a.hidden, a.firstPosition] }, buffers, [Math.ceil(a.hidden / WG), a.rows]);
}
