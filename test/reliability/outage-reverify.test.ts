import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DETAIL_TYPES } from '../../shared/events/schemas.ts';
import type { CredentialRecord } from '../../shared/lease/records.ts';
import { connectWith, loginRefused, ofType, READER, startHarness, WRITER } from './support.ts';
import type { Harness } from './support.ts';
import { demoPostgres } from '../../shared/targets/postgres/local.ts';

/*
 * The local re-verify delay queue (local/reverify-queue.ts) against a real outage: PostgreSQL
 * stops while tasks end, and no reaper runs at all. Each failed attempt asks the core's backoff
 * for the next one and the queue delivers it, so once the database is back the old passwords are
 * proven refused within the gap the backoff had reached, not at the next reaper run (RELIABILITY.md,
 * "Bounds"). TL_OUTAGE_MS sets the outage (default 8 s; 30 s reproduces the figure quoted there).
 */

const OUTAGE_MS = Number(process.env.TL_OUTAGE_MS ?? 8_000);
const TASKS = ['requeue-1', 'requeue-2'];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ lifecycle: { verifyDeadlineMs: 500 }, reverify: {} });
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

describe('PostgreSQL stopped during revocations, the delay queue retrying', () => {
  it(
    'proves every old password refused within the backoff gap after the database returns, without a reaper run',
    { timeout: OUTAGE_MS + 90_000 },
    async () => {
      const secrets: Record<string, string>[] = [];
      for (const taskId of TASKS) {
        expect((await h.rt.broker.taskStarted(await h.started(taskId, READER))).status).toBe('issued');
        const s = await h.rt.secrets.get(`tasklease/${taskId}/orders-db.read`);
        if (!s) throw new Error('no secret');
        secrets.push(s);
      }
      const session = await connectWith(secrets[0] as Record<string, string>);

      await demoPostgres(h.rt).stopServer();
      for (const taskId of TASKS) expect((await h.rt.broker.taskEnded(await h.ended(taskId, 'succeeded'))).status).toBe('open-debt');
      await sleep(OUTAGE_MS);
      // Retried all through the outage by the queue alone.
      const during = await cred('requeue-1');
      expect(during.state).toBe('revoking');
      expect(during.verifyAttempts).toBeGreaterThan(3);
      expect(h.rt.reverify?.stats.delivered).toBeGreaterThan(3);

      await demoPostgres(h.rt).startServer();
      const back = Date.now();
      // The next attempt the backoff had scheduled when the database came back bounds the wait.
      const gaps = await Promise.all(TASKS.map(async (t) => Math.max(0, ((await cred(t)).nextCheckAt as number) - back)));
      const deadline = back + Math.max(...gaps) + 15_000;
      while (Date.now() < deadline) {
        const creds = await Promise.all(TASKS.map(cred));
        if (creds.every((c) => c.state === 'verified') && TASKS.every((t) => ofType(h.events, DETAIL_TYPES.leaseRevoked, t).length === 1))
          break;
        await sleep(100);
      }

      const afterBack: number[] = [];
      for (const [i, taskId] of TASKS.entries()) {
        const record = await h.rt.ledger.getLease(taskId);
        expect(record?.lease.state).toBe('closed');
        const c = await cred(taskId);
        expect(c.state).toBe('verified');
        afterBack.push((c.verifiedAt as number) - back);
        // Within the gap the backoff had reached, plus the attempt itself.
        expect((c.verifiedAt as number) - back).toBeLessThanOrEqual((gaps[i] as number) + 5_000);
        expect(ofType(h.events, DETAIL_TYPES.leaseRevoked, taskId)).toHaveLength(1);
      }
      // No reaper ran: its gauges were never published.
      expect(h.rt.metrics.openDebtGauge).toBeUndefined();
      for (const s of secrets) expect(await loginRefused(s)).toBe(true);
      expect(await h.roles()).toEqual([]);
      await expect(session.query('SELECT 1')).rejects.toThrow();
      await session.end().catch(() => undefined);
      console.log(
        `outage ${OUTAGE_MS} ms: old passwords proven refused ${afterBack.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ')} after PostgreSQL came back (backoff gap then ${gaps.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ')})`,
      );
    },
  );

  it('a local reaper run publishes open debt and blast radius through the metrics port', async () => {
    // Another workload than the outage's, so its blast radius is this one credential.
    expect((await h.rt.broker.taskStarted(await h.started('requeue-live', WRITER))).status).toBe('issued');
    const report = await h.reap({ reconcileEveryRuns: 0 });
    expect(report.openDebt.count).toBe(0);
    expect(h.rt.metrics.openDebtGauge).toMatchObject({ count: 0, oldestMs: 0 });
    expect(h.rt.metrics.blastRadiusGauges.get(WRITER)).toMatchObject({ credentials: 1, targets: 1 });
    expect((await h.rt.broker.taskEnded(await h.ended('requeue-live', 'succeeded', WRITER))).status).toBe('closed');
  });
});
