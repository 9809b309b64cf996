import type { NativeAttributeValue } from '@aws-sdk/lib-dynamodb';
import { grantKey as toGrantKey } from '../events/schemas.ts';
import type { CredentialRecord, LeaseRecord } from '../lease/records.ts';
import {
  INDEX_ATTRIBUTES,
  INTERNAL_ATTRIBUTES,
  compact,
  KEY_PREFIX,
  OPEN_PARTITION,
  TABLE_KEYS,
  TTL_ATTRIBUTE,
  credentialSk,
  dayPk,
  leasePk,
  openSk,
  workloadPk,
} from './table.ts';

/*
 * How ledger records map onto items of the table (layout in ./table.ts): the index attributes the
 * adapter maintains next to record fields, and the conditional UpdateItem of one transition. The
 * open index follows the record's `nextCheckAt`, the due time the core computed: an item with one
 * is open and sorted by it, an item without one is finished and carries the retention TTL.
 */

export type Item = Record<string, NativeAttributeValue>;

export function strip<T>(item: Item): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(item)) if (!INTERNAL_ATTRIBUTES.has(k)) out[k] = v;
  return out as T;
}

/** Adds openPk/openSk while the record has a due time, or the TTL once it has none. */
function withOpenIndex(item: Item, taskId: string, grantKey: string | undefined, expiry: number): Item {
  if (typeof item.nextCheckAt === 'number') {
    item[INDEX_ATTRIBUTES.openPk] = OPEN_PARTITION;
    item[INDEX_ATTRIBUTES.openSk] = openSk(item.nextCheckAt, taskId, grantKey);
  } else {
    item[TTL_ATTRIBUTE] = expiry;
  }
  return item;
}

export function leaseItem(lease: LeaseRecord, expiry: number): Item {
  const item: Item = {
    ...compact(lease),
    pk: leasePk(lease.taskId),
    sk: KEY_PREFIX.leaseSk,
    [INDEX_ATTRIBUTES.dayPk]: dayPk(lease.requestedAt),
  };
  if (lease.workload !== undefined) item[INDEX_ATTRIBUTES.workloadPk] = workloadPk(lease.workload);
  return withOpenIndex(item, lease.taskId, undefined, expiry);
}

export function credentialItem(credential: CredentialRecord, expiry: number): Item {
  const key = toGrantKey(credential.grant);
  const item: Item = { ...compact(credential), pk: leasePk(credential.taskId), sk: credentialSk(key) };
  return withOpenIndex(item, credential.taskId, key, expiry);
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

export interface ExtraCondition {
  lockedBefore?: number;
  notEndRequested?: boolean;
  denialCode?: string;
  notTombstone?: boolean;
}

export interface UpdateSpec {
  kind: 'lease' | 'credential';
  taskId: string;
  grantKey?: string;
  from: readonly string[];
  patch: Item;
  extra: ExtraCondition;
}

/** Throws for a write the ledger must refuse whatever the stored item holds. */
export function checkUpdate(spec: UpdateSpec): void {
  if (spec.from.length === 0) throw new RangeError('update: `from` must name at least one state');
  if ('state' in spec.patch && typeof spec.patch.state !== 'string') throw new TypeError('update: patch.state must be a state');
  if ('nextCheckAt' in spec.patch && spec.patch.nextCheckAt !== undefined && typeof spec.patch.nextCheckAt !== 'number') {
    throw new TypeError('update: patch.nextCheckAt must be epoch milliseconds');
  }
  for (const k of Object.keys(spec.patch)) {
    if (INTERNAL_ATTRIBUTES.has(k)) throw new TypeError(`update: patch must not set the ledger attribute ${k}`);
  }
}

/** The UpdateItem expressions of one conditional transition; `expiry` is the TTL a finished item gets. */
export function updateExpressions(
  spec: UpdateSpec,
  expiry: number,
): {
  UpdateExpression?: string;
  ConditionExpression: string;
  ExpressionAttributeNames: Record<string, string>;
  ExpressionAttributeValues?: Record<string, NativeAttributeValue>;
} {
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
  // The open index moves with the due time the core wrote, in the same write as the state.
  if ('nextCheckAt' in spec.patch) {
    const due = spec.patch.nextCheckAt as number | undefined;
    if (due === undefined) {
      removes.push(e.n(INDEX_ATTRIBUTES.openPk), e.n(INDEX_ATTRIBUTES.openSk));
      set(TTL_ATTRIBUTE, expiry);
    } else {
      set(INDEX_ATTRIBUTES.openPk, OPEN_PARTITION);
      set(INDEX_ATTRIBUTES.openSk, openSk(due, spec.taskId, spec.grantKey));
      removes.push(e.n(TTL_ATTRIBUTE));
    }
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

  const clauses = [sets.length ? `SET ${sets.join(', ')}` : '', removes.length ? `REMOVE ${removes.join(', ')}` : ''];
  const updateExpression = clauses.filter(Boolean).join(' ');
  return {
    UpdateExpression: updateExpression || undefined,
    ConditionExpression: conditions.join(' AND '),
    ExpressionAttributeNames: e.names,
    ExpressionAttributeValues: e.valuesOrUndefined,
  };
}

const CURSOR_KEYS = [TABLE_KEYS.partitionKey.name, TABLE_KEYS.sortKey.name, INDEX_ATTRIBUTES.openPk, INDEX_ATTRIBUTES.openSk];

export function encodeCursor(key: Item): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): Item {
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

/** Runs `fn` over `items` with at most `limit` in flight, keeping order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
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
