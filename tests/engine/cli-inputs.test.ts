/**
 * Inputs the model cannot take as they are: sequences past the context, a text shorter than one window,
 * a prompt longer than the context, NaN / Inf in a weight, a GPU budget the model does not fit. Each is
 * an error naming the culprit or a warning on stderr that leaves --json stdout one parseable object.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { contextStop } from '../../src/engine/limits.ts';
import { cli, EMBEDDED, editTensor, modelCopy, tempFile } from './cli-run.ts';
import { FIXTURES_DIR } from './fixtures.ts';

const TEXT = 'The President said that the state of the Union is strong, and the Congress agreed. We will build roads and schools across the land.';
const textFile = tempFile('speech.txt', TEXT);

function single(stdout: string[]): Record<string, unknown> {
  expect(stdout).toHaveLength(1);
  return JSON.parse(stdout[0]);
}

describe('sequence length against the context', () => {
  it('--seq-len past max_position_embeddings (RoPE) warns on stderr and computes exactly what it would without the limit', async () => {
    const short = modelCopy(EMBEDDED, { max_position_embeddings: 16 });
    const warned = await cli(['score', '--model', short, '--text', textFile, '--seq-len', '24', '--json']);
    expect(warned.code).toBe(0);
    expect(warned.stderr).toMatch(/prunelab: warning: --seq-len 24 exceeds max_position_embeddings 16: positions past 16 were never trained/);
    const plain = await cli(['score', '--model', EMBEDDED, '--text', textFile, '--seq-len', '24', '--json']);
    expect(plain.stderr).not.toMatch(/exceeds/);
    expect(single(warned.stdout).blocks).toEqual(single(plain.stdout).blocks);
  });

  it('a longer --ids sequence warns the same way for RoPE and is an error for GPT-2’s learned positions', async () => {
    const ids = tempFile('long.json', JSON.stringify([Array.from({ length: 20 }, (_, i) => i + 1)]));
    const rope = await cli(['ppl', '--model', modelCopy(join(FIXTURES_DIR, 'llama-gqa'), { max_position_embeddings: 16 }), '--ids', ids, '--json']);
    expect(rope.code).toBe(0);
    expect(rope.stderr).toMatch(/warning: sequence 0 of .*long\.json \(20 tokens\) exceeds max_position_embeddings 16/);
    expect(single(rope.stdout).tokens).toBe(19);

    const gpt2 = join(FIXTURES_DIR, 'gpt2');
    const tooLong = tempFile('gpt2-long.json', JSON.stringify([[1, 2, 3], Array.from({ length: 65 }, (_, i) => i)]));
    const learned = await cli(['score', '--model', gpt2, '--ids', tooLong, '--json']);
    expect(learned.code).toBe(1);
    expect(learned.stdout).toEqual([]);
    expect(learned.stderr).toMatch(/sequence 1 of .*gpt2-long\.json \(65 tokens\) exceeds the model's 64 learned positions \(n_positions\); use at most 64/);
    const seqLen = await cli(['score', '--model', gpt2, '--text', textFile, '--seq-len', '65']);
    expect(seqLen.stderr).toMatch(/--seq-len 65 exceeds the model's 64 learned positions/);
  });
});

describe('a text shorter than one window', () => {
  it('is stated on stderr with the numbers actually scored, and the scores are those of that one sequence', async () => {
    const r = await cli(['score', '--model', EMBEDDED, '--text', textFile, '--json']);
    expect(r.code).toBe(0);
    const out = single(r.stdout) as { tokens: number };
    expect(out.tokens).toBeGreaterThan(2);
    expect(out.tokens).toBeLessThan(256);
    expect(r.stderr.split('\n')).toContain(
      `prunelab: warning: the calibration text (${textFile}) is ${out.tokens} tokens, shorter than one 256-token window: scoring 1 sequence of ${out.tokens} tokens`,
    );
    const whole = await cli(['score', '--model', EMBEDDED, '--text', textFile, '--seq-len', String(out.tokens), '--json']);
    expect(whole.stderr).not.toMatch(/shorter than one/);
    expect(single(whole.stdout)).toEqual(out);
    const ppl = await cli(['ppl', '--model', EMBEDDED, '--text', textFile, '--seq-len', '512', '--json']);
    expect(ppl.stderr).toMatch(/the text \(.*\) is \d+ tokens, shorter than one 512-token window: measuring 1 sequence/);
  });

  it('fewer than two tokens is an error', async () => {
    const empty = await cli(['score', '--model', EMBEDDED, '--text', tempFile('empty.txt', ''), '--json']);
    expect(empty.code).toBe(1);
    expect(empty.stdout).toEqual([]);
    expect(empty.stderr).toMatch(/the calibration text \(.*empty\.txt\) is 0 tokens; a sequence needs at least 2/);
    const one = await cli(['ppl', '--model', EMBEDDED, '--text', tempFile('one.txt', 'the')]);
    expect(one.stderr).toMatch(/the text \(.*one\.txt\) is 1 token; a sequence needs at least 2/);
  });
});

describe('generate: the prompt against the context', () => {
  const small = modelCopy(EMBEDDED, { max_position_embeddings: 16 });

  it('a prompt longer than the context is an error saying both lengths (it used to fail with "token_ids must be a non-empty array")', async () => {
    const r = await cli(['generate', '--model', small, '--prompt', TEXT, '--json']);
    expect(r.code).toBe(1);
    expect(r.stdout).toEqual([]);
    const m = r.stderr.match(/--prompt: the prompt is (\d+) tokens, longer than the model's context of 16 tokens; shorten it by at least (\d+) tokens/);
    expect(m).not.toBeNull();
    expect(Number(m?.[1]) - 16).toBe(Number(m?.[2]));
  });

  it('a prompt that leaves less room than --max-new-tokens says how many fit, and generates no more', async () => {
    const r = await cli(['generate', '--model', small, '--prompt', 'The President said that the state', '--max-new-tokens', '40', '--json']);
    expect(r.code).toBe(0);
    const out = single(r.stdout) as { promptTokens: number; ids: number[] };
    const room = 16 - out.promptTokens + 1;
    expect(r.stderr).toBe(
      `prunelab: warning: --prompt: the prompt is ${out.promptTokens} tokens and the context 16 tokens: generation stops after at most ${room} new tokens, not 40`,
    );
    expect(out.ids.length).toBeGreaterThan(0);
    expect(out.ids.length).toBeLessThanOrEqual(room);
    // What the lab says next to such an output: a stop at the context, not at an end-of-text token.
    expect(contextStop(out.promptTokens, room, 40, { maxPositions: 16 })).toBe(`stopped at the model's context of 16 tokens (prompt ${out.promptTokens} + ${room} new)`);
    expect(contextStop(out.promptTokens, room - 1, 40, { maxPositions: 16 })).toBeNull();
    expect(contextStop(out.promptTokens, room, room, { maxPositions: 16 })).toBeNull();
  });

  it('sampling flags under greedy decoding are stated as having no effect, and change nothing', async () => {
    const greedy = await cli(['generate', '--model', EMBEDDED, '--prompt', 'The state of the Union', '--max-new-tokens', '6', '--json']);
    const withFlags = await cli(['generate', '--model', EMBEDDED, '--prompt', 'The state of the Union', '--max-new-tokens', '6', '--top-k', '3', '--seed', '9', '--json']);
    expect(withFlags.stderr).toBe('prunelab: warning: --top-k, --seed have no effect with --temperature 0 (greedy decoding)');
    expect(single(withFlags.stdout)).toEqual(single(greedy.stdout));
    const bigK = await cli(['generate', '--model', EMBEDDED, '--prompt', 'The', '--max-new-tokens', '2', '--temperature', '1', '--top-k', '5000', '--json']);
    expect(bigK.code).toBe(0);
    expect(bigK.stderr).toMatch(/--top-k 5000 is not smaller than the vocabulary \(4096 tokens\): no top-k cut/);
  });
});

/** Sets one element's raw bits: NaN / +Inf in the tensor's own dtype. */
function poison(dtype: string, view: DataView, at: number, kind: 'nan' | 'inf'): void {
  if (dtype === 'F32') view.setUint32(at, kind === 'nan' ? 0x7fc00000 : 0x7f800000, true);
  else if (dtype === 'F16') view.setUint16(at, kind === 'nan' ? 0x7e00 : 0x7c00, true);
  else view.setUint16(at, kind === 'nan' ? 0x7fc0 : 0x7f80, true);
}

