import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/engine/checkpoint.ts';
import { Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { prunedCheckpointFiles } from '../../src/export/pruned-checkpoint.ts';
import { fixtureNames, HF_FIXTURES_DIR, readGolden } from './fixtures.ts';

// The removal goldens come from transformers running the pruned model (layers dropped, per-layer
// config lists cut): the exported checkpoint, reloaded, must give that NLL with nothing removed.
describe.each(fixtureNames(HF_FIXTURES_DIR))('pruned export of %s', (name) => {
  it('renumbers blocks, rewrites the config, and reloads with the NLL transformers gives the pruned model', async () => {
    const golden = readGolden(name, HF_FIXTURES_DIR);
    const model = await Model.load(directorySource(join(HF_FIXTURES_DIR, name)), 'cpu');
    const removed = golden.removal.removed;
    // The fast CPU backend was handed the blocks; the checkpoint reads them again for the export.
    await model.checkpoint.makeResident();
    const { files, keptBlocks } = prunedCheckpointFiles(model.checkpoint, removed);
    const dir = mkdtempSync(join(tmpdir(), `prunelab-export-${name}-`));
    for (const [file, bytes] of files) writeFileSync(join(dir, file), bytes);
    const pruned = await Model.load(directorySource(dir), 'cpu');
    expect(pruned.spec.layers).toBe(keptBlocks.length);
    // Each kept block keeps its own kind (window, rope) after renumbering.
    expect(pruned.spec.layerKinds.map((k) => [k.window, k.rope?.theta ?? null])).toEqual(
      keptBlocks.map((i) => [model.spec.layerKinds[i].window, model.spec.layerKinds[i].rope?.theta ?? null]),
    );
    const ppl = await pruned.perplexity(golden.ids, makePlan(pruned.spec.layers));
    expect(Math.abs(ppl.nll - golden.removal.nll.mean) / golden.removal.nll.mean).toBeLessThanOrEqual(1e-4);
    expect(pruned.checkpoint.weights.unused).toEqual([]);
  });
});

describe('pruned export of a checkpoint whose blocks are not in memory', () => {
  it('refuses (it would write the ends alone), and after makeResident writes every kept block', async () => {
    const name = fixtureNames(HF_FIXTURES_DIR)[0];
    const checkpoint = await loadCheckpoint(directorySource(join(HF_FIXTURES_DIR, name)), { blocks: 'on-demand' });
    expect(() => prunedCheckpointFiles(checkpoint, [0])).toThrow(/field export: an export needs every block read/);
    await checkpoint.makeResident();
    const { files, keptBlocks } = prunedCheckpointFiles(checkpoint, [0]);
    const dir = mkdtempSync(join(tmpdir(), 'prunelab-export-on-demand-'));
    for (const [file, bytes] of files) writeFileSync(join(dir, file), bytes);
    const pruned = await loadCheckpoint(directorySource(dir));
    expect(pruned.spec.layers).toBe(keptBlocks.length);
    expect(pruned.blockBytes).toEqual(keptBlocks.map((i) => checkpoint.blockBytes[i]));
  });
});
