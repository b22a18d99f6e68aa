/**
 * What every kernel file shares: the uniform-block description (one declaration per kernel yields both
 * its WGSL struct and its packer), the weight-format switch (f32, or f16 pairs packed in u32), WGSL
 * math helpers written without the platform's tanh / erf, workgroup reductions, the 2-D grid for long
 * 1-D dispatches, and the pipeline cache.
 */

/** A uniform member: every field is one 4-byte scalar, so the WGSL layout is the declaration order. */
export type UniformType = 'u32' | 'f32';

/**
 * A kernel's uniform block, described once: `wgsl` declares `struct Params` bound as `p` at binding 0,
 * and `pack` writes the same fields in the same order (what the Recorder uploads for a dispatch).
 */
export class UniformLayout<F extends Record<string, UniformType>> {
  readonly wgsl: string;
  private readonly names: (keyof F & string)[];
  constructor(private readonly fields: F) {
    this.names = Object.keys(fields) as (keyof F & string)[];
    this.wgsl = `struct Params { ${this.names.map((n) => `${n}: ${fields[n]}`).join(', ')} }
@group(0) @binding(0) var<uniform> p: Params;`;
  }

  /** The block's bytes (4 per field, declaration order). A u32 that is not a 32-bit unsigned integer is a bug: thrown. */
  pack(values: { [K in keyof F]: number }): Uint8Array {
    const bytes = new Uint8Array(this.names.length * 4);
    const view = new DataView(bytes.buffer);
    this.names.forEach((name, i) => {
      const v = values[name];
      if (this.fields[name] === 'f32') view.setFloat32(i * 4, v, true);
      else {
        if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`uniform ${name} must be a u32, got ${v}`);
        view.setUint32(i * 4, v, true);
      }
    });
    return bytes;
  }
}

export function uniforms<F extends Record<string, UniformType>>(fields: F): UniformLayout<F> {
  return new UniformLayout(fields);
}

/**
 * tanh without the platform's tanh: below |u| = 1 the rational approximation Eigen uses for float
 * (relative error a few ulp, where 1 − 2/(e^2u + 1) would cancel), above it the exp form. And erf by
 * Abramowitz & Stegun 7.1.26, the same formula as the CPU reference's ops.erf (|error| < 1.5e-7).
 */
export const MATH_WGSL = `
fn tanhExp(u: f32) -> f32 {
  if (abs(u) < 1.0) {
    let u2 = u * u;
    let p = u * ((((((-2.76076847742355e-16 * u2 + 2.00018790482477e-13) * u2 - 8.60467152213735e-11) * u2 + 5.12229709037114e-08) * u2
      + 1.48572235717979e-05) * u2 + 6.37261928875436e-04) * u2 + 4.89352455891786e-03);
    let q = ((1.19825839466702e-06 * u2 + 1.18534705686654e-04) * u2 + 2.26843463243900e-03) * u2 + 4.89352518554385e-03;
    return p / q;
  }
  let a = min(abs(u), 20.0);
  let t = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
  return select(t, -t, u < 0.0);
}
fn erfAS(x: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.3275911 * abs(x));
  let y = 1.0 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);
  return select(-y, y, x >= 0.0);
}`;

/** How a big matrix is stored on the GPU: f32, or two f16 / two bf16 per u32 word unpacked in the shader (as stored, half the memory of f32). */
export type WeightFormat = 'f32' | 'f16' | 'bf16';

/** Bytes per weight element on the GPU. */
export const WEIGHT_ELEMENT_BYTES: Record<WeightFormat, number> = { f32: 4, f16: 2, bf16: 2 };

/**
 * The arithmetic of a weight matrix's inner products. 'f32' (the default, every format): the weight is
 * unpacked to f32 exactly and multiplied in f32 (fma). 'f16' (backend option f16Math, CLI --gpu-f16; adapter
 * feature shader-f16; F16-stored matrices with an even number of columns only): the activation is rounded
 * to f16, multiplied by the f16 weight in f16, and each product is converted to f32 and added in f32 (no
 * f16 partial sums: no f16 overflow or cancellation beyond one product). Per term, with u the error of one
 * rounding to f16 (2⁻¹¹ to nearest; WGSL fixes no rounding mode, so either neighbour: u = 2⁻¹⁰) and η its
 * absolute error below 2⁻¹⁴ (2⁻²⁴ with subnormals; 2⁻¹⁴ where an adapter flushes them to zero):
 *   |f32(f16(f16(x)·w)) − x·w| ≤ (2u + u²)·|x·w| + η·(1 + 2|w|)
 * and a dot product of k terms is within the sum of those of exact plus the f32 sum's own error
 * (≤ k·2⁻²⁴·Σ|terms|). |x| or |f16(x)·w| beyond f16's range (65504) becomes ±inf or ±65504: this path's limit.
 * tests/unit/f16-math.test.ts checks the bound on the embedded model's matrices.
 */
export type WeightMath = 'f32' | 'f16';

/**
 * A storage binding for weights plus `<name>At(i) -> f32`, the one place the format matters. With math
 * 'f16' (format f16 only) the words are bound as vec2<f16> (the same bytes) and two more accessors exist:
 * `<name>Half(i) -> f16` and `<name>Quad(i) -> vec4<f16>` (elements i … i + 3, i even); the module then
 * needs `enable f16;` (f16Header).
 */
