import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { NativeAttributeValue } from '@aws-sdk/lib-dynamodb';
import { grantKey as toGrantKey } from '../events/schemas.ts';
import { ConflictError } from '../lease/errors.ts';
import type { Ledger, OpenItemsPage } from '../lease/ports.ts';
import type { CredentialRecord, CredentialState, LeaseRecord, LeaseState, LeaseWithCredentials } from '../lease/records.ts';
import {
  DEFAULT_RETENTION_DAYS,
  GSI_NAMES,
  INDEX_ATTRIBUTES,
  KEY_PREFIX,
  OPEN_PARTITION,
  OPEN_SK_DUE_WIDTH,
  TABLE_KEYS,
  TTL_ATTRIBUTE,
  credentialSk,
  dayPk,
  leasePk,
  openSk,
  padDue,
  svidPk,
  workloadPk,
} from './table.ts';

export interface DynamoDbLedgerOptions {
  /** How long closed/denied leases and verified credentials stay before TTL removes them. Default 90. */
  retentionDays?: number;
  /** Epoch ms; used for TTL and for the default end of a `listLeases` window. */
  now?: () => number;
  /** Read-modify-write retries when an update's index attributes depend on stored values. Default 8. */
  maxUpdateAttempts?: number;
  /** Parallel item-collection queries while building reports. Default 8. */
  listConcurrency?: number;
  /** Windows longer than this many days are read with a Scan instead of one query per day. Default 400. */
  maxWindowDays?: number;
}

type Item = Record<string, NativeAttributeValue>;
type Kind = 'lease' | 'credential';
type State = LeaseState | CredentialState;

const DAY_MS = 86_400_000;
const TERMINAL: Record<Kind, readonly State[]> = { lease: ['closed', 'denied'], credential: ['verified'] };
/** Record fields an item's due time (its `openSk`) is computed from. */
const DUE_FIELDS: Record<Kind, readonly string[]> = {
  lease: ['lockedUntil', 'endedAt', 'expiresAt', 'requestedAt'],
  credential: ['nextCheckAt', 'intentAt'],
};
/** Attributes the ledger adds to items; stripped from every record it returns. */
const INTERNAL = new Set<string>([
  TABLE_KEYS.partitionKey.name,
  TABLE_KEYS.sortKey.name,
  INDEX_ATTRIBUTES.openPk,
  INDEX_ATTRIBUTES.openSk,
  INDEX_ATTRIBUTES.workloadPk,
  INDEX_ATTRIBUTES.dayPk,
  TTL_ATTRIBUTE,
]);

const UNKNOWN = Symbol('unknown');
type Lookup = (field: string) => unknown;
type OpenPlan = { op: 'keep' } | { op: 'remove' } | { op: 'set'; due: number };

/** Due time of an item in `state`, `null` when finished, UNKNOWN when `get` lacks a field it needs. */
function dueFor(kind: Kind, state: State, get: Lookup): number | null | typeof UNKNOWN {
  if (TERMINAL[kind].includes(state)) return null;
  const first = (...fields: string[]): number | typeof UNKNOWN => {
    for (const f of fields) {
      const v = get(f);
      if (v === UNKNOWN) return UNKNOWN;
      if (typeof v === 'number') return v;
    }
    return 0; // nothing to go by: due at once, so the reaper looks at it
  };
  if (kind === 'credential') return first('nextCheckAt', 'intentAt');
  switch (state) {
    case 'issuing':
      return first('lockedUntil', 'requestedAt');
    case 'ending':
      return first('lockedUntil', 'endedAt', 'requestedAt');
    default: // active: the lease is due when it expires
      return first('expiresAt', 'requestedAt');
  }
}

/** What happens to openPk/openSk, or UNKNOWN when it depends on stored values. */
function planOpen(kind: Kind, states: readonly State[], patch: Item, get: Lookup): OpenPlan | typeof UNKNOWN {
  if (!('state' in patch) && !DUE_FIELDS[kind].some((f) => f in patch)) return { op: 'keep' };
  const dues = new Set(states.map((s) => dueFor(kind, s, get)));
  if (dues.has(UNKNOWN) || dues.size !== 1) return UNKNOWN;
  const [due] = [...dues];
  return typeof due === 'number' ? { op: 'set', due } : { op: 'remove' };
}

