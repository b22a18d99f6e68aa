/** `prunelab generate`: text from a prompt, with blocks removed. */
import { PruneLabError } from '../../src/engine/errors.ts';
import { checkPrompt } from '../../src/engine/limits.ts';
import { type DecodeRun, StreamedRunRefused } from '../../src/engine/model.ts';
import type { Command } from '../args.ts';
import { COMMON_FLAGS, openModel, REMOVAL_FLAGS, removalFrom, removalPlan, report } from '../common.ts';

const SAMPLING = ['top-k', 'top-p', 'seed'];

export const generate: Command = {
  name: 'generate',
  summary: 'Generates from a prompt (greedy, or sampled with --temperature > 0), with blocks removed.',
  synopsis: '--model <dir> --prompt "..." [--remove ...] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--allow-streamed] [--backend ..] [--json]',
  flags: [
    ...COMMON_FLAGS,
    { name: 'prompt', value: '"..."', help: 'the prompt text (tokenized with special tokens, e.g. BOS)' },
    ...REMOVAL_FLAGS,
    { name: 'max-new-tokens', value: 'N', help: 'tokens to generate (integer ≥ 1, default 32; never past the context)' },
    { name: 'temperature', value: 'T', help: 'sampling temperature ≥ 0 (default 0 = greedy)' },
    { name: 'top-k', value: 'K', help: 'sample from the K most likely tokens (integer ≥ 0; 0 = no cut)' },
    { name: 'top-p', value: 'P', help: 'nucleus sampling, 0 < P ≤ 1 (default 1 = no cut)' },
    { name: 'seed', value: 'S', help: 'sampling seed, integer 0 … 2^32 − 1 (default 0)' },
    {
      name: 'allow-streamed',
      help: 'when the (pruned) model does not fit --gpu-memory resident, generate anyway, block-streamed: each token is one pass that re-reads the kept blocks (slow; the cost is stated)',
    },
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
      const allowStreamed = flags.has('allow-streamed');
      let run: DecodeRun | null = null;
      const started = performance.now();
      let tokens = 0;
      const onRun = (r: DecodeRun) => {
        run = r;
        if (r.mode === 'kept-blocks-resident') out.warn(`generating with the kept blocks resident: ${r.reason}`);
        if (r.mode === 'streamed') out.warn(`generating block-streamed (--allow-streamed): it ${r.reason}`);
      };
      const onToken = () => {
        tokens++;
        // A streamed token's time, measured, is the estimate for the rest.
        if (tokens === 1 && run?.mode === 'streamed' && maxNewTokens > 1) {
          const ms = performance.now() - started;
          out.warn(`first streamed token in ${seconds(ms)}: up to ${maxNewTokens - 1} more take about ${seconds(ms * (maxNewTokens - 1))}`);
        }
      };
      let ids: number[];
      try {
        ids = await model.generate(promptIds, plan, { maxNewTokens, temperature, topK, topP, seed, stopAtEos: true, allowStreamed, onRun, onToken });
      } catch (e) {
        if (!(e instanceof StreamedRunRefused)) throw e;
        throw new PruneLabError(`generation ${e.run.reason}; pass --allow-streamed to run it anyway, or remove more blocks / raise --gpu-memory`);
      }
      const used = run as DecodeRun | null;
      const msPerToken = ids.length > 0 ? (performance.now() - started) / ids.length : null;
      if (used?.mode === 'streamed')
        out.warn(
          `streamed generation: ${ids.length} tokens, ${mib(used.bytesPerToken)} of weights read per token, ${msPerToken === null ? '—' : seconds(msPerToken)} per token (measured)`,
        );
      const text = ids.length ? model.requireTokenizer().decode(ids, { skipSpecialTokens: true }) : '';
      const generation = used && {
        mode: used.mode,
        needBytes: used.needBytes,
        fullNeedBytes: used.fullNeedBytes,
        budgetBytes: used.budgetBytes,
        bytesPerToken: used.mode === 'streamed' ? used.bytesPerToken : 0,
        // the cost of a streamed run, measured; a resident run's timing would make the output differ run to run
        ...(used.mode === 'streamed' ? { msPerToken } : {}),
      };
      if (out.json) out.print(JSON.stringify({ prompt, promptTokens: promptIds.length, ids, text, generation }));
      else out.print(prompt + text);
    } finally {
      model.dispose();
    }
  },
};

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 0)} s`;
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
