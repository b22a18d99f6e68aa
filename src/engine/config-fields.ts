/**
 * Reading config.json fields the way HF does, for every family: typed getters that name the field on
 * error, and the RoPE settings in both spellings (transformers 4's top-level `rope_theta` /
 * `rope_scaling` / `partial_rotary_factor`, transformers 5's `rope_parameters` object, flat or nested per
 * attention type). Unknown rope types and unrecognised keys inside a rope object are errors, never a
 * silent default.
 */
import type { LayerKind, ModelSpec, RopeSpec } from './config.ts';
import { PruneLabError } from './errors.ts';

export type Json = Record<string, unknown>;

/** The ModelSpec switches a plain pre-norm transformer has: families override only what they change. */
export function plainSwitches(
  headDim: number,
): Pick<ModelSpec, 'normOffset' | 'qkNorm' | 'parallelResidual' | 'embedScale' | 'residualScale' | 'attnScale' | 'attnSoftcap' | 'finalSoftcap' | 'logitScale'> {
  return {
    normOffset: 0,
    qkNorm: 'none',
    parallelResidual: false,
    embedScale: 1,
    residualScale: 1,
    attnScale: 1 / Math.sqrt(headDim),
    attnSoftcap: null,
    finalSoftcap: null,
    logitScale: 1,
  };
}

const where = (field: string) => ({ file: 'config.json', field });

export function num(cfg: Json, field: string, fallback?: number): number {
  const value = cfg[field];
  if (value === undefined || value === null) {
    if (fallback !== undefined) return fallback;
    throw new PruneLabError('is missing', where(field));
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new PruneLabError(`must be a number, got ${JSON.stringify(value)}`, where(field));
  return value;
}

export function positiveInt(cfg: Json, field: string, fallback?: number): number {
  const value = num(cfg, field, fallback);
  if (!Number.isInteger(value) || value <= 0) throw new PruneLabError(`must be a positive integer, got ${value}`, where(field));
  return value;
}

export function positiveNum(cfg: Json, field: string, fallback?: number): number {
  const value = num(cfg, field, fallback);
  if (value <= 0) throw new PruneLabError(`must be positive, got ${value}`, where(field));
  return value;
}

/** A number, or null when absent / null (e.g. soft-capping switched off). */
export function optionalNum(cfg: Json, field: string): number | null {
  return cfg[field] === undefined || cfg[field] === null ? null : positiveNum(cfg, field);
}

export function bool(cfg: Json, field: string, fallback: boolean): boolean {
  const value = cfg[field];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw new PruneLabError(`must be true or false, got ${JSON.stringify(value)}`, where(field));
  return value;
}

export function str(cfg: Json, field: string, fallback: string): string {
  const value = cfg[field];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'string') throw new PruneLabError(`must be a string, got ${JSON.stringify(value)}`, where(field));
  return value;
}

/** One of the allowed strings (e.g. an activation), else an error listing them. */
export function oneOf<T extends string>(cfg: Json, field: string, allowed: readonly T[], fallback: T): T {
  const value = str(cfg, field, fallback);
  if (!(allowed as readonly string[]).includes(value)) throw new PruneLabError(`unsupported value ${JSON.stringify(value)} (supported: ${allowed.join(', ')})`, where(field));
  return value as T;
}

export function tokenIds(value: unknown): number[] {
  if (typeof value === 'number') return [value];
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === 'number');
  return [];
}

/** A per-layer list (layer_types, no_rope_layers): absent -> null; wrong length or entries -> error. */
export function layerList<T>(cfg: Json, field: string, layers: number, valid: (v: unknown) => v is T, expected: string): T[] | null {
  const value = cfg[field];
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value) || value.length !== layers) throw new PruneLabError(`must be a list with one entry per layer (${layers}), got ${JSON.stringify(value)}`, where(field));
  value.forEach((v, i) => {
    if (!valid(v)) throw new PruneLabError(`entry ${i} is ${JSON.stringify(v)}; expected ${expected}`, where(field));
  });
  return value as T[];
}

export type AttentionType = 'full_attention' | 'sliding_attention';
const isAttentionType = (v: unknown): v is AttentionType => v === 'full_attention' || v === 'sliding_attention';

/** `layer_types` if present (transformers 5 writes it for sliding-window families), else the default pattern. */
export function layerTypes(cfg: Json, layers: number, fallback: (i: number) => AttentionType): AttentionType[] {
  return layerList(cfg, 'layer_types', layers, isAttentionType, '"full_attention" or "sliding_attention"') ?? Array.from({ length: layers }, (_, i) => fallback(i));
}

// ---- RoPE ----

