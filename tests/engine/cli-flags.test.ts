/**
 * Every CLI flag against bad values: each answer is an error on stderr that names the flag and the value
 * (exit 1, nothing on stdout), never a number computed from a misread flag.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { editDistance, nearest } from '../../cli/args.ts';
import { COMMANDS } from '../../cli/prunelab.ts';
import { cli, tempDir, tempFile } from './cli-run.ts';
import { FIXTURES_DIR } from './fixtures.ts';

const dir = join(FIXTURES_DIR, 'llama-gqa');
const ids = join(dir, 'ids.json');
const model = ['--model', dir];
const scoreIds = ['score', ...model, '--ids', ids];
const pplIds = ['ppl', ...model, '--ids', ids];
const gen = ['generate', ...model, '--prompt', 'x'];

describe('prunelab flags: each command accepts only its own flags', () => {
  it('a typo is an error naming it with the nearest flag (ppl --remvoe 3 printed the unpruned perplexity before)', async () => {
    const r = await cli([...pplIds, '--remvoe', '3', '--json']);
    expect(r.code).toBe(1);
    expect(r.stdout).toEqual([]);
    expect(r.stderr).toMatch(/unknown flag --remvoe for ppl; did you mean --remove\?/);
  });

  it('a flag of another command is an error naming its owner and the nearest flag of this one', async () => {
    const temperature = await cli([...scoreIds, '--temperature', '0.7']);
    expect(temperature.code).toBe(1);
    expect(temperature.stderr).toMatch(/--temperature is not a flag of score \(it belongs to generate\)/);
    const removeForScore = await cli([...scoreIds, '--remove', '1']);
    expect(removeForScore.stderr).toMatch(/--remove is not a flag of score \(it belongs to ppl, prune, generate, mc[,)]/);
    const halfForPrune = await cli(['prune', ...model, '--remove', '1', '--remove-attention', '2', '--out', tempDir('out')]);
    expect(halfForPrune.stderr).toMatch(/--remove-attention is not a flag of prune \(it belongs to ppl, generate, mc[^)]*\); prune takes .*--remove, --out/);
    const seqLen = await cli([...scoreIds, '--seq-lne', '12']);
    expect(seqLen.stderr).toMatch(/unknown flag --seq-lne for score; did you mean --seq-len\?/);
    const far = await cli([...scoreIds, '--frobnicate', '1']);
    expect(far.stderr).toMatch(/unknown flag --frobnicate for score; score takes --model, --backend, --gpu-memory/);
  });

  it('an unknown command suggests the nearest one; --help lists a command’s flags', async () => {
    const typo = await cli(['scroe', ...model]);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/unknown command "scroe"; did you mean score\?/);
    const help = await cli(['generate', '--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--prompt', '--top-p', '--gpu-memory', '--backend', '--remove-mlp']) expect(help.stdout.join('\n')).toContain(flag);
  });

  it('every command declares --gpu-memory, --backend, --model and --json (DESIGN.md)', () => {
    for (const command of COMMANDS) {
      const names = command.flags.map((f) => f.name);
      for (const flag of ['gpu-memory', 'backend', 'model', 'json']) expect(names, command.name).toContain(flag);
      expect(new Set(names).size, `${command.name} declares a flag twice`).toBe(names.length);
    }
  });

  it('the nearest-flag suggestion is by edit distance', () => {
    expect(editDistance('remvoe', 'remove')).toBe(2);
    expect(editDistance('', 'seed')).toBe(4);
    expect(nearest('remvoe', ['remove', 'remove-mlp', 'model'])).toBe('remove');
    expect(nearest('max-new-token', ['max-new-tokens', 'model'])).toBe('max-new-tokens');
    expect(nearest('zzzzzz', ['remove', 'model'])).toBeNull();
  });
});

/** [arguments, what stderr must say]: every one exits 1 with nothing on stdout. */
const REFUSED: [string[], RegExp][] = [
  // the command line itself
  [[...scoreIds, '--ids', ids], /--ids is given twice/],
  [[...scoreIds, '--json=yes'], /--json is a switch and takes no value/],
  [[...scoreIds, 'extra'], /unexpected argument "extra" for score/],
  [[...scoreIds, '-json'], /unexpected argument "-json" .*two dashes: --json/],
  [[...scoreIds, '--max-sequences'], /--max-sequences needs a value \(N\)/],
  [[...scoreIds, '--max-sequences', '--json'], /--max-sequences needs a value/],
  // --model, --backend, --gpu-memory (every command)
  [['score', '--model', '', '--ids', ids], /--model is empty/],
  [['score', '--model', join(dir, 'missing'), '--ids', ids], /no config\.json/],
  [[...scoreIds, '--backend', 'gpu'], /--backend must be .*webgpu.*, got "gpu"/],
  [[...scoreIds, '--gpu-memory', '0'], /--gpu-memory must be an integer between 1 and 16777216 \(a budget in MiB\), got 0/],
  [[...scoreIds, '--gpu-memory', '-512'], /--gpu-memory must be an integer between 1 and 16777216.*got -512/],
  [[...scoreIds, '--gpu-memory', '1.5'], /--gpu-memory must be an integer .*got "1\.5"/],
  [[...scoreIds, '--gpu-memory', '8GB'], /--gpu-memory must be an integer .*got "8GB"/],
  [[...scoreIds, '--gpu-memory', '99999999999'], /--gpu-memory must be an integer between 1 and 16777216.*got 99999999999/],
  // --text / --ids / --seq-len / --max-sequences
  [['score', ...model], /pass exactly one of --text <file> or --ids <file\.json>/],
  [['score', ...model, '--ids', ids, '--text', ids], /pass exactly one of --text/],
  [[...scoreIds, '--seq-len', '64'], /--seq-len cuts --text into windows; the sequences in --ids are used as given/],
  [['score', ...model, '--text', ids, '--seq-len', '1'], /--seq-len must be an integer ≥ 2, got 1/],
  [['score', ...model, '--text', ids, '--seq-len', '0'], /--seq-len must be an integer ≥ 2, got 0/],
  [['score', ...model, '--text', ids, '--seq-len', '-8'], /--seq-len must be an integer ≥ 2, got -8/],
  [['score', ...model, '--text', ids, '--seq-len', 'abc'], /--seq-len must be an integer ≥ 2, got "abc"/],
  [['score', ...model, '--text', ids, '--seq-len', '12.5'], /--seq-len must be an integer ≥ 2, got "12\.5"/],
  [['score', ...model, '--text', ids, '--seq-len', '0x10'], /--seq-len must be an integer ≥ 2, got "0x10"/],
  [['score', ...model, '--text', ids, '--seq-len', '1e3'], /--seq-len must be an integer ≥ 2, got "1e3"/],
  [['score', ...model, '--text', ids, '--seq-len', ''], /--seq-len is empty/],
  [[...scoreIds, '--max-sequences', '0'], /--max-sequences must be an integer ≥ 1, got 0/],
  [['score', ...model, '--ids', tempFile('none.json', '[]')], /none\.json: no sequences to run/],
  [['score', ...model, '--ids', tempFile('empty-seq.json', '[[1, 2], []]')], /empty-seq\.json: sequence 1 is empty/],
  [['score', ...model, '--ids', tempFile('float.json', '[[1.5, 2]]')], /float\.json: must be a JSON array of token-id arrays/],
  [['score', ...model, '--ids', tempFile('flat.json', '[1, 2, 3]')], /flat\.json: must be a JSON array of token-id arrays/],
  [['score', ...model, '--ids', tempFile('vocab.json', '[[1, 320]]')], /token id 320 in sequence 0 is outside the vocabulary \(0\.\.319\)/],
  [['score', ...model, '--ids', tempFile('bad.json', '[[1, 2]')], /bad\.json: cannot read token ids/],
  [['score', ...model, '--ids', join(dir, 'absent.json')], /absent\.json: cannot read token ids/],
  [['score', ...model, '--text', join(dir, 'absent.txt')], /file .*absent\.txt: cannot read/],
  [['score', ...model, '--text', ids, '--max-sequences', '2.5'], /--max-sequences must be an integer ≥ 1, got "2\.5"/],
  // removal sets
  [[...pplIds, '--remove', '2,2'], /--remove lists block 2 twice/],
  [[...pplIds, '--remove', '1,,2'], /--remove must be comma-separated block indices .*got "" in "1,,2"/],
  [[...pplIds, '--remove', '-1'], /--remove must be comma-separated block indices .*got "-1"/],
  [[...pplIds, '--remove', '1.5'], /--remove must be comma-separated block indices .*got "1\.5"/],
  [[...pplIds, '--remove', '0x1'], /--remove must be comma-separated block indices .*got "0x1"/],
  [[...pplIds, '--remove', 'three'], /--remove must be comma-separated block indices .*got "three"/],
  [[...pplIds, '--remove', '4'], /block 4 does not exist \(the model has blocks 0\.\.3\)/],
  [[...pplIds, '--remove', '99999999999999999999'], /--remove must be comma-separated|block .* does not exist/],
  [[...pplIds, '--remove', '0,1,2,3'], /--remove: all 4 blocks are removed; at least one block must remain/],
  [[...pplIds, '--remove', '1', '--remove-attention', '1'], /block 1 is in both --remove and --remove-attention/],
  [[...pplIds, '--remove-mlp', '3,3'], /--remove-mlp lists block 3 twice/],
  [[...pplIds, '--remove-attention', '7'], /block 7 does not exist/],
  // prune
  [['prune', ...model, '--remove', '1'], /prune needs --out <dir>/],
  [['prune', ...model, '--out', tempDir('out')], /prune needs --remove with at least one block/],
  [['prune', ...model, '--remove', '0,1,2,3', '--out', tempDir('out')], /at least one block must remain/],
  [['prune', ...model, '--remove', '1', '--out', dir], /--out .*llama-gqa already holds files \(.*config\.json.*\); choose a new or empty folder/],
  // generate
  [['generate', ...model], /generate needs --prompt/],
  [['generate', ...model, '--prompt', ''], /--prompt is empty/],
  [[...gen, '--max-new-tokens', '0'], /--max-new-tokens must be an integer ≥ 1, got 0/],
  [[...gen, '--max-new-tokens', '-5'], /--max-new-tokens must be an integer ≥ 1, got -5/],
  [[...gen, '--max-new-tokens', 'lots'], /--max-new-tokens must be an integer ≥ 1, got "lots"/],
  [[...gen, '--temperature', '-0.5'], /--temperature must satisfy 0 ≤ temperature, got -0\.5/],
  [[...gen, '--temperature', 'hot'], /--temperature must be a number, got "hot"/],
  [[...gen, '--temperature', 'Infinity'], /--temperature must be a number, got "Infinity"/],
  [[...gen, '--temperature', 'NaN'], /--temperature must be a number, got "NaN"/],
  [[...gen, '--top-p', '0'], /--top-p must satisfy 0 < top-p ≤ 1, got 0/],
  [[...gen, '--top-p', '1.5'], /--top-p must satisfy 0 < top-p ≤ 1, got 1\.5/],
  [[...gen, '--top-p', '-0.1'], /--top-p must satisfy 0 < top-p ≤ 1, got -0\.1/],
  [[...gen, '--top-k', '-1'], /--top-k must be an integer ≥ 0, got -1/],
  [[...gen, '--top-k', '2.5'], /--top-k must be an integer ≥ 0, got "2\.5"/],
  [[...gen, '--seed', '-1'], /--seed must be an integer between 0 and 4294967295, got -1/],
  [[...gen, '--seed', '4294967296'], /--seed must be an integer between 0 and 4294967295, got 4294967296/],
  [[...gen, '--temperature', '1', '--seed', '1', '--seed', '2'], /--seed is given twice/],
  // sweep
  [['sweep', ...model, '--ids', ids, '--max-removed', '4'], /--max-removed must be at most 3/],
  [['sweep', ...model, '--ids', ids, '--max-removed', '-1'], /--max-removed must be an integer ≥ 0, got -1/],
  [['sweep', ...model, '--ids', ids, '--seeds', '0'], /--seeds must be an integer between 1 and 1000, got 0/],
  [['sweep', ...model, '--ids', ids, '--strategies', 'bi,,angular'], /--strategies has an empty name/],
  [['sweep', ...model, '--ids', ids, '--strategies', 'bi,bi'], /--strategies lists "bi" twice/],
  [['sweep', ...model, '--ids', ids, '--strategies', ''], /--strategies is empty/],
  [['sweep', ...model, '--ids', ids, '--eval-ids', ids, '--eval-text', ids], /pass exactly one of --eval-text <file> or --eval-ids/],
  // mc
  [['mc', ...model], /pass exactly one of --tasks <file\.jsonl> or --cloze-text <file>/],
  [['mc', ...model, '--cloze-text', ids, '--cloze-count', '0'], /--cloze-count must be an integer ≥ 1, got 0/],
  [['mc', ...model, '--tasks', ids, '--cloze-count', '5'], /--cloze-count only apply with --cloze-text/],
  [['mc', ...model, '--tasks', ids, '--write-tasks', join(tempDir('mc'), 'x.jsonl')], /--write-tasks only apply with --cloze-text/],
];

describe('prunelab flags: bad values are refused by name', () => {
  it.each(REFUSED)('%j', async (args, message) => {
    const r = await cli(args);
    expect(r.stderr).toMatch(message);
    expect(r.code).toBe(1);
    expect(r.stdout).toEqual([]);
  });
});
