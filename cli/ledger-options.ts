import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoDbLedger } from '../shared/ledger/dynamodb-ledger.ts';
import type { ReportFilter } from '../report/report.ts';
import { parseTimeArg } from '../report/time.ts';
import { UsageError } from './command.ts';
import { dynamoClient, isLoopbackUrl } from '../shared/ledger/client.ts';

/** The table the local runtime (`npm start`) creates in its dynalite. */
export const LOCAL_TABLE = 'tasklease-ledger';

/** Which ledger: every command that reads one takes these. */
export const CONNECTION_OPTIONS = {
  table: { type: 'string' },
  endpoint: { type: 'string' },
  region: { type: 'string' },
} as const;

/** Which part of it. */
export const FILTER_OPTIONS = {
  workload: { type: 'string' },
  target: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
} as const;

export const LEDGER_OPTIONS = { ...CONNECTION_OPTIONS, ...FILTER_OPTIONS } as const;

export const CONNECTION_HELP = `Connection (the ledger is a DynamoDB table):
  --table NAME        the ledger table (AWS: default credentials and region of the AWS SDK)
  --region REGION     overrides the SDK's default region
  --endpoint URL      another DynamoDB endpoint. On 127.0.0.1/localhost (dynalite, DynamoDB Local)
                      a fixed local identity is used and --table defaults to ${LOCAL_TABLE}.

  The local runtime keeps its ledger in memory: run \`npm start -- --hold\`, then point the
  command at the dynalite address it prints (--endpoint http://127.0.0.1:PORT).
`;

export const FILTER_HELP = `Filters:
  --workload SPIFFE_ID    one workload's leases
  --target NAME           credentials for one target (and leases/denials that asked for it)
  --since TIME            leases requested at or after TIME
  --until TIME            leases requested at or before TIME
  TIME is ISO 8601 (2025-01-31, 2025-01-31T12:00:00Z) or a duration ago (90s, 15m, 1h, 2d, 1w).
`;

export interface ConnectionValues {
  table?: string;
  endpoint?: string;
  region?: string;
}
export interface FilterValues {
  workload?: string;
  target?: string;
  since?: string;
  until?: string;
}

/** True when --endpoint names this machine (a local ledger: cheap to read, fixed identity). */
export function isLocalEndpoint(endpoint: string | undefined): boolean {
  if (endpoint === undefined) return false;
  try {
    return isLoopbackUrl(endpoint);
  } catch {
    throw new UsageError(`--endpoint ${endpoint} is not a URL (e.g. http://127.0.0.1:8000)`);
  }
}

/** The ledger named by the connection options; `close()` releases its client. */
export function openLedger(values: ConnectionValues): { ledger: DynamoDbLedger; close(): void } {
  const local = isLocalEndpoint(values.endpoint); // first: a malformed --endpoint is a usage error
  const table = values.table ?? (local ? LOCAL_TABLE : undefined);
  if (!table) throw new UsageError('which ledger? give --table NAME (or --endpoint URL for a local one)');
  const client = dynamoClient(values);
  return { ledger: new DynamoDbLedger(DynamoDBDocumentClient.from(client), table), close: () => client.destroy() };
}

/** The report filter named by the filter options; relative times count back from `now`. */
export function reportFilter(values: FilterValues, now: number): ReportFilter {
  const filter: ReportFilter = {};
  if (values.workload !== undefined) filter.workload = values.workload;
  if (values.target !== undefined) filter.target = values.target;
  try {
    if (values.since !== undefined) filter.since = parseTimeArg(values.since, now);
    if (values.until !== undefined) filter.until = parseTimeArg(values.until, now);
  } catch (err) {
    throw new UsageError(`--since/--until: ${(err as Error).message}`);
  }
  if (filter.since !== undefined && filter.until !== undefined && filter.since > filter.until) {
    throw new UsageError('--since is after --until');
  }
  return filter;
}
