import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grantKey } from '../../shared/events/schemas.ts';
import { CrashError, FaultInjector, NO_FAULTS, createFaultyBroker } from '../../chaos/faults.ts';
import type { FaultyBroker } from '../../chaos/faults.ts';
import { READ, READER, WRITE, WRITER, connectWith, loginRefused, startHarness } from './support.ts';
import type { Harness } from './support.ts';
import { demoPostgres } from '../../shared/targets/postgres/local.ts';

/*
 * Issue 5: the PostgreSQL failure modes mature brokers are known to fail at, each reproduced
 * against a real PostgreSQL: objects and privileges that block DROP ROLE, sessions that outlive
 * the role, a start-up backlog of expired leases, drops repeated after a failover, orphaned roles,
 * and the ledger-side leftovers of crashes (stale intents, credentials under finished leases).
 */

const LOCK_MS = 2_000;
const INTENT_STALE_MS = 5_000;

let h: Harness;
let inj: FaultInjector;
let broker: FaultyBroker;

beforeAll(async () => {
  h = await startHarness({ lifecycle: { lockMs: LOCK_MS, verifyDeadlineMs: 2_000, retryMaxDelayMs: 10_000 } });
  inj = new FaultInjector({ seed: 5, rates: NO_FAULTS });
  broker = createFaultyBroker(h.rt, inj, h.clock, {
    dynamoFaults: false,
    lifecycle: { lockMs: LOCK_MS, verifyDeadlineMs: 2_000, retryMaxDelayMs: 10_000 },
    reaper: { intentStaleMs: INTENT_STALE_MS, reconcile: { graceMs: 0 } },
  });
});

afterAll(async () => {
  await broker?.close();
  await h?.stop();
});

const secretOf = async (taskId: string, access = 'read') => {
  const s = await h.rt.secrets.get(`tasklease/${taskId}/orders-db.${access}`);
  if (!s) throw new Error(`no secret for ${taskId}`);
  return s;
};

const credOf = async (taskId: string, access = 'read') =>
  (await h.rt.ledger.getLease(taskId))?.credentials.find((c) => grantKey(c.grant) === `orders-db.${access}`);

describe('revocation when the role owns objects and holds privileges elsewhere', () => {
  it('reassigns and drops what the role owns or was granted, in other schemas and other databases, then drops it', async () => {
    await h.admin('CREATE SCHEMA IF NOT EXISTS scratch');
    await h.admin('CREATE SCHEMA IF NOT EXISTS reports');
    await h.admin('CREATE TABLE IF NOT EXISTS reports.totals (n int)');
    expect((await h.rt.lifecycle.taskStarted(await h.started('pgf-owner', WRITER, [READ, WRITE]))).status).toBe('issued');
    const secret = await secretOf('pgf-owner', 'write');
    const role = secret.username as string;

    // Privileges granted to the task role directly, in another schema and in another database.
    await h.admin(`GRANT USAGE, CREATE ON SCHEMA scratch TO ${role}`);
    await h.admin(`GRANT USAGE ON SCHEMA reports TO ${role}`);
    await h.admin(`GRANT SELECT, INSERT ON reports.totals TO ${role}`);
    await h.admin(`GRANT CONNECT ON DATABASE postgres TO ${role}`);
    await h.admin(`CREATE SCHEMA IF NOT EXISTS elsewhere`, [], 'postgres');
    await h.admin(`GRANT USAGE ON SCHEMA elsewhere TO ${role}`, [], 'postgres');
    await h.admin(`ALTER DEFAULT PRIVILEGES IN SCHEMA reports GRANT SELECT ON TABLES TO ${role}`);

    // Objects the role created: a table and a function in another schema, a sequence.
    const c = await connectWith(secret);
    await c.query('CREATE TABLE scratch.work (id serial PRIMARY KEY, note text)');
    await c.query("CREATE FUNCTION scratch.f() RETURNS int LANGUAGE sql AS 'SELECT 1'");
    await c.query('INSERT INTO reports.totals VALUES (1)');
    await c.end();

    const ended = await h.rt.lifecycle.taskEnded(await h.ended('pgf-owner', 'succeeded', WRITER));
    expect(ended.status).toBe('closed');
    expect(ended.status === 'closed' && ended.credentials.every((x) => x.state === 'verified')).toBe(true);
    expect(await h.roles()).toEqual([]);
    expect(await loginRefused(secret)).toBe(true);
    // Its objects survive under another owner; no dependency on the dropped role remains anywhere.
    const owner = await h.admin<{ tableowner: string }>(
      "SELECT tableowner FROM pg_tables WHERE schemaname = 'scratch' AND tablename = 'work'",
    );
    // …the grant's group role, never the admin (whose rights a SECURITY DEFINER leftover would get).
    expect(owner[0]?.tableowner).toBe('orders_write');
    expect(
      await h.admin("SELECT 1 FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid NOT IN (SELECT oid FROM pg_authid)"),
    ).toEqual([]);
  });
});

