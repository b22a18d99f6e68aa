/**
 * `npx prunelab <command>`: the same engine, headless. The contract (flags, --json shapes, errors on
 * stderr with a non-zero exit) is in DESIGN.md; scripts rely on it.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { blockScores } from '../src/analysis/influence.ts';
import { clozeTasks, compareMc, encodeMcItems, type McItem, parseMcJsonl } from '../src/analysis/mc.ts';
import { BLOCK_STRATEGIES, isStrategy, runSweep, STRATEGIES, type Strategy, type SweepStep } from '../src/analysis/sweep.ts';
import { describeError, PruneLabError } from '../src/engine/errors.ts';
import { type BackendKind, Model } from '../src/engine/model.ts';
import { makePlan, type Removal } from '../src/engine/plan.ts';
import { directorySource, hubSource, looksLikeHubId, type ModelSource } from '../src/engine/sources.ts';
import { windows } from '../src/engine/tokenizer.ts';
import { prunedCheckpointFiles } from '../src/export/pruned-checkpoint.ts';
import { installNodeWebGpu } from '../src/engine/webgpu/node.ts';

export const DEFAULT_MODEL = 'public/models/sotu-llama';

const USAGE = `usage: prunelab <command> [options]
  score    --model <dir|hub-id> (--text <file> | --ids <file.json>) [--seq-len N] [--max-sequences N] [--backend cpu|webgpu] [--json]
  ppl      --model <dir|hub-id> (--text <file> | --ids <file.json>) [--remove 3,5,7] [--remove-attention ..] [--remove-mlp ..] [--seq-len N] [--backend ..] [--json]
  prune    --model <dir> --remove 3,5,7 --out <dir>
  generate --model <dir> --prompt "..." [--remove ...] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--backend ..] [--json]
  sweep    --model <dir|hub-id> (--text <file> | --ids <file.json>) [--eval-text <file> | --eval-ids <file.json>]
           [--strategies ${BLOCK_STRATEGIES.join(',')}] [--max-removed K] [--seeds N] [--seq-len N] [--max-sequences N] [--backend ..] [--json]
           strategies: ${STRATEGIES.join(', ')} or all; --text/--ids calibrate (drive the choices), --eval-* measure
  mc       --model <dir|hub-id> (--tasks <file.jsonl> | --cloze-text <file> [--cloze-count N] [--seed S] [--write-tasks <file.jsonl>])
           [--remove 3,5,7] [--remove-attention ..] [--remove-mlp ..] [--backend ..] [--json]
--model defaults to ${DEFAULT_MODEL} (the embedded model).`;

type Flags = Map<string, string | true>;

const BOOLEAN_FLAGS = new Set(['json', 'help']);

export function parseArgs(argv: string[]): { command: string; flags: Flags } {
  const [command = 'help', ...rest] = argv;
  const flags: Flags = new Map();
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (!arg.startsWith('--')) throw new PruneLabError(`unexpected argument "${arg}"`);
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    if (eq > 0) flags.set(name, arg.slice(eq + 1));
    else if (BOOLEAN_FLAGS.has(name)) flags.set(name, true);
    else {
      const value = rest[i + 1];
      if (value === undefined || value.startsWith('--')) throw new PruneLabError(`--${name} needs a value`);
      flags.set(name, value);
      i++;
    }
  }
  return { command, flags };
}

function str(flags: Flags, name: string): string | undefined {
  const v = flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

function int(flags: Flags, name: string, fallback: number, min = 1): number {
  const v = str(flags, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new PruneLabError(`--${name} must be an integer ≥ ${min}, got "${v}"`);
  return n;
}

function float(flags: Flags, name: string, fallback: number): number {
  const v = str(flags, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new PruneLabError(`--${name} must be a number, got "${v}"`);
  return n;
}

export function parseIndexList(value: string | undefined, flag: string): number[] {
  if (value === undefined || value.trim() === '') return [];
  return value.split(',').map((part) => {
    const n = Number(part.trim());
    if (!Number.isInteger(n) || n < 0) throw new PruneLabError(`--${flag} must be comma-separated block indices, got "${part}"`);
    return n;
  });
}

function removalFrom(flags: Flags): Removal {
  return {
    blocks: parseIndexList(str(flags, 'remove'), 'remove'),
    attention: parseIndexList(str(flags, 'remove-attention'), 'remove-attention'),
    mlp: parseIndexList(str(flags, 'remove-mlp'), 'remove-mlp'),
  };
}

function sourceFor(model: string): ModelSource {
  return looksLikeHubId(model) && !model.includes('public/') ? hubSource(model) : directorySource(model);
}

async function openModel(flags: Flags): Promise<Model> {
  const backend = (str(flags, 'backend') ?? 'cpu') as BackendKind;
  if (backend !== 'cpu' && backend !== 'webgpu') throw new PruneLabError(`--backend must be cpu or webgpu, got "${backend}"`);
  if (backend === 'webgpu' && !(await installNodeWebGpu())) {
    throw new PruneLabError(
      'no WebGPU adapter in Node (the webgpu package needs a Vulkan driver: set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json and LD_LIBRARY_PATH=/usr/lib/chromium, or use --backend cpu)',
    );
  }
  const model = str(flags, 'model') ?? DEFAULT_MODEL;
  return Model.load(sourceFor(model), backend);
}

/** Sequences from --ids (used as-is) or --text (tokenized as a document, cut into --seq-len windows). */
async function readSequences(flags: Flags, model: Model, idsFlag = 'ids', textFlag = 'text'): Promise<number[][]> {
  const idsFile = str(flags, idsFlag);
  const textFile = str(flags, textFlag);
  if ((idsFile === undefined) === (textFile === undefined)) throw new PruneLabError(`pass exactly one of --${textFlag} <file> or --${idsFlag} <file.json>`);
  let sequences: number[][];
  if (idsFile !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(idsFile, 'utf8'));
    } catch (e) {
      throw new PruneLabError(`cannot read token ids (${(e as Error).message})`, { file: idsFile });
    }
    if (!Array.isArray(parsed) || !parsed.every((s) => Array.isArray(s) && s.every((t) => Number.isInteger(t)))) {
      throw new PruneLabError('must be a JSON array of token-id arrays', { file: idsFile });
    }
    sequences = parsed as number[][];
    const vocab = model.spec.vocabSize;
    for (const s of sequences) for (const t of s) if (t < 0 || t >= vocab) throw new PruneLabError(`token id ${t} is outside the vocabulary (0..${vocab - 1})`, { file: idsFile });
  } else {
    const text = await readFile(textFile as string, 'utf8').catch((e: Error) => {
      throw new PruneLabError(`cannot read (${e.message})`, { file: textFile });
    });
    const ids = model.requireTokenizer().encode(text);
    sequences = windows(ids, int(flags, 'seq-len', 256, 2), int(flags, 'max-sequences', Number.MAX_SAFE_INTEGER));
  }
  if (sequences.length === 0) throw new PruneLabError('no sequences to run (empty input?)', { file: idsFile ?? textFile });
  return sequences;
}

