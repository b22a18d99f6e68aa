#!/usr/bin/env node
// `npm run bench [-- flags]`: PruneLab's engine (WebGPU in Node and in Chromium, CPU reference in Node)
// side by side with transformers.js running the same weights (WebGPU and wasm in Chromium,
// onnxruntime-node CPU) as a fair peer — built the way onnx-community's models are
// (tools/fair-peer/build_peer.py: fp32, fp16, 4-bit) — and as the older traced graph; on the embedded
// model and random-weight SmolLM2-135M / Qwen2.5-0.5B shapes; plus scoring overhead, toggle latency,
// pruned decode scaling, peak GPU memory and the goals of issue 13 ("goals" in the results).
// Writes bench/results/<stamp>.json, bench/results/latest.json and bench/results/table.md. See bench/README.md.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { computeGoals, peerChoice } from './goals.mjs';

const bench = import.meta.dirname;
const root = join(bench, '..');
const started = Date.now();
const log = (line) => console.error(line);
const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

// ---------------------------------------------------------------- flags

const HELP = `npm run bench [-- options]
  --quick                 embedded model only, small counts (a few minutes)
  --models a,b            embedded, smollm2-135m, qwen2.5-0.5b (default: all three; --quick: embedded)
  --runtimes a,b          ours-webgpu-node, ours-webgpu-chromium, ours-cpu-node, ours-cpu-chromium,
                          ours-cpu-reference-node, tjs-webgpu-chromium, tjs-traced-webgpu-chromium,
                          tjs-wasm-chromium, tjs-cpu-node (default: all)
  --peer-variants a,b     fair-peer variants run on transformers.js WebGPU: fp32, fp16, q4, q4f16
                          (default fp32,fp16,q4,q4f16 for the embedded model, fp32,fp16 for the big shapes)
  --profile               also time every kernel of a decode step and a prefill with timestamp-query
                          (our WebGPU rows; achieved GB/s per matmul, fixed vs per-block cost)
  --all                   also run Qwen2.5-0.5B on our WebGPU backend in Chromium (skipped by default
                          for time)
  --prompt N --decode N   embedded model: prompt tokens / decode steps (default 32 / 16; --quick 16 / 4)
  --big-prompt N --big-decode N   SmolLM2-135M / Qwen2.5-0.5B shapes (default 16 / 4 and 4 / 1)
  --reps N                timed repetitions for the embedded model (default 2)
  --timeout S             seconds allowed per run (default 900)
  --pair-rounds N         after the rows, N more alternating throughput runs of our WebGPU Chromium row and
                          the fair peer the goals compare with (default 2); the peer goals take the median
                          of the per-pair ratios, so load drifting between rows cannot decide them
  --no-export             do not create missing model folders (their rows say so)
  --streaming             only the block-streamed row: a Llama-3.2-1B-shaped random BF16 checkpoint (written
                          once to bench/.models/llama-3.2-1b-shape, 2.5 GB) scored on WebGPU with a 512 MiB
                          budget (bench/streaming-bench.ts); --no-streaming leaves it out of a full run
                          (--quick leaves it out too)
  --chrome PATH           Chromium binary (default $CHROME_PATH or /usr/bin/chromium)
  --python PATH           Python for the model exports and the fair peer (torch ≥ 2.9, transformers 5, onnx,
                          onnxscript, onnxruntime; default $BENCH_PYTHON, else /work/hf/bin/python if present,
                          else python3). Without one, the rows needing a new export say so and are skipped.
Environment: BENCH_ARGS is read as extra flags.`;

function parseFlags(argv) {
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const [k, inline] = a.slice(2).split('=', 2);
    if (['quick', 'all', 'no-export', 'help', 'profile', 'streaming', 'no-streaming'].includes(k)) flags[k] = true;
    else flags[k] = inline ?? argv[++i];
  }
  return flags;
}
const flags = parseFlags([...(process.env.BENCH_ARGS ?? '').split(/\s+/).filter(Boolean), ...process.argv.slice(2)]);
if (flags.help) {
  console.log(HELP);
  process.exit(0);
}
const int = (v, d) => (v === undefined ? d : Number.parseInt(v, 10));
const quick = !!flags.quick;
const timeoutMs = int(flags.timeout, 900) * 1000;
const pairRounds = int(flags['pair-rounds'], 2);
const chromePath = flags.chrome ?? process.env.CHROME_PATH ?? '/usr/bin/chromium';

