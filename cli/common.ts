/**
 * What several commands share: flag groups (so a flag means the same everywhere), opening the model,
 * reading sequences, the removal set. Every reader checks its input against the model and either
 * refuses it with an error naming the flag, or states a warning on stderr.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type BackendDecision, chooseDefaultBackend } from '../src/engine/backend-choice.ts';
import { PruneLabError } from '../src/engine/errors.ts';
import { checkRemovalLeavesBlock, checkSequenceLength, checkTextLength, type Finding } from '../src/engine/limits.ts';
import { BACKEND_KINDS, type BackendKind, Model } from '../src/engine/model.ts';
import { makePlan, type Plan, type Removal } from '../src/engine/plan.ts';
import { hubAccess } from '../src/engine/hub.ts';
import { directorySource, HUB_ORIGIN, hubSource, looksLikeHubId, type ModelSource } from '../src/engine/sources.ts';
import { windows } from '../src/engine/tokenizer.ts';
import type { WebGpuBackend } from '../src/engine/webgpu/backend.ts';
import { F16MathUnavailable } from '../src/engine/webgpu/device.ts';
import { nodeWebGpuProblem, uninstallNodeWebGpu } from '../src/engine/webgpu/node.ts';
import type { FlagSpec, Flags, Warn } from './args.ts';

export const DEFAULT_MODEL = 'public/models/sotu-llama';

const MIB = 1024 * 1024;

// ---- flag groups ---------------------------------------------------------------------------------

/** Every command takes these (DESIGN.md: `--gpu-memory` and `--backend` everywhere). */
export const COMMON_FLAGS: readonly FlagSpec[] = [
  { name: 'model', value: '<dir|hub-id>', help: `checkpoint folder or hub id (owner/name[@revision]); default ${DEFAULT_MODEL}` },
  {
    name: 'backend',
    value: 'cpu|cpu-reference|webgpu',
    help: 'compute backend: cpu = onnxruntime kernels, cpu-reference = the TypeScript oracle (slow), webgpu; default: webgpu on a hardware adapter, else cpu',
  },
  { name: 'gpu-memory', value: '<MiB>', help: 'GPU memory budget in MiB (WebGPU); a model that does not fit runs block-streamed (blocks read, run and released one at a time)' },
  {
    name: 'gpu-f16',
    help: 'WebGPU: f16 arithmetic for F16-stored weights (f32 accumulation; needs shader-f16). Experimental, off by default: validated by naga and emulated on the CPU, never run on hardware',
  },
  { name: 'json', help: 'print one JSON object on stdout (warnings stay on stderr)' },
  { name: 'help', help: 'this text' },
];

export const TEXT_FLAGS: readonly FlagSpec[] = [
  { name: 'text', value: '<file>', help: 'a text file, tokenized as a document and cut into --seq-len windows' },
  { name: 'ids', value: '<file.json>', help: 'a JSON array of token-id arrays, one per sequence, used as-is' },
  { name: 'seq-len', value: 'N', help: 'tokens per window for --text (integer ≥ 2, default 256)' },
  { name: 'max-sequences', value: 'N', help: 'use at most the first N sequences (integer ≥ 1)' },
];

export const REMOVAL_FLAGS: readonly FlagSpec[] = [
  { name: 'remove', value: '3,5,7', help: 'whole blocks to remove (original indices; "" = none)' },
  { name: 'remove-attention', value: '3,5', help: 'blocks whose attention half is removed' },
  { name: 'remove-mlp', value: '3,5', help: 'blocks whose MLP half is removed' },
];

// ---- the model -----------------------------------------------------------------------------------

/** How to run the engine, from --backend, --gpu-memory and --gpu-f16. */
export interface EngineOptions {
  /** null: the default rule (chooseDefaultBackend). */
  backend: BackendKind | null;
  /** The GPU budget in bytes; null = no budget given. */
  gpuMemoryBytes: number | null;
  /** --gpu-f16: f16 arithmetic on the WebGPU backend (WebGpuBackendOptions.f16Math). */
  f16Math: boolean;
}

export function engineOptions(flags: Flags): EngineOptions {
  const backend = flags.str('backend') ?? null;
  if (backend !== null && !BACKEND_KINDS.includes(backend as BackendKind)) throw new PruneLabError(`--backend must be one of ${BACKEND_KINDS.join(', ')}, got "${backend}"`);
  // Up to 16 TiB: a larger number is a typo (bytes for MiB?), not a GPU.
  const mib = flags.maybeInt('gpu-memory', { min: 1, max: 16 * MIB, why: 'a budget in MiB' });
  return { backend: backend as BackendKind | null, gpuMemoryBytes: mib === undefined ? null : mib * MIB, f16Math: flags.has('gpu-f16') };
}

