import { grantKey as toGrantKey } from '../events/schemas.ts';
import { MAX_TRANSACTION_WRITES } from '../lease/ports.ts';
import type { Ledger, LedgerWrite, OpenItemsPage } from '../lease/ports.ts';
import type { CredentialRecord, CredentialState, LeaseRecord, LeaseState, LeaseWithCredentials } from '../lease/records.ts';
import { DEFAULT_RETENTION_DAYS, INTERNAL_ATTRIBUTES, compact, openSk } from './table.ts';

/*
 * The Ledger port in process memory, with the DynamoDB adapter's semantics: conditional writes,
 * an open index that follows each record's `nextCheckAt` (sorted like `openSk`: due time, task,
 * grant), the retention TTL of items without one, opaque cursors, and records that come back as
 * copies. The core's unit tests run against it;
 * the ledger contract tests (test/ledger) hold it to the same expectations as the DynamoDB one.
 */

export interface MemoryLedgerOptions {
  retentionDays?: number;
  now?: () => number;
}

type Guard = { lockedBefore?: number; notEndRequested?: boolean; denialCode?: string; notTombstone?: boolean };

interface Stored<T> {
  record: T;
  /** The item's sort key in the open index; absent once finished. */
  openSk?: string;
  /** Epoch seconds after which the item may be removed; set once finished. */
  ttl?: number;
}

const DAY_MS = 86_400_000;
function applyPatch<T extends object>(record: T, patch: object): T {
  const out = { ...record } as Record<string, unknown>;
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete out[k];
    else out[k] = compact(v);
  }
  return out as T;
}

function guardHolds(record: LeaseRecord, guard: Guard): boolean {
  if (guard.lockedBefore !== undefined && record.lockedUntil !== undefined && !(record.lockedUntil < guard.lockedBefore)) return false;
  if (guard.notEndRequested && record.endRequested !== undefined && record.endRequested !== false) return false;
  if (guard.denialCode !== undefined && record.denial?.code !== guard.denialCode) return false;
  if (guard.notTombstone && record.tombstone !== undefined && record.tombstone !== false) return false;
  return true;
}

function checkPatch(method: string, patch: object, from: readonly string[]): void {
  if (from.length === 0) throw new RangeError(`${method}: \`from\` must name at least one state`);
  if ('state' in patch && typeof (patch as { state?: unknown }).state !== 'string')
    throw new TypeError(`${method}: patch.state must be a state`);
  const due = (patch as { nextCheckAt?: unknown }).nextCheckAt;
  if (due !== undefined && typeof due !== 'number') throw new TypeError(`${method}: patch.nextCheckAt must be epoch milliseconds`);
  for (const k of Object.keys(patch)) {
    if (INTERNAL_ATTRIBUTES.has(k)) throw new TypeError(`${method}: patch must not set the ledger attribute ${k}`);
  }
}

export class MemoryLedger implements Ledger {
  protected readonly leases = new Map<string, Stored<LeaseRecord>>();
  protected readonly credentials = new Map<string, Map<string, Stored<CredentialRecord>>>();
  protected readonly svids = new Map<string, { taskId: string; expiresAt: number }>();
  private readonly retentionMs: number;
  private readonly now: () => number;

  constructor(options: MemoryLedgerOptions = {}) {
    const retentionDays = options.retentionDays ?? DEFAULT_RETENTION_DAYS;
    if (!(retentionDays > 0) || !Number.isFinite(retentionDays)) throw new RangeError('retentionDays must be a positive number');
    this.retentionMs = retentionDays * DAY_MS;
    this.now = options.now ?? Date.now;
  }

  async getLease(taskId: string): Promise<LeaseWithCredentials | undefined> {
    const lease = this.leases.get(taskId);
    if (!lease) return undefined;
    return structuredClone({ lease: lease.record, credentials: this.credentialsOf(taskId) });
  }

  async createLease(lease: LeaseRecord): Promise<boolean> {
    if (this.leases.has(lease.taskId)) return false;
    this.leases.set(lease.taskId, this.stored(compact(lease), lease.taskId));
    return true;
  }