function modelSummary(model: Model) {
  const s = model.spec;
  return {
    source: model.checkpoint.label,
    modelType: s.modelType,
    layers: s.layers,
    hidden: s.hidden,
    parameters: model.checkpoint.parameters,
    dtypes: model.checkpoint.dtypes,
    backend: model.backend.info.description,
  };
}

type Out = { json: boolean; print: (text: string) => void };

async function score(flags: Flags, out: Out): Promise<void> {
  const model = await openModel(flags);
  const sequences = await readSequences(flags, model);
  const sums = await model.score(sequences, makePlan(model.spec.layers));
  const blocks = blockScores(sums).map(({ index, bi, angular, relMagnitude }) => ({ index, bi, angular, relMagnitude }));
  const tokens = sequences.reduce((a, s) => a + s.length, 0);
  if (out.json) out.print(JSON.stringify({ model: modelSummary(model), tokens, blocks }));
  else {
    out.print(`${model.checkpoint.label}: ${model.spec.layers} blocks, ${tokens} tokens scored\nblock       BI   angular  relMag`);
    for (const b of blocks) out.print(`${String(b.index).padStart(5)} ${b.bi.toFixed(5).padStart(8)} ${b.angular.toFixed(5).padStart(9)} ${b.relMagnitude.toFixed(5).padStart(7)}`);
  }
  model.dispose();
}

