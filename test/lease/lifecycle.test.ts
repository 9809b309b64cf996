import { ScanCommand } from '@aws-sdk/client-dynamodb';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DETAIL_TYPES } from '../../shared/events/schemas.ts';
import type { BusEvent } from '../../shared/events/routing.ts';
import type { LeaseRevoked, TaskStarted } from '../../shared/events/schemas.ts';
import { startLocalRuntime } from '../../local/runtime.ts';
import type { LocalRuntime } from '../../local/runtime.ts';
import { waitForEvent } from '../../demo/demo.ts';
import { demoPostgres } from '../../shared/targets/postgres/local.ts';

const TD = 'spiffe://demo.tasklease.local';
const READER = `${TD}/etl/test`;
const WRITER = `${TD}/billing/writer`;

let rt: LocalRuntime;
const logLines: string[] = [];
const events: BusEvent[] = [];
const passwords: string[] = [];

const log = {
  info: (m: string, a?: Record<string, unknown>) => logLines.push(JSON.stringify({ m, ...a })),
  warn: (m: string, a?: Record<string, unknown>) => logLines.push(JSON.stringify({ m, ...a })),
  error: (m: string, a?: Record<string, unknown>) => logLines.push(JSON.stringify({ m, ...a })),
};

async function started(taskId: string, workload: string, access: string[] = ['read'], svid?: string): Promise<TaskStarted> {
  return {
    taskId,
    svid: svid ?? (await rt.mintSvid(workload)),
    grants: access.map((a) => ({ target: 'orders-db', access: a })),
    maxDurationSeconds: 600,
    initiator: 'tests@tasklease.local',
  };
}

/** An authenticated Task Ended: signed by the workload (or whoever `by` is) with a fresh SVID. */
async function endOf(taskId: string, by: string, outcome: 'succeeded' | 'failed' | 'cancelled' = 'succeeded') {
  return { taskId, outcome, svid: await rt.mintSvid(by) };
}

/** The workload side: the delivered secret, kept so the leak checks can search for it. */
async function secretOf(taskId: string, access = 'read') {
  const s = await rt.secrets.get(`tasklease/${taskId}/orders-db.${access}`);
  if (!s) throw new Error(`no secret delivered for ${taskId}`);
  passwords.push(s.password as string);
  return s;
}

const connect = async (s: Record<string, string>) => {
  const c = new pg.Client({ host: s.host, port: Number(s.port), database: s.database, user: s.username, password: s.password });
  c.on('error', () => undefined);
  await c.connect();
  return c;
};

async function loginError(s: Record<string, string>): Promise<string | undefined> {
  try {
    const c = await connect(s);
    await c.end();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

async function admin<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) {
  const c = new pg.Client({
    host: demoPostgres(rt).host,
    port: demoPostgres(rt).port,
    user: demoPostgres(rt).adminUser,
    password: demoPostgres(rt).adminPassword,
    database: demoPostgres(rt).database,
  });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  rt = await startLocalRuntime({ log, reaperIntervalMs: false, lifecycle: { verifyDeadlineMs: 5_000 } });
  rt.bus.watch((e) => events.push(e));
});

afterAll(async () => {
  await rt?.stop();
});