const ALL_RUNTIMES = [
  'ours-webgpu-node',
  'ours-webgpu-chromium',
  'ours-cpu-node',
  'ours-cpu-chromium',
  'ours-cpu-reference-node',
  'tjs-webgpu-chromium',
  'tjs-traced-webgpu-chromium',
  'tjs-wasm-chromium',
  'tjs-cpu-node',
];
const RUNTIME_TITLES = {
  'ours-webgpu-node': 'PruneLab WebGPU, Node (Dawn)',
  'ours-webgpu-chromium': 'PruneLab WebGPU, Chromium',
  'ours-cpu-node': 'PruneLab CPU (onnxruntime-node), Node',
  'ours-cpu-chromium': 'PruneLab CPU (onnxruntime-web wasm), Chromium',
  'ours-cpu-reference-node': 'PruneLab CPU reference (TypeScript), Node',
  'tjs-webgpu-chromium': 'transformers.js WebGPU EP, Chromium, fair peer',
  'tjs-traced-webgpu-chromium': 'transformers.js WebGPU EP, Chromium, traced graph (fp32, unfused)',
  'tjs-wasm-chromium': 'transformers.js wasm, Chromium, fair peer',
  'tjs-cpu-node': 'transformers.js onnxruntime-node CPU, fair peer',
};
/** Runtimes that run the fair peer (one row per variant on WebGPU, fp32 elsewhere); the traced row runs bench/.models/<name>/onnx. */
const FAIR_PEER_RUNTIMES = new Set(['tjs-webgpu-chromium', 'tjs-wasm-chromium', 'tjs-cpu-node']);
const PEER_VARIANTS = ['fp32', 'fp16', 'q4', 'q4f16'];
const peerVariantsFlag = flags['peer-variants'] ? flags['peer-variants'].split(',') : null;
for (const v of peerVariantsFlag ?? []) if (!PEER_VARIANTS.includes(v)) throw new Error(`unknown --peer-variants entry ${v} (${PEER_VARIANTS.join(', ')})`);
const runtimes = flags.runtimes ? flags.runtimes.split(',') : ALL_RUNTIMES;
for (const r of runtimes) if (!ALL_RUNTIMES.includes(r)) throw new Error(`unknown runtime ${r} (${ALL_RUNTIMES.join(', ')})`);

// ---------------------------------------------------------------- models and sizes

const ALL_SECTIONS = ['throughput', 'scoring', 'toggle', 'pruned', 'memory'];
const embeddedSizes = {
  prompt: int(flags.prompt, quick ? 16 : 32),
  decode: int(flags.decode, quick ? 4 : 16),
  reps: int(flags.reps, quick ? 1 : 2),
  warmup: 'full',
  scoreLen: quick ? 16 : 32,
  scoreReps: 6,
  toggles: quick ? 3 : 6,
  toggleLen: 1,
  prunedRounds: quick ? 5 : 6,
  prunedSteps: quick ? 3 : 4,
  prunedPrompt: 4,
  memoryForward: true,
};
/**
 * Big shapes on the software adapter (seconds per decode step of the 135M shape, ours and transformers.js
 * alike): one timed run, a warm-up with the same prompt and 1 step (so prompt-length-specific compiles are
 * not timed, for either engine), 1-token toggle forwards, one round of 1-token-prompt + 1-step decodes per
 * pruned plan.
 */
const bigSizes = (prompt, decode) => ({
  prompt,
  decode,
  reps: 1,
  warmup: 'prompt',
  scoreLen: prompt,
  scoreReps: 1,
  toggles: 2,
  toggleLen: 1,
  prunedRounds: 1,
  prunedSteps: 1,
  prunedPrompt: 1,
  memoryForward: false,
});