async function ppl(flags: Flags, out: Out): Promise<void> {
  const model = await openModel(flags);
  const sequences = await readSequences(flags, model);
  const removal = removalFrom(flags);
  const result = await model.perplexity(sequences, makePlan(model.spec.layers, removal));
  const removed = [...(removal.blocks ?? [])].sort((a, b) => a - b);
  if (out.json) {
    const extra: Record<string, number[]> = {};
    if (removal.attention?.length) extra.removedAttention = [...removal.attention];
    if (removal.mlp?.length) extra.removedMlp = [...removal.mlp];
    out.print(JSON.stringify({ ppl: result.ppl, nll: result.nll, tokens: result.tokens, removed, ...extra }));
  } else out.print(`perplexity ${result.ppl.toFixed(4)} (mean NLL ${result.nll.toFixed(5)} over ${result.tokens} predicted tokens; removed [${removed.join(', ')}])`);
  model.dispose();
}

async function prune(flags: Flags, out: Out): Promise<void> {
  const dest = str(flags, 'out');
  if (!dest) throw new PruneLabError('prune needs --out <dir>');
  const removed = parseIndexList(str(flags, 'remove'), 'remove');
  if (removed.length === 0) throw new PruneLabError('prune needs --remove with at least one block');
  const model = await openModel(flags);
  const { files, keptBlocks } = prunedCheckpointFiles(model.checkpoint, removed, { prunelab_removed_blocks: removed.join(',') });
  await mkdir(dest, { recursive: true });
  for (const [name, bytes] of files) await writeFile(join(dest, name), bytes);
  const genConfig = await directorySource(str(flags, 'model') ?? DEFAULT_MODEL).read('generation_config.json');
  if (genConfig) await writeFile(join(dest, 'generation_config.json'), genConfig);
  if (out.json) out.print(JSON.stringify({ out: dest, removed: [...removed].sort((a, b) => a - b), keptBlocks }));
  else out.print(`wrote ${dest}: ${keptBlocks.length} blocks kept (original ${keptBlocks.join(', ')})`);
}

async function generate(flags: Flags, out: Out): Promise<void> {
  const prompt = str(flags, 'prompt');
  if (prompt === undefined) throw new PruneLabError('generate needs --prompt "..."');
  const model = await openModel(flags);
  const tokenizer = model.requireTokenizer();
  const promptIds = tokenizer.encode(prompt);
  const plan = makePlan(model.spec.layers, removalFrom(flags));
  const ids = await model.generate(promptIds, plan, {
    maxNewTokens: int(flags, 'max-new-tokens', 32),
    temperature: float(flags, 'temperature', 0),
    topK: int(flags, 'top-k', 0, 0),
    topP: float(flags, 'top-p', 1),
    seed: int(flags, 'seed', 0, 0),
    stopAtEos: true,
  });
  const text = tokenizer.decode(ids, { skipSpecialTokens: true });
  if (out.json) out.print(JSON.stringify({ prompt, ids, text }));
  else out.print(prompt + text);
  model.dispose();
}

function parseStrategies(value: string | undefined): Strategy[] {
  if (value === undefined) return [...BLOCK_STRATEGIES];
  if (value.trim() === 'all') return [...STRATEGIES];
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (names.length === 0) throw new PruneLabError('--strategies names no strategy');
  for (const name of names) if (!isStrategy(name)) throw new PruneLabError(`unknown strategy "${name}" in --strategies (known: ${STRATEGIES.join(', ')}, or all)`);
  return names as Strategy[];
}

function describeStep(step: SweepStep): string {
  const sets = [`[${step.removed.join(',')}]`];
  if (step.removedAttention) sets.push(`attention [${step.removedAttention.join(',')}]`);
  if (step.removedMlp) sets.push(`mlp [${step.removedMlp.join(',')}]`);
  const range = step.pplMin !== undefined ? ` (seeds ${step.pplMin.toFixed(3)} … ${(step.pplMax as number).toFixed(3)}, median seed ${step.seed})` : '';
  return `${sets.join(' ')} ppl ${step.ppl.toFixed(4)}${range}`;
}

