/**
 * Runs `prunelab score --json` in a child process that reports its own peak resident set at exit
 * (peak-rss-hook.mjs, Linux VmHWM), for the tests that bound the CLI's host memory
 * (tests/engine/peak-rss-cpu.test.ts, tests/webgpu/peak-rss.test.ts).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll } from 'vitest';
import { randomIds, type RandomModelOptions, writeRandomCheckpoint } from '../webgpu/random-model.ts';

export const MIB = 2 ** 20;
const ROOT = join(import.meta.dirname, '..', '..');
const HOOK = join(ROOT, 'tests', 'engine', 'peak-rss-hook.mjs');
const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

export interface PeakRun {
  peakBytes: number;
  out: { memory: { mode: string; gpuPeakBytes: number; weightBytes: number }; blocks: { index: number; bi: number }[] };
}

/**
 * `prunelab score --model <model> --ids <dir>/ids.json <flags> --json`; its peak RSS is its own, so children
 * may run side by side. The SwiftShader driver is put in the environment so cli/bin.mjs runs WebGPU in this
 * process rather than re-executing itself without the hook.
 */
export async function scorePeak(dir: string, model: string, flags: string[]): Promise<PeakRun> {
  const peakFile = join(dir, `peak-${Math.random().toString(36).slice(2)}`);
  const gpuEnv = existsSync(ICD)
    ? { VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES || ICD, LD_LIBRARY_PATH: ['/usr/lib/chromium', process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') }
    : {};
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', HOOK, join(ROOT, 'cli', 'bin.mjs'), 'score', '--model', model, '--ids', join(dir, 'ids.json'), ...flags, '--json'],
    { cwd: ROOT, env: { ...process.env, ...gpuEnv, PRUNELAB_NO_REEXEC: '1', PRUNELAB_PEAK_RSS_FILE: peakFile }, maxBuffer: 16 * MIB },
  );
  return { peakBytes: Number(readFileSync(peakFile, 'utf8')), out: JSON.parse(stdout) };
}

export const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;

/**
 * A test file's checkpoints: `tiny` (the baseline: the same command on a 2 MB model) and `model`, written to a
 * temporary folder before the file's tests (with ids.json: 16 random ids) and removed after. `dir` and `stored`
 * (the model's stored block and ends bytes) are set once beforeAll has run.
 */
export function peakRssCheckpoints(prefix: string, tiny: RandomModelOptions, model: RandomModelOptions, timeoutMs: number) {
  const at: { dir: string; stored: { blockBytes: number[]; endsBytes: number } } = { dir: '', stored: { blockBytes: [], endsBytes: 0 } };
  beforeAll(async () => {
    at.dir = mkdtempSync(join(tmpdir(), `prunelab-${prefix}-`));
    writeFileSync(join(at.dir, 'ids.json'), JSON.stringify([randomIds(16, model.vocab, 7)]));
    await writeRandomCheckpoint(join(at.dir, 'tiny'), tiny, 64 * MIB);
    at.stored = await writeRandomCheckpoint(join(at.dir, 'model'), model, 64 * MIB);
  }, timeoutMs);
  afterAll(() => {
    if (at.dir) rmSync(at.dir, { recursive: true, force: true });
  });
  return at;
}