/** Drops undefined values at every depth, so no client option is needed to marshall records. */
function compact<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v: unknown) => compact(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = compact(v);
    return out as T;
  }
  return value;
}

function strip<T>(item: Item): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(item)) if (!INTERNAL.has(k)) out[k] = v;
  return out as T;
}

export function isConditionalCheckFailed(err: unknown): boolean {
  return (err as { name?: unknown } | null)?.name === 'ConditionalCheckFailedException';
}

/** Placeholder names and values for one expression set. */
class Expr {
  readonly names: Record<string, string> = {};
  readonly values: Record<string, NativeAttributeValue> = {};
  private nameIds = new Map<string, string>();
  private valueCount = 0;

  n(attribute: string): string {
    let id = this.nameIds.get(attribute);
    if (!id) {
      id = `#n${this.nameIds.size}`;
      this.nameIds.set(attribute, id);
      this.names[id] = attribute;
    }
    return id;
  }

  v(value: NativeAttributeValue): string {
    const id = `:v${this.valueCount++}`;
    this.values[id] = value;
    return id;
  }

  get valuesOrUndefined(): Record<string, NativeAttributeValue> | undefined {
    return this.valueCount === 0 ? undefined : this.values;
  }
}

interface ExtraCondition {
  lockedBefore?: number;
  notEndRequested?: boolean;
  denialCode?: string;
  notTombstone?: boolean;
}

interface UpdateSpec {
  kind: Kind;
  key: { pk: string; sk: string };
  taskId: string;
  grantKey?: string;
  from: readonly State[];
  patch: Item;
  extra: ExtraCondition;
}

function conditionHolds(item: Item, spec: UpdateSpec): boolean {
  if (!spec.from.includes(item.state as State)) return false;
  const { lockedBefore, notEndRequested } = spec.extra;
  if (lockedBefore !== undefined && typeof item.lockedUntil === 'number' && !(item.lockedUntil < lockedBefore)) return false;
  if (notEndRequested && item.endRequested !== undefined && item.endRequested !== false) return false;
  if (spec.extra.denialCode !== undefined && (item.denial as { code?: unknown } | undefined)?.code !== spec.extra.denialCode) return false;
  if (spec.extra.notTombstone && item.tombstone !== undefined && item.tombstone !== false) return false;
  return true;
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

const CURSOR_KEYS = [TABLE_KEYS.partitionKey.name, TABLE_KEYS.sortKey.name, INDEX_ATTRIBUTES.openPk, INDEX_ATTRIBUTES.openSk];

function encodeCursor(key: Item): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): Item {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new TypeError('listOpen: cursor is not one this ledger returned');
  }
  const ok =
    parsed !== null &&
    typeof parsed === 'object' &&
    !Array.isArray(parsed) &&
    Object.keys(parsed).length === CURSOR_KEYS.length &&
    CURSOR_KEYS.every((k) => typeof (parsed as Item)[k] === 'string');
  if (!ok) throw new TypeError('listOpen: cursor is not one this ledger returned');
  return parsed as Item;
}

/**
 * The ledger on one DynamoDB table (DESIGN §6, layout in ./table.ts). Every state change is a
 * conditional write; the sparse `open` index attributes change in the same write as the state.
 */
export class DynamoDbLedger implements Ledger {
  private readonly doc: DynamoDBDocumentClient;
  private readonly retentionMs: number;
  private readonly now: () => number;
  private readonly maxUpdateAttempts: number;
  private readonly listConcurrency: number;
  private readonly maxWindowDays: number;

  constructor(
    client: DynamoDBClient | DynamoDBDocumentClient,
    readonly tableName: string,
    options: DynamoDbLedgerOptions = {},
  ) {
    this.doc = client instanceof DynamoDBDocumentClient ? client : DynamoDBDocumentClient.from(client);
    const retentionDays = options.retentionDays ?? DEFAULT_RETENTION_DAYS;
    if (!(retentionDays > 0) || !Number.isFinite(retentionDays)) {
      throw new RangeError('retentionDays must be a positive number');
    }
    this.retentionMs = retentionDays * DAY_MS;
    this.now = options.now ?? Date.now;
    this.maxUpdateAttempts = Math.max(1, options.maxUpdateAttempts ?? 8);
    this.listConcurrency = Math.max(1, options.listConcurrency ?? 8);
    this.maxWindowDays = Math.max(1, options.maxWindowDays ?? 400);
  }

