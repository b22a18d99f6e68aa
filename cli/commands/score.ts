/** `prunelab score`: per-block Block Influence, angular distance and relative magnitude, with error bars. */
import { blockScores } from '../../src/analysis/influence.ts';
import { bootstrapScores, DEFAULT_RESAMPLES, defaultCutSize, DEFAULT_SEED, type Interval, rankStability, stabilitySentence } from '../../src/analysis/uncertainty.ts';
import { assertFiniteScores } from '../../src/engine/finite.ts';
import { makePlan } from '../../src/engine/plan.ts';
import type { Command } from '../args.ts';
import { COMMON_FLAGS, modelSummary, openModel, readSequences, sequenceInput, TEXT_FLAGS } from '../common.ts';

const interval = ([lo, hi]: Interval) => `[${lo.toFixed(5)}, ${hi.toFixed(5)}]`;

export const score: Command = {
  name: 'score',
  summary: 'Scores every block on calibration data (BI, angular distance, relative magnitude) with bootstrap confidence intervals and rank stability.',
  synopsis:
    '--model <dir|hub-id> (--text <file> | --ids <file.json>) [--seq-len N] [--max-sequences N] [--k N] [--bootstrap N] [--seed S] [--per-sequence] [--backend cpu|webgpu] [--json]',
  flags: [
    ...COMMON_FLAGS,
    ...TEXT_FLAGS,
    { name: 'k', value: 'N', help: 'cut size for the rank stability: P(among the N lowest by BI) per block and of the cut as a whole (default 25% of the blocks, rounded)' },
    { name: 'bootstrap', value: 'N', help: `resamples of the bootstrap over sequences (integer ≥ 2, default ${DEFAULT_RESAMPLES})` },
    { name: 'seed', value: 'S', help: `seed of the bootstrap's resampling, integer 0 … 2^32 − 1 (default ${DEFAULT_SEED})` },
    { name: 'per-sequence', help: 'also print each sequence’s block means (--json: "perSequence")' },
  ],
  async run(flags, out) {
    const input = sequenceInput(flags);
    const resamples = flags.int('bootstrap', DEFAULT_RESAMPLES, { min: 2, max: 1_000_000 });
    const seed = flags.int('seed', DEFAULT_SEED, { min: 0, max: 2 ** 32 - 1 });
    const model = await openModel(flags, out.warn);
    try {
      const layers = model.spec.layers;
      const k = flags.int('k', defaultCutSize(layers), { min: 0, max: layers - 1, why: `the model has ${layers} blocks and one must remain` });
      const sequences = await readSequences(input, model, out.warn);
      const { total, perSequence } = await model.scoreSequences(sequences, makePlan(layers));
      const scores = blockScores(total);
      assertFiniteScores(scores);
      const tokens = sequences.reduce((a, s) => a + s.length, 0);
      const boot = bootstrapScores(perSequence, { resamples, seed });
      const stability = boot.ok ? rankStability(boot, 'bi', k) : null;
      if (!boot.ok) out.warn(boot.reason);
      else if (boot.caution) out.warn(boot.caution);
      const blocks = scores.map(({ index, bi, angular, relMagnitude }, b) => ({
        index,
        bi,
        angular,
        relMagnitude,
        ci: boot.ok ? { bi: boot.blocks[b].bi, angular: boot.blocks[b].angular, relMagnitude: boot.blocks[b].relMagnitude } : null,
        pLowest: stability ? stability.pLowest[b].p : null,
      }));
      const bootstrap = {
        method: 'percentile bootstrap over sequences, token-weighted means',
        confidence: 0.95,
        resamples,
        seed,
        sequences: sequences.length,
        k,
        metric: 'bi',
        ...(stability ? { cut: stability.cut, stable: stability.stable } : {}),
        ...(boot.ok ? (boot.caution ? { caution: boot.caution } : {}) : { refused: boot.reason }),
      };
      const perSequenceMeans = flags.has('per-sequence')
        ? perSequence.map((sequence) => blockScores(sequence).map(({ index, bi, angular, relMagnitude, tokens }) => ({ index, bi, angular, relMagnitude, tokens })))
        : undefined;
      if (out.json) {
        out.print(
          JSON.stringify({ model: modelSummary(model), tokens, blocks, cutStability: stability ? stability.cutStability : null, bootstrap, perSequence: perSequenceMeans }),
        );
        return;
      }
      out.print(`${model.checkpoint.label}: ${layers} blocks, ${tokens} tokens scored in ${sequences.length} sequence(s)`);
      const head = (name: string) => `${name.padStart(8)}${boot.ok ? ' 95% CI'.padEnd(21) : ''}`;
      out.print(`block ${head('BI')} ${head('angular')} ${head('relMag')}${stability ? `  ${`P(${k} lowest)`.padStart(12)}` : ''}`.trimEnd());
      for (const b of blocks) {
        const cell = (value: number, ci: Interval | undefined) => `${value.toFixed(5).padStart(8)}${ci ? ` ${interval(ci)}` : ''}`;
        const p = b.pLowest === null ? '' : `  ${b.pLowest.toFixed(3).padStart(12)}`;
        out.print(`${String(b.index).padStart(5)} ${cell(b.bi, b.ci?.bi)} ${cell(b.angular, b.ci?.angular)} ${cell(b.relMagnitude, b.ci?.relMagnitude)}${p}`);
      }
      if (boot.ok && stability) {
        out.print(`${stabilitySentence(stability, resamples)}`);
        out.print(`(95% percentile bootstrap over ${sequences.length} sequences, token-weighted, ${resamples} resamples, seed ${seed})`);
      } else if (!boot.ok) out.print(`no confidence intervals: ${boot.reason}`);
      if (perSequenceMeans) {
        out.print('per-sequence BI (rows: sequences, columns: blocks)');
        for (const [s, row] of perSequenceMeans.entries()) out.print(`${String(s).padStart(5)} ${row.map((b) => b.bi.toFixed(5)).join(' ')}`);
      }
    } finally {
      model.dispose();
    }
  },
};
