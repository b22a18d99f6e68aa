import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
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
