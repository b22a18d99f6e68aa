/**
 * x_0[t] = embed[ids[t]] · scale (+ positions[firstPosition + t] for GPT-2's learned positions); the
 * scale is Gemma's √hidden or Granite's embedding_multiplier, else 1. An embedding
 * split into row chunks (tensors.ts) is gathered with one dispatch per chunk that holds a token of this
 * forward; each writes only the tokens whose row it holds.
 */
import type { Recorder } from '../recorder.ts';
import type { GpuMatrix } from '../tensors.ts';
import { uniforms, type WeightFormat, weightBinding } from './common.ts';

const WG = 64;

const PARAMS = uniforms({ hidden: 'u32', firstPosition: 'u32', firstRow: 'u32', chunkRows: 'u32', scale: 'f32' });

function code(format: WeightFormat, positions: boolean): string {
  return `
${PARAMS.wgsl}
@group(0) @binding(1) var<storage, read> ids: array<u32>;
${weightBinding(2, 'embed', format)}
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
${positions ? '@group(0) @binding(4) var<storage, read> positions: array<f32>;' : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let i = wid.x * ${WG}u + lane;
  let t = wid.y;
  let row = ids[t] - p.firstRow;
  if (i >= p.hidden || row >= p.chunkRows) { return; }
  var v = embedAt(row * p.hidden + i) * p.scale;
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
  embed: Pick<GpuMatrix, 'chunks' | 'format'>;
  /** The token ids on the CPU: chunks holding none of them record no dispatch (default: every chunk). */
  tokenIds?: ArrayLike<number>;
  positions: GPUBuffer | null;
  firstPosition: number;
  hidden: number;
  /** Multiplies the token embedding (default 1). */
  scale?: number;
  x: GPUBuffer;
}

export function embedTokens(rec: Recorder, a: EmbeddingArgs): void {
  const pipeline = embeddingPipeline(rec, a.embed.format, a.positions !== null);
  const { chunks } = a.embed;
  for (const chunk of chunks) {
    if (chunks.length > 1 && a.tokenIds && !Array.prototype.some.call(a.tokenIds, (id: number) => id >= chunk.firstRow && id < chunk.firstRow + chunk.rows)) continue;
    const buffers = [a.ids, chunk.buffer, a.x];
    if (a.positions) buffers.push(a.positions);
    rec.dispatch(pipeline, PARAMS.pack({ hidden: a.hidden, firstPosition: a.firstPosition, firstRow: chunk.firstRow, chunkRows: chunk.rows, scale: a.scale ?? 1 }), buffers, [
      Math.ceil(a.hidden / WG),
      a.rows,
    ]);
  }
}