const MODELS = {
  embedded: {
    title: 'embedded sotu-llama',
    shape: '12 blocks × 128, 4/2 heads, vocab 4096, F16',
    engineDir: join(root, 'public', 'models', 'sotu-llama'),
    onnxDir: join(bench, '.models', 'sotu-llama'),
    peerDir: join(bench, '.models', 'sotu-llama-peer'),
    peerVariants: peerVariantsFlag ?? ['fp32', 'fp16', 'q4', 'q4f16'],
    prepare: 'onnx',
    sizes: embeddedSizes,
    // runtime → sections (null = skipped by default, with the reason)
    plan: {
      'ours-webgpu-node': ALL_SECTIONS,
      'ours-webgpu-chromium': ALL_SECTIONS,
      'ours-cpu-node': ['throughput', 'scoring', 'toggle', 'pruned'],
      'ours-cpu-chromium': ['throughput', 'scoring'],
      'ours-cpu-reference-node': ['throughput', 'scoring'],
      'tjs-webgpu-chromium': ['throughput'],
      'tjs-traced-webgpu-chromium': ['throughput'],
      'tjs-wasm-chromium': ['throughput'],
      'tjs-cpu-node': ['throughput'],
    },
  },
  'smollm2-135m': {
    title: 'SmolLM2-135M shape',
    shape: '30 blocks × 576, 9/3 heads, ffn 1536, vocab 49152, random F16',
    engineDir: join(bench, '.models', 'smollm2-135m'),
    onnxDir: join(bench, '.models', 'smollm2-135m'),
    peerDir: join(bench, '.models', 'smollm2-135m-peer'),
    peerVariants: peerVariantsFlag ?? ['fp32', 'fp16'],
    prepare: 'random',
    sizes: bigSizes(int(flags['big-prompt'], 16), int(flags['big-decode'], 4)),
    plan: {
      'ours-webgpu-node': ALL_SECTIONS,
      'ours-webgpu-chromium': ['throughput'],
      'ours-cpu-node': ['throughput', 'scoring', 'pruned'],
      'ours-cpu-chromium': ['throughput'],
      'ours-cpu-reference-node': ['throughput'],
      'tjs-webgpu-chromium': ['throughput'],
      'tjs-traced-webgpu-chromium': ['throughput'],
      'tjs-wasm-chromium': ['throughput'],
      'tjs-cpu-node': ['throughput'],
    },
    // the fast CPU backend affords more samples (does not change the throughput counts)
    sizeOverrides: {
      'ours-cpu-node': { scoreReps: 2, prunedRounds: 2, prunedSteps: 2, prunedPrompt: 4 },
      'ours-webgpu-node': { scoreReps: 2, prunedRounds: 2, prunedSteps: 1 },
    },
    sectionReason: {
      'ours-webgpu-chromium':
        'time budget on the software adapter: same kernels and buffers as the Node WebGPU row (Chromium adds only dispatch overhead, visible in the throughput row)',
    },
  },
  'qwen2.5-0.5b': {
    title: 'Qwen2.5-0.5B shape',
    shape: '24 blocks × 896, 14/2 heads, ffn 4864, vocab 151936, qkv bias, random F16',
    engineDir: join(bench, '.models', 'qwen2.5-0.5b'),
    onnxDir: null,
    peerDir: null,
    peerVariants: [],
    prepare: 'random-weights',
    sizes: bigSizes(int(flags['big-prompt'], 4), int(flags['big-decode'], 1)),
    plan: {
      'ours-webgpu-node': ['throughput', 'memory'],
      'ours-webgpu-chromium': flags.all ? ['throughput', 'memory'] : null,
      'ours-cpu-node': ['throughput'],
      'ours-cpu-chromium': null,
      'ours-cpu-reference-node': null,
      'tjs-webgpu-chromium': null,
      'tjs-traced-webgpu-chromium': null,
      'tjs-wasm-chromium': null,
      'tjs-cpu-node': null,
    },
    sectionReason: {
      'ours-cpu-node': 'time budget: only throughput with tiny counts for this shape',
      'ours-webgpu-node': 'time budget: only throughput (tiny counts) and memory for this shape on the software adapter (seconds per decode step, see the throughput row)',
    },
    // one row may take this long at most (seconds), whatever --timeout says
    rowTimeout: { 'ours-webgpu-node': 600 },
    skipReason: {
      'ours-webgpu-chromium': 'time budget: same kernels as the Node WebGPU row, plus a ~1 GB fetch and upload in the page (run with --all)',
      'ours-cpu-reference-node': 'time budget: the TypeScript reference takes minutes per step at this size (the fast CPU row is the one to compare)',
      'ours-cpu-chromium': 'time budget, and ~2.4 GB of f32 weights in the page (no transformers.js row to compare with either)',
      'tjs-webgpu-chromium':
        'time budget: no fair peer built — the fp32 export is ~2.5 GB (head stored apart from the embedding) and transformers.js WebGPU on SwiftShader already takes seconds per decode step on the 135M shape (~3.7× fewer weights; see its rows)',
      'tjs-traced-webgpu-chromium': 'no traced export made (~2.5 GB fp32; time budget, see the fair-peer row)',
      'tjs-wasm-chromium': 'no ONNX export made (~2.5 GB fp32; time budget, see the WebGPU row); the page would also have to hold 2.5 GB of wasm memory',
      'tjs-cpu-node': 'no ONNX export made (~2.5 GB fp32, several minutes of torch export on 2 cores): time budget',
    },
  },
};
const modelNames = flags.models ? flags.models.split(',') : quick ? ['embedded'] : Object.keys(MODELS);
for (const m of modelNames) if (!MODELS[m]) throw new Error(`unknown model ${m} (${Object.keys(MODELS).join(', ')})`);

