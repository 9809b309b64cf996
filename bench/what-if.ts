/**
 * What-if patches: each emulates, on a running local runtime and from bench/ only, one change
 * suggested in bench/README.md, so its gain is measured rather than guessed. They keep the
 * happy path's behaviour and cost; they do NOT keep every crash/race guarantee of the code they
 * stand in for, and are never used for the headline figures.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { createLedgerTable, localDynamoClient } from '../local/dynalite.ts';
import { grantKey } from '../shared/events/schemas.ts';
import { DynamoDbLedger } from '../shared/ledger/dynamodb-ledger.ts';
import type { LocalRuntime } from '../local/runtime.ts';
import type { CredentialRecord, LeaseRecord, LeaseWithCredentials } from '../shared/lease/records.ts';

export const WHAT_IF = {
  'coalesce-ledger':
    'shared/lease/lifecycle.ts: the happy path writes each credential twice on revoke (revoking with its nextCheckAt, then verified with revokedAt + verifyAttempts) instead of five requests; issueGrants does not re-read a lease it just created; activation passes expiresAt so the ledger need not read before writing',
  'dynalite-out-of-process':
    "local/dynalite.ts startDynalite: dynalite runs in its own process (a child or a worker thread) instead of on the broker's event loop; the broker keeps the real DynamoDbLedger and SDK client, as a Lambda does against DynamoDB",
  'memory-ledger':
    "an upper bound, not a proposal as such: the local runtime's ledger as an in-process Map (conditional puts and updates kept, no DynamoDB SDK, no HTTP, no dynalite) — how much of the local figures is the stand-in ledger",
} as const;
export type WhatIf = keyof typeof WHAT_IF;

export function isWhatIf(name: string): name is WhatIf {
  return Object.hasOwn(WHAT_IF, name);
}

/** Applies the patches; resolves to a function that releases what they started. */
export async function applyWhatIf(rt: LocalRuntime, names: readonly WhatIf[]): Promise<() => Promise<void>> {
  const disposers: Array<() => Promise<void>> = [];
  // The ledger is swapped before it is wrapped (coalesce-ledger wraps whatever ledger methods are in place).
  // drain-once-first and quiet-one-trip landed in the postgres driver itself (one batched revoke, no sleeps).
  const order: WhatIf[] = ['dynalite-out-of-process', 'memory-ledger', 'coalesce-ledger'];
  for (const name of order.filter((n) => names.includes(n))) {
    if (name === 'memory-ledger') memoryLedger(rt);
    else if (name === 'dynalite-out-of-process') disposers.push(await dynaliteOutOfProcess(rt));
    else coalesceLedger(rt);
  }
  return async () => {
    for (const d of disposers) await d();
  };
}

/** A dynalite in a child process, the ledger table created in it, and rt.ledger's methods pointed at it. */
async function dynaliteOutOfProcess(rt: LocalRuntime): Promise<() => Promise<void>> {
  const script =
    "const d = require('dynalite')({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });" +
    "d.listen(0, '127.0.0.1', () => process.stdout.write(String(d.address().port) + '\\n'));";
  const child = spawn(process.execPath, ['-e', script], { cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`dynalite child exited with ${code}`)));
    child.stdout.once('data', (chunk: Buffer) => resolve(Number(String(chunk).trim())));
  });
  const client = localDynamoClient(`http://127.0.0.1:${port}`);
  await createLedgerTable(client, rt.dynamo.tableName);
  const external = new DynamoDbLedger(DynamoDBDocumentClient.from(client), rt.dynamo.tableName);
  const ledger = rt.ledger as unknown as Record<string, unknown>;
  for (const m of [
    'getLease',
    'createLease',
    'updateLease',
    'createCredential',
    'updateCredential',
    'claimSvid',
    'listOpen',
    'listLeases',
  ] as const) {
    ledger[m] = external[m].bind(external);
  }
  // The instrumentation (profile pass) looks for `doc` to time DynamoDB requests.
  ledger.doc = (external as unknown as { doc: unknown }).doc;
  return async () => {
    client.destroy();
    child.kill('SIGTERM');
  };
}