describe('lease lifecycle on embedded PostgreSQL + dynalite', () => {
  it('issues, lets the workload work, revokes and proves the target rejects the credential', async () => {
    const issued = await rt.lifecycle.taskStarted(await started('life-1', READER));
    expect(issued.status).toBe('issued');
    const secret = await secretOf('life-1');
    const live = await connect(secret);
    expect((await live.query('SELECT count(*) FROM orders')).rowCount).toBe(1);
    await expect(live.query("INSERT INTO orders (item, qty) VALUES ('x', 1)")).rejects.toMatchObject({ code: '42501' });

    const ended = await rt.lifecycle.taskEnded(await endOf('life-1', READER, 'succeeded'));
    expect(ended.status).toBe('closed');

    // The connection opened during the task is gone, and a new login is refused.
    await expect(live.query('SELECT 1')).rejects.toThrow();
    expect(['28P01', '28000']).toContain(await loginError(secret));
    const sessions = await admin('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [secret.username]);
    expect(sessions[0]?.n).toBe(0);
    expect(await admin('SELECT 1 FROM pg_roles WHERE rolname = $1', [secret.username])).toHaveLength(0);

    const record = await rt.ledger.getLease('life-1');
    expect(record?.lease).toMatchObject({
      state: 'closed',
      workload: READER,
      initiator: 'tests@tasklease.local',
      rule: 'etl-readers',
      outcome: 'succeeded',
    });
    const cred = record?.credentials[0];
    expect(cred).toMatchObject({ state: 'verified', kind: 'postgres', target: 'orders-db' });
    expect(cred?.trustDebtMs).toBe((cred?.verifiedAt as number) - (cred?.endedAt as number));
    expect(cred?.avoidedDebtMs).toBe((cred?.naturalExpiry as number) - (cred?.verifiedAt as number));
    expect(cred?.verifyAttempts).toBeGreaterThanOrEqual(1);
    expect(await rt.secrets.exists('tasklease/life-1/orders-db.read')).toBe(false);
    expect(events.some((e) => e['detail-type'] === DETAIL_TYPES.leaseRevoked && (e.detail as { taskId: string }).taskId === 'life-1')).toBe(
      true,
    );
  });

  it('revokes cleanly a role that created a table during its task', async () => {
    await admin('GRANT CREATE ON SCHEMA public TO orders_write');
    expect((await rt.lifecycle.taskStarted(await started('life-owner', WRITER, ['read', 'write']))).status).toBe('issued');
    const secret = await secretOf('life-owner', 'write');
    const c = await connect(secret);
    await c.query('CREATE TABLE scratch_life_owner (id int)');
    await c.end();

    const ended = await rt.lifecycle.taskEnded(await endOf('life-owner', WRITER, 'succeeded'));
    expect(ended.status).toBe('closed');
    expect(await admin('SELECT 1 FROM pg_roles WHERE rolname = $1', [secret.username])).toHaveLength(0);
    // The table survives, owned by someone who is not the dropped task role.
    const owner = await admin<{ tableowner: string }>("SELECT tableowner FROM pg_tables WHERE tablename = 'scratch_life_owner'");
    expect(owner[0]?.tableowner).not.toBe(secret.username);
  });

  it('a Task Started delivered three times at once issues one credential', async () => {
    const detail = await started('life-dup', READER);
    const results = await Promise.all([
      rt.lifecycle.taskStarted(detail),
      rt.lifecycle.taskStarted(detail),
      rt.lifecycle.taskStarted(detail),
    ]);
    expect(results.filter((r) => r.status === 'issued')).toHaveLength(1);
    expect(results.filter((r) => r.status !== 'issued').every((r) => r.status === 'duplicate' || r.status === 'in-progress')).toBe(true);
    const roles = await admin("SELECT rolname FROM pg_roles WHERE rolname LIKE 'tl\\_%'");
    expect(roles).toHaveLength(1);
    await secretOf('life-dup');

    // And a Task Ended delivered three times revokes once.
    const ends = await Promise.all([1, 2, 3].map(async () => rt.lifecycle.taskEnded(await endOf('life-dup', READER, 'succeeded'))));
    expect(ends.filter((r) => r.status === 'closed')).toHaveLength(1);
    const record = await rt.ledger.getLease('life-dup');
    expect(record?.credentials).toHaveLength(1);
    expect(record?.credentials[0]?.state).toBe('verified');
    expect(await admin("SELECT rolname FROM pg_roles WHERE rolname LIKE 'tl\\_%'")).toHaveLength(0);
  });

  it('a Task Ended before its Task Started leaves a tombstone and the late start is denied', async () => {
    expect((await rt.lifecycle.taskEnded(await endOf('life-late', READER, 'cancelled'))).status).toBe('tombstoned');
    const late = await rt.lifecycle.taskStarted(await started('life-late', READER));
    expect(late).toMatchObject({ status: 'denied', code: 'task-already-ended' });
    const record = await rt.ledger.getLease('life-late');
    expect(record?.credentials).toHaveLength(0);
    expect(record?.lease.denial?.code).toBe('task-already-ended');
    expect(await admin("SELECT rolname FROM pg_roles WHERE rolname LIKE 'tl\\_%'")).toHaveLength(0);
  });

  it('one SVID cannot open two leases', async () => {
    const svid = await rt.mintSvid(READER);
    expect((await rt.lifecycle.taskStarted(await started('life-svid-a', READER, ['read'], svid))).status).toBe('issued');
    await secretOf('life-svid-a');
    const second = await rt.lifecycle.taskStarted(await started('life-svid-b', READER, ['read'], svid));
    expect(second).toMatchObject({ status: 'denied', code: 'svid-replayed' });
    expect((await rt.lifecycle.taskEnded(await endOf('life-svid-a', READER, 'succeeded'))).status).toBe('closed');
  });

  it('a forged or refused Task Started does not burn the task id: a valid request later gets its lease', async () => {
    // Signed by a key no trust bundle knows: refused, recorded, nothing issued.
    const { startSpiffeIssuer } = await import('../../local/spiffe-issuer.ts');
    const rogue = await startSpiffeIssuer({ trustDomain: 'demo.tasklease.local' });
    const forged = await rogue.mint({ spiffeId: READER, audience: rt.config.audience });
    await rogue.close();
    expect(await rt.lifecycle.taskStarted(await started('life-reopen', READER, ['read'], forged))).toMatchObject({
      status: 'denied',
      code: 'svid-untrusted',
    });
    // A policy refusal for the same task id: the record keeps the latest reason.
    expect(await rt.lifecycle.taskStarted(await started('life-reopen', READER, ['write']))).toMatchObject({
      status: 'denied',
      code: 'policy-grant-not-allowed',
    });
    expect((await rt.ledger.getLease('life-reopen'))?.lease.denial?.code).toBe('policy-grant-not-allowed');

    const ok = await rt.lifecycle.taskStarted(await started('life-reopen', READER));
    expect(ok.status).toBe('issued');
    const record = await rt.ledger.getLease('life-reopen');
    expect(record?.lease).toMatchObject({ state: 'active', workload: READER });
    expect(record?.lease.denial).toBeUndefined();
    await secretOf('life-reopen');
    expect((await rt.lifecycle.taskEnded(await endOf('life-reopen', READER, 'succeeded'))).status).toBe('closed');
    // A closed lease is never reopened.
    expect((await rt.lifecycle.taskStarted(await started('life-reopen', READER))).status).toBe('duplicate');
  });

  it('a Task Ended after a refused start tombstones the task: the real start that follows is denied', async () => {
    const { startSpiffeIssuer } = await import('../../local/spiffe-issuer.ts');
    const rogue = await startSpiffeIssuer({ trustDomain: 'demo.tasklease.local' });
    const forged = await rogue.mint({ spiffeId: READER, audience: rt.config.audience });
    await rogue.close();
    expect((await rt.lifecycle.taskStarted(await started('life-forged-end', READER, ['read'], forged))).status).toBe('denied');
    expect((await rt.lifecycle.taskEnded(await endOf('life-forged-end', READER, 'succeeded'))).status).toBe('tombstoned');
    const late = await rt.lifecycle.taskStarted(await started('life-forged-end', READER));
    expect(late).toMatchObject({ status: 'denied', code: 'task-already-ended' });
    const record = await rt.ledger.getLease('life-forged-end');
    expect(record?.credentials).toHaveLength(0);
    expect(record?.lease.denial?.code).toBe('task-already-ended');
  });

  it('an end signed by another workload, or by an untrusted key, revokes nothing: the password still logs in', async () => {
    expect((await rt.lifecycle.taskStarted(await started('life-end-forged', READER))).status).toBe('issued');
    const secret = await secretOf('life-end-forged');
    const { startSpiffeIssuer } = await import('../../local/spiffe-issuer.ts');
    const rogue = await startSpiffeIssuer({ trustDomain: 'demo.tasklease.local' });
    const forged = await rogue.mint({ spiffeId: READER, audience: rt.config.audience });
    await rogue.close();
    expect(await rt.lifecycle.taskEnded({ taskId: 'life-end-forged', outcome: 'succeeded', svid: forged })).toMatchObject({
      status: 'rejected',
      code: 'end-unauthenticated',
    });
    expect(await rt.lifecycle.taskEnded(await endOf('life-end-forged', WRITER))).toMatchObject({
      status: 'rejected',
      code: 'end-not-allowed',
    });
    expect((await rt.ledger.getLease('life-end-forged'))?.lease.state).toBe('active');
    expect(await loginError(secret)).toBeUndefined();
    const rejections = events.filter(
      (e) => e['detail-type'] === DETAIL_TYPES.leaseDenied && (e.detail as { taskId: string }).taskId === 'life-end-forged',
    );
    expect(rejections.map((e) => (e.detail as { reason: { code: string } }).reason.code)).toEqual([
      'end-unauthenticated',
      'end-not-allowed',
    ]);
    expect(JSON.stringify(rejections) + logLines.join('\n')).not.toContain(forged);
    expect((await rt.lifecycle.taskEnded(await endOf('life-end-forged', READER))).status).toBe('closed');
    expect(['28P01', '28000']).toContain(await loginError(secret));
  });

  it('a Task Ended before the start, signed by another workload, does not block the real start', async () => {
    expect((await rt.lifecycle.taskEnded(await endOf('life-foreign-tomb', WRITER, 'cancelled'))).status).toBe('tombstoned');
    expect((await rt.lifecycle.taskStarted(await started('life-foreign-tomb', READER))).status).toBe('issued');
    await secretOf('life-foreign-tomb');
    expect((await rt.lifecycle.taskEnded(await endOf('life-foreign-tomb', READER))).status).toBe('closed');
  });

  it('a stalled issue is finished only by its own workload, never by another valid SVID', async () => {
    const now = Date.now();
    const grants = [{ target: 'orders-db', access: 'read' }];
    await rt.ledger.createLease({
      taskId: 'life-stalled',
      state: 'issuing',
      workload: READER,
      grants,
      requestedAt: now - 120_000,
      expiresAt: now + 600_000,
      lockedUntil: now - 1,
    });
    // Another workload with a valid SVID: refused to take over, nothing issued.
    expect((await rt.lifecycle.taskStarted(await started('life-stalled', WRITER))).status).toBe('in-progress');
    expect((await rt.ledger.getLease('life-stalled'))?.credentials).toHaveLength(0);
    // The lease's own workload finishes it.
    expect((await rt.lifecycle.taskStarted(await started('life-stalled', READER))).status).toBe('issued');
    await secretOf('life-stalled');
    expect((await rt.lifecycle.taskEnded(await endOf('life-stalled', READER, 'succeeded'))).status).toBe('closed');
  });

  it('denies a grant the rule does not allow, records why, and issues nothing', async () => {
    const denied = await rt.lifecycle.taskStarted(await started('life-greedy', READER, ['read', 'write']));
    expect(denied).toMatchObject({ status: 'denied', code: 'policy-grant-not-allowed' });
    const record = await rt.ledger.getLease('life-greedy');
    expect(record?.lease).toMatchObject({ state: 'denied', workload: READER, initiator: 'tests@tasklease.local' });
    expect(record?.lease.denial?.message).toMatch(/orders-db\.write/);
    expect(record?.credentials).toHaveLength(0);
  });

  it('malformed events are dead-lettered with a reason while the others go through', async () => {
    const good = await started('life-bus-good', READER);
    const issued = waitForEvent(
      rt.bus,
      (e) => e['detail-type'] === DETAIL_TYPES.leaseIssued && (e.detail as { taskId: string }).taskId === 'life-bus-good',
    );
    rt.bus.put(DETAIL_TYPES.taskStarted, { ...good, taskId: "x\u0000'; DROP ROLE postgres; --" });
    rt.bus.put(DETAIL_TYPES.taskStarted, { taskId: 'life-bus-junk', grants: 'all of them' });
    rt.bus.put(DETAIL_TYPES.taskStarted, good);
    rt.bus.put(DETAIL_TYPES.taskEnded, { taskId: 'life-bus-good', outcome: 'exploded' });
    await issued.promise;
    await rt.bus.drained();
    const reasons = rt.bus.deadLetters.map((d) => d.reason);
    expect(reasons).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/taskId: must be printable text/),
        expect.stringMatching(/svid: /),
        expect.stringMatching(/outcome: /),
      ]),
    );
    expect(
      events.filter(
        (e) => e['detail-type'] === DETAIL_TYPES.leaseDenied && (e.detail as { reason: { code: string } }).reason.code === 'invalid-event',
      ).length,
    ).toBeGreaterThanOrEqual(2);
    expect(await rt.ledger.getLease('life-bus-junk')).toBeUndefined();
    await secretOf('life-bus-good');
    expect((await rt.lifecycle.taskEnded(await endOf('life-bus-good', READER, 'succeeded'))).status).toBe('closed');
  });

  it('a Task Ended put on the bus is measured from its put time; the engine’s own endedAt wins when it sends one (issue 13)', async () => {
    const ended = (taskId: string) =>
      waitForEvent(rt.bus, (e) => e['detail-type'] === DETAIL_TYPES.leaseRevoked && (e.detail as { taskId: string }).taskId === taskId);
    await rt.lifecycle.taskStarted(await started('life-end-queue', READER));
    await secretOf('life-end-queue');
    const byQueue = ended('life-end-queue');
    const put = rt.bus.put(DETAIL_TYPES.taskEnded, await endOf('life-end-queue', READER));
    const revoked = (await byQueue.promise).detail as LeaseRevoked;
    if (!put.accepted) throw new Error('Task Ended refused by the bus');
    const putAt = Date.parse(put.event.time);
    expect(revoked).toMatchObject({ endedAt: put.event.time, endedAtSource: 'queue', endedBy: READER });
    const [c] = revoked.credentials;
    // A real PostgreSQL revoke and proof: each part is there, and the parts add up to the debt.
    expect(c).toMatchObject({ verified: true });
    expect(c!.pipelineMs! + c!.revokeMs! + c!.proofMs!).toBe(c!.trustDebtMs);
    expect(c!.exposureMs).toBe(c!.pipelineMs! + c!.revokeMs!);
    const cred = (await rt.ledger.getLease('life-end-queue'))?.credentials[0];
    expect(cred).toMatchObject({ endedAt: putAt, trustDebtMs: c!.trustDebtMs, pipelineMs: c!.pipelineMs, exposureMs: c!.exposureMs });
    expect(cred!.revokedAt! - cred!.revokeStartedAt!).toBe(c!.revokeMs);
    // The local metrics recorder published the same split.
    expect(rt.metrics.samples.get('PipelineDelayMs')).toContain(c!.pipelineMs);

    await rt.lifecycle.taskStarted(await started('life-end-engine', READER));
    // The engine says the task ended 50 ms after its lease was issued (never before: that would be clamped).
    const issuedAt = (await rt.ledger.getLease('life-end-engine'))?.lease.issuedAt as number;
    await new Promise((resolve) => setTimeout(resolve, 120));
    const endedAt = issuedAt + 50;
    const byEngine = ended('life-end-engine');
    rt.bus.put(DETAIL_TYPES.taskEnded, { ...(await endOf('life-end-engine', READER)), endedAt: new Date(endedAt).toISOString() });
    expect((await byEngine.promise).detail).toMatchObject({ endedAt: new Date(endedAt).toISOString(), endedAtSource: 'engine' });
    expect((await rt.ledger.getLease('life-end-engine'))?.credentials[0]?.trustDebtMs).toBeGreaterThanOrEqual(70);
  });

  it('no issued password appears in logs, events or ledger items', async () => {
    expect(passwords.length).toBeGreaterThanOrEqual(5);
    const scan = await rt.dynamo.client.send(new ScanCommand({ TableName: rt.dynamo.tableName }));
    const haystacks = [logLines.join('\n'), JSON.stringify(events), JSON.stringify(scan.Items), JSON.stringify(rt.bus.deadLetters)];
    for (const password of passwords) {
      expect(password.length).toBeGreaterThanOrEqual(43);
      for (const h of haystacks) expect(h.includes(password)).toBe(false);
    }
  });
});