// ---------------------------------------------------------------- helpers

function runProcess(cmd, args, { env = {}, timeout = timeoutMs } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      for (const line of String(d).split('\n')) if (line.trim() && !line.includes('XDG_RUNTIME_DIR')) log(line);
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ code: null, stdout, timedOut: true });
    }, timeout);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, timedOut: false });
    });
  });
}

function parseResult(r, limitMs = timeoutMs) {
  if (r.timedOut) return { error: `timed out after ${Math.round(limitMs / 1000)} s (time budget for this row; --timeout)` };
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) return { error: `exited with code ${r.code} without a result` };
  return JSON.parse(line.slice('RESULT '.length));
}

function fileDigest(path) {
  const h = createHash('sha256');
  h.update(readFileSync(path));
  return h.digest('hex').slice(0, 16);
}

// Python for the exports: --python, $BENCH_PYTHON, else the dev venv (/work/hf) when present, else python3
const python = flags.python ?? process.env.BENCH_PYTHON ?? (existsSync('/work/hf/bin/python') ? '/work/hf/bin/python' : 'python3');
const PEER_MODULES = ['torch', 'transformers', 'onnx', 'onnxscript', 'onnxruntime.transformers.optimizer', 'onnxruntime.quantization.matmul_nbits_quantizer'];
let peerPythonProblem;
/** Why the fair peer cannot be built here (null when python has everything build_peer.py imports). */
function peerPython() {
  if (peerPythonProblem !== undefined) return peerPythonProblem;
  const r = spawnSync(python, ['-c', `import ${PEER_MODULES.join(', ')}; import transformers as t, torch; assert int(t.__version__.split('.')[0]) >= 5, t.__version__`], {
    encoding: 'utf8',
  });
  peerPythonProblem =
    r.status === 0
      ? null
      : `no Python to build the fair peer (${python} cannot import ${PEER_MODULES.join(', ')} with transformers ≥ 5: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}); pass --python / $BENCH_PYTHON`;
  return peerPythonProblem;
}

/**
 * The fair peer's folder (tools/fair-peer/build_peer.py), rebuilt when the checkpoint or the build script
 * changed or a wanted variant is missing; returns null or why it is not there.
 */
