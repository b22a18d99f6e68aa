#!/usr/bin/env node
// `node bench/ppl-vs-torch.mjs [--rounds N] [--python PATH] [--backend cpu|cpu-reference]`: issue 16's acceptance
// check. `prunelab ppl --backend cpu` side by side with transformers on PyTorch (float32, one thread) on
// SmolLM2-135M's shape with random BF16 weights, 2 × 128 tokens, alternating in one run. Both sides time the
// forwards and the NLL only (load excluded): the CLI's `timing.runSeconds`, and bench/ppl_vs_torch.py.
// Needs a Python with torch + transformers + safetensors (dev-time only, never `npm test`): --python, else
// $BENCH_PYTHON, else /work/hf/bin/python, else python3. Writes bench/results/ppl-vs-torch.json.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';

const bench = import.meta.dirname;
const root = join(bench, '..');
const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const rounds = Number.parseInt(flag('rounds', '3'), 10);
const backend = flag('backend', 'cpu');
const python = flag('python', process.env.BENCH_PYTHON ?? (existsSync('/work/hf/bin/python') ? '/work/hf/bin/python' : 'python3'));
const dir = join(bench, '.models', 'smollm2-135m-bf16');
const log = (line) => console.error(line);

function run(cmd, argv) {
  const r = spawnSync(cmd, argv, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  return r.stdout;
}

if (!existsSync(join(dir, 'model.safetensors'))) {
  log(`# writing random BF16 SmolLM2-135M-shaped weights to ${dir}`);
  run(python, [join(bench, 'ppl_vs_torch.py'), 'make', dir]);
}

function prunelab() {
  const out = JSON.parse(run(process.execPath, [join(root, 'cli', 'bin.mjs'), 'ppl', '--model', dir, '--ids', join(dir, 'ids.json'), '--backend', backend, '--json']));
  return { seconds: out.timing.runSeconds, cpuSeconds: out.timing.cpuSeconds, loadSeconds: out.timing.loadSeconds, ppl: out.ppl, backend: out.timing.backend };
}
function torch() {
  // two passes: the first is cold like the CLI's single pass; the second shows torch warm
  const out = JSON.parse(run(python, [join(bench, 'ppl_vs_torch.py'), 'time', dir, '2']).trim().split('\n').pop());
  return { seconds: out.runs[0].seconds, cpuSeconds: out.runs[0].cpuSeconds, warmSeconds: out.runs[1].seconds, ppl: out.runs[0].ppl, torch: out.torch, threads: out.threads };
}

const results = [];
for (let r = 0; r < rounds; r++) {
  // alternate who goes first, so drift in the machine's load hits both sides alike
  const order = r % 2 === 0 ? ['prunelab', 'torch'] : ['torch', 'prunelab'];
  const round = { loadAverage1m: Number(loadavg()[0].toFixed(2)) };
  for (const side of order) round[side] = side === 'prunelab' ? prunelab() : torch();
  round.ratio = round.prunelab.seconds / round.torch.seconds;
  round.cpuRatio = round.prunelab.cpuSeconds / round.torch.cpuSeconds;
  results.push(round);
  log(
    `round ${r + 1}: prunelab ${round.prunelab.seconds.toFixed(3)} s (cpu ${round.prunelab.cpuSeconds.toFixed(3)} s), torch ${round.torch.seconds.toFixed(3)} s ` +
      `(cpu ${round.torch.cpuSeconds.toFixed(3)} s, warm ${round.torch.warmSeconds.toFixed(3)} s): ratio ${round.ratio.toFixed(2)}× wall, ${round.cpuRatio.toFixed(2)}× cpu; load ${round.loadAverage1m}`,
  );
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const summary = {
  date: new Date().toISOString(),
  host: { cpus: cpus().length, cpuModel: cpus()[0]?.model },
  model: 'SmolLM2-135M shape, random BF16 weights, 2 × 128 tokens',
  backend: results[0]?.prunelab.backend,
  torch: results[0] && `${results[0].torch.torch}, float32, ${results[0].torch.threads} thread`,
  pplAgreement: results[0] && Math.abs(results[0].prunelab.ppl - results[0].torch.ppl) / results[0].torch.ppl,
  medianRatio: median(results.map((r) => r.ratio)),
  medianCpuRatio: median(results.map((r) => r.cpuRatio)),
  target: 1.5,
  rounds: results,
};
mkdirSync(join(bench, 'results'), { recursive: true });
writeFileSync(join(bench, 'results', 'ppl-vs-torch.json'), JSON.stringify(summary, null, 2));
console.log(
  `prunelab ppl --backend ${backend} vs transformers/PyTorch float32 1 thread: median ${summary.medianRatio.toFixed(2)}× wall (${summary.medianCpuRatio.toFixed(2)}× cpu) over ${rounds} rounds; target ≤ 1.5×; ppl agree to ${summary.pplAgreement?.toExponential(1)}`,
);