/** Which backend each open model got and why (for --json, and commands that open a second backend). */
const backendChoices = new WeakMap<Model, { kind: BackendKind; reason: string }>();

/** The backend openModel chose for `model` (after the default rule). */
export function backendOf(model: Model): BackendKind {
  return backendChoices.get(model)?.kind ?? 'cpu';
}

/** Where Dawn (WebGPU in Node) could find a Vulkan loader on Linux; without one it has no adapter to offer. */
function hasVulkanLoader(): boolean {
  if (process.platform !== 'linux') return true;
  const dirs = [
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib64',
    '/usr/lib',
    '/lib/x86_64-linux-gnu',
    '/usr/local/lib',
  ];
  return dirs.some((d) => existsSync(join(d, 'libvulkan.so.1')));
}

/** The default rule in Node: WebGPU on a hardware adapter, else the fast CPU backend. */
async function defaultBackend(): Promise<BackendDecision> {
  // Without a loader Dawn would only print a warning and find nothing: skip the probe.
  if (!hasVulkanLoader()) return { kind: 'cpu', reason: 'no Vulkan loader (libvulkan.so.1), so WebGPU in Node has no adapter' };
  const problem = await nodeWebGpuProblem();
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  const decision = await chooseDefaultBackend(problem ? null : gpu, problem ? `no WebGPU in Node: ${problem}` : undefined);
  if (decision.kind === 'cpu') uninstallNodeWebGpu();
  return decision;
}

/** A hub model reads HF_TOKEN (gated repositories; sent to huggingface.co only) and explains a 401 / 403. */
function sourceFor(model: string): ModelSource {
  return looksLikeHubId(model) && !model.includes('public/') ? hubSource(model, HUB_ORIGIN, undefined, hubAccess(model, HUB_ORIGIN, process.env.HF_TOKEN)) : directorySource(model);
}

export function modelFlag(flags: Flags): string {
  return flags.str('model') ?? DEFAULT_MODEL;
}

export async function openModel(flags: Flags, warn: Warn): Promise<Model> {
  const options = engineOptions(flags);
  let reason = `--backend ${options.backend}`;
  if (options.backend === null) {
    const decision = await defaultBackend();
    options.backend = decision.kind;
    reason = decision.reason;
  }
  if (options.backend === 'webgpu') {
    const problem = await nodeWebGpuProblem();
    if (problem) throw new PruneLabError(`no WebGPU in Node: ${problem}; or use --backend cpu`);
  }
  if (options.gpuMemoryBytes !== null && options.backend !== 'webgpu')
    warn('--gpu-memory is a budget for the WebGPU backend; the CPU backend holds the weights in host memory and ignores it');
  if (options.f16Math && options.backend !== 'webgpu') warn(`--gpu-f16 is f16 arithmetic on the WebGPU backend; the ${options.backend} backend ignores it`);
  let model: Model;
  try {
    model = await Model.load(sourceFor(modelFlag(flags)), options.backend, {
      gpuMemoryBytes: options.gpuMemoryBytes,
      webgpu: { f16Math: options.f16Math },
      onMode: (mode, why) => {
        if (mode === 'streamed') warn(`running block-streamed: ${why}; each pass reads the kept blocks one at a time`);
      },
    });
  } catch (e) {
    if (e instanceof F16MathUnavailable)
      throw new PruneLabError(`--gpu-f16: this adapter (${e.adapter}) does not offer shader-f16, which f16 arithmetic needs; run without --gpu-f16`);
    throw e;
  }
  const f16Math = (model.backend as Partial<WebGpuBackend>).f16MathSummary;
  if (f16Math) warn(`--gpu-f16: ${f16Math} (experimental: validated by naga and emulated on the CPU, never run on hardware)`);
  backendChoices.set(model, { kind: options.backend, reason });
  openedModels.push(model);
  return model;
}

/** Models opened by this process's command, for the `memory` object main() adds to every --json output. */
export const openedModels: Model[] = [];

/** An error finding is thrown (naming the flag), a warning goes to stderr. */
export function report(finding: Finding | null, warn: Warn, flag?: string): void {
  if (!finding) return;
  if (finding.level === 'error') throw new PruneLabError(flag ? `--${flag}: ${finding.message}` : finding.message);
  warn(flag ? `--${flag}: ${finding.message}` : finding.message);
}

// ---- sequences -----------------------------------------------------------------------------------

export interface SequenceFlags {
  ids: string;
  text: string;
  /** How warnings name the data and what is done with it: "the evaluation text …: measuring 1 sequence". */
  what: string;
  verb: string;
}

const CALIBRATION: SequenceFlags = { ids: 'ids', text: 'text', what: 'calibration text', verb: 'scoring' };
/** --text / --ids read for perplexity. */
export const READ_EVAL: Partial<SequenceFlags> = { what: 'text', verb: 'measuring' };