describe('non-finite weights and statistics', () => {
  it.each([
    ['llama-gqa', 'F32', 'nan', 'NaN'],
    ['qwen2-bias', 'F16', 'inf', 'Infinity'],
    ['llama3-rope', 'BF16', 'nan', 'NaN'],
  ] as const)('%s (%s): a %s in a weight is refused at load, naming the file and tensor', async (name, dtype, kind, shown) => {
    const dir = modelCopy(join(FIXTURES_DIR, name));
    const tensor = 'model.layers.1.mlp.down_proj.weight';
    editTensor(dir, tensor, (view, begin, stored) => {
      expect(stored).toBe(dtype);
      const size = dtype === 'F32' ? 4 : 2;
      poison(stored, view, begin + 5 * size, kind);
      poison(stored, view, begin + 9 * size, kind);
    });
    const r = await cli(['score', '--model', dir, '--ids', join(FIXTURES_DIR, name, 'ids.json'), '--json']);
    expect(r.code).toBe(1);
    expect(r.stdout).toEqual([]);
    expect(r.stderr).toContain(`file model.safetensors, tensor ${tensor}: holds 2 non-finite value(s) (first: ${shown} at element 5)`);
  });

  it('finite weights whose activations overflow: the first block with non-finite statistics is named, and perplexity refuses NaN', async () => {
    const dir = modelCopy(join(FIXTURES_DIR, 'llama-gqa'));
    editTensor(dir, 'model.layers.2.mlp.down_proj.weight', (view, begin, _dtype, count) => {
      for (let i = 0; i < count; i++) view.setFloat32(begin + 4 * i, 3e38, true);
    });
    const ids = join(FIXTURES_DIR, 'llama-gqa', 'ids.json');
    const score = await cli(['score', '--model', dir, '--ids', ids, '--json']);
    expect(score.code).toBe(1);
    expect(score.stdout).toEqual([]);
    expect(score.stderr).toMatch(
      /the statistics of block 2 are not finite \(BI NaN.*\), and of 1 later block\(s\): the residual stream overflowed to Inf\/NaN at or before block 2/,
    );
    const ppl = await cli(['ppl', '--model', dir, '--ids', ids, '--json']);
    expect(ppl.code).toBe(1);
    expect(ppl.stderr).toMatch(/the perplexity is not finite/);
    // The same numbers through blocks 0–1 are finite: removing block 2 makes the model usable again.
    const without = await cli(['ppl', '--model', dir, '--ids', ids, '--remove', '2', '--json']);
    expect(without.code).toBe(0);
    expect(Number.isFinite(single(without.stdout).ppl)).toBe(true);
  });
});

