/**
 * `npx prunelab <command>`: the same engine, headless. The contract (flags, --json shapes, errors on
 * stderr with a non-zero exit) is in DESIGN.md; scripts rely on it.
 *
 * Each command lives in cli/commands/<name>.ts and declares its flags; adding a command is one entry in
 * COMMANDS, adding a flag one entry in its command's `flags`. Anything not declared is refused by name.
 */
import { PruneLabError, describeError } from '../src/engine/errors.ts';
import { type Command, nearest, parseFlags, usageOf } from './args.ts';
import { exportCommand } from './commands/export.ts';
import { generate } from './commands/generate.ts';
import { heal } from './commands/heal.ts';
import { mc } from './commands/mc.ts';
import { ppl } from './commands/ppl.ts';
import { prune } from './commands/prune.ts';
import { score } from './commands/score.ts';
import { sweep } from './commands/sweep.ts';
import { DEFAULT_MODEL, openedModels } from './common.ts';

export { DEFAULT_MODEL };

export const COMMANDS: readonly Command[] = [score, ppl, prune, generate, sweep, mc, exportCommand, heal];

function usage(): string {
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(8)} ${c.synopsis}`);
  return `usage: prunelab <command> [options]\n${lines.join('\n')}
every command also takes --gpu-memory <MiB>, --backend cpu|cpu-reference|webgpu, --json; prunelab <command> --help lists its flags.
--model defaults to ${DEFAULT_MODEL} (the embedded model).`;
}

export async function main(
  argv: string[],
  print: (text: string) => void = (t) => process.stdout.write(`${t}\n`),
  printError: (text: string) => void = (t) => process.stderr.write(`${t}\n`),
): Promise<number> {
  const warn = (message: string) => printError(`prunelab: warning: ${message}`);
  try {
    const [name = 'help', ...rest] = argv;
    if (name === 'help' || name === '--help' || name === '-h') {
      print(usage());
      return 0;
    }
    const command = COMMANDS.find((c) => c.name === name);
    if (!command) {
      const close = nearest(
        name,
        COMMANDS.map((c) => c.name),
      );
      throw new PruneLabError(`unknown command "${name}"${close ? `; did you mean ${close}?` : ''}\n${usage()}`);
    }
    if (rest.includes('--help')) {
      print(usageOf(command));
      return 0;
    }
    const flags = parseFlags(command, rest, COMMANDS);
    // Every --json object that ran a model carries its memory report (DESIGN.md), added here once.
    const printJson = (text: string) => {
      const model = openedModels.at(-1);
      if (!model || !text.startsWith('{')) return print(text);
      const object = JSON.parse(text) as Record<string, unknown>;
      print(JSON.stringify({ ...object, memory: object.memory ?? model.memoryReport() }));
    };
    openedModels.length = 0;
    await command.run(flags, { json: flags.has('json'), print: flags.has('json') ? printJson : print, warn });
    return 0;
  } catch (e) {
    printError(`prunelab: ${describeError(e)}`);
    return 1;
  }
}
