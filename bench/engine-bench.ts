/**
 * The engine's side of `npm run bench`, the same code in Node and in the Chromium bench page: load a
 * checkpoint on one backend, warm up (shader compiles, workspace growth), then time
 *   throughput  prefill of P tokens → first token, then D single-token decode steps (greedy, KV cache);
 *   scoring     one forward of S tokens with block statistics vs the same forward without;
 *   toggle      plan change → the next forward's queue.submit (and that forward's time vs steady state);
 *   pruned      decode ms/token with k of L blocks removed vs all L blocks, against (L−k)/L;
 *   memory      peak bytes of live GPU buffers ÷ weight bytes (see gpu-meter.ts for what is counted).
 * Every figure is a wall-clock time from performance.now(); forwards end when their results are read
 * back, so GPU work is included.
 */
import type { Backend, ForwardRequest } from '../src/engine/backend.ts';
import { type Checkpoint, loadCheckpoint } from '../src/engine/checkpoint.ts';
import { type BackendKind, createBackend } from '../src/engine/model.ts';
import { makePlan, type Plan, withCapture } from '../src/engine/plan.ts';
import { drawPick, pickToken, type SamplingOptions, seededRandom } from '../src/engine/sampling.ts';
import type { ModelSource } from '../src/engine/sources.ts';
import type { GpuMeter } from './gpu-meter.ts';
import { measureThroughput, median, round, syntheticIds } from './measure.mjs';

export type Section = 'throughput' | 'scoring' | 'toggle' | 'pruned' | 'memory';

export interface EngineBenchConfig {
  backend: BackendKind;
  sections: Section[];
  /** Prompt tokens for prefill and decode steps after it (D decode steps = D + 1 generated tokens). */
  prompt: number;
  decode: number;
  reps: number;
  /** Untimed run first: 'full' = the same sizes; 'prompt' = the same prompt + 1 step; 'short' = 4-token prompt + 2 steps; 'minimal' = 2-token prompt + 1 step. */
  warmup: Warmup;
  /** Tokens in one scoring forward, and how many timed forwards of each kind. */
  scoreLen: number;
  scoreReps: number;
  toggles: number;
  /** Tokens in each toggle forward. */
  toggleLen: number;
  /** Pruned comparison: rounds over the plans (full, k = L/4, k = L/2), each a prompt of prunedPrompt tokens then prunedSteps timed decode steps. */
  prunedRounds: number;
  prunedSteps: number;
  prunedPrompt: number;
  /** Memory: also run one NLL forward of scoreLen tokens (the perplexity path's buffers) before reading the peak. */
  memoryForward: boolean;
  /** WebGPU: time every kernel of a prefill and of a decode step with timestamp-query (--profile). */
  profile?: boolean;
}

type KernelTime = { kernel: string; scope: string; weightBytes: number; ns: number };
type Profiled = Backend & { profile: boolean; lastProfile: KernelTime[] | null };

/** Per kernel: dispatches, GPU ms, weight bytes read and achieved GB/s; per scope: GPU ms (block time also per block). */
function summarize(times: KernelTime[], wallMs: number, blocks: number) {
  const kernels = new Map<string, { kernel: string; dispatches: number; gpuMs: number; weightBytes: number }>();
  const scopes: Record<string, number> = {};
  for (const t of times) {
    const k = kernels.get(t.kernel) ?? { kernel: t.kernel, dispatches: 0, gpuMs: 0, weightBytes: 0 };
    k.dispatches++;
    k.gpuMs += t.ns / 1e6;
    k.weightBytes += t.weightBytes;
    kernels.set(t.kernel, k);
    scopes[t.scope] = (scopes[t.scope] ?? 0) + t.ns / 1e6;
  }
  const gpuMs = times.reduce((a, t) => a + t.ns / 1e6, 0);
  return {
    wallMs: round(wallMs, 3),
    gpuMs: round(gpuMs, 3),
    /** Wall time outside the kernels: encoding, submit, queue, read-back, JS. */
    outsideKernelsMs: round(wallMs - gpuMs, 3),
    scopesMs: Object.fromEntries(Object.entries(scopes).map(([k, v]) => [k, round(v, 3)])),
    perBlockGpuMs: round((scopes.block ?? 0) / Math.max(1, blocks), 4),
    /** The per-step fixed cost: embedding, head (final norm, lm head, pick) on the GPU plus everything outside the kernels. */
    fixedMs: round((scopes.embed ?? 0) + (scopes.head ?? 0) + (wallMs - gpuMs), 3),
    kernels: [...kernels.values()]
      .sort((a, b) => b.gpuMs - a.gpuMs)
      .map((k) => ({ ...k, gpuMs: round(k.gpuMs, 4), gbPerS: k.weightBytes > 0 && k.gpuMs > 0 ? round(k.weightBytes / (k.gpuMs * 1e6), 3) : null })),
  };
}