function coalesceLedger(rt: LocalRuntime): void {
  const ledger = rt.ledger as unknown as Record<string, (...args: never[]) => Promise<unknown>>;
  const createLease = rt.ledger.createLease.bind(rt.ledger);
  const getLease = rt.ledger.getLease.bind(rt.ledger);
  const updateLease = rt.ledger.updateLease.bind(rt.ledger);
  const updateCredential = rt.ledger.updateCredential.bind(rt.ledger);
  const fresh = new Map<string, LeaseRecord>();
  const expires = new Map<string, number>();
  const pending = new Map<string, Partial<CredentialRecord>>();

  ledger.createLease = (async (lease: LeaseRecord) => {
    const ok = await createLease(lease);
    if (ok && lease.state === 'issuing') {
      fresh.set(lease.taskId, lease);
      if (lease.expiresAt !== undefined) expires.set(lease.taskId, lease.expiresAt);
    }
    return ok;
  }) as never;
  ledger.getLease = (async (taskId: string): Promise<LeaseWithCredentials | undefined> => {
    const just = fresh.get(taskId);
    if (just) {
      fresh.delete(taskId);
      return { lease: just, credentials: [] };
    }
    return getLease(taskId);
  }) as never;
  ledger.updateLease = (async (taskId: string, from: LeaseRecord['state'][], patch: Partial<LeaseRecord>, extra?: object) => {
    const exp = expires.get(taskId);
    if (patch.state === 'active' && exp !== undefined && !('expiresAt' in patch)) {
      expires.delete(taskId);
      return updateLease(taskId, from, { ...patch, expiresAt: exp }, extra);
    }
    return updateLease(taskId, from, patch, extra);
  }) as never;
  ledger.updateCredential = (async (taskId: string, key: string, from: CredentialRecord['state'][], patch: Partial<CredentialRecord>) => {
    const id = `${taskId}\u0000${key}`;
    const keys = Object.keys(patch);
    const deferrable =
      keys.length > 0 &&
      (keys.every((k) => k === 'revokedAt') ||
        (keys.every((k) => k === 'verifyAttempts' || k === 'lastError') && patch.lastError === undefined));
    if (deferrable) {
      pending.set(id, { ...pending.get(id), ...patch });
      return true;
    }
    const merged: Partial<CredentialRecord> = { ...pending.get(id), ...patch };
    pending.delete(id);
    if (merged.state === 'revoking' && !('nextCheckAt' in merged)) merged.nextCheckAt = Date.now() + 30_000;
    return updateCredential(taskId, key, from, merged);
  }) as never;
}

/** The Ledger port on Maps, with the same conditions as the DynamoDB adapter's happy path. */
function memoryLedger(rt: LocalRuntime): void {
  const leases = new Map<string, LeaseRecord>();
  const creds = new Map<string, Map<string, CredentialRecord>>();
  const svids = new Map<string, string>();
  const apply = <T extends object>(record: T, patch: Partial<T>): T => {
    const out = { ...record } as Record<string, unknown>;
    for (const [k, v] of Object.entries(patch)) {
      if (v === undefined) delete out[k];
      else out[k] = structuredClone(v);
    }
    return out as T;
  };
  const ledger = rt.ledger as unknown as Record<string, unknown>;
  ledger.getLease = async (taskId: string): Promise<LeaseWithCredentials | undefined> => {
    const lease = leases.get(taskId);
    return lease ? structuredClone({ lease, credentials: [...(creds.get(taskId)?.values() ?? [])] }) : undefined;
  };
  ledger.createLease = async (lease: LeaseRecord) => {
    if (leases.has(lease.taskId)) return false;
    leases.set(lease.taskId, structuredClone(lease));
    return true;
  };
  ledger.updateLease = async (
    taskId: string,
    from: LeaseRecord['state'][],
    patch: Partial<LeaseRecord>,
    extra: { lockedBefore?: number; notEndRequested?: boolean } = {},
  ) => {
    const lease = leases.get(taskId);
    if (!lease || !from.includes(lease.state)) return false;
    if (extra.lockedBefore !== undefined && lease.lockedUntil !== undefined && !(lease.lockedUntil < extra.lockedBefore)) return false;
    if (extra.notEndRequested && lease.endRequested) return false;
    leases.set(taskId, apply(lease, patch));
    return true;
  };
  ledger.createCredential = async (c: CredentialRecord) => {
    let forTask = creds.get(c.taskId);
    if (!forTask) creds.set(c.taskId, (forTask = new Map()));
    if (forTask.has(grantKey(c.grant))) return false;
    forTask.set(grantKey(c.grant), structuredClone(c));
    return true;
  };
  ledger.updateCredential = async (taskId: string, key: string, from: CredentialRecord['state'][], patch: Partial<CredentialRecord>) => {
    const c = creds.get(taskId)?.get(key);
    if (!c || !from.includes(c.state)) return false;
    creds.get(taskId)?.set(key, apply(c, patch));
    return true;
  };
  ledger.claimSvid = async (replayKey: string, taskId: string) => {
    const owner = svids.get(replayKey);
    if (owner !== undefined && owner !== taskId) return false;
    svids.set(replayKey, taskId);
    return true;
  };
  ledger.listLeases = async () =>
    [...leases.values()].map((lease) => structuredClone({ lease, credentials: [...(creds.get(lease.taskId)?.values() ?? [])] }));
}
