#!/usr/bin/env node
// `npm test`: static checks, then the Node suites (unit, engine goldens, WebGPU kernels on SwiftShader),
// then the browser suite in Debian's chromium. Prints one closing line "N passed, N failed".
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

function step(title, cmd, args, env = {}) {
  console.log(`\n== ${title}: ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  return r.status ?? 1;
}

/** Chromium provides both the browser for e2e tests and the SwiftShader Vulkan driver for Node WebGPU. */
function ensureChromium() {
  const path = process.env.CHROME_PATH || '/usr/bin/chromium';
  if (existsSync(path)) return path;
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    console.log("chromium not found: installing Debian's chromium (apt-get)…");
    spawnSync('apt-get', ['update'], { stdio: 'inherit' });
    const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status === 0 && existsSync('/usr/bin/chromium')) return '/usr/bin/chromium';
  }
  console.error("No Chromium found. Install Debian's chromium (apt-get install chromium) or set CHROME_PATH to a Chromium binary.");
  process.exit(2);
}

const chrome = ensureChromium();
let passed = 0;
let failed = 0;

if (step('static checks', 'npm', ['run', '--silent', 'check']) !== 0) failed++;
else passed++;

const report = join(mkdtempSync(join(tmpdir(), 'prunelab-vitest-')), 'report.json');
const gpuEnv = existsSync(ICD) ? { VK_ICD_FILENAMES: ICD, LD_LIBRARY_PATH: ['/usr/lib/chromium', process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') } : {};
const vitestStatus = step('unit + engine + webgpu (vitest)', 'npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile=${report}`], gpuEnv);
if (existsSync(report)) {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed += r.numPassedTests;
  failed += r.numFailedTests + (vitestStatus !== 0 && r.numFailedTests === 0 ? 1 : 0);
} else failed++;

if (existsSync(join(root, 'tests', 'browser', 'run.mjs'))) {
  // The browser runner prints its own closing "N passed, N failed" line; read it from its output.
  console.log('\n== browser (playwright-core + chromium): node tests/browser/run.mjs');
  const r = spawnSync('node', ['tests/browser/run.mjs'], {
    cwd: root,
    env: { ...process.env, CHROME_PATH: chrome },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 << 20,
  });
  process.stdout.write(r.stdout ?? '');
  process.stderr.write(r.stderr ?? '');
  const counts = [...(r.stdout ?? '').matchAll(/^(\d+) passed, (\d+) failed/gm)].at(-1);
  if (counts) {
    passed += Number(counts[1]);
    failed += Number(counts[2]) + (r.status !== 0 && Number(counts[2]) === 0 ? 1 : 0);
  } else failed++;
}

console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
