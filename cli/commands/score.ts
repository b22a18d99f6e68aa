/** `prunelab score`: per-block Block Influence, angular distance and relative magnitude. */
import { blockScores } from '../../src/analysis/influence.ts';
import { assertFiniteScores } from '../../src/engine/finite.ts';
import { makePlan } from '../../src/engine/plan.ts';
import type { Command } from '../args.ts';
import { COMMON_FLAGS, modelSummary, openModel, readSequences, sequenceInput, TEXT_FLAGS } from '../common.ts';

export const score: Command = {
  name: 'score',
  summary: 'Scores every block on calibration data (BI, angular distance, relative magnitude).',
  synopsis: '--model <dir|hub-id> (--text <file> | --ids <file.json>) [--seq-len N] [--max-sequences N] [--backend cpu|webgpu] [--json]',
  flags: [...COMMON_FLAGS, ...TEXT_FLAGS],
  async run(flags, out) {
    const input = sequenceInput(flags);
    const model = await openModel(flags, out.warn);
    try {
      const sequences = await readSequences(input, model, out.warn);
      const sums = await model.score(sequences, makePlan(model.spec.layers));
      const blocks = blockScores(sums).map(({ index, bi, angular, relMagnitude }) => ({ index, bi, angular, relMagnitude }));
      assertFiniteScores(blocks);
      const tokens = sequences.reduce((a, s) => a + s.length, 0);
      if (out.json) out.print(JSON.stringify({ model: modelSummary(model), tokens, blocks }));
      else {
        out.print(`${model.checkpoint.label}: ${model.spec.layers} blocks, ${tokens} tokens scored in ${sequences.length} sequence(s)\nblock       BI   angular  relMag`);
        for (const b of blocks)
          out.print(`${String(b.index).padStart(5)} ${b.bi.toFixed(5).padStart(8)} ${b.angular.toFixed(5).padStart(9)} ${b.relMagnitude.toFixed(5).padStart(7)}`);
      }
    } finally {
      model.dispose();
    }
  },
};
