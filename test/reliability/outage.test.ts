import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DETAIL_TYPES } from '../../shared/events/schemas.ts';
import type { CredentialRecord } from '../../shared/lease/records.ts';
import { connectWith, loginRefused, ofType, revocationFailures, startHarness } from './support.ts';
import type { Harness } from './support.ts';
import { demoPostgres } from '../../shared/targets/postgres/local.ts';

/*
 * Issue 5 §3 and §5: PostgreSQL goes down while tasks end. Revocation is retried with capped
 * backoff for as long as it takes, the ledger and the reaper's report show the debt growing
 * (state, lastError, attempts, next check), nothing is ever marked done that is not, and
 * everything completes once the database is back — within the stated bound.
 */

const RETRY_CAP_MS = 60_000;
const REAPER_INTERVAL_MS = 60_000;
const OUTAGE_MINUTES = 20;
const TASKS = ['outage-1', 'outage-2', 'outage-3'];

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ lifecycle: { verifyDeadlineMs: 500, retryMaxDelayMs: RETRY_CAP_MS } });
});

afterAll(async () => {
  if (h && !demoPostgres(h.rt).isRunning())
    await demoPostgres(h.rt)
      .startServer()
      .catch(() => undefined);
  await h?.stop();
});

const cred = async (taskId: string): Promise<CredentialRecord> => {
  const c = (await h.rt.ledger.getLease(taskId))?.credentials[0];
  if (!c) throw new Error(`no credential for ${taskId}`);
  return c;
};

describe('PostgreSQL stopped during revocations', () => {
  it('retries with capped backoff, records growing debt honestly, and completes when the database returns', async () => {
    const secrets: Record<string, string>[] = [];
    for (const taskId of TASKS) {
      expect((await h.rt.lifecycle.taskStarted(await h.started(taskId))).status).toBe('issued');
      const s = await h.rt.secrets.get(`tasklease/${taskId}/orders-db.read`);
      if (!s) throw new Error('no secret');
      secrets.push(s);
    }
    const session = await connectWith(secrets[0] as Record<string, string>);

    // The database goes away; the tasks end.
    await demoPostgres(h.rt).stopServer();
    const endedAt = h.clock.now();
    for (const taskId of TASKS) {
      expect((await h.rt.lifecycle.taskEnded(await h.ended(taskId, 'succeeded'))).status).toBe('open-debt');
    }
    for (const taskId of TASKS) {
      const record = await h.rt.ledger.getLease(taskId);
      expect(record?.lease.state).toBe('ending');
      const c = await cred(taskId);
      expect(c.state).toBe('revoking');
      expect(c.verifiedAt).toBeUndefined();
      expect(c.endedAt).toBeGreaterThanOrEqual(endedAt);
      expect(c.lastError).toMatch(/ECONNREFUSED|connect/);
      expect(c.nextCheckAt).toBeGreaterThan(h.clock.now());
      expect(c.verifyAttempts).toBeGreaterThanOrEqual(1);
    }
    expect(revocationFailures(h.events)).toHaveLength(TASKS.length);

    // 20 simulated minutes down, the reaper on its one-minute schedule.
    const oldest: number[] = [];
    const attempts: number[] = [];
    const backoff: number[] = [];
    let last;
    for (let minute = 1; minute <= OUTAGE_MINUTES; minute++) {
      h.clock.advance(REAPER_INTERVAL_MS);
      last = await h.reap({ reconcileEveryRuns: 5 });
      expect(last.openDebt.count).toBe(TASKS.length);
      oldest.push(last.openDebt.oldestMs);
      const c = await cred('outage-1');
      expect(c.state).toBe('revoking'); // never 'verified', never given up
      attempts.push(c.verifyAttempts);
      backoff.push((c.nextCheckAt as number) - h.clock.now());
    }
    // The debt keeps growing, minute by minute.
    for (let i = 1; i < oldest.length; i++) expect(oldest[i]).toBeGreaterThan(oldest[i - 1] as number);
    expect(oldest.at(-1)).toBeGreaterThanOrEqual(OUTAGE_MINUTES * 60_000);
    // Retried all along (attempts grow), backing off up to the cap and no further.
    expect(attempts.at(-1)).toBeGreaterThan(attempts[0] as number);
    for (let i = 1; i < attempts.length; i++) expect(attempts[i]).toBeGreaterThanOrEqual(attempts[i - 1] as number);
    expect(Math.max(...backoff)).toBeLessThanOrEqual(RETRY_CAP_MS);
    expect(backoff.at(-1)).toBeGreaterThan(backoff[0] as number);
    // Visible: one Revocation Failed per failed attempt, the oldest debt listed with its error.
    expect(revocationFailures(h.events).length).toBeGreaterThan(TASKS.length * 5);
    expect(last?.openDebt.items[0]).toMatchObject({ state: 'revoking', lastError: expect.stringMatching(/ECONNREFUSED|connect/) });
    expect(last?.openDebt.items[0]?.verifyAttempts).toBeGreaterThan(5);
    const failed = revocationFailures(h.events, 'outage-1').at(-1)?.detail as { openDebtMs: number; state: string };
    expect(failed.state).toBe('revoking');
    expect(failed.openDebtMs).toBeGreaterThan(10 * 60_000);
    // Reconciliation could not list the target and says so, without touching the ledger.
    const reconciled = last?.reconcile ?? (await h.reap({ reconcileEveryRuns: 1 })).reconcile;
    expect(reconciled?.targets[0]?.error).toMatch(/ECONNREFUSED|connect/);
    expect(reconciled?.orphans).toEqual([]);

    // The database returns; the next scheduled runs finish every revocation.
    await demoPostgres(h.rt).startServer();
    const back = h.clock.now();
    let rounds = 0;
    while (rounds < 5) {
      h.clock.advance(REAPER_INTERVAL_MS);
      rounds++;
      last = await h.reap();
      if (last.openDebt.count === 0) break;
    }
    expect(last?.openDebt.count).toBe(0);
    // Bound: debt = outage (until back) + at most the backoff cap + one reaper interval.
    expect(rounds).toBeLessThanOrEqual(Math.ceil(RETRY_CAP_MS / REAPER_INTERVAL_MS) + 1);
    for (const taskId of TASKS) {
      const record = await h.rt.ledger.getLease(taskId);
      expect(record?.lease.state).toBe('closed');
      const c = await cred(taskId);
      expect(c.state).toBe('verified');
      expect(c.trustDebtMs).toBeGreaterThanOrEqual(back - (c.endedAt as number));
      expect(c.trustDebtMs).toBeLessThanOrEqual(back - (c.endedAt as number) + RETRY_CAP_MS + REAPER_INTERVAL_MS + 5_000);
      expect(ofType(h.events, DETAIL_TYPES.leaseRevoked, taskId)).toHaveLength(1);
    }
    for (const s of secrets) expect(await loginRefused(s)).toBe(true);
    expect(await h.roles()).toEqual([]);
    expect((await h.admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename ~ '^tl_'"))[0]?.n).toBe(0);
    await expect(session.query('SELECT 1')).rejects.toThrow();
    await session.end().catch(() => undefined);
  });
});
