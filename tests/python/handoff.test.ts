/**
 * The transformers hand-off script run by real transformers (not PruneLab). A dev-time check outside npm
 * test (which needs no Python): `PRUNELAB_PYTHON=/path/to/python npx vitest run tests/python`
 * with a Python that has torch + transformers. Without PRUNELAB_PYTHON it fails, naming the variable.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { windows } from '../../src/engine/tokenizer.ts';
import { keptBlocks, transformersScript } from '../../src/export/handoff.ts';
import { prunedConfigChanges } from '../../src/export/pruned-checkpoint.ts';

const PYTHON = process.env.PRUNELAB_PYTHON;
const ROOT = join(import.meta.dirname, '..', '..');
const SOTU = join(ROOT, 'public', 'models', 'sotu-llama');
const TEXT = join(ROOT, 'public', 'calibration', 'moby-dick-eval.txt');

describe('transformers hand-off script under PRUNELAB_PYTHON', () => {
  beforeAll(() => {
    if (!PYTHON) throw new Error('set PRUNELAB_PYTHON to a Python with torch + transformers (this check runs real transformers)');
  });
  it('prints the perplexity PruneLab measures with the same blocks removed, and writes a checkpoint PruneLab loads to the same perplexity', async () => {
    const removed = [3, 5, 7];
    const seqLen = 64;
    const maxSequences = 6;
    const original = await Model.load(directorySource(SOTU), 'cpu');
    const sequences = windows(original.requireTokenizer().encode(readFileSync(TEXT, 'utf8')), seqLen, maxSequences);
    const expected = await original.perplexity(sequences, makePlan(original.spec.layers, { blocks: removed }));

    const { checkpoint } = original;
    const configChanges = prunedConfigChanges(checkpoint.config, checkpoint.family, checkpoint.spec, keptBlocks(12, removed));
    const dir = mkdtempSync(join(tmpdir(), 'prunelab-handoff-'));
    const script = join(dir, 'prune.py');
    writeFileSync(
      script,
      transformersScript({ source: { kind: 'path', path: SOTU, label: 'sotu-llama' }, layers: 12, removed, configChanges, dtypes: checkpoint.dtypes, version: 'test' }),
    );
    const out = join(dir, 'pruned');
    const { stdout } = await promisify(execFile)(PYTHON as string, [script, '--eval', TEXT, '--seq-len', String(seqLen), '--max-sequences', String(maxSequences), '--out', out], {
      timeout: 300_000,
    });
    const printed = JSON.parse(stdout.trim()) as { ppl: number; nll: number; tokens: number };
    expect(printed.tokens).toBe(expected.tokens);
    expect(Math.abs(printed.ppl - expected.ppl) / expected.ppl).toBeLessThan(1e-3);

    const written = await Model.load(directorySource(out), 'cpu');
    expect(written.spec.layers).toBe(9);
    const reloaded = await written.perplexity(sequences, makePlan(9));
    expect(Math.abs(reloaded.ppl - expected.ppl) / expected.ppl).toBeLessThan(1e-3);
  }, 600_000);
});