  async getLease(taskId: string): Promise<LeaseWithCredentials | undefined> {
    let lease: LeaseRecord | undefined;
    const credentials: CredentialRecord[] = [];
    let start: Item | undefined;
    do {
      const page = await this.doc.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: '#pk = :pk',
          ExpressionAttributeNames: { '#pk': TABLE_KEYS.partitionKey.name },
          ExpressionAttributeValues: { ':pk': leasePk(taskId) },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      for (const item of page.Items ?? []) {
        if (item.sk === KEY_PREFIX.leaseSk) lease = strip<LeaseRecord>(item);
        else if (String(item.sk).startsWith(KEY_PREFIX.credentialSk)) credentials.push(strip<CredentialRecord>(item));
      }
      start = page.LastEvaluatedKey;
    } while (start);
    return lease ? { lease, credentials } : undefined;
  }

  async createLease(lease: LeaseRecord): Promise<boolean> {
    return this.putIfAbsent(this.leaseItem(lease));
  }

  async updateLease(
    taskId: string,
    from: LeaseState[],
    patch: Partial<LeaseRecord>,
    extraCondition: ExtraCondition = {},
  ): Promise<boolean> {
    if ('taskId' in patch && patch.taskId !== taskId) throw new TypeError('updateLease: patch must not change taskId');
    const { taskId: _taskId, ...rest } = patch;
    return this.update({
      kind: 'lease',
      key: { pk: leasePk(taskId), sk: KEY_PREFIX.leaseSk },
      taskId,
      from,
      patch: rest,
      extra: extraCondition,
    });
  }

  async createCredential(credential: CredentialRecord): Promise<boolean> {
    return this.putIfAbsent(this.credentialItem(credential));
  }

  async updateCredential(
    taskId: string,
    grantKey: string,
    from: CredentialState[],
    patch: Partial<CredentialRecord>,
  ): Promise<boolean> {
    if ('taskId' in patch && patch.taskId !== taskId) throw new TypeError('updateCredential: patch must not change taskId');
    if ('grant' in patch && (!patch.grant || toGrantKey(patch.grant) !== grantKey)) {
      throw new TypeError('updateCredential: patch must not change grant');
    }
    const { taskId: _taskId, grant: _grant, ...rest } = patch;
    return this.update({
      kind: 'credential',
      key: { pk: leasePk(taskId), sk: credentialSk(grantKey) },
      taskId,
      grantKey,
      from,
      patch: rest,
      extra: {},
    });
  }

