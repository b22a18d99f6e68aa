/**
 * Next-token work on a block-streamed model (issue 12, deliverable 3), CPU backend: with a host budget that
 * holds the pruned model but not the full one, generation / next-token logits / a whole forward of the
 * pruned plan load only its kept blocks (removed blocks are never read) and equal a resident model with that
 * removal and transformers' own last logits; the full plan is refused with its cost, or, asked to stream, runs
 * one block-streamed pass per token and picks the resident model's tokens (greedy and seeded sampling).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { residentNeed } from '../../src/engine/memory.ts';
import { type DecodeRun, Model, StreamedRunRefused } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { HF_FIXTURES_DIR, maxRelativeError, readGolden } from './fixtures.ts';

/** Plain llama (sharded), learned positions and a tied head, soft-capping, a parallel residual. */
const NAMES = ['llama3-v5', 'gpt2-v5', 'gemma2', 'pythia'];
const PROMPT_TOKENS = 6;
const NEW_TOKENS = 5;

/** The blocks a load or a decode reads from the source (every checkpoint.loadBlock call). */
function countReads(model: Model): number[] {
  const reads: number[] = [];
  const load = model.checkpoint.loadBlock.bind(model.checkpoint);
  model.checkpoint.loadBlock = (i, signal) => {
    reads.push(i);
    return load(i, signal);
  };
  return reads;
}

