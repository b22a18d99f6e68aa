/**
 * Every WebGPU suite goes through describeGpu (tests/webgpu/setup.ts), which turns "no WebGPU" into a failing
 * test naming the reason. A suite wrapped in skipIf / runIf would turn a broken binding into a green run.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';

const DIR = join(import.meta.dirname, '..', 'webgpu');
const files = readdirSync(DIR).filter((f) => f.endsWith('.test.ts'));

test('tests/webgpu holds WebGPU suites', () => {
  expect(files.length).toBeGreaterThan(0);
});

test.each(files)('tests/webgpu/%s runs its suites through describeGpu, never a conditional skip', (file) => {
  const source = readFileSync(join(DIR, file), 'utf8');
  expect(source).toMatch(/\bdescribeGpu\(/);
  // A test may still skip itself at run time for an optional adapter feature (ctx.skip()): it is named, and the run fails unless PRUNELAB_ALLOW_SKIPS=1.
  expect(source.match(/\b(describe|test|it)\.(skipIf|runIf|skip)\(|\bgpuAvailable\b/g) ?? [], file).toEqual([]);
});
