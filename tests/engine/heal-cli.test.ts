import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'cli', 'bin.mjs');

async function cli(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { cwd: ROOT });
    return { stdout, stderr, code: 0 };
  } catch (e) {
    const err = e as { stdout: string; stderr: string; code: number };
    return { stdout: err.stdout, stderr: err.stderr, code: err.code };
  }
}

/** Calibration and held-out ids of the embedded model (the heal golden's, cut shorter). */
function idsFiles(): { calibration: string; evaluation: string } {
  const golden = JSON.parse(readFileSync(join(ROOT, 'tests', 'golden', 'sotu-llama-heal-4-5-6.json'), 'utf8')) as { calibration: number[][]; evaluation: number[][] };
  const dir = mkdtempSync(join(tmpdir(), 'prunelab-heal-ids-'));
  const calibration = join(dir, 'calibration.json');
  const evaluation = join(dir, 'evaluation.json');
  writeFileSync(calibration, JSON.stringify(golden.calibration.slice(0, 16)));
  writeFileSync(evaluation, JSON.stringify(golden.evaluation.slice(0, 8)));
  return { calibration, evaluation };
}

describe('prunelab heal', () => {
  it('writes a checkpoint that reloads with the perplexity it printed, below plain removal on held-out text', async () => {
    const { calibration, evaluation } = idsFiles();
    const out = join(mkdtempSync(join(tmpdir(), 'prunelab-healed-cli-')), 'healed');
    const healed = await cli(['heal', '--remove', '4,5,6', '--ids', calibration, '--eval-ids', evaluation, '--out', out, '--json']);
    expect(healed.stderr).toBe('');
    expect(healed.code).toBe(0);
    const report = JSON.parse(healed.stdout);
    expect(report.removed).toEqual([4, 5, 6]);
    expect(report.keptBlocks).toEqual([0, 1, 2, 3, 7, 8, 9, 10, 11]);
    expect(report.spans).toHaveLength(1);
    expect(report.spans[0]).toMatchObject({ start: 4, end: 7, block: 3, tokens: 2048 });
    expect(report.spans[0].residual).toBeLessThan(report.spans[0].removalResidual);
    expect(report.evaluation.healed).toBeLessThan(0.97 * report.evaluation.removed);
    expect(report.memory.mode).toBe('resident');

    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(config.num_hidden_layers).toBe(9);
    for (const file of ['model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) expect(existsSync(join(out, file))).toBe(true);
    const note = readFileSync(join(out, 'PRUNELAB.md'), 'utf8');
    expect(note).toContain('Removed original blocks (0-based): **4, 5, 6**');
    expect(note).toMatch(/\| \[4–6\] \| 3 \(3\) \| 2048 \| 0\.\d{6} \| 0\.\d{6} \|/);
    expect(note).toContain('calibration.json, 16 sequences (2048 tokens)');

    for (const [ids, expected] of [
      [calibration, report.calibration],
      [evaluation, report.evaluation],
    ] as const) {
      const reloaded = JSON.parse((await cli(['ppl', '--model', out, '--ids', ids, '--json'])).stdout);
      expect(reloaded.tokens).toBe(expected.tokens);
      expect(Math.abs(reloaded.ppl / expected.healed - 1)).toBeLessThan(1e-9);
    }
  }, 300_000);

  it('--best-span N heals the N-block window closest in angular distance that has a block before it', async () => {
    const { calibration } = idsFiles();
    const out = join(mkdtempSync(join(tmpdir(), 'prunelab-healed-best-')), 'healed');
    const result = await cli(['heal', '--best-span', '2', '--ids', calibration, '--max-sequences', '4', '--out', out, '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.removed).toHaveLength(2);
    const [a, b] = report.removed;
    expect(b).toBe(a + 1);
    expect(a).toBeGreaterThanOrEqual(1);
    expect(report.spans[0].block).toBe(a - 1);
  }, 300_000);

  it('refuses what it cannot heal, naming the flag or the reason', async () => {
    const { calibration } = idsFiles();
    const out = join(tmpdir(), 'prunelab-never-written');
    const cases: [string[], RegExp][] = [
      [['--remove', '0,1'], /the span \[0–1\] starts at block 0: there is no block before it/],
      [['--remove', '4', '--best-span', '2'], /exactly one of --remove 4,5,6 or --best-span N/],
      [['--remove', '4', '--ridge', '-1'], /--ridge must satisfy 0 ≤ ridge/],
      [['--remove', '1', '--model', join(ROOT, 'tests', 'fixtures-hf', 'olmo2')], /healing is not available for olmo2/],
    ];
    for (const [args, message] of cases) {
      const result = await cli(['heal', '--ids', calibration, '--out', out, ...args]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(message);
    }
    expect(existsSync(out)).toBe(false);
  }, 300_000);
});
