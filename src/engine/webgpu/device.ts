/**
 * Adapter and device: ask for the adapter's real limits (the defaults are far below what models need)
 * and the optional features it offers; report device loss with its reason; refuse a buffer that cannot
 * fit with a message naming the tensor and the limit.
 */
import { PruneLabError } from '../errors.ts';

/** Optional features used when the adapter has them (none is required). */
export const OPTIONAL_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'] as const;

/** The limits raised to the adapter's values at device creation. */
export const REQUESTED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupsPerDimension',
] as const;

export interface GpuContext {
  device: GPUDevice;
  adapterDescription: string;
  /** Optional features that were granted. */
  features: Set<string>;
  limits: GPUSupportedLimits;
  /** Set once the device is lost; every later forward fails with this. */
  lost: { reason: string; message: string } | null;
}

export interface DeviceOptions {
  /** Where the GPU object comes from; defaults to navigator.gpu (browser, or Node after installNodeWebGpu). */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Called once when the device is lost (reason 'destroyed' after dispose, 'unknown' for a crash / reset). */
  onDeviceLost?: (reason: string, message: string) => void;
}

function navigatorGpu(): GPU | undefined {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu;
}

export async function acquireGpu(options: DeviceOptions = {}): Promise<GpuContext> {
  const gpu = options.gpu ?? navigatorGpu();
  if (!gpu) throw new PruneLabError('WebGPU is not available here (no navigator.gpu); use the CPU backend');
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) throw new PruneLabError('WebGPU is present but no adapter was found (GPU blocklisted or no driver); use the CPU backend');
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const name of REQUESTED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'prunelab' });
  const info = adapter.info;
  const adapterDescription = [info?.vendor, info?.architecture, info?.device, info?.description].filter((s) => s && s.length > 0).join(' ') || 'WebGPU adapter';
  const ctx: GpuContext = { device, adapterDescription, features: new Set(requiredFeatures), limits: device.limits, lost: null };
  device.lost.then((lost) => {
    ctx.lost = { reason: lost.reason, message: lost.message };
    options.onDeviceLost?.(lost.reason, lost.message);
  });
  return ctx;
}

/** f16 arithmetic (WebGpuBackendOptions.f16Math) was asked for on an adapter without shader-f16; the CLI names its flag, --gpu-f16. */
export class F16MathUnavailable extends PruneLabError {
  constructor(readonly adapter: string) {
    super(`this adapter (${adapter}) does not offer shader-f16, which f16 arithmetic needs; leave f16 arithmetic off`, { field: 'f16Math' });
    this.name = 'F16MathUnavailable';
  }
}

export function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${n} bytes`;
}

/** Throws if a buffer of `bytes` cannot be created and bound as one storage binding on this device. */
export function checkFits(ctx: GpuContext, bytes: number, what: { tensor?: string; field?: string }): void {
  const { maxBufferSize, maxStorageBufferBindingSize } = ctx.limits;
  if (bytes > maxBufferSize) {
    throw new PruneLabError(`needs a ${formatBytes(bytes)} buffer but this device's maxBufferSize is ${formatBytes(maxBufferSize)}`, what);
  }
  if (bytes > maxStorageBufferBindingSize) {
    throw new PruneLabError(`needs a ${formatBytes(bytes)} storage binding but this device's maxStorageBufferBindingSize is ${formatBytes(maxStorageBufferBindingSize)}`, what);
  }
}

/** The most bytes one split piece (a weight chunk, a group of logits rows) may bind, and where that number comes from. */
export interface BindingLimit {
  bytes: number;
  /** For messages: "this device's maxStorageBufferBindingSize", "the maxBindingBytes override", … */
  source: string;
}

/**
 * The per-binding budget that tensors are split against: the smaller of the device's maxBufferSize and
 * maxStorageBufferBindingSize, lowered further by `override` (tests force splits on tiny models with it;
 * it never raises the device's limits).
 */
export function bindingLimit(ctx: GpuContext, override?: number): BindingLimit {
  const { maxBufferSize, maxStorageBufferBindingSize } = ctx.limits;
  let limit: BindingLimit =
    maxBufferSize < maxStorageBufferBindingSize
      ? { bytes: maxBufferSize, source: "this device's maxBufferSize" }
      : { bytes: maxStorageBufferBindingSize, source: "this device's maxStorageBufferBindingSize" };
  if (override !== undefined) {
    if (!Number.isFinite(override) || override < 16) throw new PruneLabError(`maxBindingBytes must be at least 16, got ${override}`, { field: 'maxBindingBytes' });
    if (override < limit.bytes) limit = { bytes: Math.floor(override), source: 'the maxBindingBytes override' };
  }
  return limit;
}

/** Turns a lost device into the error every later call reports. */
export function checkNotLost(ctx: GpuContext): void {
  if (ctx.lost) {
    throw new PruneLabError(`the GPU device was lost (${ctx.lost.reason}: ${ctx.lost.message || 'no message'}); re-create the WebGPU backend`);
  }
}