describe('open sessions survive NOLOGIN and DROP ROLE unless terminated', () => {
  it('terminates idle, idle-in-transaction and busy sessions of the role and proves none is left', async () => {
    expect((await h.rt.lifecycle.taskStarted(await h.started('pgf-sessions'))).status).toBe('issued');
    const secret = await secretOf('pgf-sessions');
    const idle = await connectWith(secret);
    const inTx = await connectWith(secret);
    await inTx.query('BEGIN');
    await inTx.query('SELECT count(*) FROM orders'); // holds a lock inside an open transaction
    const busy = await connectWith(secret);
    const sleeping = busy.query('SELECT pg_sleep(30)').catch((err: unknown) => err);
    expect(
      (await h.admin<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [secret.username]))[0]?.n,
    ).toBe(3);

    expect((await h.rt.lifecycle.taskEnded(await h.ended('pgf-sessions', 'cancelled'))).status).toBe('closed');
    expect(await sleeping).toBeInstanceOf(Error);
    await expect(idle.query('SELECT 1')).rejects.toThrow();
    await expect(inTx.query('SELECT 1')).rejects.toThrow();
    expect(
      (await h.admin<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [secret.username]))[0]?.n,
    ).toBe(0);
    expect(await loginRefused(secret)).toBe(true);
    for (const client of [idle, inTx, busy]) await client.end().catch(() => undefined);
  });
});

describe('a non-idempotent drop after a failover', () => {
  it('revoking a role that is already gone succeeds and is verified', async () => {
    expect((await h.rt.lifecycle.taskStarted(await h.started('pgf-gone'))).status).toBe('issued');
    const secret = await secretOf('pgf-gone');
    // The drop already happened (on the old primary, or by a DBA) before our revoke runs.
    await h.admin(`DROP ROLE ${secret.username}`);
    expect((await h.rt.lifecycle.taskEnded(await h.ended('pgf-gone', 'succeeded'))).status).toBe('closed');
    expect((await credOf('pgf-gone'))?.state).toBe('verified');
  });

  it('a worker that dies right after the drop, across a server restart, is finished by the reaper', async () => {
    expect((await broker.lifecycle.taskStarted(await h.started('pgf-failover'))).status).toBe('issued');
    const secret = await secretOf('pgf-failover');
    inj.force('crash-after-target-call', 'orders-db.revoke', 'pgf-failover');
    await expect(
      inj.invoke('task-ended', async () => broker.lifecycle.taskEnded(await h.ended('pgf-failover', 'succeeded'))),
    ).rejects.toBeInstanceOf(CrashError);
    // The role is gone but the ledger never heard: the lease is ending and locked by the dead worker.
    expect(await h.roles()).not.toContain(secret.username);
    expect((await h.rt.ledger.getLease('pgf-failover'))?.lease.state).toBe('ending');
    expect((await credOf('pgf-failover'))?.state).toBe('revoking');

    await demoPostgres(h.rt).restart();
    expect((await broker.reap()).resumedEnding).toBe(0); // still locked: the reaper leaves it alone
    h.clock.advance(LOCK_MS + 1);
    const report = await broker.reap();
    expect(report.resumedEnding).toBe(1);
    expect((await h.rt.ledger.getLease('pgf-failover'))?.lease.state).toBe('closed');
    expect((await credOf('pgf-failover'))?.state).toBe('verified');
    expect(await loginRefused(secret)).toBe(true);
  });
});

