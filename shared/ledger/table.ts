import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';

/**
 * The ledger's single table (docs/architecture.md, "Ports") as plain data, so the local runtime
 * (CreateTable) and the CDK stack build the very same table from one definition.
 */

export type AttributeType = 'S' | 'N';
export interface KeyAttribute {
  name: string;
  type: AttributeType;
}
export type Projection = 'ALL' | 'KEYS_ONLY';
export interface GsiDefinition {
  indexName: string;
  partitionKey: KeyAttribute;
  sortKey: KeyAttribute;
  projection: Projection;
}

export const TABLE_KEYS = {
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
} as const satisfies { partitionKey: KeyAttribute; sortKey: KeyAttribute };

export const GSI_NAMES = {
  open: 'open',
  byWorkload: 'byWorkload',
  byTime: 'byTime',
} as const;

/** Attribute names the ledger maintains next to the record fields; never part of a returned record. */
export const INDEX_ATTRIBUTES = {
  openPk: 'openPk',
  openSk: 'openSk',
  workloadPk: 'workloadPk',
  dayPk: 'dayPk',
  /** Sort key of byWorkload/byTime: the lease record's own `requestedAt` field. */
  requestedAt: 'requestedAt',
} as const;

/** Epoch seconds; DynamoDB deletes the item some time after it passes. */
export const TTL_ATTRIBUTE = 'ttl';
export const DEFAULT_RETENTION_DAYS = 90;

/** Key prefixes and fixed sort keys. Task ids and grant keys cannot contain '#' (see events/limits.ts). */
export const KEY_PREFIX = {
  lease: 'LEASE#',
  leaseSk: 'LEASE',
  credentialSk: 'CRED#',
  svid: 'SVID#',
  svidSk: 'SVID',
  workload: 'WORKLOAD#',
  day: 'DAY#',
  /** Shared locks (shared/ledger/lock.ts); the functions may delete only these items. */
  lock: 'LOCK#',
  lockSk: 'LOCK',
  /** Break-glass workload locks (shared/ledger/dynamodb-locks.ts): never deleted. */
  workloadLock: 'WLOCK#',
  workloadLockSk: 'WLOCK',
} as const;

/** Every open item shares one partition of the `open` index, so the reaper reads them in due order. */
export const OPEN_PARTITION = 'OPEN';
/** Width of the zero-padded due time in `openSk` (15 digits of epoch ms lasts until year 33658). */
export const OPEN_SK_DUE_WIDTH = 15;

export const GSIS: readonly GsiDefinition[] = [
  {
    // Sparse: only unfinished leases and credentials carry openPk/openSk. The reaper reads it
    // directly, so it projects everything.
    indexName: GSI_NAMES.open,
    partitionKey: { name: INDEX_ATTRIBUTES.openPk, type: 'S' },
    sortKey: { name: INDEX_ATTRIBUTES.openSk, type: 'S' },
    projection: 'ALL',
  },
  {
    // Reports fetch each lease's item collection by pk anyway (lease + credentials), so keys suffice.
    indexName: GSI_NAMES.byWorkload,
    partitionKey: { name: INDEX_ATTRIBUTES.workloadPk, type: 'S' },
    sortKey: { name: INDEX_ATTRIBUTES.requestedAt, type: 'N' },
    projection: 'KEYS_ONLY',
  },
  {
    indexName: GSI_NAMES.byTime,
    partitionKey: { name: INDEX_ATTRIBUTES.dayPk, type: 'S' },
    sortKey: { name: INDEX_ATTRIBUTES.requestedAt, type: 'N' },
    projection: 'KEYS_ONLY',
  },
];

export const leasePk = (taskId: string): string => `${KEY_PREFIX.lease}${taskId}`;
export const credentialSk = (grantKey: string): string => `${KEY_PREFIX.credentialSk}${grantKey}`;
export const svidPk = (replayKey: string): string => `${KEY_PREFIX.svid}${replayKey}`;
export const workloadPk = (spiffeId: string): string => `${KEY_PREFIX.workload}${spiffeId}`;
/** `DAY#YYYY-MM-DD` of an epoch-ms time, in UTC. */
export const dayPk = (epochMs: number): string => `${KEY_PREFIX.day}${new Date(epochMs).toISOString().slice(0, 10)}`;

export function padDue(epochMs: number): string {
  const clamped = Math.min(Math.max(0, Math.floor(epochMs)), 10 ** OPEN_SK_DUE_WIDTH - 1);
  return String(clamped).padStart(OPEN_SK_DUE_WIDTH, '0');
}

/** `<padded due ms>#<taskId>` for a lease, `<padded due ms>#<taskId>#<grantKey>` for a credential. */
export function openSk(dueMs: number, taskId: string, grantKey?: string): string {
  return grantKey === undefined ? `${padDue(dueMs)}#${taskId}` : `${padDue(dueMs)}#${taskId}#${grantKey}`;
}

/** Every attribute that takes part in a key of the table or an index, with its type. */
function attributeDefinitions(): { AttributeName: string; AttributeType: AttributeType }[] {
  const all = new Map<string, AttributeType>();
  for (const k of [TABLE_KEYS.partitionKey, TABLE_KEYS.sortKey, ...GSIS.flatMap((g) => [g.partitionKey, g.sortKey])]) {
    all.set(k.name, k.type);
  }
  return [...all].map(([AttributeName, AttributeType]) => ({ AttributeName, AttributeType }));
}

/** CreateTable input (on-demand). TTL and point-in-time recovery are separate calls/CDK properties. */
export function createTableInput(tableName: string): CreateTableCommandInput {
  return {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: attributeDefinitions(),
    KeySchema: [
      { AttributeName: TABLE_KEYS.partitionKey.name, KeyType: 'HASH' },
      { AttributeName: TABLE_KEYS.sortKey.name, KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: GSIS.map((g) => ({
      IndexName: g.indexName,
      KeySchema: [
        { AttributeName: g.partitionKey.name, KeyType: 'HASH' },
        { AttributeName: g.sortKey.name, KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: g.projection },
    })),
  };
}

/** Attributes the ledger adds to items; stripped from every record it returns, refused in a patch. */
export const INTERNAL_ATTRIBUTES: ReadonlySet<string> = new Set<string>([
  TABLE_KEYS.partitionKey.name,
  TABLE_KEYS.sortKey.name,
  INDEX_ATTRIBUTES.openPk,
  INDEX_ATTRIBUTES.openSk,
  INDEX_ATTRIBUTES.workloadPk,
  INDEX_ATTRIBUTES.dayPk,
  TTL_ATTRIBUTE,
]);

/** Drops undefined values at every depth (and copies), as marshalling a record to DynamoDB does. */
export function compact<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v: unknown) => compact(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = compact(v);
    return out as T;
  }
  return value;
}