export type Warmup = 'full' | 'prompt' | 'short' | 'minimal';
/** Prompt tokens and decode steps of the untimed warm-up run. */
export function warmupSize(w: Warmup, prompt: number, decode: number): [number, number] {
  if (w === 'full') return [prompt, decode];
  if (w === 'prompt') return [prompt, 1];
  return w === 'short' ? [Math.min(4, prompt), 2] : [Math.min(2, prompt), 1];
}

export interface EngineBenchContext {
  source: ModelSource;
  /** For the WebGPU backend: the (metered) GPU object to acquire the device from. */
  gpu?: GPU;
  meter?: GpuMeter;
  log?: (line: string) => void;
}

const now = () => performance.now();
/** WebGPU: dispatches the backend recorded for its last forward (null on the CPU backend). */
const dispatches = (backend: Backend): number | null => (backend as { lastDispatchCount?: number }).lastDispatchCount ?? null;
/** Best of N: interference from other processes only adds time, so the minimum is the least disturbed estimate. */
const best = (xs: number[]) => (xs.length ? Math.min(...xs) : Number.NaN);

/** Deterministic token ids in [1, vocab). */
/** Bytes of every distinct tensor reachable from a weights object (a tied tensor counted once). */
function tensorBytes(root: unknown, seen = new Set<unknown>()): number {
  if (!root || typeof root !== 'object' || seen.has(root)) return 0;
  seen.add(root);
  if ('bytes' in root && (root as { bytes: unknown }).bytes instanceof Uint8Array && 'dtype' in root) return (root as { bytes: Uint8Array }).bytes.byteLength;
  let sum = 0;
  for (const v of Object.values(root)) sum += tensorBytes(v, seen);
  return sum;
}

/**
 * What one decode step reads from the checkpoint's weights: every kept block's tensors, plus a fixed part
 * (the lm head matrix, the final norm, one embedding row and one learned-position row). bytes-ideal for
 * k removed blocks = (fixed + kept blocks' bytes) / (fixed + all blocks' bytes).
 */
export function decodeBytes(checkpoint: Checkpoint): { blocks: number[]; fixed: number } {
  const w = checkpoint.weights;
  const blocks = w.blocks.map((b) => tensorBytes(b));
  const row = (t: { bytes: Uint8Array; shape: number[] }) => t.bytes.byteLength / Math.max(1, t.shape[0]);
  const fixed = tensorBytes(w.lmHead) + tensorBytes(w.finalNorm) + row(w.embed) + (w.positions ? row(w.positions) : 0);
  return { blocks, fixed };
}

function weightFileBytes(checkpoint: Checkpoint): number {
  let bytes = 0;
  for (const f of checkpoint.files) for (const t of f.tensors.values()) bytes += t.bytes.byteLength;
  return bytes;
}

interface Timed {
  prefillMs: number;
  stepMs: number[];
  tokens: number[];
}

/**
 * Generation with the backend directly (greedy, or sampled under `sampling`), so prefill and each decode
 * step are timed apart. WebGPU picks the token on the device (`pick`: argmax or the sampling kernel,
 * logits 'none': one id read back per step), as Model.generate does; the CPU backends return the logits row.
 */
async function generateTimed(backend: Backend, prompt: number[], plan: Plan, steps: number, sampling: SamplingOptions = {}): Promise<Timed> {
  const runPlan = withCapture(plan, 'none');
  const cache = backend.createCache(prompt.length + steps + 1, runPlan);
  const onDevice = backend.info.kind === 'webgpu';
  const random = seededRandom(sampling.seed ?? 0);
  const step = async (ids: number[]) => {
    const pick = drawPick(sampling, random);
    const r = await backend.forward({ ids, plan: runPlan, logits: onDevice ? 'none' : 'last', cache, ...(onDevice ? { pick } : {}) });
    return r.picked ?? pickToken(r.logits as Float32Array, pick);
  };
  try {
    const t0 = now();
    let next = await step(prompt);
    const prefillMs = now() - t0;
    const tokens = [next];
    const stepMs: number[] = [];
    for (let i = 0; i < steps; i++) {
      const t = now();
      next = await step([next]);
      stepMs.push(now() - t);
      tokens.push(next);
    }
    return { prefillMs, stepMs, tokens };
  } finally {
    cache.dispose();
  }
}