/** Where sequences come from, checked before the model loads (a typo should not wait for a download). */
export interface SequenceInput extends SequenceFlags {
  source: { kind: 'ids'; file: string } | { kind: 'text'; file: string; seqLen: number };
  maxSequences: number;
}

export function sequenceInput(flags: Flags, which: Partial<SequenceFlags> = {}): SequenceInput {
  const names = { ...CALIBRATION, ...which };
  const idsFile = flags.str(names.ids);
  const textFile = flags.str(names.text);
  if ((idsFile === undefined) === (textFile === undefined)) throw new PruneLabError(`pass exactly one of --${names.text} <file> or --${names.ids} <file.json>`);
  const maxSequences = flags.int('max-sequences', Number.MAX_SAFE_INTEGER, { min: 1 });
  if (idsFile !== undefined) {
    if (flags.has('seq-len')) throw new PruneLabError(`--seq-len cuts --${names.text} into windows; the sequences in --${names.ids} are used as given, so it has nothing to cut`);
    return { ...names, source: { kind: 'ids', file: idsFile }, maxSequences };
  }
  return { ...names, source: { kind: 'text', file: textFile as string, seqLen: flags.int('seq-len', 256, { min: 2 }) }, maxSequences };
}

/** Sequences from --ids (used as-is) or --text (tokenized as a document, cut into --seq-len windows). */
export async function readSequences(input: SequenceInput, model: Model, warn: Warn): Promise<number[][]> {
  const { source, maxSequences } = input;
  const spec = model.spec;
  let sequences: number[][];
  if (source.kind === 'ids') {
    const file = source.file;
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(file, 'utf8'));
    } catch (e) {
      throw new PruneLabError(`cannot read token ids (${(e as Error).message})`, { file });
    }
    if (!Array.isArray(parsed) || !parsed.every((s) => Array.isArray(s) && s.every((t) => Number.isInteger(t)))) {
      throw new PruneLabError('must be a JSON array of token-id arrays', { file });
    }
    sequences = (parsed as number[][]).slice(0, maxSequences);
    const vocab = spec.vocabSize;
    sequences.forEach((s, i) => {
      if (s.length === 0) throw new PruneLabError(`sequence ${i} is empty`, { file });
      for (const t of s) if (t < 0 || t >= vocab) throw new PruneLabError(`token id ${t} in sequence ${i} is outside the vocabulary (0..${vocab - 1})`, { file });
    });
    const longest = sequences.reduce((best, s, i) => (s.length > sequences[best].length ? i : best), 0);
    if (sequences.length > 0) report(checkSequenceLength(sequences[longest].length, spec, `sequence ${longest} of ${file} (${sequences[longest].length} tokens)`), warn);
  } else {
    const { file, seqLen } = source;
    report(checkSequenceLength(seqLen, spec, `--seq-len ${seqLen}`), warn);
    const text = await readFile(file, 'utf8').catch((e: Error) => {
      throw new PruneLabError(`cannot read (${e.message})`, { file });
    });
    const ids = model.requireTokenizer().encode(text);
    report(checkTextLength(ids.length, seqLen, `${input.what} (${file})`, input.verb), warn);
    sequences = windows(ids, seqLen, maxSequences);
  }
  if (sequences.length === 0) throw new PruneLabError('no sequences to run (empty input?)', { file: source.file });
  return sequences;
}

// ---- removal -------------------------------------------------------------------------------------

export function removalFrom(flags: Flags): Required<Removal> & { blocks: number[]; attention: number[]; mlp: number[] } {
  const removal = { blocks: flags.indices('remove'), attention: flags.indices('remove-attention'), mlp: flags.indices('remove-mlp') };
  // A block removed whole cannot also lose a half: one of the two is a slip.
  for (const half of ['attention', 'mlp'] as const) {
    const both = removal[half].filter((i) => removal.blocks.includes(i));
    if (both.length > 0) throw new PruneLabError(`block ${both[0]} is in both --remove and --remove-${half}; a removed block has no ${half} half left to remove`);
  }
  return removal;
}

/** The plan for a removal set, refusing one that leaves no block to run. */
export function removalPlan(layers: number, removal: Removal): Plan {
  const plan = makePlan(layers, removal);
  const nothingLeft = checkRemovalLeavesBlock(layers, layers - plan.blocks.length);
  if (nothingLeft) throw new PruneLabError(`--remove: ${nothingLeft.message}`);
  return plan;
}

export function modelSummary(model: Model) {
  const s = model.spec;
  return {
    source: model.checkpoint.label,
    modelType: s.modelType,
    layers: s.layers,
    hidden: s.hidden,
    parameters: model.checkpoint.parameters,
    dtypes: model.checkpoint.dtypes,
    backend: model.backend.info.description,
    backendReason: backendChoices.get(model)?.reason ?? null,
  };
}
