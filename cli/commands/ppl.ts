/** `prunelab ppl`: perplexity with a removal set. */
import { PruneLabError } from '../../src/engine/errors.ts';
import type { Command } from '../args.ts';
import { COMMON_FLAGS, openModel, READ_EVAL, readSequences, sequenceInput, REMOVAL_FLAGS, removalFrom, removalPlan, TEXT_FLAGS } from '../common.ts';

export const ppl: Command = {
  name: 'ppl',
  summary: 'Perplexity of the model with blocks (or block halves) removed.',
  synopsis: '--model <dir|hub-id> (--text <file> | --ids <file.json>) [--remove 3,5,7] [--remove-attention ..] [--remove-mlp ..] [--seq-len N] [--backend ..] [--json]',
  flags: [...COMMON_FLAGS, ...TEXT_FLAGS, ...REMOVAL_FLAGS],
  async run(flags, out) {
    const removal = removalFrom(flags);
    const input = sequenceInput(flags, READ_EVAL);
    const loadStart = performance.now();
    const model = await openModel(flags, out.warn);
    const loadSeconds = (performance.now() - loadStart) / 1000;
    try {
      const plan = removalPlan(model.spec.layers, removal);
      const sequences = await readSequences(input, model, out.warn);
      const runStart = performance.now();
      const cpuStart = process.cpuUsage();
      const result = await model.perplexity(sequences, plan);
      // The forwards alone (load excluded), so scripts can compare engines; CPU time counts every thread.
      const cpu = process.cpuUsage(cpuStart);
      const timing = { loadSeconds, runSeconds: (performance.now() - runStart) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, backend: model.backend.info.description };
      if (!Number.isFinite(result.ppl)) throw new PruneLabError(`the perplexity is not finite (mean NLL ${result.nll}): the logits overflowed to Inf/NaN`);
      const removed = [...removal.blocks].sort((a, b) => a - b);
      if (out.json) {
        const extra: Record<string, unknown> = { timing };
        if (removal.attention.length) extra.removedAttention = [...removal.attention];
        if (removal.mlp.length) extra.removedMlp = [...removal.mlp];
        out.print(JSON.stringify({ ppl: result.ppl, nll: result.nll, tokens: result.tokens, removed, ...extra }));
      } else out.print(`perplexity ${result.ppl.toFixed(4)} (mean NLL ${result.nll.toFixed(5)} over ${result.tokens} predicted tokens; removed [${removed.join(', ')}])`);
    } finally {
      model.dispose();
    }
  },
};
