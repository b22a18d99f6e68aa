/** `prunelab generate`: text from a prompt, with blocks removed. */
import { PruneLabError } from '../../src/engine/errors.ts';
import { checkPrompt } from '../../src/engine/limits.ts';
import type { Command } from '../args.ts';
import { COMMON_FLAGS, openModel, REMOVAL_FLAGS, removalFrom, removalPlan, report } from '../common.ts';

const SAMPLING = ['top-k', 'top-p', 'seed'];

export const generate: Command = {
  name: 'generate',
  summary: 'Generates from a prompt (greedy, or sampled with --temperature > 0), with blocks removed.',
  synopsis: '--model <dir> --prompt "..." [--remove ...] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--backend ..] [--json]',
  flags: [
    ...COMMON_FLAGS,
    { name: 'prompt', value: '"..."', help: 'the prompt text (tokenized with special tokens, e.g. BOS)' },
    ...REMOVAL_FLAGS,
    { name: 'max-new-tokens', value: 'N', help: 'tokens to generate (integer ≥ 1, default 32; never past the context)' },
    { name: 'temperature', value: 'T', help: 'sampling temperature ≥ 0 (default 0 = greedy)' },
    { name: 'top-k', value: 'K', help: 'sample from the K most likely tokens (integer ≥ 0; 0 = no cut)' },
    { name: 'top-p', value: 'P', help: 'nucleus sampling, 0 < P ≤ 1 (default 1 = no cut)' },
    { name: 'seed', value: 'S', help: 'sampling seed, integer 0 … 2^32 − 1 (default 0)' },
  ],
  async run(flags, out) {
    const prompt = flags.str('prompt');
    if (prompt === undefined) throw new PruneLabError('generate needs --prompt "..."');
    const removal = removalFrom(flags);
    const maxNewTokens = flags.int('max-new-tokens', 32, { min: 1 });
    const temperature = flags.number('temperature', 0, { min: 0 });
    const topK = flags.int('top-k', 0, { min: 0 });
    const topP = flags.number('top-p', 1, { min: 0, minExclusive: true, max: 1 });
    const seed = flags.int('seed', 0, { min: 0, max: 2 ** 32 - 1 });
    const unused = SAMPLING.filter((f) => flags.has(f));
    if (temperature === 0 && unused.length > 0)
      out.warn(`${unused.map((f) => `--${f}`).join(', ')} ha${unused.length > 1 ? 've' : 's'} no effect with --temperature 0 (greedy decoding)`);
    const model = await openModel(flags, out.warn);
    try {
      const plan = removalPlan(model.spec.layers, removal);
      if (topK >= model.spec.vocabSize) out.warn(`--top-k ${topK} is not smaller than the vocabulary (${model.spec.vocabSize} tokens): no top-k cut`);
      const promptIds = model.requireTokenizer().encode(prompt);
      report(checkPrompt(promptIds.length, maxNewTokens, model.spec), out.warn, 'prompt');
      const ids = await model.generate(promptIds, plan, { maxNewTokens, temperature, topK, topP, seed, stopAtEos: true });
      const text = ids.length ? model.requireTokenizer().decode(ids, { skipSpecialTokens: true }) : '';
      if (out.json) out.print(JSON.stringify({ prompt, promptTokens: promptIds.length, ids, text }));
      else out.print(prompt + text);
    } finally {
      model.dispose();
    }
  },
};
