/**
 * The CLI's command line: each command declares its flags (a table of FlagSpec), the parser refuses
 * anything else by name (with the nearest valid flag as a suggestion), and typed readers turn a value
 * into a number, an index list, ... or an error that names the flag and the value.
 */
import { PruneLabError } from '../src/engine/errors.ts';

export interface FlagSpec {
  name: string;
  /** Placeholder for the value in the usage text (e.g. 'N', '<file>'); absent = a switch without a value. */
  value?: string;
  help: string;
}

/** Where a warning goes: stderr, never stdout (stdout of --json must stay one JSON object). */
export type Warn = (message: string) => void;

export interface Out {
  json: boolean;
  print: (text: string) => void;
  warn: Warn;
}

export interface Command {
  name: string;
  /** One line: what it does. */
  summary: string;
  /** Its argument synopsis (after `prunelab <name>`), for the usage text. */
  synopsis: string;
  flags: readonly FlagSpec[];
  run(flags: Flags, out: Out): Promise<void>;
}

/** Levenshtein distance, for "did you mean". */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** The closest of `candidates` to `name`, when it is close enough to be a plausible typo. */
export function nearest(name: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = c.startsWith(name) && name.length >= 3 ? 0.5 : editDistance(name, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

/** Strict decimal forms: Number() alone would take '', ' ', '0x10', '1e3' and 'Infinity'. */
const INTEGER = /^[-+]?\d+$/;
const DECIMAL = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

export interface IntRule {
  min?: number;
  max?: number;
  /** Why the bound is there, added to the error (e.g. 'the model has 12 blocks'). */
  why?: string;
}

export interface NumberRule {
  /** Inclusive bounds unless the *Exclusive variant is set. */
  min?: number;
  max?: number;
  minExclusive?: boolean;
  maxExclusive?: boolean;
}

/** The parsed flags of one command, read through typed accessors that name the flag in every error. */
export class Flags {
  constructor(
    readonly command: string,
    private readonly values: Map<string, string | true>,
  ) {}

  has(name: string): boolean {
    return this.values.has(name);
  }

  /** The names given on the command line, for rules between flags. */
  names(): string[] {
    return [...this.values.keys()];
  }

  /** A string flag; an empty value is an error unless `allowEmpty` (e.g. an empty removal list). */
  str(name: string, options: { allowEmpty?: boolean } = {}): string | undefined {
    const v = this.values.get(name);
    if (v === undefined) return undefined;
    if (v === true) throw new PruneLabError(`--${name} needs a value`);
    if (!options.allowEmpty && v.trim() === '') throw new PruneLabError(`--${name} is empty; it needs a value`);
    return v;
  }

  int(name: string, fallback: number, rule: IntRule = {}): number {
    const v = this.str(name);
    if (v === undefined) return fallback;
    return parseInteger(v.trim(), `--${name}`, rule);
  }

  /** An optional integer: undefined when the flag is absent. */
  maybeInt(name: string, rule: IntRule = {}): number | undefined {
    return this.has(name) ? this.int(name, 0, rule) : undefined;
  }

  number(name: string, fallback: number, rule: NumberRule = {}): number {
    const v = this.str(name);
    if (v === undefined) return fallback;
    const text = v.trim();
    const n = Number(text);
    if (!DECIMAL.test(text) || !Number.isFinite(n)) throw new PruneLabError(`--${name} must be a number, got "${v}"`);
    const { min, max, minExclusive, maxExclusive } = rule;
    const low = min === undefined || (minExclusive ? n > min : n >= min);
    const high = max === undefined || (maxExclusive ? n < max : n <= max);
    if (!low || !high) {
      const lower = min === undefined ? '' : `${min} ${minExclusive ? '<' : '≤'} `;
      const upper = max === undefined ? '' : ` ${maxExclusive ? '<' : '≤'} ${max}`;
      throw new PruneLabError(`--${name} must satisfy ${lower}${name}${upper}, got ${v}`);
    }
    return n;
  }

  /**
   * A comma-separated list of block indices; an empty value is the empty list (scripts pass `--remove ""`
   * for "nothing removed"). A repeated index is an error: "3,3" is a slip, not a request.
   */
  indices(name: string): number[] {
    const v = this.str(name, { allowEmpty: true });
    if (v === undefined || v.trim() === '') return [];
    const seen = new Set<number>();
    return v.split(',').map((part) => {
      const text = part.trim();
      if (!/^\d+$/.test(text)) throw new PruneLabError(`--${name} must be comma-separated block indices (0, 1, 2, …), got "${part}" in "${v}"`);
      const n = Number(text);
      if (seen.has(n)) throw new PruneLabError(`--${name} lists block ${n} twice ("${v}")`);
      seen.add(n);
      return n;
    });
  }
}

export function parseInteger(text: string, what: string, rule: IntRule = {}): number {
  const n = Number(text);
  const { min, max, why } = rule;
  const range = min !== undefined && max !== undefined ? `between ${min} and ${max}` : min !== undefined ? `≥ ${min}` : max !== undefined ? `≤ ${max}` : '';
  const because = why ? ` (${why})` : '';
  if (!INTEGER.test(text) || !Number.isSafeInteger(n)) throw new PruneLabError(`${what} must be an integer${range ? ` ${range}` : ''}, got "${text}"`);
  if ((min !== undefined && n < min) || (max !== undefined && n > max)) throw new PruneLabError(`${what} must be an integer ${range}${because}, got ${n}`);
  return n;
}

/** Which other commands take a flag, for "it belongs to generate". */
function ownersOf(name: string, commands: readonly Command[]): string[] {
  return commands.filter((c) => c.flags.some((f) => f.name === name)).map((c) => c.name);
}

/**
 * Parses `argv` (after the command name) against the command's flags. `--name value` and `--name=value`
 * are accepted; an unknown flag, a flag of another command, a repeated flag, a switch given a value and
 * a stray positional argument are errors.
 */
export function parseFlags(command: Command, argv: readonly string[], all: readonly Command[]): Flags {
  const specs = new Map(command.flags.map((f) => [f.name, f]));
  const values = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--') || arg === '--') {
      const hint = arg.startsWith('-') ? ` (flags start with two dashes: --${arg.replace(/^-+/, '')})` : '';
      throw new PruneLabError(`unexpected argument "${arg}" for ${command.name}${hint}; see prunelab ${command.name} --help`);
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    const spec = specs.get(name);
    if (!spec) throw unknownFlag(command, name, all);
    if (values.has(name)) throw new PruneLabError(`--${name} is given twice; give it once`);
    if (spec.value === undefined) {
      if (eq > 0) throw new PruneLabError(`--${name} is a switch and takes no value, got "${arg}"`);
      values.set(name, true);
    } else if (eq > 0) values.set(name, arg.slice(eq + 1));
    else {
      const value = argv[i + 1];
      // A value may start with one dash (a negative number) but not two (that is the next flag).
      if (value === undefined || (value.startsWith('--') && value.length > 2)) throw new PruneLabError(`--${name} needs a value (${spec.value})`);
      values.set(name, value);
      i++;
    }
  }
  return new Flags(command.name, values);
}

function unknownFlag(command: Command, name: string, all: readonly Command[]): PruneLabError {
  const valid = command.flags.map((f) => f.name);
  const owners = ownersOf(name, all);
  const close = nearest(name, valid);
  const suggestion = close ? `; did you mean --${close}?` : `; ${command.name} takes ${valid.map((v) => `--${v}`).join(', ')}`;
  if (owners.length > 0) return new PruneLabError(`--${name} is not a flag of ${command.name} (it belongs to ${owners.join(', ')})${suggestion}`);
  return new PruneLabError(`unknown flag --${name} for ${command.name}${suggestion}`);
}

export function usageOf(command: Command): string {
  const width = Math.max(...command.flags.map((f) => f.name.length + (f.value ? f.value.length + 1 : 0)));
  const lines = command.flags.map((f) => `  --${`${f.name}${f.value ? ` ${f.value}` : ''}`.padEnd(width)}  ${f.help}`);
  return `usage: prunelab ${command.name} ${command.synopsis}\n${command.summary}\n${lines.join('\n')}`;
}
