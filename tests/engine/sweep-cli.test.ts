/** The acceptance check of the sweep: its numbers equal `prunelab ppl --remove` for the same sets. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../cli/prunelab.ts';
import { compareMc, encodeMcItems, parseMcJsonl } from '../../src/analysis/mc.ts';
import { Model } from '../../src/engine/model.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { FIXTURES_DIR, readGolden } from './fixtures.ts';

async function run(args: string[]): Promise<{ code: number; stdout: string[]; stderr: string[] }> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await main(
    args,
    (t) => stdout.push(t),
    (t) => stderr.push(t),
  );
  return { code, stdout, stderr };
}

interface Step {
  removed: number[];
  removedAttention?: number[];
  removedMlp?: number[];
  ppl: number;
}

describe('prunelab sweep (CLI contract)', () => {
  const name = 'qwen2-bias';
  const dir = join(FIXTURES_DIR, name);
  const golden = readGolden(name);
  const tmp = mkdtempSync(join(tmpdir(), 'prunelab-sweep-'));
  const calibrationFile = join(tmp, 'calibration.json');
  const evaluationFile = join(tmp, 'evaluation.json');
  writeFileSync(calibrationFile, JSON.stringify([golden.ids[0]]));
  writeFileSync(evaluationFile, JSON.stringify([golden.ids[1]]));

  it('--json prints one object whose every step’s ppl equals `prunelab ppl --remove` on the evaluation ids for the same set', async () => {
    const sweep = await run(['sweep', '--model', dir, '--ids', calibrationFile, '--eval-ids', evaluationFile, '--strategies', 'all', '--seeds', '3', '--json']);
    expect(sweep.stderr).toEqual([]);
    expect(sweep.code).toBe(0);
    expect(sweep.stdout).toHaveLength(1);
    const out = JSON.parse(sweep.stdout[0]) as { strategies: Record<string, Step[]>; maxRemoved: number; evalTokens: number };
    expect(Object.keys(out.strategies)).toEqual(['bi', 'bi-iter', 'angular', 'relmag', 'reverse', 'random', 'sleb', 'bi-attn', 'bi-mlp']);
    expect(out.maxRemoved).toBe(3);
    const checked = new Map<string, number>();
    for (const [strategy, steps] of Object.entries(out.strategies)) {
      expect(
        steps.map((s) => s.removed.length + (s.removedAttention?.length ?? 0) + (s.removedMlp?.length ?? 0)),
        strategy,
      ).toEqual([0, 1, 2, 3]);
      for (const step of steps) {
        const args = ['ppl', '--model', dir, '--ids', evaluationFile, '--remove', step.removed.join(','), '--json'];
        if (step.removedAttention?.length) args.push('--remove-attention', step.removedAttention.join(','));
        if (step.removedMlp?.length) args.push('--remove-mlp', step.removedMlp.join(','));
        const key = args.join(' ');
        if (!checked.has(key)) {
          const ppl = await run(args);
          expect(ppl.code).toBe(0);
          const parsed = JSON.parse(ppl.stdout[0]);
          expect(parsed.tokens).toBe(out.evalTokens);
          checked.set(key, parsed.ppl);
        }
        expect(step.ppl, `${strategy} ${key}`).toBe(checked.get(key));
      }
    }
  });

  it('without eval data the calibration set measures; errors name the problem', async () => {
    const plain = await run(['sweep', '--model', dir, '--ids', calibrationFile, '--strategies', 'reverse', '--max-removed', '1', '--json']);
    const out = JSON.parse(plain.stdout[0]);
    const ppl = JSON.parse((await run(['ppl', '--model', dir, '--ids', calibrationFile, '--remove', '2', '--json'])).stdout[0]);
    expect(out.strategies.reverse.map((s: Step) => s.removed)).toEqual([[], [2]]);
    expect(out.strategies.reverse[1].ppl).toBe(ppl.ppl);

    const unknown = await run(['sweep', '--model', dir, '--ids', calibrationFile, '--strategies', 'bi,magic']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr.join('\n')).toMatch(/unknown strategy "magic"/);
    const tooMany = await run(['sweep', '--model', dir, '--ids', calibrationFile, '--max-removed', '4']);
    expect(tooMany.code).not.toBe(0);
    expect(tooMany.stderr.join('\n')).toMatch(/--max-removed must be at most 3/);
  });
});

describe('prunelab mc (CLI contract)', () => {
  const embedded = join(import.meta.dirname, '..', '..', 'public', 'models', 'sotu-llama');
  const tasks = join(mkdtempSync(join(tmpdir(), 'prunelab-mc-')), 'tasks.jsonl');
  const jsonl = [
    { question: 'The President shall from time to time give to the Congress information of the State of the', choices: ['Union', 'river', 'harbor'], answer: 0 },
    { question: 'We the people of the United', choices: ['States', 'colors'], answer: 0 },
    { question: 'Thank you. God bless you, and God bless the United States of', choices: ['America', 'grain'], answer: 1 },
  ]
    .map((item) => JSON.stringify(item))
    .join('\n');
  writeFileSync(tasks, jsonl);

  it('--json prints {accuracy, accNorm, n, removed, original} equal to the library’s scoring of the same file', async () => {
    const result = await run(['mc', '--model', embedded, '--tasks', tasks, '--remove', '11,3', '--json']);
    expect(result.stderr).toEqual([]);
    expect(result.stdout).toHaveLength(1);
    const out = JSON.parse(result.stdout[0]);
    expect(Object.keys(out)).toEqual(['accuracy', 'accNorm', 'n', 'removed', 'original', 'memory']);
    expect(out.n).toBe(3);
    expect(out.removed).toEqual([3, 11]);
    const model = await Model.load(directorySource(embedded), 'cpu');
    const { original, pruned } = await compareMc(model, encodeMcItems(model, parseMcJsonl(jsonl)), { blocks: [3, 11] });
    expect(out.accuracy).toBe(pruned.accuracy);
    expect(out.accNorm).toBe(pruned.accNorm);
    expect(out.original).toEqual({ accuracy: original.accuracy, accNorm: original.accNorm });
  });

  it('errors name the problem: a model without a tokenizer, a bad task line, two task sources', async () => {
    const noTokenizer = await run(['mc', '--model', join(FIXTURES_DIR, 'gpt2'), '--tasks', tasks]);
    expect(noTokenizer.code).not.toBe(0);
    expect(noTokenizer.stderr.join('\n')).toMatch(/tokenizer\.json/);
    const bad = join(mkdtempSync(join(tmpdir(), 'prunelab-mc-')), 'bad.jsonl');
    writeFileSync(bad, '{"question": "q", "choices": ["a", "b"], "answer": 0}\n{"question": "q", "choices": ["a"], "answer": 0}\n');
    const badLine = await run(['mc', '--model', embedded, '--tasks', bad]);
    expect(badLine.stderr.join('\n')).toMatch(/bad\.jsonl.*line 2.*choices/);
    const both = await run(['mc', '--model', embedded, '--tasks', tasks, '--cloze-text', tasks]);
    expect(both.stderr.join('\n')).toMatch(/exactly one of --tasks/);
  });
});
