#!/usr/bin/env -S npx tsx
import { readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { UsageError } from './command.ts';
import type { Command, Io } from './command.ts';

export { LOCAL_TABLE } from './ledger-options.ts';

export interface CommandEntry {
  /** What follows `tasklease`: one word, or several for a group (`audit verify`). */
  name: string;
  summary: string;
  /** Loaded only when run, so `--help` does not pull in the AWS SDK. */
  load: () => Promise<{ default: Command }>;
}

/** Every subcommand: a new one is a file under ./commands/ and one line here. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'report',
    summary: 'read a ledger: worst debts, percentiles, open debt, denials, blast radius',
    load: () => import('./commands/report.ts'),
  },
  { name: 'dashboard', summary: 'serve the timeline page over a ledger on 127.0.0.1', load: () => import('./commands/dashboard.ts') },
  {
    name: 'revoke',
    summary: 'break-glass: revoke a task or a workload now (and lock the workload), prove it',
    load: () => import('./commands/revoke.ts'),
  },
  { name: 'unlock', summary: 'lift a break-glass workload lock', load: () => import('./commands/unlock.ts') },
];

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const width = Math.max(...COMMANDS.map((c) => c.name.length), 'help [command]'.length) + 3;
const USAGE = `tasklease ${VERSION} — task-scoped credentials with proven revocation

Usage: tasklease <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}\n`).join('')}  ${'help [command]'.padEnd(width)}this list, or a command's options

Options:
  -h, --help       this list; after a command, that command's options
  -v, --version    the version
`;

const stdio: Io = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

/** The entry whose name the arguments start with (the longest, so groups can nest). */
export function resolveCommand(argv: readonly string[], commands: readonly CommandEntry[] = COMMANDS): CommandEntry | undefined {
  const starts = (c: CommandEntry) => c.name.split(' ').every((word, i) => argv[i] === word);
  return commands.filter(starts).sort((a, b) => b.name.length - a.name.length)[0];
}

function unknownCommand(argv: readonly string[]): string {
  const [first = ''] = argv;
  if (first.startsWith('-')) return `unknown option ${first} (options go after the command: tasklease <command> [options])`;
  const group = COMMANDS.filter((c) => c.name.startsWith(`${first} `)).map((c) => c.name);
  if (group.length) return `unknown command ${argv.slice(0, 2).join(' ')} (did you mean ${group.join(', ')}?)`;
  return `unknown command ${first} (commands: ${[...COMMANDS.map((c) => c.name), 'help'].join(', ')})`;
}

/** Runs `tasklease <argv…>` and returns the exit code: 0 done, 2 a usage error (unknown command or option). */
export async function main(argv: string[], io: Io = stdio): Promise<number> {
  const [first] = argv;
  if (first === undefined || first === '--help' || first === '-h' || (first === 'help' && argv.length === 1)) {
    io.out(USAGE);
    return 0;
  }
  if (first === '--version' || first === '-v') {
    io.out(`${VERSION}\n`);
    return 0;
  }
  const asksHelp = first === 'help';
  const words = asksHelp ? argv.slice(1) : argv;
  const entry = resolveCommand(words);
  if (!entry) {
    io.err(`tasklease: ${unknownCommand(words)}\nRun 'tasklease --help' for the commands.\n`);
    return 2;
  }
  const command = (await entry.load()).default;
  const rest = words.slice(entry.name.split(' ').length);
  if (asksHelp) {
    if (rest.length) {
      io.err(`tasklease help: unexpected argument ${rest[0]}\n`);
      return 2;
    }
    io.out(command.usage);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(`tasklease ${entry.name}: ${err.message}\nRun 'tasklease ${entry.name} --help' for its options.\n`);
    return 2;
  }
}

/** Run as a program (directly, through tsx, or through the npm `bin` symlink), not imported. */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  // Lambda runs Node 24; on a Node 20 laptop the SDK's upgrade notice is noise.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      const e = err as { name?: string; message?: string };
      process.stderr.write(`tasklease: ${e?.name ?? 'Error'}: ${e?.message ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
