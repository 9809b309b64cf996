import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultInjector, NO_FAULTS, createFaultyBroker } from '../../chaos/faults.ts';
import type { FaultyBroker } from '../../chaos/faults.ts';
import type { ReaperReport } from '../../shared/lease/reaper.ts';
import { startHarness } from './support.ts';
import type { Harness } from './support.ts';

/*
 * Issue 5: thousands of expired leases at start-up must not stampede the target. Here 300
 * leases whose Task Ended was lost expire together; the reaper works through them in bounded
 * batches, at most `concurrency` revocations in flight, paced by the per-target token bucket,
 * and finishes every one of them.
 */

const LEASES = 300;
const BATCH = 50;
const CONCURRENCY = 4;
const RATE = 100;
const BURST = 10;

let h: Harness;
let broker: FaultyBroker;

beforeAll(async () => {
  h = await startHarness();
  broker = createFaultyBroker(h.rt, new FaultInjector({ seed: 1, rates: NO_FAULTS }), h.clock, { dynamoFaults: false });
});

afterAll(async () => {
  await broker?.close();
  await h?.stop();
});

describe('a start-up backlog of expired leases', () => {
  it(`revokes ${LEASES} expired leases in batches of at most ${BATCH}, ${CONCURRENCY} at a time, at most ${RATE}/s after a burst of ${BURST}`, async () => {
    const ids = Array.from({ length: LEASES }, (_, i) => `backlog-${i}`);
    let next = 0;
    await Promise.all(
      Array.from({ length: 12 }, async () => {
        while (next < ids.length) {
          const id = ids[next++] as string;
          expect((await broker.lifecycle.taskStarted(await h.started(id, undefined, undefined, 60))).status).toBe('issued');
        }
      }),
    );
    expect(await h.roles()).toHaveLength(LEASES);

    // Every Task Ended was lost; the broker comes back after the leases ran out.
    h.clock.advance(61_000);
    // A run out of time budget starts no new task after the budget and says there is more.
    const starved = await broker.reap({
      batchSize: BATCH,
      concurrency: CONCURRENCY,
      targetRatePerSecond: RATE,
      targetBurst: BURST,
      reconcileEveryRuns: 0,
      runBudgetMs: 0,
    });
    expect(starved.tasks).toBeLessThanOrEqual(CONCURRENCY);
    expect(starved.backlog).toBe(true);
    const reports: ReaperReport[] = [];
    const revokesPerRun: number[] = [];
    for (let run = 0; run < 12; run++) {
      const before = broker.recorder.revokes.calls;
      const report = await broker.reap({
        batchSize: BATCH,
        concurrency: CONCURRENCY,
        targetRatePerSecond: RATE,
        targetBurst: BURST,
        reconcileEveryRuns: 0,
      });
      reports.push(report);
      revokesPerRun.push(broker.recorder.revokes.calls - before);
      if (!report.backlog && report.openDebt.count === 0) break;
    }

    // Bounded: each run takes at most one batch; the first one knows there is more.
    expect(reports[0]?.backlog).toBe(true);
    expect(reports[0]?.openDebt.count).toBe(LEASES - starved.expired - BATCH);
    for (const r of reports) expect(r.tasks).toBeLessThanOrEqual(BATCH);
    for (const n of revokesPerRun) expect(n).toBeLessThanOrEqual(BATCH);
    expect(broker.recorder.revokes.maxInFlight).toBeLessThanOrEqual(CONCURRENCY);
    // Paced: between any two revocations i < j, at most BURST + RATE × elapsed were started.
    const starts = [...broker.recorder.revokes.startedAt].sort((a, b) => a - b);
    expect(starts).toHaveLength(LEASES);
    for (let i = 0; i < starts.length; i++) {
      for (let j = i + 1; j < starts.length; j++) {
        const allowed = BURST + (RATE * ((starts[j] as number) - (starts[i] as number))) / 1000 + 1;
        expect(j - i + 1).toBeLessThanOrEqual(Math.ceil(allowed));
      }
    }

    // And finished: every lease expired, every credential proven rejected, debt measured from expiry.
    expect(reports.length).toBeLessThanOrEqual(Math.ceil(LEASES / BATCH) + 1);
    expect(reports.reduce((n, r) => n + r.expired, starved.expired)).toBe(LEASES);
    expect(await h.roles()).toEqual([]);
    const leases = await h.rt.ledger.listLeases({});
    expect(leases).toHaveLength(LEASES);
    for (const { lease, credentials } of leases) {
      expect(lease).toMatchObject({ state: 'closed', outcome: 'expired', endedAt: lease.expiresAt });
      expect(credentials[0]?.state).toBe('verified');
      expect(credentials[0]?.trustDebtMs).toBeGreaterThan(0);
    }
  });
});