  async updateLease(taskId: string, from: LeaseState[], patch: Partial<LeaseRecord>, extraCondition: Guard = {}): Promise<boolean> {
    if ('taskId' in patch && patch.taskId !== taskId) throw new TypeError('updateLease: patch must not change taskId');
    const { taskId: _taskId, ...rest } = patch;
    checkPatch('updateLease', rest, from);
    const item = this.leases.get(taskId);
    if (!item || !from.includes(item.record.state) || !guardHolds(item.record, extraCondition)) return false;
    this.leases.set(taskId, this.stored(applyPatch(item.record, rest), taskId, undefined, item, rest));
    return true;
  }

  async createCredential(credential: CredentialRecord): Promise<boolean> {
    const key = toGrantKey(credential.grant);
    let forTask = this.credentials.get(credential.taskId);
    if (!forTask) this.credentials.set(credential.taskId, (forTask = new Map()));
    if (forTask.has(key)) return false;
    forTask.set(key, this.stored(compact(credential), credential.taskId, key));
    return true;
  }

  async updateCredential(taskId: string, grantKey: string, from: CredentialState[], patch: Partial<CredentialRecord>): Promise<boolean> {
    if ('taskId' in patch && patch.taskId !== taskId) throw new TypeError('updateCredential: patch must not change taskId');
    if ('grant' in patch && (!patch.grant || toGrantKey(patch.grant) !== grantKey))
      throw new TypeError('updateCredential: patch must not change grant');
    const { taskId: _taskId, grant: _grant, ...rest } = patch;
    checkPatch('updateCredential', rest, from);
    const item = this.credentials.get(taskId)?.get(grantKey);
    if (!item || !from.includes(item.record.state)) return false;
    this.credentials.get(taskId)?.set(grantKey, this.stored(applyPatch(item.record, rest), taskId, grantKey, item, rest));
    return true;
  }

  /** All or nothing, like a DynamoDB transaction: every condition is checked before anything is applied. */
  async transact(writes: readonly LedgerWrite[]): Promise<boolean> {
    if (writes.length === 0 || writes.length > MAX_TRANSACTION_WRITES) throw new RangeError('transact: 1 to 100 writes');
    const keys = new Set<string>();
    for (const w of writes) {
      const { taskId: _t, ...rest } = w.patch as Record<string, unknown>;
      if ('taskId' in w.patch && w.patch.taskId !== w.taskId) throw new TypeError('transact: patch must not change taskId');
      checkPatch('transact', rest, w.from);
      // DynamoDB refuses two operations on one item in a transaction.
      const key = w.kind === 'lease' ? `${w.taskId}\u0000` : `${w.taskId}\u0000${w.grantKey}`;
      if (keys.has(key)) throw new TypeError('transact: two writes to one item');
      keys.add(key);
    }
    const holds = writes.every((w) => {
      if (w.kind === 'lease') {
        const item = this.leases.get(w.taskId);
        return item !== undefined && w.from.includes(item.record.state) && guardHolds(item.record, w.guard ?? {});
      }
      const item = this.credentials.get(w.taskId)?.get(w.grantKey);
      return item !== undefined && w.from.includes(item.record.state);
    });
    if (!holds) return false;
    for (const w of writes) {
      // This class's own writes: a subclass's overrides (test fakes) see the transaction, not its parts.
      const applied =
        w.kind === 'lease'
          ? MemoryLedger.prototype.updateLease.call(this, w.taskId, w.from, w.patch, w.guard)
          : MemoryLedger.prototype.updateCredential.call(this, w.taskId, w.grantKey, w.from, w.patch);
      if (!(await applied)) throw new Error('transact: a checked condition failed while applying');
    }
    return true;
  }

  async claimSvid(replayKey: string, taskId: string, expiresAt: number): Promise<boolean> {
    const held = this.svids.get(replayKey);
    if (held && held.taskId !== taskId) return false;
    this.svids.set(replayKey, { taskId, expiresAt });
    return true;
  }