  async claimSvid(replayKey: string, taskId: string, expiresAt: number): Promise<boolean> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            pk: svidPk(replayKey),
            sk: KEY_PREFIX.svidSk,
            taskId,
            expiresAt,
            [TTL_ATTRIBUTE]: Math.ceil(expiresAt / 1000),
          },
          // A redelivery by the same task is the same claim; any other task is a replay.
          ConditionExpression: 'attribute_not_exists(#pk) OR #taskId = :taskId',
          ExpressionAttributeNames: { '#pk': TABLE_KEYS.partitionKey.name, '#taskId': 'taskId' },
          ExpressionAttributeValues: { ':taskId': taskId },
        }),
      );
      return true;
    } catch (err) {
      if (isConditionalCheckFailed(err)) return false;
      throw err;
    }
  }

  async listOpen(dueBefore: number, limit: number, cursor?: string): Promise<OpenItemsPage> {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError('listOpen: limit must be a positive integer');
    // openSk starts with the padded due time then '#': everything due at or before `dueBefore`
    // sorts below the padded `dueBefore + 1`.
    const bound = dueBefore >= 10 ** OPEN_SK_DUE_WIDTH - 1 ? '~' : padDue(Math.floor(dueBefore) + 1);
    const page = await this.doc.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: GSI_NAMES.open,
        KeyConditionExpression: '#p = :p AND #s < :bound',
        ExpressionAttributeNames: { '#p': INDEX_ATTRIBUTES.openPk, '#s': INDEX_ATTRIBUTES.openSk },
        ExpressionAttributeValues: { ':p': OPEN_PARTITION, ':bound': bound },
        Limit: limit,
        ExclusiveStartKey: cursor === undefined ? undefined : decodeCursor(cursor),
      }),
    );
    const result: OpenItemsPage = { leases: [], credentials: [] };
    for (const item of page.Items ?? []) {
      if (item.sk === KEY_PREFIX.leaseSk) result.leases.push(strip<LeaseRecord>(item));
      else result.credentials.push(strip<CredentialRecord>(item));
    }
    if (page.LastEvaluatedKey) result.cursor = encodeCursor(page.LastEvaluatedKey);
    return result;
  }

  async listLeases(filter: { since?: number; until?: number; workload?: string }): Promise<LeaseWithCredentials[]> {
    const { since, until, workload } = filter;
    let found: LeaseWithCredentials[];
    if (workload !== undefined) {
      found = await this.fetchAll(await this.queryIndexPks(GSI_NAMES.byWorkload, [workloadPk(workload)], since, until));
    } else if (since !== undefined) {
      const lastDay = Math.floor((until ?? this.now()) / DAY_MS);
      const firstDay = Math.floor(since / DAY_MS);
      if (lastDay - firstDay + 1 > this.maxWindowDays) {
        found = await this.scanLeases();
      } else {
        const days: string[] = [];
        for (let d = firstDay; d <= lastDay; d++) days.push(dayPk(d * DAY_MS));
        found = await this.fetchAll(await this.queryIndexPks(GSI_NAMES.byTime, days, since, until));
      }
    } else {
      found = await this.scanLeases();
    }
    // Indexes are eventually consistent: filter again on the records just read.
    return found
      .filter(
        ({ lease }) =>
          (since === undefined || lease.requestedAt >= since) &&
          (until === undefined || lease.requestedAt <= until) &&
          (workload === undefined || lease.workload === workload),
      )
      .sort((a, b) => a.lease.requestedAt - b.lease.requestedAt || (a.lease.taskId < b.lease.taskId ? -1 : 1));
  }

  // ---------------------------------------------------------------------------------------------

  private leaseItem(lease: LeaseRecord): Item {
    const item: Item = {
      ...compact(lease),
      pk: leasePk(lease.taskId),
      sk: KEY_PREFIX.leaseSk,
      [INDEX_ATTRIBUTES.dayPk]: dayPk(lease.requestedAt),
    };
    if (lease.workload !== undefined) item[INDEX_ATTRIBUTES.workloadPk] = workloadPk(lease.workload);
    return this.withLifecycleAttributes(item, 'lease', lease.taskId, undefined);
  }

  private credentialItem(credential: CredentialRecord): Item {
    const key = toGrantKey(credential.grant);
    const item: Item = { ...compact(credential), pk: leasePk(credential.taskId), sk: credentialSk(key) };
    return this.withLifecycleAttributes(item, 'credential', credential.taskId, key);
  }

  /** Adds openPk/openSk while unfinished, or the TTL once finished. */
  private withLifecycleAttributes(item: Item, kind: Kind, taskId: string, grantKey: string | undefined): Item {
    const due = dueFor(kind, item.state as State, (f) => item[f]);
    if (typeof due === 'number') {
      item[INDEX_ATTRIBUTES.openPk] = OPEN_PARTITION;
      item[INDEX_ATTRIBUTES.openSk] = openSk(due, taskId, grantKey);
    } else {
      item[TTL_ATTRIBUTE] = this.expiry();
    }
    return item;
  }

  private expiry(): number {
    return Math.ceil((this.now() + this.retentionMs) / 1000);
  }

  private async putIfAbsent(item: Item): Promise<boolean> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: item,
          ConditionExpression: 'attribute_not_exists(#pk)',
          ExpressionAttributeNames: { '#pk': TABLE_KEYS.partitionKey.name },
        }),
      );
      return true;
    } catch (err) {
      if (isConditionalCheckFailed(err)) return false;
      throw err;
    }
  }

  /**
   * A conditional update. When the new `openSk` can be computed from the patch alone this is one
   * write; otherwise it reads the item, computes it, and writes on condition that the fields it
   * read are unchanged, retrying while the caller's own condition still holds.
   */
  private async update(spec: UpdateSpec): Promise<boolean> {
    if (spec.from.length === 0) throw new RangeError('update: `from` must name at least one state');
    if ('state' in spec.patch && typeof spec.patch.state !== 'string') throw new TypeError('update: patch.state must be a state');
    for (const k of Object.keys(spec.patch)) {
      if (INTERNAL.has(k)) throw new TypeError(`update: patch must not set the ledger attribute ${k}`);
    }
    const patch = spec.patch;
    const fromPatch: Lookup = (f) => (f in patch ? patch[f] : UNKNOWN);
    const states = 'state' in patch ? [patch.state as State] : spec.from;
    const plan = planOpen(spec.kind, states, patch, fromPatch);
    if (plan !== UNKNOWN) return this.write(spec, plan, undefined);

    for (let attempt = 0; attempt < this.maxUpdateAttempts; attempt++) {
      const got = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: spec.key, ConsistentRead: true }));
      const item = got.Item;
      if (!item || !conditionHolds(item, spec)) return false;
      const merged: Lookup = (f) => (f in patch ? patch[f] : item[f]);
      const resolved = planOpen(spec.kind, [(patch.state ?? item.state) as State], patch, merged);
      if (resolved === UNKNOWN) throw new Error('unreachable: open plan undetermined with the stored item');
      if (await this.write(spec, resolved, item)) return true;
    }
    throw new ConflictError(`ledger update of ${spec.key.sk} kept racing; gave up after ${this.maxUpdateAttempts} attempts`);
  }

  /** One conditional UpdateItem; `pinned` is the stored item whose state and due fields must still hold. */
  private async write(spec: UpdateSpec, plan: OpenPlan, pinned: Item | undefined): Promise<boolean> {
    const e = new Expr();
    const sets: string[] = [];
    const removes: string[] = [];
    const set = (attr: string, value: NativeAttributeValue) => sets.push(`${e.n(attr)} = ${e.v(value)}`);

    for (const [k, v] of Object.entries(spec.patch)) {
      if (v === undefined) removes.push(e.n(k));
      else set(k, compact(v));
    }
    if (spec.kind === 'lease') {
      if ('workload' in spec.patch) {
        if (typeof spec.patch.workload === 'string') set(INDEX_ATTRIBUTES.workloadPk, workloadPk(spec.patch.workload));
        else removes.push(e.n(INDEX_ATTRIBUTES.workloadPk));
      }
      if ('requestedAt' in spec.patch) {
        if (typeof spec.patch.requestedAt === 'number') set(INDEX_ATTRIBUTES.dayPk, dayPk(spec.patch.requestedAt));
        else removes.push(e.n(INDEX_ATTRIBUTES.dayPk));
      }
    }
    if (plan.op === 'set') {
      set(INDEX_ATTRIBUTES.openPk, OPEN_PARTITION);
      set(INDEX_ATTRIBUTES.openSk, openSk(plan.due, spec.taskId, spec.grantKey));
    } else if (plan.op === 'remove') {
      removes.push(e.n(INDEX_ATTRIBUTES.openPk), e.n(INDEX_ATTRIBUTES.openSk));
    }
    if ('state' in spec.patch) {
      if (TERMINAL[spec.kind].includes(spec.patch.state as State)) set(TTL_ATTRIBUTE, this.expiry());
      else removes.push(e.n(TTL_ATTRIBUTE));
    }

    const conditions = [`${e.n('state')} IN (${spec.from.map((s) => e.v(s)).join(', ')})`];
    if (spec.extra.lockedBefore !== undefined) {
      const a = e.n('lockedUntil');
      conditions.push(`(attribute_not_exists(${a}) OR ${a} < ${e.v(spec.extra.lockedBefore)})`);
    }
    if (spec.extra.notEndRequested) {
      const a = e.n('endRequested');
      conditions.push(`(attribute_not_exists(${a}) OR ${a} = ${e.v(false)})`);
    }
    if (spec.extra.denialCode !== undefined) {
      conditions.push(`${e.n('denial')}.${e.n('code')} = ${e.v(spec.extra.denialCode)}`);
    }
    if (spec.extra.notTombstone) {
      const a = e.n('tombstone');
      conditions.push(`(attribute_not_exists(${a}) OR ${a} = ${e.v(false)})`);
    }
    if (pinned) {
      if (!('state' in spec.patch)) conditions.push(`${e.n('state')} = ${e.v(pinned.state)}`);
      for (const f of DUE_FIELDS[spec.kind]) {
        if (f in spec.patch) continue;
        const a = e.n(f);
        conditions.push(pinned[f] === undefined ? `attribute_not_exists(${a})` : `${a} = ${e.v(pinned[f])}`);
      }
    }

    const clauses = [sets.length ? `SET ${sets.join(', ')}` : '', removes.length ? `REMOVE ${removes.join(', ')}` : ''];
    const updateExpression = clauses.filter(Boolean).join(' ');
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: spec.key,
          UpdateExpression: updateExpression || undefined,
          ConditionExpression: conditions.join(' AND '),
          ExpressionAttributeNames: e.names,
          ExpressionAttributeValues: e.valuesOrUndefined,
        }),
      );
      return true;
    } catch (err) {
      if (isConditionalCheckFailed(err)) return false;
      throw err;
    }
  }

  /** Distinct lease pks from a KEYS_ONLY index, over one or more partitions, within [since, until]. */
  private async queryIndexPks(indexName: string, partitions: string[], since?: number, until?: number): Promise<string[]> {
    const partitionAttr = indexName === GSI_NAMES.byWorkload ? INDEX_ATTRIBUTES.workloadPk : INDEX_ATTRIBUTES.dayPk;
    const pages = await mapLimit(partitions, this.listConcurrency, async (partition) => {
      const pks: string[] = [];
      let start: Item | undefined;
      do {
        const page = await this.doc.send(
          new QueryCommand({
            TableName: this.tableName,
            IndexName: indexName,
            KeyConditionExpression: '#p = :p AND #t BETWEEN :since AND :until',
            ExpressionAttributeNames: { '#p': partitionAttr, '#t': INDEX_ATTRIBUTES.requestedAt },
            ExpressionAttributeValues: {
              ':p': partition,
              ':since': since ?? 0,
              ':until': until ?? Number.MAX_SAFE_INTEGER,
            },
            ExclusiveStartKey: start,
          }),
        );
        for (const item of page.Items ?? []) pks.push(String(item.pk));
        start = page.LastEvaluatedKey;
      } while (start);
      return pks;
    });
    return [...new Set(pages.flat())];
  }

  private async fetchAll(pks: string[]): Promise<LeaseWithCredentials[]> {
    const found = await mapLimit(pks, this.listConcurrency, (pk) => this.getLease(pk.slice(KEY_PREFIX.lease.length)));
    return found.filter((x): x is LeaseWithCredentials => x !== undefined);
  }

  /** Every lease with its credentials, by a paginated Scan grouped by pk. */
  private async scanLeases(): Promise<LeaseWithCredentials[]> {
    const groups = new Map<string, { lease?: LeaseRecord; credentials: CredentialRecord[] }>();
    let start: Item | undefined;
    do {
      const page = await this.doc.send(
        new ScanCommand({
          TableName: this.tableName,
          FilterExpression: 'begins_with(#pk, :lease)',
          ExpressionAttributeNames: { '#pk': TABLE_KEYS.partitionKey.name },
          ExpressionAttributeValues: { ':lease': KEY_PREFIX.lease },
          ExclusiveStartKey: start,
        }),
      );
      for (const item of page.Items ?? []) {
        const pk = String(item.pk);
        let group = groups.get(pk);
        if (!group) groups.set(pk, (group = { credentials: [] }));
        if (item.sk === KEY_PREFIX.leaseSk) group.lease = strip<LeaseRecord>(item);
        else if (String(item.sk).startsWith(KEY_PREFIX.credentialSk)) group.credentials.push(strip<CredentialRecord>(item));
      }
      start = page.LastEvaluatedKey;
    } while (start);
    const out: LeaseWithCredentials[] = [];
    for (const { lease, credentials } of groups.values()) {
      if (!lease) continue;
      credentials.sort((a, b) => (toGrantKey(a.grant) < toGrantKey(b.grant) ? -1 : 1));
      out.push({ lease, credentials });
    }
    return out;
  }
}
