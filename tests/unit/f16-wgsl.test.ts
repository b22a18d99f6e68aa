/**
 * The f16-arithmetic kernels (kernels/common.ts WeightMath 'f16', backend option f16Math / --gpu-f16)
 * cannot be compiled here: SwiftShader does not offer shader-f16. naga (wgpu's shader compiler, as
 * WebAssembly) parses and validates WGSL with the f16 capability, so every f16 variant the backend can
 * compile (matmul GEMM / GEMV, the fused decode GEMVs) is validated with it, the f32 variants alongside as
 * the control that the same validator accepts what Dawn already runs, and broken f16 variants (no
 * `enable f16;`, an f16 product added to an f32 sum without conversion) as the control that it rejects.
 * naga 30 does not parse `enable subgroups;` yet but validates the subgroup builtins without it, and it
 * refuses subgroup builtins in a 2-D workgroup (a wgpu portability rule; Dawn accepts them, and these
 * variants run on SwiftShader in tests/webgpu): for the subgroup variants the directive is removed and the
 * workgroup size written as its 1-D product before validation (types and expressions unchanged).
 */
import { NagaError, nagaVersion, parseWgsl, validate } from 'naga-wasm';
import { describe, expect, it } from 'vitest';
import type { PipelineCache, WeightFormat, WeightMath } from '../../src/engine/webgpu/kernels/common.ts';
import { type DecodeActivation, normGemvPipeline, type NormGemvVariant } from '../../src/engine/webgpu/kernels/decode.ts';
import { type MatmulVariant, matmulPipeline } from '../../src/engine/webgpu/kernels/matmul.ts';

/** The WGSL of every variant a kernel function asks the pipeline cache for, by key, without a device. */
function capture(ask: (rec: { pipelines: PipelineCache }) => void): Map<string, string> {
  const sources = new Map<string, string>();
  const pipelines = { get: (key: string, code: () => string) => sources.set(key, code()) } as unknown as PipelineCache;
  ask({ pipelines });
  return sources;
}

/** null when naga accepts the module, else its report (kind + formatted message). */
function nagaProblem(source: string): string | null {
  try {
    const subgroups = source.includes('enable subgroups;');
    const module = parseWgsl(
      subgroups ? source.replace('enable subgroups;', '').replace(/@workgroup_size\((\d+), (\d+)\)/, (_, x, y) => `@workgroup_size(${Number(x) * Number(y)})`) : source,
    );
    try {
      validate(module).free();
    } finally {
      module.free();
    }
    return null;
  } catch (e) {
    if (e instanceof NagaError) return `${e.kind}: ${e.formatted}`;
    throw e;
  }
}

const FORMATS: { format: WeightFormat; math: WeightMath }[] = [
  { format: 'f32', math: 'f32' },
  { format: 'f16', math: 'f32' },
  { format: 'bf16', math: 'f32' },
  { format: 'f16', math: 'f16' },
];
const SHAPES: { parts: 1 | 2 | 3; gated: DecodeActivation | null }[] = [
  { parts: 1, gated: null },
  { parts: 2, gated: null },
  { parts: 3, gated: null },
  { parts: 2, gated: 'silu' },
  { parts: 2, gated: 'gelu_new' },
  { parts: 2, gated: 'gelu' },
];

/** Every matmul and fused-decode GEMV variant (backend.ts precompile asks for a subset of these). */
const variants = capture((rec) => {
  for (const { format, math } of FORMATS) {
    for (const bias of [false, true]) {
      for (const kind of ['gemm', 'gemv'] as const) {
        for (const accumulate of [false, true]) matmulPipeline(rec, kind, { format, math, bias, accumulate } satisfies MatmulVariant);
      }
      for (const norm of [false, true])
        for (const shape of SHAPES) for (const subgroups of [false, true]) normGemvPipeline(rec, { format, math, norm, bias, subgroups, ...shape } satisfies NormGemvVariant);
    }
  }
});
const f16 = [...variants].filter(([key]) => key.includes('-f16math'));
const f32 = [...variants].filter(([key]) => !key.includes('-f16math'));

describe(`f16 arithmetic WGSL under naga ${nagaVersion}`, () => {
  it('covers every f16 variant: 8 matmuls (GEMM, GEMV × bias × accumulate) and 48 decode GEMVs, beside 168 f32 ones', () => {
    expect(f16.length).toBe(8 + 48);
    expect(f32.length).toBe(3 * (8 + 48));
  });

  it.each(f16)('%s validates with the f16 capability and enables f16', (_key, source) => {
    expect(nagaProblem(source)).toBeNull();
    expect(source.trimStart().match(/^(enable \w+;\s*)+/)?.[0]).toContain('enable f16;');
    // the products are f16 and are widened before the f32 sum
    expect(source).toMatch(/vec4<f32>\((xv|xs\[[^\]]+\]) \* (w0?Quad|wv)/);
  });

  it.each(f32)('%s (control) validates and does not enable f16', (_key, source) => {
    expect(nagaProblem(source)).toBeNull();
    expect(source).not.toContain('enable f16;');
    expect(source).not.toContain('f16>');
  });

  it('rejects an f16 variant without `enable f16;` (control: the validator checks the extension)', () => {
    for (const [key, source] of f16) expect(nagaProblem(source.replace('enable f16;', '')), key).toMatch(/f16/);
  });

  it('rejects an f16 product added to the f32 sum without conversion (control: the validator checks the f16/f32 types)', () => {
    const gemv = variants.get('matmul-gemv-f16-f16math') as string;
    const gemm = variants.get('matmul-gemm-f16-f16math') as string;
    const decode = variants.get('norm-gemv-f16-f16math-norm-3') as string;
    for (const source of [gemv, decode]) {
      const broken = source.replace(/acc4 = acc4 \+ vec4<f32>\((xv \* w0?Quad\([^)]*\))\);/, 'acc4 = acc4 + $1;');
      expect(broken).not.toBe(source);
      expect(nagaProblem(broken)).toMatch(/error/);
    }
    const broken = gemm.replace('acc0 = acc0 + vec4<f32>(xs[lid.y * BK + kk] * wv);', 'acc0 = acc0 + xs[lid.y * BK + kk] * wv;');
    expect(broken).not.toBe(gemm);
    expect(nagaProblem(broken)).toMatch(/error/);
  });
});
