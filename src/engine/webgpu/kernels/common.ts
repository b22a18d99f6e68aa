/**
 * What every kernel file shares: the weight-format switch (f32, or f16 pairs packed in u32), workgroup
 * reductions, the 2-D grid for long 1-D dispatches, and the pipeline cache.
 */

/** How a big matrix is stored on the GPU: f32, or two f16 per u32 word unpacked in the shader. */
export type WeightFormat = 'f32' | 'f16';

/** A storage binding for weights plus `<name>At(i) -> f32`, the one place the format matters. */
export function weightBinding(binding: number, name: string, format: WeightFormat): string {
  if (format === 'f32') {
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<f32>;
fn ${name}At(i: u32) -> f32 { return ${name}[i]; }`;
  }
  return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<u32>;
fn ${name}At(i: u32) -> f32 { return unpack2x16float(${name}[i >> 1u])[i & 1u]; }`;
}

/** Workgroup tree reductions over WG lanes (WG a power of two); call from uniform control flow. */
export function reductions(wg: number): string {
  return `
const WG = ${wg}u;
var<workgroup> red: array<f32, ${wg}>;
var<workgroup> red4: array<vec4<f32>, ${wg}>;
fn reduceSum(v: f32, lane: u32) -> f32 {
  red[lane] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lane < s) { red[lane] = red[lane] + red[lane + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn reduceMax(v: f32, lane: u32) -> f32 {
  red[lane] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lane < s) { red[lane] = max(red[lane], red[lane + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn reduceSum4(v: vec4<f32>, lane: u32) -> vec4<f32> {
  red4[lane] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lane < s) { red4[lane] = red4[lane] + red4[lane + s]; }
    workgroupBarrier();
  }
  let r = red4[0];
  workgroupBarrier();
  return r;
}
`;
}

/** Workgroups per dimension above which a 1-D count is folded into x × y. */
const MAX_DIM = 65535;

/** A 1-D count of workgroups as a grid; the kernel's linear id is `wid.x + wid.y * nwg.x`. */
export function grid(count: number): [number, number] {
  if (count <= MAX_DIM) return [count, 1];
  return [MAX_DIM, Math.ceil(count / MAX_DIM)];
}

export const LINEAR_ID = 'wid.x + wid.y * nwg.x';

/** Compiles each WGSL variant once per device. */
export class PipelineCache {
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  constructor(readonly device: GPUDevice) {}

  get(key: string, code: () => string): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ label: key, code: code() });
      p = this.device.createComputePipeline({ label: key, layout: 'auto', compute: { module, entryPoint: 'main' } });
      this.pipelines.set(key, p);
    }
    return p;
  }

  get size(): number {
    return this.pipelines.size;
  }
}
