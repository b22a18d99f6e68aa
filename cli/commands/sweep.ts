/** `prunelab sweep`: perplexity vs blocks removed, per pruning strategy. */
import { BLOCK_STRATEGIES, isStrategy, runSweep, STRATEGIES, type Strategy, type SweepStep } from '../../src/analysis/sweep.ts';
import { PruneLabError } from '../../src/engine/errors.ts';
import type { Command } from '../args.ts';
import { COMMON_FLAGS, modelSummary, openModel, readSequences, sequenceInput, TEXT_FLAGS } from '../common.ts';

function parseStrategies(value: string | undefined): Strategy[] {
  if (value === undefined) return [...BLOCK_STRATEGIES];
  if (value.trim() === 'all') return [...STRATEGIES];
  const names = value.split(',').map((s) => s.trim());
  if (names.some((s) => s === '')) throw new PruneLabError(`--strategies has an empty name in "${value}"`);
  const seen = new Set<string>();
  for (const name of names) {
    if (!isStrategy(name)) throw new PruneLabError(`unknown strategy "${name}" in --strategies (known: ${STRATEGIES.join(', ')}, or all)`);
    if (seen.has(name)) throw new PruneLabError(`--strategies lists "${name}" twice`);
    seen.add(name);
  }
  return names as Strategy[];
}

function describeStep(step: SweepStep): string {
  const sets = [`[${step.removed.join(',')}]`];
  if (step.removedAttention) sets.push(`attention [${step.removedAttention.join(',')}]`);
  if (step.removedMlp) sets.push(`mlp [${step.removedMlp.join(',')}]`);
  const range = step.pplMin !== undefined ? ` (seeds ${step.pplMin.toFixed(3)} … ${(step.pplMax as number).toFixed(3)}, median seed ${step.seed})` : '';
  return `${sets.join(' ')} ppl ${step.ppl.toFixed(4)}${range}`;
}

export const sweep: Command = {
  name: 'sweep',
  summary: `Perplexity vs number of blocks removed for each strategy (${STRATEGIES.join(', ')} or all); --text/--ids calibrate (drive the choices), --eval-* measure.`,
  synopsis: `--model <dir|hub-id> (--text <file> | --ids <file.json>) [--eval-text <file> | --eval-ids <file.json>] [--strategies ${BLOCK_STRATEGIES.join(',')}] [--max-removed K] [--seeds N] [--seq-len N] [--max-sequences N] [--backend ..] [--json]`,
  flags: [
    ...COMMON_FLAGS,
    ...TEXT_FLAGS,
    { name: 'eval-text', value: '<file>', help: 'held-out text that measures each step (default: the calibration data)' },
    { name: 'eval-ids', value: '<file.json>', help: 'held-out token ids that measure each step' },
    { name: 'strategies', value: 'a,b,…', help: `comma-separated (${STRATEGIES.join(', ')}) or all; default ${BLOCK_STRATEGIES.join(',')}` },
    { name: 'max-removed', value: 'K', help: 'remove up to K blocks (0 … blocks − 1; default blocks − 1)' },
    { name: 'seeds', value: 'N', help: 'random orders for the random strategy (integer 1 … 1000, default 5)' },
  ],
  async run(flags, out) {
    const strategies = parseStrategies(flags.str('strategies'));
    const seeds = flags.int('seeds', 5, { min: 1, max: 1000 });
    if (flags.has('seeds') && !strategies.includes('random')) out.warn('--seeds only affects the random strategy, which is not among --strategies');
    const calibrationInput = sequenceInput(flags);
    const hasEval = flags.has('eval-text') || flags.has('eval-ids');
    const evaluationInput = hasEval ? sequenceInput(flags, { ids: 'eval-ids', text: 'eval-text', what: 'evaluation text', verb: 'measuring' }) : undefined;
    const model = await openModel(flags, out.warn);
    try {
      const layers = model.spec.layers;
      const maxRemoved = flags.int('max-removed', layers - 1, { min: 0 });
      if (maxRemoved > layers - 1) throw new PruneLabError(`--max-removed must be at most ${layers - 1} (the model has ${layers} blocks; one must remain), got ${maxRemoved}`);
      const calibration = await readSequences(calibrationInput, model, out.warn);
      const evaluation = evaluationInput ? await readSequences(evaluationInput, model, out.warn) : undefined;
      const result = await runSweep(model, calibration, {
        strategies,
        evaluation,
        maxRemoved,
        seeds,
        onStep: out.json ? undefined : ({ strategy, k, step, seed }) => out.print(`${strategy}${seed === undefined ? '' : ` seed ${seed}`} k=${k} ${describeStep(step)}`),
      });
      if (out.json) {
        out.print(
          JSON.stringify({
            model: modelSummary(model),
            layers,
            maxRemoved,
            calibrationTokens: result.calibrationTokens,
            evalTokens: result.evaluationTokens,
            strategies: result.strategies,
            orders: result.orders,
            randomSeeds: result.randomSeeds,
          }),
        );
      } else {
        out.print(`\nperplexity on ${hasEval ? 'the evaluation set' : 'the calibration set'} (${result.evaluationTokens} predicted tokens) by blocks removed`);
        out.print(['k'.padStart(3), ...strategies.map((s) => s.padStart(11))].join(' '));
        for (let k = 0; k <= maxRemoved; k++)
          out.print([String(k).padStart(3), ...strategies.map((s) => (result.strategies[s]?.[k]?.ppl.toFixed(3) ?? '').padStart(11))].join(' '));
        for (const [name, order] of Object.entries(result.orders)) out.print(`${name} order: ${order.join(', ')}`);
      }
    } finally {
      model.dispose();
    }
  },
};
