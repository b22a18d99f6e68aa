/** `prunelab mc`: multiple-choice accuracy, original vs pruned. */
import { readFile, writeFile } from 'node:fs/promises';
import { clozeTasks, compareMc, contextsCut, encodeMcItems, type McItem, parseMcJsonl } from '../../src/analysis/mc.ts';
import { PruneLabError } from '../../src/engine/errors.ts';
import type { Command } from '../args.ts';
import { COMMON_FLAGS, openModel, REMOVAL_FLAGS, removalFrom, removalPlan } from '../common.ts';

export const mc: Command = {
  name: 'mc',
  summary: 'Multiple-choice accuracy (acc and acc_norm) of the original and the pruned model.',
  synopsis:
    '--model <dir|hub-id> (--tasks <file.jsonl> | --cloze-text <file> [--cloze-count N] [--seed S] [--write-tasks <file.jsonl>]) [--remove 3,5,7] [--remove-attention ..] [--remove-mlp ..] [--backend ..] [--json]',
  flags: [
    ...COMMON_FLAGS,
    { name: 'tasks', value: '<file.jsonl>', help: 'one {"question", "choices", "answer"} per line' },
    { name: 'cloze-text', value: '<file>', help: 'make cloze questions from this text instead' },
    { name: 'cloze-count', value: 'N', help: 'cloze questions to make (integer ≥ 1, default 100)' },
    { name: 'seed', value: 'S', help: 'seed for choosing cloze questions (integer ≥ 0, default 0)' },
    { name: 'write-tasks', value: '<file.jsonl>', help: 'also write the cloze questions made' },
    ...REMOVAL_FLAGS,
  ],
  async run(flags, out) {
    const tasksFile = flags.str('tasks');
    const clozeFile = flags.str('cloze-text');
    if ((tasksFile === undefined) === (clozeFile === undefined)) throw new PruneLabError('pass exactly one of --tasks <file.jsonl> or --cloze-text <file>');
    if (tasksFile !== undefined) {
      const clozeOnly = ['cloze-count', 'seed', 'write-tasks'].filter((f) => flags.has(f));
      if (clozeOnly.length > 0) throw new PruneLabError(`${clozeOnly.map((f) => `--${f}`).join(', ')} only apply with --cloze-text (questions from --tasks are used as given)`);
    }
    const removal = removalFrom(flags);
    const source = (tasksFile ?? clozeFile) as string;
    const text = await readFile(source, 'utf8').catch((e: Error) => {
      throw new PruneLabError(`cannot read (${e.message})`, { file: source });
    });
    let items: McItem[];
    if (tasksFile !== undefined) items = parseMcJsonl(text, tasksFile);
    else {
      const count = flags.int('cloze-count', 100, { min: 1 });
      items = clozeTasks(text, { count, seed: flags.int('seed', 0, { min: 0, max: 2 ** 32 - 1 }) });
      if (items.length > 0 && items.length < count) out.warn(`${clozeFile} yields ${items.length} cloze question(s), fewer than --cloze-count ${count}: asking ${items.length}`);
      const writeTo = flags.str('write-tasks');
      if (writeTo) await writeFile(writeTo, items.map((item) => JSON.stringify(item)).join('\n') + '\n');
    }
    if (items.length === 0) throw new PruneLabError('no questions to ask', { file: source });
    const model = await openModel(flags, out.warn);
    try {
      removalPlan(model.spec.layers, removal); // validates the indices before any scoring
      const encoded = encodeMcItems(model, items);
      const cut = contextsCut(encoded, model.spec.maxPositions);
      if (cut > 0) out.warn(`${cut} of ${encoded.length} questions are longer than the model's ${model.spec.maxPositions} positions: their contexts keep only the last tokens`);
      const { original, pruned } = await compareMc(model, encoded, removal);
      const removed = [...removal.blocks].sort((a, b) => a - b);
      if (out.json) {
        const extra: Record<string, number[]> = {};
        if (removal.attention.length) extra.removedAttention = [...removal.attention].sort((a, b) => a - b);
        if (removal.mlp.length) extra.removedMlp = [...removal.mlp].sort((a, b) => a - b);
        out.print(
          JSON.stringify({
            accuracy: pruned.accuracy,
            accNorm: pruned.accNorm,
            n: pruned.n,
            removed,
            ...extra,
            original: { accuracy: original.accuracy, accNorm: original.accNorm },
          }),
        );
      } else {
        out.print(`accuracy ${pruned.accuracy.toFixed(4)} (acc_norm ${pruned.accNorm.toFixed(4)}) on ${pruned.n} questions with removed [${removed.join(', ')}]`);
        out.print(`original ${original.accuracy.toFixed(4)} (acc_norm ${original.accNorm.toFixed(4)})`);
      }
    } finally {
      model.dispose();
    }
  },
};
