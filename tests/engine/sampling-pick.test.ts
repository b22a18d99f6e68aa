/**
 * The pick a backend makes (ForwardRequest.pick, sampling.ts TokenPick) on the CPU: drawPick + pickToken is
 * sampleToken with the same random stream; the CPU backend picks by it from the row it computes (also with
 * logits 'none'); bad picks are refused naming the field (forward-checks.ts); Model.generate picking in the
 * backend gives the tokens of picking from the returned row.
 */
import { join } from 'node:path';
import { expect, it } from 'vitest';
import type { ForwardRequest } from '../../src/engine/backend.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { createCpuBackend } from '../../src/engine/cpu/backend.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { drawPick, pickToken, type SamplingOptions, sampleToken, seededRandom, type TokenSample } from '../../src/engine/sampling.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { FIXTURES_DIR } from './fixtures.ts';

it('drawPick + pickToken = sampleToken, draw for draw, greedy drawing nothing', () => {
  const rows = seededRandom(3);
  const options: SamplingOptions[] = [
    { temperature: 0 },
    { temperature: 0.7, topK: 5 },
    { temperature: 1.5, topP: 0.8 },
    { temperature: 1, topK: 40, topP: 0.95 },
    { temperature: 2 },
  ];
  for (const o of options) {
    const [a, b] = [seededRandom(9), seededRandom(9)];
    for (let step = 0; step < 50; step++) {
      const row = Float32Array.from({ length: 97 }, () => Math.round((rows() - 0.5) * 16) / 2);
      expect(pickToken(row, drawPick(o, a))).toBe(sampleToken(row, o, b));
    }
    expect(a()).toBe(b());
  }
  expect(drawPick({ temperature: 0.5 }, () => 0.25)).toEqual({ temperature: 0.5, topK: 0, topP: 1, u: 0.25 });
});

it("the CPU backend picks from the last row by sampleToken's rule (logits 'none' too) and refuses bad picks naming the field", async () => {
  const checkpoint = await loadCheckpoint(directorySource(join(FIXTURES_DIR, 'llama-gqa')));
  const cpu = await createCpuBackend(checkpoint.spec, checkpoint.weights);
  const plan = makePlan(checkpoint.spec.layers);
  const ids = [1, 5, 9, 2];
  const row = (await cpu.forward({ ids, plan, logits: 'last' })).logits as Float32Array;
  for (const pick of ['argmax', { temperature: 0.9, topK: 10, topP: 0.8, u: 0.4 }, { temperature: 3, topK: 0, topP: 1, u: 0.93 }] as const) {
    const r = await cpu.forward({ ids, plan, logits: 'none', pick });
    expect(r.logits).toBeNull();
    expect(r.picked).toBe(pickToken(row, pick));
  }
  const rule: TokenSample = { temperature: 0.9, topK: 10, topP: 0.8, u: 0.4 };
  const bad: [Partial<ForwardRequest>, RegExp][] = [
    [{ pick: { ...rule, temperature: 0 } }, /field temperature: a sampled pick needs a temperature > 0/],
    [{ pick: { ...rule, topK: -1 } }, /field top-k/],
    [{ pick: { ...rule, topP: 1.5 } }, /field top-p/],
    [{ pick: { ...rule, u: Number.NaN } }, /field pick/],
    [{ pick: rule, logits: 'all' }, /field pick: pick works with logits 'last' or 'none'/],
    [{ pick: 'argmax', nll: true }, /field pick/],
  ];
  for (const [change, message] of bad) await expect(cpu.forward({ ids, plan, logits: 'none', ...change })).rejects.toThrow(message);
  cpu.dispose();
});

it('Model.generate picking in the backend gives the tokens of picking from the returned row (onToken)', async () => {
  const model = await Model.load(directorySource(join(FIXTURES_DIR, 'llama-gqa')), 'cpu-reference');
  const plan = makePlan(model.spec.layers);
  const options = { maxNewTokens: 12, temperature: 1.2, topK: 30, topP: 0.9, seed: 7 };
  const inBackend = await model.generate([1, 5, 9], plan, options);
  const seen: number[] = [];
  const fromRow = await model.generate([1, 5, 9], plan, { ...options, onToken: (id) => seen.push(id) });
  expect(inBackend).toEqual(fromRow);
  expect(seen).toEqual(fromRow);
  expect(new Set(inBackend).size).toBeGreaterThan(2);
  model.dispose();
});