/** Keys each rope type may carry besides rope_type / type / rope_theta / partial_rotary_factor (HF's validators). */
const ROPE_KEYS: Record<string, { required: string[]; optional: string[] }> = {
  default: { required: [], optional: [] },
  linear: { required: ['factor'], optional: [] },
  llama3: { required: ['factor', 'original_max_position_embeddings', 'low_freq_factor', 'high_freq_factor'], optional: [] },
  longrope: { required: ['short_factor', 'long_factor', 'original_max_position_embeddings'], optional: ['attention_factor', 'factor'] },
};
const COMMON_ROPE_KEYS = ['rope_type', 'type', 'rope_theta', 'partial_rotary_factor'];

export interface RopeContext {
  headDim: number;
  maxPositions: number;
  /** The theta a family uses when the config names none (10000 for most; HF's `default_theta`). */
  defaultTheta: number;
  /** Top-level `original_max_position_embeddings` (Phi-3 keeps it outside the rope object; HF prefers it). */
  originalMaxPositions?: number;
}

/** rotate_half inverse frequencies theta^(-2i/dim) for the rotated dims. */
function baseFrequencies(rotaryDim: number, theta: number): Float64Array {
  const inv = new Float64Array(rotaryDim / 2);
  for (let i = 0; i < inv.length; i++) inv[i] = 1 / theta ** ((2 * i) / rotaryDim);
  return inv;
}

function numberList(params: Json, field: string, length: number, label: string): number[] {
  const value = params[field];
  if (!Array.isArray(value) || value.length !== length || !value.every((v) => typeof v === 'number' && Number.isFinite(v) && v > 0)) {
    throw new PruneLabError(`must be a list of ${length} positive numbers (one per rotated frequency)`, where(`${label}.${field}`));
  }
  return value as number[];
}

/**
 * One rope parameter object -> RopeSpec. `label` names the object in errors (rope_parameters,
 * rope_scaling, rope_parameters.sliding_attention). `theta` and `partial` come from the object or the
 * top-level fallbacks the caller passes.
 */
export function ropeSpec(params: Json, label: string, ctx: RopeContext, fallbackTheta: number, fallbackPartial: number): RopeSpec {
  const kind = (params.rope_type ?? params.type ?? 'default') as unknown;
  if (typeof kind !== 'string') throw new PruneLabError(`must be a string, got ${JSON.stringify(kind)}`, where(`${label}.rope_type`));
  const keys = ROPE_KEYS[kind];
  if (!keys) throw new PruneLabError(`unsupported rope type "${kind}" (supported: ${Object.keys(ROPE_KEYS).join(', ')})`, where(`${label}.rope_type`));
  for (const key of Object.keys(params)) {
    if (!COMMON_ROPE_KEYS.includes(key) && !keys.required.includes(key) && !keys.optional.includes(key)) {
      throw new PruneLabError(
        `unrecognised key for rope type "${kind}" (known: ${[...COMMON_ROPE_KEYS, ...keys.required, ...keys.optional].join(', ')})`,
        where(`${label}.${key}`),
      );
    }
  }
  // HF's standardize_rope_params: a top-level original_max_position_embeddings (Phi-3) wins, else
  // max_position_embeddings fills a missing one.
  const originalMax = (): number =>
    ctx.originalMaxPositions ?? (params.original_max_position_embeddings == null ? ctx.maxPositions : positiveNum(params, 'original_max_position_embeddings'));
  for (const key of keys.required) {
    if (key === 'original_max_position_embeddings') continue;
    if (params[key] === undefined || params[key] === null) throw new PruneLabError(`is required for rope type "${kind}"`, where(`${label}.${key}`));
  }
  const theta = params.rope_theta === undefined || params.rope_theta === null ? fallbackTheta : positiveNum(params, 'rope_theta');
  const partial = params.partial_rotary_factor === undefined || params.partial_rotary_factor === null ? fallbackPartial : positiveNum(params, 'partial_rotary_factor');
  if (partial > 1) throw new PruneLabError(`must be at most 1, got ${partial}`, where(`${label}.partial_rotary_factor`));
  // HF: dim = int(head_dim * partial_rotary_factor); rotate_half needs it even.
  const rotaryDim = Math.floor(ctx.headDim * partial);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0)
    throw new PruneLabError(`gives ${rotaryDim} rotated dims of head_dim ${ctx.headDim}; RoPE needs an even number ≥ 2`, where(`${label}.partial_rotary_factor`));
  const inv = baseFrequencies(rotaryDim, theta);
  const field = (name: string) => positiveNum(params, name);
  const base = { kind, theta, rotaryDim, attentionFactor: 1, maxPosition: null as number | null };
  if (kind === 'default') return { ...base, invFreq: inv };
  if (kind === 'linear') {
    const factor = field('factor');
    return { ...base, invFreq: inv.map((f) => f / factor) };
  }
  if (kind === 'llama3') {
    const factor = field('factor');
    const low = field('low_freq_factor');
    const high = field('high_freq_factor');
    const original = originalMax();
    const lowWavelen = original / low;
    const highWavelen = original / high;
    const invFreq = inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) return f;
      if (wavelen > lowWavelen) return f / factor;
      const smooth = (original / wavelen - low) / (high - low);
      return (1 - smooth) * (f / factor) + smooth * f;
    });
    return { ...base, invFreq };
  }
  // longrope (Phi-3.5 / Phi-4-mini): short factors up to the original context, cos/sin scaled by the
  // attention factor. HF switches the whole sequence to long factors past the original context; that
  // case is refused at run time (maxPosition) rather than approximated.
  const original = originalMax();
  const short = numberList(params, 'short_factor', rotaryDim / 2, label);
  numberList(params, 'long_factor', rotaryDim / 2, label);
  const factor = params.factor === undefined || params.factor === null ? ctx.maxPositions / original : field('factor');
  const attentionFactor =
    params.attention_factor === undefined || params.attention_factor === null
      ? factor <= 1
        ? 1
        : Math.sqrt(1 + Math.log(factor) / Math.log(original))
      : field('attention_factor');
  return { ...base, invFreq: inv.map((f, i) => f / short[i]), attentionFactor, maxPosition: original };
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The model's RoPE in either spelling. transformers 5: `rope_parameters` ({rope_type, rope_theta, ...});
 * transformers 4: `rope_theta` + `rope_scaling` (+ top-level `partial_rotary_factor`). A config carrying
 * both with different thetas is refused.
 */
