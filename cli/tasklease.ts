#!/usr/bin/env -S npx tsx
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoDbLedger } from '../shared/ledger/dynamodb-ledger.ts';
import { localDynamoClient } from '../local/dynalite.ts';
import { CSV_ROW_KINDS, reportToCsv, reportToJson, reportToText } from '../report/format.ts';
import type { CsvRowKind } from '../report/format.ts';
import { loadReport } from '../report/report.ts';
import type { ReportFilter } from '../report/report.ts';
import { parseTimeArg } from '../report/time.ts';
import { startDashboard } from '../report/dashboard/server.ts';

/** The table the local runtime (`npm start`) creates in its dynalite. */
export const LOCAL_TABLE = 'tasklease-ledger';

const USAGE = `tasklease — task-scoped credentials with proven revocation

Usage:
  tasklease report    [connection] [filters] [--json | --csv [--rows KIND]] [--limit N]
  tasklease dashboard [connection] [filters] [--port N] [--poll-ms N]
  tasklease help

Connection (the ledger is a DynamoDB table):
  --table NAME        the ledger table (AWS: default credentials and region of the AWS SDK)
  --region REGION     overrides the SDK's default region
  --endpoint URL      another DynamoDB endpoint. On 127.0.0.1/localhost (dynalite, DynamoDB Local)
                      a fixed local identity is used and --table defaults to ${LOCAL_TABLE}.

  The local runtime keeps its ledger in memory: run \`npm start -- --hold\`, then point the
  report at the dynalite address it prints:
    npx tasklease report --endpoint http://127.0.0.1:PORT

Filters:
  --workload SPIFFE_ID    one workload's leases
  --target NAME           credentials for one target (and leases/denials that asked for it)
  --since TIME            leases requested at or after TIME
  --until TIME            leases requested at or before TIME
  TIME is ISO 8601 (2025-01-31, 2025-01-31T12:00:00Z) or a duration ago (90s, 15m, 1h, 2d, 1w).

Output (report):
  (default)     a table for people: headline percentiles, open debt, denials, blast radius,
                then credentials worst debt first (--limit N rows, default 20; 0 for all)
  --json        the whole report; instants as ISO 8601, durations in ms
  --csv         RFC 4180 CSV; --rows ${CSV_ROW_KINDS.join(' | ')} (default credentials)

Dashboard:
  serves the timeline page on http://127.0.0.1:PORT (default: a free port) until Ctrl-C.
  While a page is open it re-reads the window every --poll-ms: default 1000 on a local
  endpoint, 10000 on AWS (each read is a query or scan: bound it with --since, e.g. 24h).
`;

const OPTIONS = {
  table: { type: 'string' },
  endpoint: { type: 'string' },
  region: { type: 'string' },
  workload: { type: 'string' },
  target: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  json: { type: 'boolean', default: false },
  csv: { type: 'boolean', default: false },
  rows: { type: 'string' },
  limit: { type: 'string' },
  port: { type: 'string' },
  'poll-ms': { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

class UsageError extends Error {}

function isLoopback(endpoint: string): boolean {
  let host: string;
  try {
    host = new URL(endpoint).hostname;
  } catch {
    throw new UsageError(`--endpoint ${endpoint} is not a URL (e.g. http://127.0.0.1:8000)`);
  }
  return host === '127.0.0.1' || host === 'localhost' || host === '[::1]';
}

/** The ledger named by the connection flags. */
export function ledgerFromFlags(flags: { table?: string; endpoint?: string; region?: string }): { ledger: DynamoDbLedger; close(): void } {
  const { endpoint, region } = flags;
  const local = endpoint !== undefined && isLoopback(endpoint);
  const table = flags.table ?? (local ? LOCAL_TABLE : undefined);
  if (!table) throw new UsageError('which ledger? give --table NAME (or --endpoint URL for a local one)');
  const client = local
    ? // dynalite checks that requests are signed, not by whom: the same meaningless identity the local runtime uses.
      localDynamoClient(endpoint, region)
    : new DynamoDBClient({ endpoint, region });
  return { ledger: new DynamoDbLedger(DynamoDBDocumentClient.from(client), table), close: () => client.destroy() };
}

function filterFromFlags(flags: { workload?: string; target?: string; since?: string; until?: string }, now: number): ReportFilter {
  const filter: ReportFilter = {};
  if (flags.workload !== undefined) filter.workload = flags.workload;
  if (flags.target !== undefined) filter.target = flags.target;
  try {
    if (flags.since !== undefined) filter.since = parseTimeArg(flags.since, now);
    if (flags.until !== undefined) filter.until = parseTimeArg(flags.until, now);
  } catch (err) {
    throw new UsageError(`--since/--until: ${(err as Error).message}`);
  }
  if (filter.since !== undefined && filter.until !== undefined && filter.since > filter.until) {
    throw new UsageError('--since is after --until');
  }
  return filter;
}

function wholeNumber(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${flag} takes a whole number, not "${value}"`);
  return n;
}

type Values = ReturnType<typeof parse>['values'];
const parse = (argv: string[]) => parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });

async function report(values: Values, out: (s: string) => void): Promise<number> {
  if (values.json && values.csv) throw new UsageError('choose one of --json and --csv');
  const rows = (values.rows ?? 'credentials') as CsvRowKind;
  if (!CSV_ROW_KINDS.includes(rows)) throw new UsageError(`--rows takes one of ${CSV_ROW_KINDS.join(', ')}`);
  if (values.rows !== undefined && !values.csv) throw new UsageError('--rows goes with --csv');
  const limit = wholeNumber('limit', values.limit, 20);
  const now = Date.now();
  const filter = filterFromFlags(values, now);
  const { ledger, close } = ledgerFromFlags(values);
  try {
    const r = await loadReport(ledger, filter, now);
    out(values.json ? reportToJson(r) : values.csv ? reportToCsv(r, rows) : reportToText(r, { limit }));
    return 0;
  } finally {
    close();
  }
}

async function dashboard(values: Values): Promise<number> {
  const port = wholeNumber('port', values.port, 0);
  const local = values.endpoint !== undefined && isLoopback(values.endpoint);
  // Each poll reads the whole window: cheap on dynalite, not free on a real table.
  const pollMs = wholeNumber('poll-ms', values['poll-ms'], local ? 1000 : 10_000);
  filterFromFlags(values, Date.now()); // reject bad flags before serving
  const { ledger, close } = ledgerFromFlags(values);
  let warned = false;
  const dash = await startDashboard({
    ledger,
    port,
    pollMs: Math.max(100, pollMs),
    // Relative times ("1h") slide with the clock.
    filter: () => filterFromFlags(values, Date.now()),
    onError: (err) => {
      if (warned) return;
      warned = true;
      process.stderr.write(`cannot read the ledger (${(err as Error).name ?? 'error'}: ${(err as Error).message}); retrying\n`);
    },
  });
  process.stderr.write(`tasklease dashboard on ${dash.url}  (Ctrl-C to stop)\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await dash.close();
  close();
  return 0;
}

export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command = 'help', ...extra] = positionals;
  if (values.help || command === 'help') {
    out(USAGE);
    return 0;
  }
  try {
    if (extra.length) throw new UsageError(`unexpected argument ${extra[0]}`);
    if (command === 'report') return await report(values, out);
    if (command === 'dashboard') return await dashboard(values);
    throw new UsageError(`unknown command ${command}`);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
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