/**
 * One forward, timed until the GPU is idle: a forward that reads nothing back (capture 'none', logits
 * 'none') resolves when its (empty) staging map does, which need not wait for its dispatches.
 */
async function timedForward(backend: Backend, request: ForwardRequest, meter?: GpuMeter): Promise<number> {
  const t = now();
  await backend.forward(request);
  if (meter?.device) await meter.device.queue.onSubmittedWorkDone();
  return now() - t;
}

export async function runEngineBench(config: EngineBenchConfig, context: EngineBenchContext): Promise<Record<string, unknown>> {
  const log = context.log ?? (() => {});
  const meter = context.meter;
  const out: Record<string, unknown> = { backend: config.backend };

  let t = now();
  const checkpoint = await loadCheckpoint(context.source);
  const readMs = now() - t;
  t = now();
  let backend: Backend;
  if (config.backend === 'webgpu') {
    const { createWebGpuBackend } = await import('../src/engine/webgpu/backend.ts');
    backend = await createWebGpuBackend(checkpoint.spec, checkpoint.weights, { gpu: context.gpu });
  } else {
    backend = await createBackend(config.backend, checkpoint);
  }
  const createMs = now() - t;
  const spec = checkpoint.spec;
  const L = spec.layers;
  const fileBytes = weightFileBytes(checkpoint);
  // streamed checkpoints bind blocks lazily; the bench loads resident models, so every block is here
  const bytes = checkpoint.weights.blocks.length === spec.layers ? decodeBytes(checkpoint) : null;
  out.model = {
    label: checkpoint.label,
    family: spec.family,
    layers: L,
    hidden: spec.hidden,
    heads: spec.heads,
    kvHeads: spec.kvHeads,
    vocab: spec.vocabSize,
    parameters: checkpoint.parameters,
    dtypes: checkpoint.dtypes,
    checkpointWeightBytes: fileBytes,
    backendWeightBytes: backend.info.weightBytes,
    decodeBytes: bytes ? { fixed: bytes.fixed, perBlock: bytes.blocks } : null,
  };
  out.device = backend.info.description;
  out.load = { readMs: round(readMs, 1), createBackendMs: round(createMs, 1) };
  const afterLoadBytes = meter?.liveBytes ?? null;
  log(`loaded ${checkpoint.label} on ${backend.info.description}: read ${readMs.toFixed(0)} ms, backend ${createMs.toFixed(0)} ms`);

  const full = makePlan(L);
  const prompt = syntheticIds(config.prompt, spec.vocabSize, 1);
  const scoreIds = syntheticIds(config.scoreLen, spec.vocabSize, 2);
  try {
    // ---- warm-up: every forward shape the timed sections use (prefill GEMM, decode GEMV, stats capture)
    t = now();
    const [warmPrompt, warmSteps] = warmupSize(config.warmup, config.prompt, config.decode);
    await generateTimed(backend, prompt.slice(0, warmPrompt), full, warmSteps);
    if (config.sections.some((s) => s === 'scoring' || s === 'toggle')) {
      const warmIds = config.warmup === 'full' ? scoreIds : scoreIds.slice(0, warmPrompt);
      await backend.forward({ ids: warmIds, plan: withCapture(full, 'stats'), logits: 'none' });
      await backend.forward({ ids: warmIds, plan: withCapture(full, 'none'), logits: 'none' });
      if (meter?.device) await meter.device.queue.onSubmittedWorkDone();
    }
    out.warmupMs = round(now() - t, 1);
    log(`warm-up ${(now() - t).toFixed(0)} ms`);

    if (config.sections.includes('throughput')) {
      const { prefillMs, stepMs, throughput } = await measureThroughput(() => generateTimed(backend, prompt, full, config.decode), config);
      out.throughput = {
        ...throughput,
        /** WebGPU: dispatches recorded by the last forward (a decode step). */
        dispatchesPerDecodeStep: dispatches(backend),
        pickedOnDevice: backend.info.kind === 'webgpu',
      };
      log(`throughput: prefill ${config.prompt} tok ${prefillMs.toFixed(1)} ms, decode ${stepMs.toFixed(1)} ms/token`);
      // one sampled run: WebGPU samples on the device (kernels/sample.ts); hostPicks counts steps whose candidates exceeded the kernel
      const sampling = { temperature: 0.8, topK: 20, topP: 0.9, seed: 7 };
      const hostPicks = () => (backend as { hostPicks?: number }).hostPicks ?? null;
      const hostBefore = hostPicks();
      const sampled = await generateTimed(backend, prompt, full, config.decode, sampling);
      const sampledMs = median(sampled.stepMs);
      const hostAfter = hostPicks();
      (out.throughput as Record<string, unknown>).sampledDecode = {
        ...sampling,
        decodeStepMs: sampled.stepMs.map((x) => round(x, 1)),
        decodeTokS: round(1000 / sampledMs),
        tokens: sampled.tokens,
        pickedOnHost: hostAfter !== null && hostBefore !== null ? hostAfter - hostBefore : null,
      };
      log(`sampled decode (T 0.8, top-k 20, top-p 0.9): ${sampledMs.toFixed(1)} ms/token${backend.info.kind === 'webgpu' ? ' (picked on the GPU)' : ''}`);
    }

    if (config.profile) {
      const p = backend as Profiled;
      if (!('profile' in p)) out.profile = { skipped: `no kernel timing on the ${config.backend} backend` };
      else {
        const plan = withCapture(full, 'none');
        const cache = backend.createCache(config.prompt + 2, plan);
        try {
          p.profile = true;
          let t0 = now();
          const first = await backend.forward({ ids: prompt, plan, logits: 'none', cache, pick: 'argmax' });
          const prefill = p.lastProfile ? summarize(p.lastProfile, now() - t0, L) : null;
          t0 = now();
          await backend.forward({ ids: [first.picked ?? 0], plan, logits: 'none', cache, pick: 'argmax' });
          const decode = p.lastProfile ? summarize(p.lastProfile, now() - t0, L) : null;
          out.profile =
            prefill && decode
              ? { method: 'timestamp-query: one compute pass per dispatch with begin/end timestamps (adds pass overhead; totals are for ranking)', prefill: { tokens: config.prompt, ...prefill }, decode }
              : { skipped: 'the adapter offers no timestamp-query' };
        } finally {
          p.profile = false;
          cache.dispose();
        }
        log(`profile: ${JSON.stringify(out.profile).slice(0, 300)}`);
      }
    }

    if (config.sections.includes('scoring')) {
      const plain: number[] = [];
      const stats: number[] = [];
      let plainDispatches: number | null = null;
      let statsDispatches: number | null = null;
      for (let r = 0; r < config.scoreReps; r++) {
        const timePlain = async () => {
          plain.push(await timedForward(backend, { ids: scoreIds, plan: withCapture(full, 'none'), logits: 'none' }, meter));
          plainDispatches = dispatches(backend);
        };
        const timeStats = async () => {
          stats.push(await timedForward(backend, { ids: scoreIds, plan: withCapture(full, 'stats'), logits: 'none' }, meter));
          statsDispatches = dispatches(backend);
        };
        if (r % 2) {
          await timeStats();
          await timePlain();
        } else {
          await timePlain();
          await timeStats();
        }
      }
      const p = best(plain);
      const s = best(stats);
      out.scoring = {
        tokens: config.scoreLen,
        reps: config.scoreReps,
        plainMs: round(p, 2),
        statsMs: round(s, 2),
        overhead: round(s / p - 1, 4),
        plainMedianMs: round(median(plain), 2),
        statsMedianMs: round(median(stats), 2),
        overheadMedian: round(median(stats) / median(plain) - 1, 4),
        // each rep times the two back to back: the median of the per-rep ratios is what load drifting between reps cannot move
        overheadPaired: round(median(stats.map((x, r) => x / plain[r])) - 1, 4),
        dispatches: plainDispatches === null ? null : { plain: plainDispatches, stats: statsDispatches },
        plainAll: plain.map((x) => round(x, 1)),
        statsAll: stats.map((x) => round(x, 1)),
      };
      log(
        `scoring: best ${p.toFixed(1)} ms plain vs ${s.toFixed(1)} ms with stats (${((s / p - 1) * 100).toFixed(1)}%; medians ${((median(stats) / median(plain) - 1) * 100).toFixed(1)}%; paired ${((median(stats.map((x, r) => x / plain[r])) - 1) * 100).toFixed(1)}%)`,
      );
    }

    if (config.sections.includes('toggle')) {
      const ids = syntheticIds(config.toggleLen, spec.vocabSize, 3);
      const request = (plan: Plan): ForwardRequest => ({ ids, plan: withCapture(plan, 'stats'), logits: 'last' });
      // steady state: the same plan again and again (L − 1 blocks, like every toggled plan below)
      const steadyPlan = makePlan(L, { blocks: [L - 1] });
      const steady: number[] = [];
      const steadyToSubmit: number[] = [];
      for (let r = 0; r < Math.max(2, Math.min(config.toggles - 1, 5)); r++) {
        const submitsBefore = meter?.submits.length ?? 0;
        const t0 = now();
        steady.push(await timedForward(backend, request(steadyPlan), meter));
        if (meter && meter.submits.length > submitsBefore) steadyToSubmit.push(meter.submits[submitsBefore] - t0);
      }
      const toSubmit: number[] = [];
      const forwardMs: number[] = [];
      const before = meter?.snapshot();
      for (let i = 0; i < config.toggles; i++) {
        const removed = (i * 5 + 1) % L;
        const t0 = now();
        const plan = makePlan(L, { blocks: [removed] });
        const submitsBefore = meter?.submits.length ?? 0;
        await backend.forward(request(plan));
        if (meter?.device) await meter.device.queue.onSubmittedWorkDone();
        const t1 = now();
        forwardMs.push(t1 - t0);
        if (meter && meter.submits.length > submitsBefore) toSubmit.push(meter.submits[submitsBefore] - t0);
      }
      const after = meter?.snapshot();
      out.toggle = {
        tokens: ids.length,
        toggles: config.toggles,
        planChangeToSubmitMs: meter ? { median: round(median(toSubmit), 3), max: round(Math.max(...toSubmit), 3), all: toSubmit.map((x) => round(x, 3)) } : null,
        steadyCallToSubmitMs: meter ? round(median(steadyToSubmit), 3) : null,
        forwardAfterToggleMs: round(best(forwardMs), 2),
        steadyForwardMs: round(best(steady), 2),
        forwardAfterToggleMedianMs: round(median(forwardMs), 2),
        steadyForwardMedianMs: round(median(steady), 2),
        created:
          before && after
            ? {
                pipelines: after.pipelinesCreated - before.pipelinesCreated,
                shaderModules: after.shaderModulesCreated - before.shaderModulesCreated,
                buffers: after.buffersCreated - before.buffersCreated,
              }
            : null,
      };
      log(
        `toggle: submit after ${toSubmit.length ? median(toSubmit).toFixed(2) : 'n/a'} ms; forward ${best(forwardMs).toFixed(1)} ms vs steady ${best(steady).toFixed(1)} ms (best of each)`,
      );
    }

    if (config.sections.includes('pruned')) {
      const ks = [...new Set([Math.round(L / 4), Math.round(L / 2)])].filter((k) => k > 0 && k < L);
      // remove k blocks spread over the stack (never block 0): which ones does not change the cost
      const removal = (k: number) => Array.from({ length: k }, (_, j) => L - 1 - Math.floor((j * (L - 1)) / k)).sort((a, b) => a - b);
      const shortPrompt = syntheticIds(config.prunedPrompt, spec.vocabSize, 4);
      const plans = [{ k: 0, removed: [] as number[] }, ...ks.map((k) => ({ k, removed: removal(k) }))];
      const samples = new Map<number, number[]>(plans.map((p) => [p.k, []]));
      // per round, each plan's median step: a plan's ratio to the full model within one round (run back to back)
      // is what background load drifting between rounds cannot skew; the median over rounds is the paired ratio
      const roundMedians = new Map<number, number[]>(plans.map((p) => [p.k, []]));
      const stepDispatches = new Map<number, number | null>();
      // rounds alternate the plans, so drifting background load hits every plan alike
      const rounds = config.prunedRounds;
      const steps = config.prunedSteps;
      for (let r = 0; r < rounds; r++) {
        for (const p of r % 2 ? [...plans].reverse() : plans) {
          const run = await generateTimed(backend, shortPrompt, makePlan(L, { blocks: p.removed }), steps);
          samples.get(p.k)?.push(...run.stepMs);
          roundMedians.get(p.k)?.push(median(run.stepMs));
          stepDispatches.set(p.k, dispatches(backend));
        }
      }
      const fullMs = best(samples.get(0) ?? []);
      const fullMedian = median(samples.get(0) ?? []);
      const cases = plans.slice(1).map((p) => {
        const ms = best(samples.get(p.k) ?? []);
        const ratio = ms / fullMs;
        const ratioMedian = median(samples.get(p.k) ?? []) / fullMedian;
        const full = roundMedians.get(0) ?? [];
        const ratioPaired = median((roundMedians.get(p.k) ?? []).map((ms, r) => ms / full[r]));
        const ideal = (L - p.k) / L;
        const all = bytes ? bytes.fixed + bytes.blocks.reduce((a, b) => a + b, 0) : Number.NaN;
        const bytesIdeal = bytes ? (all - p.removed.reduce((a, i) => a + bytes.blocks[i], 0)) / all : Number.NaN;
        const d = stepDispatches.get(p.k);
        const d0 = stepDispatches.get(0);
        return {
          k: p.k,
          removed: p.removed,
          dispatches: d ?? null,
          dispatchRatio: d && d0 ? round(d / d0, 4) : null,
          msPerToken: round(ms, 2),
          ratio: round(ratio, 4),
          ideal: round(ideal, 4),
          deviation: round(ratio / ideal - 1, 4),
          ratioMedian: round(ratioMedian, 4),
          deviationMedian: round(ratioMedian / ideal - 1, 4),
          bytesIdeal: round(bytesIdeal, 4),
          bytesDeviation: round(ratio / bytesIdeal - 1, 4),
          bytesDeviationMedian: round(ratioMedian / bytesIdeal - 1, 4),
          ratioPaired: round(ratioPaired, 4),
          bytesDeviationPaired: round(ratioPaired / bytesIdeal - 1, 4),
        };
      });
      // least-squares fit ms = fixed + perBlock × blocks, to show how much of a step does not scale with L
      const xs = plans.map((p) => L - p.k);
      const ys = plans.map((p) => best(samples.get(p.k) ?? []));
      const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
      const my = ys.reduce((a, b) => a + b, 0) / ys.length;
      const slope =
        xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0) /
        Math.max(
          1e-9,
          xs.reduce((a, x) => a + (x - mx) ** 2, 0),
        );
      out.pruned = {
        fullDispatches: stepDispatches.get(0) ?? null,
        rounds,
        stepsPerRound: steps,
        prompt: config.prunedPrompt,
        decodeSteps: samples.get(0)?.length,
        samples: Object.fromEntries([...samples].map(([k, v]) => [k, v.map((x) => round(x, 1))])),
        fullMsPerToken: round(fullMs, 2),
        cases,
        fit: { perBlockMs: round(slope, 3), fixedMs: round(my - slope * mx, 2) },
      };
      log(`pruned: full ${fullMs.toFixed(1)} ms/token; ${cases.map((c) => `k=${c.k}: ${c.msPerToken} ms (ratio ${c.ratio} vs ${c.ideal})`).join('; ')}`);
    }

    if (config.sections.includes('memory') && meter) {
      // one NLL forward at the scoring length, so the peak covers perplexity as well as generation
      if (config.memoryForward) await backend.forward({ ids: scoreIds, plan: withCapture(full, 'stats'), logits: 'none', nll: true });
      out.memory = {
        method: 'peak of live GPUBuffer bytes created on the engine device (createBuffer − destroy), driver-internal memory excluded',
        workload: [
          'load',
          `prefill ${config.prompt} + decode ${config.decode}`,
          config.sections.includes('scoring') ? `stats forwards of ${config.scoreLen} tokens` : null,
          config.sections.includes('toggle') ? `toggle forwards of ${config.toggleLen}` : null,
          config.sections.includes('pruned') ? 'pruned decodes' : null,
          config.memoryForward ? `a ${config.scoreLen}-token NLL forward` : null,
        ]
          .filter(Boolean)
          .join(' + '),
        afterLoadBytes,
        peakBytes: meter.peakBytes,
        checkpointWeightBytes: fileBytes,
        backendWeightBytes: backend.info.weightBytes,
        ratio: round(meter.peakBytes / fileBytes, 4),
        ratioToBackendWeights: round(meter.peakBytes / backend.info.weightBytes, 4),
      };
      log(`memory: peak ${(meter.peakBytes / 2 ** 20).toFixed(1)} MiB vs weights ${(fileBytes / 2 ** 20).toFixed(1)} MiB`);
    }
  } finally {
    backend.dispose();
  }
  return out;
}