export function readRope(cfg: Json, ctx: RopeContext, oldThetaKey = 'rope_theta', oldPartialKey = 'partial_rotary_factor'): RopeSpec {
  const oldTheta = cfg[oldThetaKey] === undefined || cfg[oldThetaKey] === null ? null : positiveNum(cfg, oldThetaKey);
  const oldPartial = cfg[oldPartialKey] === undefined || cfg[oldPartialKey] === null ? null : positiveNum(cfg, oldPartialKey);
  const v5 = cfg.rope_parameters;
  if (v5 !== undefined && v5 !== null) {
    if (!isObject(v5)) throw new PruneLabError('must be an object', where('rope_parameters'));
    if (oldTheta !== null && v5.rope_theta !== undefined && v5.rope_theta !== oldTheta) {
      throw new PruneLabError(`rope_parameters.rope_theta ${v5.rope_theta} disagrees with ${oldThetaKey} ${oldTheta}`, where('rope_parameters.rope_theta'));
    }
    if (cfg.rope_scaling !== undefined && cfg.rope_scaling !== null) {
      throw new PruneLabError('both rope_parameters (transformers 5) and rope_scaling (transformers 4) are set; keep one', where('rope_scaling'));
    }
    return ropeSpec(v5, 'rope_parameters', ctx, oldTheta ?? ctx.defaultTheta, oldPartial ?? 1);
  }
  const scaling = cfg.rope_scaling;
  if (scaling !== undefined && scaling !== null && !isObject(scaling)) throw new PruneLabError('must be an object or null', where('rope_scaling'));
  return ropeSpec(scaling ?? {}, 'rope_scaling', ctx, oldTheta ?? ctx.defaultTheta, oldPartial ?? 1);
}

/** transformers 5's per-attention-type nesting ({sliding_attention: {...}, full_attention: {...}}), if used. */
export function nestedRopeParameters(cfg: Json): Record<AttentionType, Json> | null {
  const v5 = cfg.rope_parameters;
  if (!isObject(v5) || !('full_attention' in v5 || 'sliding_attention' in v5)) return null;
  for (const key of Object.keys(v5)) {
    if (!isAttentionType(key))
      throw new PruneLabError('unrecognised attention type in nested rope parameters (known: full_attention, sliding_attention)', where(`rope_parameters.${key}`));
    if (!isObject(v5[key])) throw new PruneLabError('must be an object', where(`rope_parameters.${key}`));
  }
  return v5 as Record<AttentionType, Json>;
}

/** Every layer the same: one rope (or none) and one window (or none). */
export function uniformLayers(layers: number, rope: RopeSpec | null, window: number | null): LayerKind[] {
  const kind = { rope, window };
  return Array.from({ length: layers }, () => kind);
}

/**
 * Sliding windows per layer for the families that gate them with `use_sliding_window` (qwen2, smollm3):
 * `layer_types` when given, else the family's default pattern; HF drops the window entirely when
 * use_sliding_window is false.
 */
export function gatedSlidingWindows(cfg: Json, layers: number, defaultType: (i: number, window: number | null) => AttentionType): (number | null)[] {
  const use = bool(cfg, 'use_sliding_window', false);
  const window = use && cfg.sliding_window !== undefined && cfg.sliding_window !== null ? positiveInt(cfg, 'sliding_window') : null;
  const types = layerTypes(cfg, layers, (i) => defaultType(i, window));
  if (window === null) return types.map(() => null);
  return types.map((t) => (t === 'sliding_attention' ? window : null));
}

/** mistral: one `sliding_window` for every layer, or none. */
export function allLayersWindow(cfg: Json): number | null {
  return cfg.sliding_window === undefined || cfg.sliding_window === null ? null : positiveInt(cfg, 'sliding_window');
}