function preparePeer(name) {
  const m = MODELS[name];
  if (!m.peerDir) return 'no fair peer for this shape';
  const weights = join(m.engineDir, 'model.safetensors');
  if (!existsSync(weights)) return `no model at ${relative(root, m.engineDir)}`;
  const script = join(root, 'tools', 'fair-peer', 'build_peer.py');
  const variants = [...new Set(['fp32', ...m.peerVariants])];
  const digest = `${fileDigest(weights)}-${fileDigest(script)}`;
  const stampPath = join(m.peerDir, '.bench-source.json');
  const stamp = existsSync(stampPath) ? JSON.parse(readFileSync(stampPath, 'utf8')) : null;
  const file = (v) => join(m.peerDir, 'onnx', v === 'fp32' ? 'model.onnx' : `model_${v}.onnx`);
  if (stamp?.digest === digest && variants.every((v) => existsSync(file(v)))) return null;
  if (flags['no-export']) return 'no (current) fair peer and --no-export given';
  const problem = peerPython();
  if (problem) return problem;
  log(`# building the fair peer of ${relative(root, m.engineDir)} (${variants.join(', ')}) in ${relative(root, m.peerDir)}`);
  rmSync(m.peerDir, { recursive: true, force: true });
  const t = Date.now();
  const r = spawnSync(python, [script, m.engineDir, m.peerDir, '--variants', variants.join(','), '--check'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  log(`# fair peer of ${name}: ${((Date.now() - t) / 1000).toFixed(0)} s`);
  if (r.status !== 0 || !variants.every((v) => existsSync(file(v)))) return `building the fair peer failed (exit ${r.status}; see the log above)`;
  writeFileSync(stampPath, JSON.stringify({ digest, variants }));
  return null;
}

/** Makes the model folders a model needs; returns { engine: reason|null, onnx: reason|null }. */
async function prepareModel(name) {
  const m = MODELS[name];
  const missing = { engine: null, onnx: null };
  const stamp = (dir) => join(dir, '.bench-source.json');
  const haveOnnx = (dir) => existsSync(join(dir, 'onnx', 'model.onnx'));
  const exportHint = `needs ${python} with torch (--python / $BENCH_PYTHON) to export`;
  if (m.prepare === 'onnx') {
    if (!existsSync(join(m.engineDir, 'model.safetensors'))) missing.engine = `no model at ${relative(root, m.engineDir)}`;
    if (missing.engine) {
      missing.onnx = missing.engine;
      return missing;
    }
    const digest = fileDigest(join(m.engineDir, 'model.safetensors'));
    const current = existsSync(stamp(m.onnxDir)) ? JSON.parse(readFileSync(stamp(m.onnxDir), 'utf8')).digest : null;
    if (haveOnnx(m.onnxDir) && current === digest) return missing;
    if (flags['no-export']) {
      missing.onnx = 'no (current) ONNX export and --no-export given';
      return missing;
    }
    log(`# exporting ${relative(root, m.engineDir)} to ONNX (${relative(root, m.onnxDir)})`);
    rmSync(m.onnxDir, { recursive: true, force: true });
    const r = spawnSync(python, [join(bench, 'export_models.py'), 'onnx', m.engineDir, m.onnxDir], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0 || !haveOnnx(m.onnxDir)) missing.onnx = `ONNX export failed (${exportHint})`;
    else writeFileSync(stamp(m.onnxDir), JSON.stringify({ digest }));
    return missing;
  }
  const haveWeights = existsSync(join(m.engineDir, 'model.safetensors')) && existsSync(join(m.engineDir, 'config.json'));
  const wantOnnx = m.prepare === 'random';
  if (haveWeights && (!wantOnnx || haveOnnx(m.onnxDir))) return missing;
  if (flags['no-export']) {
    missing.engine = haveWeights ? null : `no random-weight folder at ${relative(root, m.engineDir)} and --no-export given`;
    missing.onnx = wantOnnx ? 'no ONNX export and --no-export given' : null;
    return missing;
  }
  // the ONNX export must hold the very same weights: regenerate both together
  log(`# writing random ${name} weights${wantOnnx ? ' and their ONNX export' : ''} to ${relative(root, m.engineDir)} (minutes)`);
  rmSync(m.engineDir, { recursive: true, force: true });
  const t = Date.now();
  const r = spawnSync(python, [join(bench, 'export_models.py'), wantOnnx ? 'random' : 'random-weights', name, m.engineDir], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  log(`# ${name}: ${((Date.now() - t) / 1000).toFixed(0)} s`);
  if (r.status !== 0 || !existsSync(join(m.engineDir, 'model.safetensors'))) missing.engine = `could not write random weights (${exportHint})`;
  if (wantOnnx && (r.status !== 0 || !haveOnnx(m.onnxDir))) missing.onnx = `ONNX export failed (${exportHint})`;
  return missing;
}

function ensureBenchDeps() {
  if (existsSync(join(bench, 'node_modules', '@huggingface', 'transformers', 'package.json'))) return null;
  log('# installing the transformers.js peer into bench/node_modules (ONNXRUNTIME_NODE_INSTALL=skip)');
  const command = existsSync(join(bench, 'package-lock.json')) ? 'ci' : 'install';
  const r = spawnSync('npm', [command, '--no-audit', '--no-fund'], {
    cwd: bench,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' },
  });
  return r.status === 0 ? null : 'npm install in bench/ failed: @huggingface/transformers is not available';
}

async function buildPage() {
  const { build } = await import(pathToFileURL(join(root, 'node_modules', 'vite', 'dist', 'node', 'index.js')).href);
  const page = join(bench, 'page');
  await build({
    configFile: false,
    root: page,
    logLevel: 'error',
    build: {
      outDir: join(bench, '.build', 'page'),
      emptyOutDir: true,
      target: 'es2022',
      chunkSizeWarningLimit: 100_000,
      rollupOptions: { input: { engine: join(page, 'engine.html'), tjs: join(page, 'tjs.html') } },
    },
  });
}

// ---------------------------------------------------------------- main

const results = { meta: {}, runs: [] };
const nodeGpuEnv = { VK_ICD_FILENAMES: ICD, LD_LIBRARY_PATH: ['/usr/lib/chromium', process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };

async function main() {
  results.meta = {
    date: new Date().toISOString(),
    flags,
    loadAverageAtStart: loadavg().map((x) => Number(x.toFixed(2))),
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version, platform: `${process.platform} ${process.arch}` },
    models: Object.fromEntries(modelNames.map((n) => [n, { title: MODELS[n].title, shape: MODELS[n].shape, sizes: MODELS[n].sizes }])),
  };
  const wantsTjs = !flags.streaming && runtimes.some((r) => r.startsWith('tjs-'));
  const wantsChromium = !flags.streaming && runtimes.some((r) => r.endsWith('-chromium'));
  const tjsMissing = wantsTjs ? ensureBenchDeps() : null;

  let chromiumMissing = null;
  if (wantsChromium && !existsSync(chromePath)) chromiumMissing = `no Chromium at ${chromePath} (apt-get install chromium, or --chrome PATH)`;
  if (wantsChromium && !chromiumMissing) {
    try {
      const t = Date.now();
      await buildPage();
      log(`# built the bench page in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    } catch (e) {
      chromiumMissing = `bench page build failed: ${e.message}`;
    }
  }
  const nodeWebGpuMissing = existsSync(ICD) ? null : `no SwiftShader Vulkan ICD at ${ICD} (Debian's chromium package ships it)`;

  let browser = null;
  let server = null;
  const mounts = { '/': join(bench, '.build', 'page'), '/ort/': join(bench, 'node_modules', 'onnxruntime-web', 'dist') };
  for (const name of modelNames) {
    mounts[`/models/${name}/`] = MODELS[name].engineDir;
    if (MODELS[name].onnxDir) mounts[`/models/${name}-onnx/`] = MODELS[name].onnxDir;
    if (MODELS[name].peerDir) mounts[`/models/${name}-peer/`] = MODELS[name].peerDir;
  }

  /** One Chromium row (our engine page or the transformers.js page) in a fresh context of the shared browser. */
  const chromiumRow = async (name, runtime, variant, config, rowTimeoutMs) => {
    const m = MODELS[name];
    if (!browser) {
      const { launchChromium } = await import('./chromium.mjs');
      const { serve } = await import('./serve.mjs');
      server = await serve(mounts);
      browser = await launchChromium(chromePath);
      results.meta.chromium = browser.version();
    }
    const { runInPage } = await import('./chromium.mjs');
    if (runtime === 'ours-webgpu-chromium' || runtime === 'ours-cpu-chromium') {
      const backend = runtime === 'ours-cpu-chromium' ? 'cpu' : 'webgpu';
      return runInPage(browser, `${server.url}/engine.html`, 'runEngineBench', [name, { ...config, backend }], { timeoutMs: rowTimeoutMs, log });
    }
    const traced = runtime === 'tjs-traced-webgpu-chromium';
    const vocab = JSON.parse(readFileSync(join(traced ? m.onnxDir : m.peerDir, 'config.json'), 'utf8')).vocab_size;
    const device = runtime === 'tjs-wasm-chromium' ? 'wasm' : 'webgpu';
    const model = traced ? `${name}-onnx` : `${name}-peer`;
    return runInPage(browser, `${server.url}/tjs.html`, 'runTjsBench', [{ ...config, model, device, dtype: traced ? 'fp32' : variant, vocab }], { timeoutMs: rowTimeoutMs, log });
  };

  /**
   * The peer goals' pairs: our WebGPU Chromium row and the fair peer the goals compare with (goals.mjs
   * peerChoice), re-run alternately for throughput only, so each pair ran back to back under the same load.
   */
  const pairedPeerRounds = async (name) => {
    const { variant } = peerChoice(results, name);
    const ours = results.runs.find((r) => r.model === name && r.runtime === 'ours-webgpu-chromium' && r.result?.throughput);
    const peer = results.runs.find((r) => r.model === name && r.runtime === 'tjs-webgpu-chromium' && r.variant === variant && r.result?.throughput);
    if (!variant || !ours || !peer || pairRounds < 1) return;
    log(`# paired rounds: ours-webgpu-chromium and the fair peer ${variant}, ${pairRounds} more time(s), alternating`);
    const rounds = [{ ours: ours.result.throughput, peer: peer.result.throughput }];
    for (let i = 0; i < pairRounds; i++) {
      const round = {};
      // alternate who goes first, so neither always runs right after the other's warm-up
      for (const who of i % 2 ? ['peer', 'ours'] : ['ours', 'peer']) {
        const row = who === 'ours' ? ours : peer;
        const config = { sections: ['throughput'], ...row.sizes, profile: false };
        try {
          const r = await chromiumRow(name, row.runtime, row.variant, config, timeoutMs);
          round[who] = r?.throughput ?? null;
        } catch (e) {
          log(`# paired round ${i + 1} (${who}): ERROR ${e.message}`);
          round[who] = null;
        }
      }
      if (round.ours && round.peer) rounds.push(round);
    }
    results.paired ??= {};
    results.paired[name] = { variant, rounds: rounds.map((r) => ({ ours: pick(r.ours), peer: pick(r.peer) })) };
  };
  const pick = (t) => ({ prefillTokS: t.prefillTokS, decodeTokS: t.decodeTokS });

  try {
    for (const name of flags.streaming ? [] : modelNames) {
      const m = MODELS[name];
      log(`\n## ${name}: ${m.shape}`);
      const prep = await prepareModel(name);
      const wantsPeer = runtimes.some((r) => FAIR_PEER_RUNTIMES.has(r) && m.plan[r]);
      const peerMissing = wantsPeer ? preparePeer(name) : null;
      // one row per (runtime, variant): the fair peer on WebGPU runs each variant; other peer rows fp32
      const rows = runtimes.flatMap((runtime) =>
        runtime === 'tjs-webgpu-chromium' && m.plan[runtime]
          ? m.peerVariants.map((variant) => ({ runtime, variant }))
          : [{ runtime, variant: FAIR_PEER_RUNTIMES.has(runtime) ? 'fp32' : runtime === 'tjs-traced-webgpu-chromium' ? 'traced-fp32' : null }],
      );
      for (const { runtime, variant } of rows) {
        const sections = m.plan[runtime];
        const run = { model: name, runtime, variant, sections, sizes: { ...m.sizes, ...(m.sizeOverrides?.[runtime] ?? {}) }, sectionReason: m.sectionReason?.[runtime] ?? null };
        results.runs.push(run);
        const isTjs = runtime.startsWith('tjs-');
        const isChromium = runtime.endsWith('-chromium');
        const label = variant ? `${runtime} [${variant}]` : runtime;
        run.skipped =
          sections === null
            ? (m.skipReason?.[runtime] ?? 'skipped by default')
            : isTjs
              ? (tjsMissing ?? (FAIR_PEER_RUNTIMES.has(runtime) ? peerMissing : (prep.onnx ?? (m.onnxDir ? null : 'no ONNX export for this shape'))))
              : prep.engine;
        run.skipped ??= isChromium ? chromiumMissing : runtime === 'ours-webgpu-node' ? nodeWebGpuMissing : null;
        if (run.skipped) {
          log(`# ${label}: not run — ${run.skipped}`);
          continue;
        }
        log(`# ${label} (${sections.join(', ')})`);
        run.loadAverage1m = Number(loadavg()[0].toFixed(2));
        const t = Date.now();
        const config = { sections, ...run.sizes, profile: !!flags.profile };
        const rowTimeoutMs = Math.min(timeoutMs, (m.rowTimeout?.[runtime] ?? Number.POSITIVE_INFINITY) * 1000);
        try {
          if (runtime === 'ours-webgpu-node' || runtime === 'ours-cpu-node' || runtime === 'ours-cpu-reference-node') {
            const backend = { 'ours-webgpu-node': 'webgpu', 'ours-cpu-node': 'cpu', 'ours-cpu-reference-node': 'cpu-reference' }[runtime];
            const r = await runProcess(process.execPath, ['--import', 'tsx', join(bench, 'node-engine.ts'), JSON.stringify({ dir: m.engineDir, config: { ...config, backend } })], {
              env: backend === 'webgpu' ? nodeGpuEnv : {},
              timeout: rowTimeoutMs,
            });
            run.result = parseResult(r, rowTimeoutMs);
          } else if (runtime === 'tjs-cpu-node') {
            const vocab = JSON.parse(readFileSync(join(m.peerDir, 'config.json'), 'utf8')).vocab_size;
            const r = await runProcess(
              process.execPath,
              [
                join(bench, 'tjs-node.mjs'),
                JSON.stringify({ modelsDir: join(m.peerDir, '..'), config: { ...config, model: relative(join(m.peerDir, '..'), m.peerDir), device: 'cpu', dtype: variant, vocab } }),
              ],
              { timeout: rowTimeoutMs },
            );
            run.result = parseResult(r, rowTimeoutMs);
          } else {
            run.result = await chromiumRow(name, runtime, variant, config, rowTimeoutMs);
          }
        } catch (e) {
          run.result = { error: e.message };
        }
        if (run.result?.skipped) {
          // the row found at run time that it cannot run here (e.g. an fp16 model without shader-f16)
          run.skipped = run.result.skipped;
          delete run.result;
          log(`# ${label}: not run — ${run.skipped}`);
        }
        run.seconds = Math.round((Date.now() - t) / 100) / 10;
        if (run.result?.error) log(`# ${label}: ERROR ${run.result.error}`);
        log(`# ${label}: ${run.seconds} s`);
      }
      await pairedPeerRounds(name);
    }
  } finally {
    await browser?.close().catch(() => {});
    await server?.close();
  }
  if (flags.streaming || (!quick && !flags['no-streaming'])) {
    // Block-streamed scoring (issue 12): its own process, so its peak RSS is its own.
    log('\n## block-streamed scoring: Llama-3.2-1B shape, 512 MiB GPU budget');
    const t = Date.now();
    const config = { dir: join(bench, '.models', 'llama-3.2-1b-shape'), budgetMiB: 512, sequences: 1, tokens: 8 };
    const r = nodeWebGpuMissing
      ? { error: nodeWebGpuMissing }
      : parseResult(await runProcess(process.execPath, ['--import', 'tsx', join(bench, 'streaming-bench.ts'), JSON.stringify(config)], { env: nodeGpuEnv }));
    results.streaming = { config, seconds: Math.round((Date.now() - t) / 1000), result: r };
    log(r.error ? `# streaming: ERROR ${r.error}` : `# streaming: ${results.streaming.seconds} s`);
  }
  results.goals = computeGoals(results, modelNames);
  results.meta.totalSeconds = Math.round((Date.now() - started) / 1000);
  results.meta.loadAverageAtEnd = loadavg().map((x) => Number(x.toFixed(2)));

  const outDir = join(bench, 'results');
  mkdirSync(outDir, { recursive: true });
  const stampName = results.meta.date.replace(/[:.]/g, '-');
  writeFileSync(join(outDir, `${stampName}.json`), JSON.stringify(results, null, 2));
  writeFileSync(join(outDir, 'latest.json'), JSON.stringify(results, null, 2));
  const { renderTable } = await import('./table.mjs');
  const table = renderTable(results, { RUNTIME_TITLES });
  writeFileSync(join(outDir, 'table.md'), table);
  console.log(table);
  log(`\nwrote bench/results/${stampName}.json, latest.json and table.md in ${results.meta.totalSeconds} s`);
}

await main();
// A selected row that errored makes the run a failure (rows skipped by design or for a stated reason do not).
const errored = results.runs.filter((r) => r.result?.error);
for (const r of errored) log(`ERROR ${r.model} / ${r.runtime}: ${r.result.error}`);
if (errored.length > 0) log(`\n${errored.length} of ${results.runs.length} rows failed`);
process.exit(errored.length > 0 ? 1 : 0);
