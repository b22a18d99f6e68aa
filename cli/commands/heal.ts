/**
 * `prunelab heal`: removes contiguous spans of blocks and replaces each by a linear map fitted on the
 * calibration data and folded into the block before it (src/analysis/heal.ts), then writes the healed
 * model as an ordinary checkpoint. Prints perplexity before (plain removal) and after healing.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { bestHealableSpan, checkHealable, DEFAULT_RIDGE, type Healed, healSpans, spanLabel } from '../../src/analysis/heal.ts';
import { PruneLabError } from '../../src/engine/errors.ts';
import { createBackend, type Model } from '../../src/engine/model.ts';
import { makePlan } from '../../src/engine/plan.ts';
import { directorySource } from '../../src/engine/sources.ts';
import { prunedCheckpointFiles } from '../../src/export/pruned-checkpoint.ts';
import { type HealNote, prunelabNote } from '../../src/export/zip.ts';
import type { Command, Flags } from '../args.ts';
import { backendOf, COMMON_FLAGS, engineOptions, modelFlag, openModel, readSequences, type SequenceInput, sequenceInput, TEXT_FLAGS } from '../common.ts';
import { checkEmptyFolder } from './prune.ts';

interface PerplexityRow {
  data: string;
  tokens: number;
  original: number;
  removed: number;
  healed: number;
}

function describeInput(input: SequenceInput, sequences: readonly (readonly number[])[]): string {
  const tokens = sequences.reduce((a, s) => a + s.length, 0);
  const file = basename(input.source.file);
  return input.source.kind === 'text'
    ? `${file}, ${sequences.length} × ${input.source.seqLen} tokens (${tokens} tokens)`
    : `${file}, ${sequences.length} sequences (${tokens} tokens)`;
}

async function measure(model: Model, healed: Healed, sequences: number[][], data: string): Promise<PerplexityRow> {
  const layers = model.spec.layers;
  const plan = makePlan(layers, { blocks: healed.removed });
  const original = await model.perplexity(sequences, makePlan(layers));
  const removed = await model.perplexity(sequences, plan);
  const after = await healed.model.perplexity(sequences, plan);
  return { data, tokens: after.tokens, original: original.ppl, removed: removed.ppl, healed: after.ppl };
}

/** --remove or --best-span N, checked before the model loads where it can be. */
function removalRequest(flags: Flags): { remove: number[] } | { bestSpan: number } {
  const remove = flags.has('remove') ? flags.indices('remove') : null;
  const bestSpan = flags.maybeInt('best-span', { min: 1 });
  if ((remove === null) === (bestSpan === undefined)) throw new PruneLabError('heal needs exactly one of --remove 4,5,6 or --best-span N');
  if (remove !== null && remove.length === 0) throw new PruneLabError('heal needs --remove with at least one block');
  return remove !== null ? { remove } : { bestSpan: bestSpan as number };
}