export function weightBinding(binding: number, name: string, format: WeightFormat, math: WeightMath = 'f32'): string {
  if (math === 'f16') {
    if (format !== 'f16') throw new Error(`f16 arithmetic is for f16-stored weights, not ${format} (${name})`);
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<vec2<f16>>;
fn ${name}At(i: u32) -> f32 { return f32(${name}[i >> 1u][i & 1u]); }
fn ${name}Half(i: u32) -> f16 { return ${name}[i >> 1u][i & 1u]; }
fn ${name}Quad(i: u32) -> vec4<f16> { let j = i >> 1u; return vec4<f16>(${name}[j], ${name}[j + 1u]); }`;
  }
  if (format === 'f32') {
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<f32>;
fn ${name}At(i: u32) -> f32 { return ${name}[i]; }`;
  }
  if (format === 'bf16') {
    // bf16 is the top half of an f32: shift the element into place (exact).
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<u32>;
fn ${name}At(i: u32) -> f32 { let word = ${name}[i >> 1u]; return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u)); }`;
  }
  return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<u32>;
fn ${name}At(i: u32) -> f32 { return unpack2x16float(${name}[i >> 1u])[i & 1u]; }`;
}

/** The WGSL preamble of a kernel using f16 arithmetic (adapter feature `shader-f16`). */
export function f16Header(): string {
  return 'enable f16;';
}

/**
 * One lane's share of a GEMV row's inner product, added into the f32 `acc`: Σ x(i)·W[rowStart + i] over
 * i < k, i ≡ lane (mod lanes) for math 'f32' (fma, element by element), or over the lane's runs of four
 * (i = 4q, q ≡ lane mod lanes; the last k mod 4 elements by element) for math 'f16': four f16 products per
 * step, each converted to f32 (WeightMath's bound). `x(i)` is the f32 activation at WGSL index expression i;
 * `k`, `rowStart` are u32 expressions (rowStart even for 'f16').
 */
export function weightDot(a: { w: string; math?: WeightMath; x: (i: string) => string; rowStart: string; k: string; lane: string; lanes: string; acc: string }): string {
  const { w, x, rowStart, k, lane, lanes, acc } = a;
  if (a.math !== 'f16') return `for (var i = ${lane}; i < ${k}; i = i + ${lanes}) { ${acc} = fma(${x('i')}, ${w}At(${rowStart} + i), ${acc}); }`;
  return `{
    var acc4 = vec4<f32>(0.0);
    for (var q = ${lane}; q < ${k} / 4u; q = q + ${lanes}) {
      let i = 4u * q;
      let xv = vec4<f16>(vec4<f32>(${x('i')}, ${x('i + 1u')}, ${x('i + 2u')}, ${x('i + 3u')}));
      acc4 = acc4 + vec4<f32>(xv * ${w}Quad(${rowStart} + i));
    }
    for (var i = (${k} & ~3u) + ${lane}; i < ${k}; i = i + ${lanes}) { acc4.x = acc4.x + f32(f16(${x('i')}) * ${w}Half(${rowStart} + i)); }
    ${acc} = ${acc} + ((acc4.x + acc4.y) + (acc4.z + acc4.w));
  }`;
}

/** The WGSL preamble of a kernel using subgroup operations (adapter feature `subgroups`). */
export function subgroupHeader(): string {
  return 'enable subgroups;';
}

/**
 * Workgroup reductions over WG lanes (WG a power of two); call from uniform control flow. The default is a
 * shared-memory tree. With `subgroups`, each subgroup reduces with subgroupAdd / subgroupMax and its
 * leader's partial is summed in subgroup order (subgroups are runs of consecutive local invocation
 * indices); the functions then also take the subgroup_size and subgroup_invocation_id builtins.
 */
export function reductions(wg: number, subgroups = false): string {
  if (subgroups) {
    const fn = (name: string, type: string, op: string, combine: (a: string, b: string) => string, init: string) => `
fn ${name}(v: ${type}, lane: u32, sgSize: u32, sgLane: u32) -> ${type} {
  let s = ${op}(v);
  if (sgLane == 0u) { ${type === 'f32' ? 'red' : 'red4'}[lane / sgSize] = s; }
  workgroupBarrier();
  var r = ${init};
  for (var i = 0u; i < (WG + sgSize - 1u) / sgSize; i = i + 1u) { r = ${combine('r', `${type === 'f32' ? 'red' : 'red4'}[i]`)}; }
  workgroupBarrier();
  return r;
}`;
    return `
const WG = ${wg}u;
var<workgroup> red: array<f32, ${wg}>;
var<workgroup> red4: array<vec4<f32>, ${wg}>;
${fn('reduceSum', 'f32', 'subgroupAdd', (a, b) => `${a} + ${b}`, '0.0')}
${fn('reduceMax', 'f32', 'subgroupMax', (a, b) => `max(${a}, ${b})`, '-3.4028234663852886e38')}
${fn('reduceSum4', 'vec4<f32>', 'subgroupAdd', (a, b) => `${a} + ${b}`, 'vec4<f32>(0.0)')}
`;
  }
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
