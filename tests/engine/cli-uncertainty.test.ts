/** `prunelab score`'s error bars: the --json contract (ci, pLowest, cutStability), the flags, the refusal for one sequence. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../cli/prunelab.ts';
import { bootstrapScores, rankStability } from '../../src/analysis/uncertainty.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const MODEL = join(ROOT, 'public', 'models', 'sotu-llama');
// Six short sequences of the embedded model's calibration text keep each run quick.
const reference = JSON.parse(readFileSync(join(ROOT, 'tests', 'golden', 'sotu-llama-per-sequence.json'), 'utf8')) as { ids: number[][] };
const sequences = reference.ids.slice(0, 6).map((ids) => ids.slice(0, 32));
const dir = mkdtempSync(join(tmpdir(), 'prunelab-ci-'));
const idsFile = join(dir, 'ids.json');
const oneFile = join(dir, 'one.json');
writeFileSync(idsFile, JSON.stringify(sequences));
writeFileSync(oneFile, JSON.stringify(sequences.slice(0, 1)));

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await main(
    args,
    (t) => stdout.push(t),
    (t) => stderr.push(t),
  );
  return { code, stdout: stdout.join('\n'), stderr: stderr.join('\n') };
}

interface ScoreJson {
  tokens: number;
  blocks: { index: number; bi: number; angular: number; relMagnitude: number; ci: Record<'bi' | 'angular' | 'relMagnitude', [number, number]> | null; pLowest: number | null }[];
  cutStability: number | null;
  bootstrap: { resamples: number; seed: number; sequences: number; k: number; cut?: number[]; stable?: boolean; refused?: string; caution?: string };
  perSequence?: { index: number; bi: number }[][];
}

describe('prunelab score: confidence intervals and rank stability', () => {
  it('--json gives per block ci for all three metrics and pLowest, and top-level cutStability, equal to the bootstrap of the per-sequence sums', async () => {
    const { code, stdout, stderr } = await cli(['score', '--model', MODEL, '--ids', idsFile, '--bootstrap', '400', '--seed', '5', '--json', '--per-sequence']);
    expect(code, stderr).toBe(0);
    const out = JSON.parse(stdout) as ScoreJson;
    expect(out.bootstrap).toMatchObject({ resamples: 400, seed: 5, sequences: 6, k: 3 });
    // Few sequences: the caution is stated, in the JSON and on stderr.
    expect(out.bootstrap.caution).toMatch(/only 6 calibration sequences/);
    expect(stderr).toMatch(/warning: only 6 calibration sequences/);
    // The same numbers from the engine and the statistics module in-process.
    const model = await Model.load(directorySource(MODEL), 'cpu');
    const { perSequence } = await model.scoreSequences(sequences, makePlan(model.spec.layers));
    model.dispose();
    const boot = bootstrapScores(perSequence, { resamples: 400, seed: 5 });
    if (!boot.ok) throw new Error(boot.reason);
    const stability = rankStability(boot, 'bi', 3);
    expect(out.cutStability).toBe(stability.cutStability);
    expect(out.bootstrap.cut).toEqual(stability.cut);
    out.blocks.forEach((b, i) => {
      expect(b.ci).toEqual({ bi: boot.blocks[i].bi, angular: boot.blocks[i].angular, relMagnitude: boot.blocks[i].relMagnitude });
      expect(b.pLowest).toBe(stability.pLowest[i].p);
      for (const m of ['bi', 'angular', 'relMagnitude'] as const) {
        const [lo, hi] = b.ci?.[m] ?? [Number.NaN, Number.NaN];
        expect(lo).toBeLessThanOrEqual(hi);
      }
    });
    // Every resample puts exactly k blocks among its k lowest.
    expect(out.blocks.reduce((a, b) => a + (b.pLowest ?? 0), 0)).toBeCloseTo(3, 9);
    expect(out.perSequence).toHaveLength(6);
    expect(out.perSequence?.[2][4].bi).toBeCloseTo(1 - perSequence[2][4].cosSum / perSequence[2][4].tokens, 12);
  }, 120_000);

  it('--k, --bootstrap and --seed set the resampling; another seed gives other intervals', async () => {
    const a = JSON.parse((await cli(['score', '--model', MODEL, '--ids', idsFile, '--k', '1', '--bootstrap', '50', '--seed', '1', '--json'])).stdout) as ScoreJson;
    const b = JSON.parse((await cli(['score', '--model', MODEL, '--ids', idsFile, '--k', '1', '--bootstrap', '50', '--seed', '2', '--json'])).stdout) as ScoreJson;
    expect(a.bootstrap).toMatchObject({ k: 1, resamples: 50, seed: 1 });
    expect(a.bootstrap.cut).toHaveLength(1);
    expect(a.blocks.reduce((s, x) => s + (x.pLowest ?? 0), 0)).toBeCloseTo(1, 9);
    expect(a.blocks.map((x) => x.bi)).toEqual(b.blocks.map((x) => x.bi));
    expect(a.blocks.map((x) => x.ci)).not.toEqual(b.blocks.map((x) => x.ci));
  }, 120_000);

  it('one sequence: no intervals (null) and the reason, never invented numbers', async () => {
    const { code, stdout, stderr } = await cli(['score', '--model', MODEL, '--ids', oneFile, '--json']);
    expect(code).toBe(0);
    const out = JSON.parse(stdout) as ScoreJson;
    expect(out.blocks.every((b) => b.ci === null && b.pLowest === null)).toBe(true);
    expect(out.cutStability).toBeNull();
    expect(out.bootstrap.refused).toMatch(/one calibration sequence/);
    expect(stderr).toMatch(/warning: no intervals from one calibration sequence/);
    const table = await cli(['score', '--model', MODEL, '--ids', oneFile]);
    expect(table.stdout).toMatch(/no confidence intervals: no intervals from one calibration sequence/);
  }, 120_000);

  it('the table shows the intervals and says whether the cut is stable, with the number', async () => {
    const { stdout } = await cli(['score', '--model', MODEL, '--ids', idsFile, '--bootstrap', '100']);
    expect(stdout).toMatch(/block {7}BI 95% CI/);
    expect(stdout).toMatch(/^ {4}0 +\d\.\d{5} \[\d\.\d{5}, \d\.\d{5}\]/m);
    expect(stdout).toMatch(/^(un)?stable: the bootstrap's 3 lowest by Block Influence are \{\d+, \d+, \d+\} in [\d.]+% of 100 resamples/m);
  }, 120_000);

  it('bad values are errors that name the flag', async () => {
    const bad = async (args: string[]) => (await cli(['score', '--model', MODEL, '--ids', idsFile, ...args])).stderr;
    expect(await bad(['--bootstrap', '1'])).toMatch(/--bootstrap/);
    expect(await bad(['--k', '12'])).toMatch(/--k must be .*0 and 11.*12 blocks/);
    expect(await bad(['--seed', '-3'])).toMatch(/--seed/);
    expect(await bad(['--bootstrap', 'many'])).toMatch(/--bootstrap/);
  }, 120_000);
});