export const heal: Command = {
  name: 'heal',
  summary: 'Removes contiguous spans of blocks and heals each with a linear map folded into the block before it (ReplaceMe); writes an HF checkpoint.',
  synopsis:
    '--model <dir|hub-id> (--remove 4,5,6 | --best-span N) (--text <file> | --ids <file.json>) --out <dir> [--eval-text <file> | --eval-ids <file.json>] [--seq-len N] [--ridge R] [--json]',
  flags: [
    ...COMMON_FLAGS,
    ...TEXT_FLAGS,
    { name: 'remove', value: '4,5,6', help: 'blocks to remove; each contiguous run is healed into the block before it (so block 0 cannot be removed)' },
    { name: 'best-span', value: 'N', help: 'instead of --remove: the N-block span with the smallest angular distance between its input and output (Gromov et al.)' },
    { name: 'eval-text', value: '<file>', help: 'held-out text: also report perplexity on it (cut like --text)' },
    { name: 'eval-ids', value: '<file.json>', help: 'held-out token ids: also report perplexity on them' },
    { name: 'ridge', value: 'R', help: `relative ridge: λ = R · trace(MᵀM) / hidden (default ${DEFAULT_RIDGE})` },
    { name: 'out', value: '<dir>', help: 'a new or empty folder for the healed checkpoint' },
  ],
  async run(flags, out) {
    const dest = flags.str('out');
    if (dest === undefined) throw new PruneLabError('heal needs --out <dir>');
    const request = removalRequest(flags);
    const ridge = flags.number('ridge', DEFAULT_RIDGE, { min: 0 });
    const input = sequenceInput(flags);
    const hasEval = flags.has('eval-text') || flags.has('eval-ids');
    const evalInput = hasEval ? sequenceInput(flags, { ids: 'eval-ids', text: 'eval-text', what: 'evaluation text', verb: 'measuring' }) : null;
    await checkEmptyFolder(dest);
    const model = await openModel(flags, out.warn);
    const backend = backendOf(model);
    let healed: Healed | null = null;
    try {
      if ('remove' in request) checkHealable(model.spec, request.remove);
      const sequences = await readSequences(input, model, out.warn);
      const evaluation = evalInput ? await readSequences(evalInput, model, out.warn) : null;
      const removed = 'remove' in request ? request.remove : (await bestHealableSpan(model, sequences, request.bestSpan)).removed;
      if (!out.json && 'bestSpan' in request) out.print(`best ${request.bestSpan}-block span by angular distance: [${removed.join(', ')}]`);
      healed = await healSpans(model, sequences, removed, { ridge, openBackend: (checkpoint) => createBackend(backend, checkpoint, { f16Math: engineOptions(flags).f16Math }) });
      const calibration = describeInput(input, sequences);
      const rows = [await measure(model, healed, sequences, `calibration (${calibration})`)];
      if (evaluation && evalInput) rows.push(await measure(model, healed, evaluation, `held-out (${describeInput(evalInput, evaluation)})`));
      for (const row of rows) if (!Number.isFinite(row.healed)) throw new PruneLabError(`the healed model's perplexity is not finite on the ${row.data} data`);

      const healNote: HealNote = { spans: healed.spans, ridge, calibration, perplexity: rows };
      const { files, keptBlocks } = prunedCheckpointFiles(healed.checkpoint, healed.removed, {
        prunelab_removed_blocks: healed.removed.join(','),
        prunelab_healed_into: healed.spans.map((s) => s.block).join(','),
      });
      files.set('PRUNELAB.md', new TextEncoder().encode(prunelabNote(model.checkpoint, healed.removed, keptBlocks, { metric: null, scores: [], heal: healNote })));
      await mkdir(dest, { recursive: true });
      for (const [name, bytes] of files) await writeFile(join(dest, name), bytes);
      const genConfig = await directorySource(modelFlag(flags)).read('generation_config.json');
      if (genConfig) await writeFile(join(dest, 'generation_config.json'), genConfig);

      const [calib, held] = rows;
      const ppl = (row: PerplexityRow) => ({ tokens: row.tokens, original: row.original, removed: row.removed, healed: row.healed });
      if (out.json) {
        out.print(
          JSON.stringify({
            out: dest,
            removed: healed.removed,
            keptBlocks,
            ridge,
            spans: healed.spans,
            calibration: ppl(calib),
            ...(held ? { evaluation: ppl(held) } : {}),
          }),
        );
      } else {
        for (const s of healed.spans) {
          out.print(
            `span ${spanLabel(s)} healed into block ${s.block}: fit residual ${s.residual.toFixed(4)} of ‖x_j − H‖² (plain removal ${s.removalResidual.toFixed(4)}), ${s.tokens} tokens`,
          );
        }
        for (const row of rows) {
          const change = ((row.healed / row.removed - 1) * 100).toFixed(2);
          out.print(`perplexity on ${row.data}: original ${row.original.toFixed(4)}, removed ${row.removed.toFixed(4)}, healed ${row.healed.toFixed(4)} (${change}% vs removed)`);
        }
        out.print(`wrote ${dest}: ${keptBlocks.length} blocks kept (original ${keptBlocks.join(', ')})`);
      }
    } finally {
      healed?.model.dispose();
      model.dispose();
    }
  },
};