describe('crash leftovers in the ledger', () => {
  it('a write-ahead intent whose issue died after creating the role is revoked through its deterministic name', async () => {
    const taskId = 'pgf-intent';
    inj.force('crash-after-target-call', 'orders-db.issue', taskId);
    await expect(inj.invoke('task-started', async () => broker.lifecycle.taskStarted(await h.started(taskId)))).rejects.toBeInstanceOf(
      CrashError,
    );
    const cred = await credOf(taskId);
    expect(cred?.state).toBe('intent');
    expect(await h.roles()).toContain(cred?.externalId); // created on the target, unknown to anyone

    expect((await broker.reap()).rolledBack).toBe(0); // the issuer's lock still holds
    h.clock.advance(LOCK_MS + 1);
    expect((await broker.reap()).rolledBack).toBe(1);
    expect(await h.roles()).not.toContain(cred?.externalId);
    expect((await credOf(taskId))?.state).toBe('verified');
    expect((await h.rt.ledger.getLease(taskId))?.lease).toMatchObject({ state: 'denied', denial: { code: 'issue-failed' } });
  });

  it('a stale intent under a finished lease is revoked once older than intentStaleMs', async () => {
    const taskId = 'pgf-intent-finished';
    inj.force('crash-after-target-call', 'orders-db.issue', taskId);
    await expect(inj.invoke('task-started', async () => broker.lifecycle.taskStarted(await h.started(taskId)))).rejects.toBeInstanceOf(
      CrashError,
    );
    const cred = await credOf(taskId);
    // Someone finished the lease without cleaning its credential (the state a racing worker can leave).
    expect(await h.rt.ledger.updateLease(taskId, ['issuing'], { state: 'denied', lockedUntil: undefined, closedAt: h.clock.now() })).toBe(
      true,
    );
    h.clock.advance(LOCK_MS + 1);
    const early = await broker.reap();
    expect(early.revokedIntents).toBe(0);
    expect(early.skipped).toBeGreaterThanOrEqual(1); // young intent: its issuer may still be working
    h.clock.advance(INTENT_STALE_MS);
    expect((await broker.reap()).revokedIntents).toBe(1);
    expect(await h.roles()).not.toContain(cred?.externalId);
    expect((await credOf(taskId))?.state).toBe('verified');
  });

  it('an issued credential under a closed lease is revoked when it comes due', async () => {
    const taskId = 'pgf-stray';
    expect((await h.rt.lifecycle.taskStarted(await h.started(taskId, READER, [READ], 60))).status).toBe('issued');
    const secret = await secretOf(taskId);
    // A lease closed while one credential was still issued (a racing worker's leftover).
    expect(await h.rt.ledger.updateLease(taskId, ['active'], { state: 'closed', closedAt: h.clock.now() })).toBe(true);
    h.clock.advance(61_000);
    const report = await broker.reap();
    expect(report.reverified).toBe(1);
    expect((await credOf(taskId))?.state).toBe('verified');
    expect(await loginRefused(secret)).toBe(true);
    expect(report.openDebt.count).toBe(0);
  });
});

describe('orphaned roles', () => {
  it('reconciliation revokes managed roles the ledger does not account for, reports missing ones, and leaves other roles alone', async () => {
    // Roles that look like ours with no ledger record (lost write, restored backup, another broker's leftovers).
    const orphans = Array.from({ length: 4 }, (_, i) => `tl_${String(i).repeat(40)}`);
    for (const r of orphans) await h.admin(`CREATE ROLE ${r} LOGIN PASSWORD 'orphan-pass-${r.slice(-4)}' IN ROLE orders_read`);
    await h.admin(`GRANT CREATE ON SCHEMA scratch TO ${orphans[0]}`);
    const squatter = await connectWith({
      host: demoPostgres(h.rt).host,
      port: String(demoPostgres(h.rt).port),
      database: 'orders',
      username: orphans[0] as string,
      password: `orphan-pass-${(orphans[0] as string).slice(-4)}`,
    });
    await squatter.query('CREATE TABLE scratch.orphan_owned (x int)');
    // A role re-created under the name of a credential the ledger has verified.
    expect((await h.rt.lifecycle.taskStarted(await h.started('pgf-zombie'))).status).toBe('issued');
    const zombie = (await secretOf('pgf-zombie')).username as string;
    expect((await h.rt.lifecycle.taskEnded(await h.ended('pgf-zombie', 'succeeded'))).status).toBe('closed');
    await h.admin(`CREATE ROLE ${zombie} LOGIN PASSWORD 'zombie-pass' IN ROLE orders_read`);
    // Roles that are not ours.
    await h.admin("CREATE ROLE app_user LOGIN PASSWORD 'app-user-pass'");
    await h.admin("CREATE ROLE tl_human LOGIN PASSWORD 'human-pass'");
    // A live credential the ledger has, dropped behind its back.
    expect((await h.rt.lifecycle.taskStarted(await h.started('pgf-missing'))).status).toBe('issued');
    const missing = (await secretOf('pgf-missing')).username as string;
    await h.admin(`DROP ROLE ${missing}`);

    const report = await broker.reap({ reconcileEveryRuns: 1 });
    const found = report.reconcile?.orphans ?? [];
    expect(found.map((o) => o.externalId).sort()).toEqual([...orphans, zombie].sort());
    expect(found.every((o) => o.action === 'revoked' && o.verify === 'rejected')).toBe(true);
    expect(report.reconcile?.missing).toEqual([expect.objectContaining({ taskId: 'pgf-missing', externalId: missing, state: 'issued' })]);
    const left = await h.roles();
    for (const r of [...orphans, zombie]) expect(left).not.toContain(r);
    await expect(squatter.query('SELECT 1')).rejects.toThrow();
    await squatter.end().catch(() => undefined);
    const others = await h.admin<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname IN ('app_user', 'tl_human')");
    expect(others.map((r) => r.rolname).sort()).toEqual(['app_user', 'tl_human']);

    // The missing credential's lease still ends cleanly: revoking a role that is gone succeeds.
    expect((await h.rt.lifecycle.taskEnded(await h.ended('pgf-missing', 'succeeded'))).status).toBe('closed');
    expect((await broker.reap({ reconcileEveryRuns: 1 })).reconcile).toMatchObject({ orphans: [], missing: [] });
    expect(await h.roles()).toEqual([]);
  });
});