describe.each(NAMES)('next-token work on a block-streamed CPU model: %s', (name) => {
  it('the pruned model runs with its kept blocks resident, equal to a resident model with that removal; the full one streams only when asked, with the same tokens', async () => {
    const golden = readGolden(name, HF_FIXTURES_DIR);
    const dir = join(HF_FIXTURES_DIR, name);
    const prompt = golden.ids[0].slice(0, PROMPT_TOKENS);
    const capacity = PROMPT_TOKENS + NEW_TOKENS;
    const removed = golden.removal.removed;
    const resident = await Model.load(directorySource(dir), 'cpu-reference', { mode: 'resident' });
    const layers = resident.spec.layers;
    const full = makePlan(layers);
    const pruned = makePlan(layers, { blocks: removed });

    // A budget between what the pruned plan and the full model need (memory.ts's own arithmetic, with the KV cache).
    const checkpoint = await loadCheckpoint(directorySource(dir), { blocks: 'on-demand' });
    const prunedNeed = residentNeed(checkpoint, 'cpu-reference', pruned.blocks, capacity).bytes;
    const fullNeed = residentNeed(checkpoint, 'cpu-reference', null, capacity).bytes;
    const loadNeed = residentNeed(checkpoint, 'cpu-reference').bytes;
    expect(prunedNeed).toBeLessThan(fullNeed);
    const budget = Math.ceil(prunedNeed + 0.25 * (Math.min(fullNeed, loadNeed) - prunedNeed));
    expect(budget).toBeLessThan(loadNeed);

    const streamed = await Model.load(directorySource(dir), 'cpu-reference', { hostMemoryBytes: budget });
    expect(streamed.mode).toBe('streamed');
    const reads = countReads(streamed);

    // Full model: refused, naming the cost; decodeRun states both needs against the budget.
    const fullRun = await streamed.decodeRun(full, capacity);
    expect(fullRun).toMatchObject({ mode: 'streamed', needBytes: fullNeed, fullNeedBytes: fullNeed, budgetBytes: budget });
    expect(fullRun.bytesPerToken).toBe(streamed.checkpoint.blockBytes.reduce((a, b) => a + b, 0));
    const refusal = await streamed.generate(prompt, full, { maxNewTokens: NEW_TOKENS }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(refusal).toBeInstanceOf(StreamedRunRefused);
    expect((refusal as Error).message).toMatch(
      /^field gpu-memory: generation needs about [\d.]+ MiB to run the model resident .*more than the [\d.]+ MiB budget: each token is a block-streamed pass that re-reads [\d.]+ MiB of weights; it streams only when asked to/,
    );
    await expect(streamed.lastLogits(prompt, full)).rejects.toThrow(/next-token logits needs about/);
    expect(reads).toEqual([]);

    // Pruned model: its kept blocks loaded (removed ones never read), then decoding as the resident model does.
    let run: DecodeRun | null = null;
    const prunedTokens = await streamed.generate(prompt, pruned, { maxNewTokens: NEW_TOKENS, onRun: (r) => (run = r) });
    expect(run).toMatchObject({ mode: 'kept-blocks-resident', needBytes: prunedNeed, fullNeedBytes: fullNeed, budgetBytes: budget });
    expect(prunedTokens).toEqual(await resident.generate(prompt, pruned, { maxNewTokens: NEW_TOKENS }));
    expect(reads.sort((a, b) => a - b)).toEqual(pruned.blocks);
    for (const i of removed) expect(reads).not.toContain(i);
    // Held: a second generation and the next-token logits read nothing more; the logits are transformers'.
    await streamed.generate(prompt, pruned, { maxNewTokens: 2 });
    for (const [s, ids] of golden.ids.entries()) {
      expect(maxRelativeError(await streamed.lastLogits(ids, pruned), golden.removal.lastLogits[s])).toBeLessThanOrEqual(1e-4);
    }
    const whole = await streamed.forward({ ids: golden.ids[1], plan: { ...pruned, capture: 'stats' }, logits: 'all', nll: true });
    const reference = await resident.forward({ ids: golden.ids[1], plan: { ...pruned, capture: 'stats' }, logits: 'all', nll: true });
    expect(maxRelativeError(whole.logits as Float32Array, reference.logits as Float32Array)).toBeLessThanOrEqual(1e-6);
    expect(Math.abs(whole.nllSum - reference.nllSum) / reference.nllSum).toBeLessThanOrEqual(1e-6);
    expect(reads.length).toBe(pruned.blocks.length);

    // Another cut that fits: only the blocks it adds are read (one released first, within the budget).
    const other = makePlan(layers, { blocks: [...removed.slice(1), removed[0] === 0 ? layers - 1 : 0] });
    expect((await streamed.decodeRun(other, capacity)).mode).toBe('kept-blocks-resident');
    const before = reads.length;
    expect(await streamed.generate(prompt, other, { maxNewTokens: NEW_TOKENS })).toEqual(await resident.generate(prompt, other, { maxNewTokens: NEW_TOKENS }));
    expect(reads.slice(before)).toEqual(other.blocks.filter((i) => !pruned.blocks.includes(i)));

    // A streamed pass between decodes frees the held blocks; the next decode loads them again.
    const ppl = await streamed.perplexity(golden.ids, pruned);
    expect(Math.abs(ppl.nll - golden.removal.nll.mean) / golden.removal.nll.mean).toBeLessThanOrEqual(1e-4);
    expect(await streamed.generate(prompt, pruned, { maxNewTokens: NEW_TOKENS })).toEqual(prunedTokens);

    // The full model, streamed on request: one pass per token re-reading every block, the resident model's tokens.
    const readsBefore = reads.length;
    let streamedRun: DecodeRun | null = null;
    const greedy = await streamed.generate(prompt, full, { maxNewTokens: NEW_TOKENS, allowStreamed: true, onRun: (r) => (streamedRun = r) });
    expect(streamedRun).toMatchObject({ mode: 'streamed' });
    expect((streamedRun as DecodeRun | null)?.msPerTokenEstimate).toBeGreaterThan(0);
    expect(greedy).toEqual(await resident.generate(prompt, full, { maxNewTokens: NEW_TOKENS }));
    expect(reads.length - readsBefore).toBe(greedy.length * layers);
    const sampling = { maxNewTokens: NEW_TOKENS, temperature: 0.9, topK: 20, seed: 7 };
    expect(await streamed.generate(prompt, full, { ...sampling, allowStreamed: true })).toEqual(await resident.generate(prompt, full, sampling));
    const last = await streamed.lastLogits(golden.ids[0], full, { allowStreamed: true });
    expect(maxRelativeError(last, golden.lastLogits[0])).toBeLessThanOrEqual(1e-4);
    streamed.dispose();
    resident.dispose();
  });
});
