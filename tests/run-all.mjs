#!/usr/bin/env node
// `npm test`: static checks, then the Node suites (unit, engine goldens, WebGPU kernels on SwiftShader),
// then the browser suite in Debian's chromium. Prints one closing line "N passed, N failed, N skipped".
//
// A suite that cannot run is a failure naming why (no Chromium, no WebGPU adapter, a binding that does not
// load, a runner that ran nothing). The one opt-out, for a machine with no WebGPU path at all, is
// PRUNELAB_NO_WEBGPU=1: the WebGPU suites are then skipped and the closing line says so in capitals. Any other
// skipped test fails the run unless PRUNELAB_ALLOW_SKIPS=1 (then the closing line says so too).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';

const root = join(import.meta.dirname, '..');
const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const noWebGpu = process.env.PRUNELAB_NO_WEBGPU === '1';
/** The vitest folders that must each run at least one test (a folder that runs none is a failure). */
const NODE_SUITES = ['unit', 'engine', 'webgpu'];

let passed = 0;
let failed = 0;
let skipped = 0;
/** Failures that are not one failing test: a suite that could not run, or ran nothing. */
const problems = [];
function problem(text) {
  failed++;
  problems.push(text);
  console.log(`not ok - ${text}`);
}

function step(title, cmd, args, env = {}) {
  console.log(`\n== ${title}: ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  return r.status ?? 1;
}

/** Chromium provides both the browser for e2e tests and the SwiftShader Vulkan driver for Node WebGPU. */
function findChromium() {
  const path = process.env.CHROME_PATH || '/usr/bin/chromium';
  if (existsSync(path)) return path;
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    console.log("chromium not found: installing Debian's chromium (apt-get)…");
    spawnSync('apt-get', ['update'], { stdio: 'inherit' });
    const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status === 0 && existsSync('/usr/bin/chromium')) return '/usr/bin/chromium';
  }
  return null;
}

const chrome = findChromium();
if (!chrome) {
  problem(
    `no Chromium at ${process.env.CHROME_PATH || '/usr/bin/chromium'}: the browser suite cannot run and Node WebGPU has no SwiftShader driver (apt-get install chromium, or set CHROME_PATH)`,
  );
}

if (step('static checks', 'npm', ['run', '--silent', 'check']) !== 0) failed++;
else passed++;

const report = join(mkdtempSync(join(tmpdir(), 'prunelab-vitest-')), 'report.json');
const gpuEnv = existsSync(ICD) ? { VK_ICD_FILENAMES: ICD, LD_LIBRARY_PATH: ['/usr/lib/chromium', process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') } : {};
const vitestStatus = step('unit + engine + webgpu (vitest)', 'npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile=${report}`], gpuEnv);
if (existsSync(report)) {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  skipped += r.numPendingTests + r.numTodoTests;
  const ran = Object.fromEntries(NODE_SUITES.map((s) => [s, 0]));
  for (const file of r.testResults) {
    const suite = relative(join(root, 'tests'), file.name).split(sep)[0];
    const executed = file.assertionResults.filter((a) => a.status === 'passed' || a.status === 'failed').length;
    if (suite in ran) ran[suite] += executed;
    // A file that fails to load or whose hooks throw reports no failed test of its own.
    if (file.status === 'failed' && !file.assertionResults.some((a) => a.status === 'failed'))
      problem(`vitest: ${relative(root, file.name)} failed: ${(file.message || 'a suite or hook failed (see above)').split('\n')[0]}`);
    for (const a of file.assertionResults)
      if (a.status === 'pending' || a.status === 'skipped' || a.status === 'todo') console.log(`# skipped: ${relative(root, file.name)} > ${a.fullName}`);
  }
  for (const [suite, count] of Object.entries(ran)) {
    if (count === 0 && !(suite === 'webgpu' && noWebGpu)) problem(`vitest: no test in tests/${suite} ran`);
  }
  if (vitestStatus !== 0 && r.numFailedTests === 0 && problems.length === 0) problem(`vitest exited with status ${vitestStatus}`);
} else problem(`vitest wrote no report (exit status ${vitestStatus})`);

if (!existsSync(join(root, 'tests', 'browser', 'run.mjs'))) problem('the browser runner tests/browser/run.mjs is missing');
else if (chrome) {
  // The browser runner prints its own closing "N passed, N failed, N skipped" line; read it from its output.
  console.log('\n== browser (playwright-core + chromium): node tests/browser/run.mjs');
  const r = spawnSync('node', ['tests/browser/run.mjs'], {
    cwd: root,
    env: { ...process.env, ...gpuEnv, CHROME_PATH: chrome },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 << 20,
  });
  process.stdout.write(r.stdout ?? '');
  process.stderr.write(r.stderr ?? '');
  const counts = [...(r.stdout ?? '').matchAll(/^(\d+) passed, (\d+) failed, (\d+) skipped/gm)].at(-1);
  if (!counts) problem(`browser: the runner printed no closing count (exit status ${r.status})`);
  else {
    const [p, f, s] = counts.slice(1).map(Number);
    passed += p;
    failed += f;
    skipped += s;
    if (p + f === 0) problem('browser: no check ran');
    else if (r.status !== 0 && f === 0) problem(`browser: the runner exited with status ${r.status}`);
  }
}

if (problems.length > 0) console.log(`\nsuites that could not run or ran nothing:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
const optOut = noWebGpu ? ' — WEBGPU NOT TESTED: PRUNELAB_NO_WEBGPU=1 SKIPPED EVERY WEBGPU SUITE' : '';
// A skipped test checked nothing: it fails the run unless skips were explicitly allowed.
const allowSkips = noWebGpu || process.env.PRUNELAB_ALLOW_SKIPS === '1';
const skipNote = skipped > 0 && allowSkips ? ' — SKIPS ALLOWED BY PRUNELAB_ALLOW_SKIPS / PRUNELAB_NO_WEBGPU' : '';
if (skipped > 0 && !allowSkips) console.log(`\n${skipped} test(s) skipped (listed above as "# skipped"): a skip fails the run; set PRUNELAB_ALLOW_SKIPS=1 to allow it`);
console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped${optOut}${skipNote}`);
process.exit(failed === 0 && (skipped === 0 || allowSkips) ? 0 : 1);