describe('--gpu-memory', () => {
  it('on the CPU backend it is stated as ignored, and --json stdout stays one object with unchanged numbers', async () => {
    const dir = join(FIXTURES_DIR, 'llama-gqa');
    const args = ['ppl', '--model', dir, '--ids', join(dir, 'ids.json'), '--json'];
    const budget = await cli([...args, '--gpu-memory', '512']);
    expect(budget.code).toBe(0);
    expect(budget.stderr).toBe('prunelab: warning: --gpu-memory is a budget for the WebGPU backend; the CPU backend holds the weights in host memory and ignores it');
    // Same numbers; only the wall-clock timing differs between runs.
    const { timing: _a, ...withBudget } = single(budget.stdout);
    const { timing: _b, ...plain } = single((await cli(args)).stdout);
    expect(withBudget).toEqual(plain);
  });

  it('on WebGPU a model larger than the budget streams (stated, peak within the budget); a budget below two blocks is refused naming the flag; one that fits runs resident', async () => {
    const run = promisify(execFile);
    const bin = join(import.meta.dirname, '..', '..', 'cli', 'bin.mjs');
    const ids = join(FIXTURES_DIR, 'llama-gqa', 'ids.json');
    const refused = await run(process.execPath, [bin, 'score', '--model', EMBEDDED, '--ids', ids, '--backend', 'webgpu', '--gpu-memory', '1', '--json']).then(
      () => null,
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    expect(refused?.code).toBe(1);
    expect(refused?.stdout).toBe('');
    expect(refused?.stderr).toMatch(/field gpu-memory: a block-streamed pass needs at least [\d.]+ MiB .* but the budget is 1\.0 MiB/);
    const streamed = await run(process.execPath, [bin, 'score', '--model', EMBEDDED, '--ids', ids, '--backend', 'webgpu', '--gpu-memory', '3', '--json']);
    expect(streamed.stderr).toMatch(/running block-streamed: the model needs about \d+ MiB resident, more than the 3 MiB budget/);
    const memory = JSON.parse(streamed.stdout).memory;
    expect(memory.mode).toBe('streamed');
    expect(memory.gpuPeakBytes).toBeGreaterThan(0);
    expect(memory.gpuPeakBytes).toBeLessThanOrEqual(3 * 2 ** 20);
    const fits = await run(process.execPath, [bin, 'ppl', '--model', join(FIXTURES_DIR, 'llama-gqa'), '--ids', ids, '--backend', 'webgpu', '--gpu-memory', '64', '--json']);
    expect(Number.isFinite(JSON.parse(fits.stdout).ppl)).toBe(true);
    expect(JSON.parse(fits.stdout).memory.mode).toBe('resident');
    expect(fits.stderr).toBe('');
  }, 60_000);
});

describe('other stated answers', () => {
  it('sweep --seeds without the random strategy, and mc asking fewer cloze questions than --cloze-count, are stated', async () => {
    const dir = join(FIXTURES_DIR, 'llama-gqa');
    const sweep = await cli(['sweep', '--model', dir, '--ids', join(dir, 'ids.json'), '--strategies', 'reverse', '--max-removed', '1', '--seeds', '3', '--json']);
    expect(sweep.code).toBe(0);
    expect(sweep.stderr).toBe('prunelab: warning: --seeds only affects the random strategy, which is not among --strategies');
    single(sweep.stdout);
    const sentences =
      'We will build new roads across the whole nation. Our schools will teach every child in every town. The farmers will grow more wheat than ever. Our soldiers stand guard over the land. The Congress passed the law last spring.';
    const mc = await cli(['mc', '--model', EMBEDDED, '--cloze-text', tempFile('cloze.txt', sentences), '--cloze-count', '50', '--json']);
    expect(mc.code).toBe(0);
    const out = single(mc.stdout) as { n: number };
    expect(out.n).toBeLessThan(50);
    expect(out.n).toBe(5);
    expect(mc.stderr).toMatch(/^prunelab: warning: .*cloze\.txt yields 5 cloze question\(s\), fewer than --cloze-count 50: asking 5$/);
  });

  it('mc questions longer than the context are stated (their contexts keep the last tokens)', async () => {
    const short = modelCopy(EMBEDDED, { max_position_embeddings: 16 });
    const long = { question: 'The President said that the nation would build new roads and new schools in every town', choices: ['soon', 'never'], answer: 0 };
    const fits = { question: 'The law', choices: ['passed', 'failed'], answer: 0 };
    const tasks = tempFile('long.jsonl', `${JSON.stringify(long)}\n${JSON.stringify(fits)}\n`);
    const mc = await cli(['mc', '--model', short, '--tasks', tasks, '--json']);
    expect(mc.code).toBe(0);
    expect(mc.stderr).toBe("prunelab: warning: 1 of 2 questions are longer than the model's 16 positions: their contexts keep only the last tokens");
    expect((single(mc.stdout) as { n: number }).n).toBe(2);
  });

  it('an empty --remove is the empty set, said in the output', async () => {
    const dir = join(FIXTURES_DIR, 'llama-gqa');
    const r = await cli(['ppl', '--model', dir, '--ids', join(dir, 'ids.json'), '--remove', '', '--json']);
    expect(r.code).toBe(0);
    expect(single(r.stdout).removed).toEqual([]);
  });
});
