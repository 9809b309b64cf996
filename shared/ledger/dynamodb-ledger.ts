import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand, QueryCommand, ScanCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { grantKey as toGrantKey } from '../events/schemas.ts';
import { MAX_TRANSACTION_WRITES } from '../lease/ports.ts';
import type { Ledger, LedgerWrite, OpenItemsPage } from '../lease/ports.ts';
import type { CredentialRecord, CredentialState, LeaseRecord, LeaseState, LeaseWithCredentials } from '../lease/records.ts';
import {
  checkUpdate,
  credentialItem,
  decodeCursor,
  encodeCursor,
  leaseItem,
  mapLimit,
  strip,
  updateExpressions,
} from './dynamodb-items.ts';
import type { ExtraCondition, Item, UpdateSpec } from './dynamodb-items.ts';
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
  padDue,
  svidPk,
  workloadPk,
} from './table.ts';

export interface DynamoDbLedgerOptions {
  /** How long closed/denied leases and verified credentials stay before TTL removes them. Default 90. */
  retentionDays?: number;
  /** Epoch ms; used for TTL and for the default end of a `listLeases` window. */
  now?: () => number;
  /** Parallel item-collection queries while building reports. Default 8. */
  listConcurrency?: number;
  /** Windows longer than this many days are read with a Scan instead of one query per day. Default 400. */
  maxWindowDays?: number;
  /**
   * Write items that change together (a lease and its credential) in one TransactWriteItems
   * (`transact`), which DynamoDB and moto have and dynalite has not. Off: the core writes them
   * one by one, each still conditional. Default false; the Lambda runtime turns it on.
   */
  transactions?: boolean;
}

/** Why a transaction was cancelled without an error to throw: a condition did not hold, or a concurrent one won. */
const CANCELLED_BY_STATE = new Set(['None', 'ConditionalCheckFailed', 'TransactionConflict']);

const DAY_MS = 86_400_000;

export function isConditionalCheckFailed(err: unknown): boolean {
  return (err as { name?: unknown } | null)?.name === 'ConditionalCheckFailedException';
}

/**
 * The ledger on one DynamoDB table (docs/architecture.md, "The state machine"; layout in ./table.ts). Every
 * state change is one conditional write, never preceded by a read: the sparse `open` index
 * attributes follow the `nextCheckAt` the core wrote, in the same write as the state.
 */
export class DynamoDbLedger implements Ledger {
  private readonly doc: DynamoDBDocumentClient;
  private readonly retentionMs: number;
  private readonly now: () => number;
  private readonly listConcurrency: number;
  private readonly maxWindowDays: number;
  /** Present only with `transactions: true` (Ledger.transact is optional). */
  readonly transact?: (writes: readonly LedgerWrite[]) => Promise<boolean>;

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
    this.listConcurrency = Math.max(1, options.listConcurrency ?? 8);
    this.maxWindowDays = Math.max(1, options.maxWindowDays ?? 400);
    if (options.transactions) this.transact = (writes) => this.transactWrite(writes);
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
    return this.putIfAbsent(leaseItem(lease, this.expiry()));
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
      taskId,
      from,
      patch: rest,
      extra: extraCondition,
    });
  }

  async createCredential(credential: CredentialRecord): Promise<boolean> {
    return this.putIfAbsent(credentialItem(credential, this.expiry()));
  }

  async updateCredential(taskId: string, grantKey: string, from: CredentialState[], patch: Partial<CredentialRecord>): Promise<boolean> {
    if ('taskId' in patch && patch.taskId !== taskId) throw new TypeError('updateCredential: patch must not change taskId');
    if ('grant' in patch && (!patch.grant || toGrantKey(patch.grant) !== grantKey)) {
      throw new TypeError('updateCredential: patch must not change grant');
    }
    const { taskId: _taskId, grant: _grant, ...rest } = patch;
    return this.update({
      kind: 'credential',
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
   * All or nothing: the same conditional updates as updateLease/updateCredential, in one
   * TransactWriteItems. False when a condition failed (or a concurrent transaction won): nothing
   * was written, and the core writes the parts one by one.
   */
  private async transactWrite(writes: readonly LedgerWrite[]): Promise<boolean> {
    if (writes.length === 0 || writes.length > MAX_TRANSACTION_WRITES) throw new RangeError('transact: 1 to 100 writes');
    const items = writes.map((w) => {
      if ('taskId' in w.patch && w.patch.taskId !== w.taskId) throw new TypeError('transact: patch must not change taskId');
      const { taskId: _t, grant: _g, ...patch } = w.patch as Item;
      const spec: UpdateSpec =
        w.kind === 'lease'
          ? { kind: 'lease', taskId: w.taskId, from: w.from, patch, extra: w.guard ?? {} }
          : { kind: 'credential', taskId: w.taskId, grantKey: w.grantKey, from: w.from, patch, extra: {} };
      checkUpdate(spec);
      const key = { pk: leasePk(spec.taskId), sk: spec.grantKey === undefined ? KEY_PREFIX.leaseSk : credentialSk(spec.grantKey) };
      const { UpdateExpression, ...condition } = updateExpressions(spec, this.expiry());
      return UpdateExpression
        ? { Update: { TableName: this.tableName, Key: key, UpdateExpression, ...condition } }
        : { ConditionCheck: { TableName: this.tableName, Key: key, ...condition } };
    });
    try {
      await this.doc.send(new TransactWriteCommand({ TransactItems: items }));
      return true;
    } catch (err) {
      const e = err as { name?: string; CancellationReasons?: Array<{ Code?: string }> };
      if (
        e.name === 'TransactionCanceledException' &&
        (e.CancellationReasons ?? []).every((r) => CANCELLED_BY_STATE.has(r.Code ?? 'None'))
      ) {
        return false;
      }
      throw err;
    }
  }

  /** One conditional UpdateItem: the transition's condition, its patch, and the open index moved with it. */
  private async update(spec: UpdateSpec): Promise<boolean> {
    checkUpdate(spec);
    const key = { pk: leasePk(spec.taskId), sk: spec.grantKey === undefined ? KEY_PREFIX.leaseSk : credentialSk(spec.grantKey) };
    try {
      await this.doc.send(new UpdateCommand({ TableName: this.tableName, Key: key, ...updateExpressions(spec, this.expiry()) }));
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