  async listOpen(dueBefore: number, limit: number, cursor?: string): Promise<OpenItemsPage> {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError('listOpen: limit must be a positive integer');
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const bound = openSk(Math.floor(Math.min(dueBefore, Number.MAX_SAFE_INTEGER)) + 1, '');
    const open: Array<{ sk: string; lease?: LeaseRecord; credential?: CredentialRecord }> = [];
    for (const { record, openSk: sk } of this.leases.values()) if (sk !== undefined) open.push({ sk, lease: record });
    for (const forTask of this.credentials.values()) {
      for (const { record, openSk: sk } of forTask.values()) if (sk !== undefined) open.push({ sk, credential: record });
    }
    const due = open
      .filter((o) => o.sk < bound && (after === undefined || o.sk > after))
      .sort((a, b) => (a.sk < b.sk ? -1 : a.sk > b.sk ? 1 : 0));
    const page = due.slice(0, limit);
    const result: OpenItemsPage = {
      leases: page.flatMap((o) => (o.lease ? [structuredClone(o.lease)] : [])),
      credentials: page.flatMap((o) => (o.credential ? [structuredClone(o.credential)] : [])),
    };
    // Like DynamoDB, a full page carries a cursor even when nothing follows it.
    if (page.length === limit)
      result.cursor = Buffer.from(JSON.stringify({ after: page[page.length - 1]?.sk }), 'utf8').toString('base64url');
    return result;
  }

  async listLeases(filter: { since?: number; until?: number; workload?: string }): Promise<LeaseWithCredentials[]> {
    const { since, until, workload } = filter;
    return [...this.leases.values()]
      .map((s) => s.record)
      .filter(
        (lease) =>
          (since === undefined || lease.requestedAt >= since) &&
          (until === undefined || lease.requestedAt <= until) &&
          (workload === undefined || lease.workload === workload),
      )
      .sort((a, b) => a.requestedAt - b.requestedAt || (a.taskId < b.taskId ? -1 : 1))
      .map((lease) => structuredClone({ lease, credentials: this.credentialsOf(lease.taskId) }));
  }

  /** The retention TTL (epoch seconds) of a lease or credential item, for tests; undefined while open. */
  ttlOf(taskId: string, grantKey?: string): number | undefined {
    return grantKey === undefined ? this.leases.get(taskId)?.ttl : this.credentials.get(taskId)?.get(grantKey)?.ttl;
  }

  /** The open-index sort key of an item, for tests; undefined once finished. */
  openSkOf(taskId: string, grantKey?: string): string | undefined {
    return grantKey === undefined ? this.leases.get(taskId)?.openSk : this.credentials.get(taskId)?.get(grantKey)?.openSk;
  }

  private credentialsOf(taskId: string): CredentialRecord[] {
    return [...(this.credentials.get(taskId)?.entries() ?? [])].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, s]) => s.record);
  }

  /** The item after a write: open at its `nextCheckAt`, or finished with a TTL (kept when the due time did not change). */
  private stored<T extends LeaseRecord | CredentialRecord>(
    record: T,
    taskId: string,
    grantKey?: string,
    before?: Stored<T>,
    patch?: object,
  ): Stored<T> {
    if (typeof record.nextCheckAt === 'number') return { record, openSk: openSk(record.nextCheckAt, taskId, grantKey) };
    const unchanged = before !== undefined && patch !== undefined && !('nextCheckAt' in patch);
    return { record, ttl: unchanged ? before.ttl : Math.ceil((this.now() + this.retentionMs) / 1000) };
  }
}

function decodeCursor(cursor: string): string {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (parsed !== null && typeof parsed === 'object' && typeof (parsed as { after?: unknown }).after === 'string') {
      return (parsed as { after: string }).after;
    }
  } catch {
    // falls through to the error below
  }
  throw new TypeError('listOpen: cursor is not one this ledger returned');
}