async function sweep(flags: Flags, out: Out): Promise<void> {
  const strategies = parseStrategies(str(flags, 'strategies'));
  const model = await openModel(flags);
  const calibration = await readSequences(flags, model);
  const hasEval = str(flags, 'eval-text') !== undefined || str(flags, 'eval-ids') !== undefined;
  const evaluation = hasEval ? await readSequences(flags, model, 'eval-ids', 'eval-text') : undefined;
  const layers = model.spec.layers;
  const maxRemoved = int(flags, 'max-removed', layers - 1, 0);
  if (maxRemoved > layers - 1) throw new PruneLabError(`--max-removed must be at most ${layers - 1} (the model has ${layers} blocks; one must remain), got ${maxRemoved}`);
  const result = await runSweep(model, calibration, {
    strategies,
    evaluation,
    maxRemoved,
    seeds: int(flags, 'seeds', 5),
    onStep: out.json ? undefined : ({ strategy, k, step, seed }) => out.print(`${strategy}${seed === undefined ? '' : ` seed ${seed}`} k=${k} ${describeStep(step)}`),
  });
  if (out.json) {
    out.print(
      JSON.stringify({
        model: modelSummary(model),
        layers,
        maxRemoved,
        calibrationTokens: result.calibrationTokens,
        evalTokens: result.evaluationTokens,
        strategies: result.strategies,
        orders: result.orders,
        randomSeeds: result.randomSeeds,
      }),
    );
  } else {
    out.print(`\nperplexity on ${hasEval ? 'the evaluation set' : 'the calibration set'} (${result.evaluationTokens} predicted tokens) by blocks removed`);
    out.print(['k'.padStart(3), ...strategies.map((s) => s.padStart(11))].join(' '));
    for (let k = 0; k <= maxRemoved; k++) out.print([String(k).padStart(3), ...strategies.map((s) => (result.strategies[s]?.[k]?.ppl.toFixed(3) ?? '').padStart(11))].join(' '));
    for (const [name, order] of Object.entries(result.orders)) out.print(`${name} order: ${order.join(', ')}`);
  }
  model.dispose();
}

async function mc(flags: Flags, out: Out): Promise<void> {
  const tasksFile = str(flags, 'tasks');
  const clozeFile = str(flags, 'cloze-text');
  if ((tasksFile === undefined) === (clozeFile === undefined)) throw new PruneLabError('pass exactly one of --tasks <file.jsonl> or --cloze-text <file>');
  const source = (tasksFile ?? clozeFile) as string;
  const text = await readFile(source, 'utf8').catch((e: Error) => {
    throw new PruneLabError(`cannot read (${e.message})`, { file: source });
  });
  let items: McItem[];
  if (tasksFile !== undefined) items = parseMcJsonl(text, tasksFile);
  else {
    items = clozeTasks(text, { count: int(flags, 'cloze-count', 100), seed: int(flags, 'seed', 0, 0) });
    const writeTo = str(flags, 'write-tasks');
    if (writeTo) await writeFile(writeTo, items.map((item) => JSON.stringify(item)).join('\n') + '\n');
  }
  const model = await openModel(flags);
  const removal = removalFrom(flags);
  makePlan(model.spec.layers, removal); // validates the indices before any scoring
  const { original, pruned } = await compareMc(model, encodeMcItems(model, items), removal);
  const removed = [...(removal.blocks ?? [])].sort((a, b) => a - b);
  if (out.json) {
    const extra: Record<string, number[]> = {};
    if (removal.attention?.length) extra.removedAttention = [...removal.attention].sort((a, b) => a - b);
    if (removal.mlp?.length) extra.removedMlp = [...removal.mlp].sort((a, b) => a - b);
    out.print(
      JSON.stringify({ accuracy: pruned.accuracy, accNorm: pruned.accNorm, n: pruned.n, removed, ...extra, original: { accuracy: original.accuracy, accNorm: original.accNorm } }),
    );
  } else {
    out.print(`accuracy ${pruned.accuracy.toFixed(4)} (acc_norm ${pruned.accNorm.toFixed(4)}) on ${pruned.n} questions with removed [${removed.join(', ')}]`);
    out.print(`original ${original.accuracy.toFixed(4)} (acc_norm ${original.accNorm.toFixed(4)})`);
  }
  model.dispose();
}

const COMMANDS: Record<string, (flags: Flags, out: Out) => Promise<void>> = { score, ppl, prune, generate, sweep, mc };

export async function main(
  argv: string[],
  print: (text: string) => void = (t) => process.stdout.write(`${t}\n`),
  printError: (text: string) => void = (t) => process.stderr.write(`${t}\n`),
): Promise<number> {
  try {
    const { command, flags } = parseArgs(argv);
    if (command === 'help' || command === '--help' || flags.has('help')) {
      print(USAGE);
      return 0;
    }
    const run = COMMANDS[command];
    if (!run) throw new PruneLabError(`unknown command "${command}"\n${USAGE}`);
    await run(flags, { json: flags.has('json'), print });
    return 0;
  } catch (e) {
    printError(`prunelab: ${describeError(e)}`);
    return 1;
  }
}
