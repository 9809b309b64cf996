import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';

/** Where a command writes: the process's streams, or a test's buffers. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

/** A mistake in how the command was called: reported with the command's usage, exit code 2. */
export class UsageError extends Error {}

/** One subcommand: what `tasklease <name> --help` prints, and the run itself (exit code). */
export interface Command {
  usage: string;
  run(argv: string[], io: Io): Promise<number>;
}

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;
const HELP = { help: { type: 'boolean', short: 'h' } } as const;

type Parsed<O extends OptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O & typeof HELP; strict: true; allowPositionals: true }>
>;
export type OptionValues<O extends OptionsConfig> = Parsed<O>['values'];

/** parseArgs, with its errors turned into usage errors that name the option. */
export function parseOptions<const O extends OptionsConfig>(argv: string[], options: O): Parsed<O> {
  try {
    return parseArgs({ args: argv, options: { ...options, ...HELP }, strict: true, allowPositionals: true });
  } catch (err) {
    const e = err as { code?: string; message: string };
    // Node's own message goes on about positionals after `--`; the option's name is what helps.
    const unknown = e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'([^']+)'/.exec(e.message)?.[1] : undefined;
    throw new UsageError(unknown ? `unknown option ${unknown}` : e.message);
  }
}

export interface CommandSpec<O extends OptionsConfig> {
  usage: string;
  options: O;
  /** Positional arguments the command takes after its name (default none). */
  maxPositionals?: number;
  run(values: OptionValues<O>, io: Io, positionals: string[]): Promise<number>;
}

/** A command from its options and its run: `--help`/`-h` and stray arguments are handled here, once. */
export function defineCommand<const O extends OptionsConfig>(spec: CommandSpec<O>): Command {
  return {
    usage: spec.usage,
    async run(argv, io) {
      const { values, positionals } = parseOptions(argv, spec.options);
      // The generic values type cannot see the `help` merged in above.
      if ((values as { help?: boolean }).help) {
        io.out(spec.usage);
        return 0;
      }
      const extra = positionals[spec.maxPositionals ?? 0];
      if (extra !== undefined) throw new UsageError(`unexpected argument ${extra}`);
      return spec.run(values, io, positionals);
    },
  };
}

/** A non-negative integer option, or its default. */
export function wholeNumber(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${flag} takes a whole number, not "${value}"`);
  return n;
}
