import { describe, expect, it } from 'vitest';
import { LeaseLifecycle } from '../../../shared/lease/lifecycle.ts';
import { createReaperState, runReaper } from '../../../shared/lease/reaper.ts';
import type { ReaperOptions } from '../../../shared/lease/reaper.ts';
import { createFakePorts, FAKE_T0 as T0 } from '../../support/fakes.ts';

const REAPER: Partial<ReaperOptions> = { reconcileEveryRuns: 0, intentStaleMs: 300_000, verifyDeadlineMs: 1_000 };

function setup() {
  const f = createFakePorts();
  const core = new LeaseLifecycle(f.deps({ lockMs: 60_000, verifyDeadlineMs: 1_000 }));
  const state = createReaperState();
  const reap = (o: Partial<ReaperOptions> = {}) =>
    runReaper(core, { ledger: f.ledger, clock: f.clock, log: f.log, targets: f.targets, state }, { ...REAPER, ...o });
  return { f, core, reap };
}

describe('the reaper over fake ports', () => {
  it('leaves a live lease alone, then ends it on expiry (a lost Task Ended), debt from the expiry', async () => {
    const { f, core, reap } = setup();
    await core.taskStarted(f.started('r1', { maxDurationSeconds: 60 }));
    expect(await reap()).toMatchObject({ expired: 0, tasks: 0, openDebt: { count: 0 } });
    f.clock.advance(60_000 + 2_000);
    // Before the reaper acts, the lost Task Ended is open debt already.
    const before = await reap({ batchSize: 0 });
    expect(before.openDebt).toMatchObject({ count: 1, oldestMs: 2_000 });
    const run = await reap();
    expect(run.expired).toBe(1);
    expect(await f.ledger.lease('r1')).toMatchObject({ state: 'closed', outcome: 'expired', endedAt: T0 + 60_000 });
    expect(await f.ledger.credential('r1')).toMatchObject({ state: 'verified', trustDebtMs: 2_000 });
    expect(run.openDebt).toMatchObject({ count: 0, oldestMs: 0 });
    expect(f.events.ofType('leaseRevoked')).toEqual([expect.objectContaining({ outcome: 'expired' })]);
  });

  it('rolls back an issuing lease whose worker died, once its lock has lapsed', async () => {
    const { f, core, reap } = setup();
    f.driver.issueOutcomes.push((ctx: { externalId: string }) => {
      f.driver.live.add(ctx.externalId);
      return new Promise<never>(() => undefined);
    });
    void core.taskStarted(f.started('r2'));
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(await reap()).toMatchObject({ rolledBack: 0 }); // not due yet
    f.clock.advance(60_001);
    const run = await reap();
    expect(run.rolledBack).toBe(1);
    expect(f.driver.live.size).toBe(0);
    expect(await f.ledger.lease('r2')).toMatchObject({ state: 'denied', denial: { code: 'issue-failed' } });
    expect(f.ledger.openSkOf('r2')).toBeUndefined();
    expect(f.events.ofType('leaseDenied').map((d) => d.reason.code)).toEqual(['issue-failed']);
  });

  it('re-verifies an unproven credential after its backoff, resumes the end and closes the lease', async () => {
    const { f, core, reap } = setup();
    await core.taskStarted(f.started('r3'));
    f.driver.revokeOutcomes.push(new Error('ECONNREFUSED'));
    expect((await core.taskEnded(f.ended('r3'))).status).toBe('open-debt');
    const cred = await f.ledger.credential('r3');
    expect(await reap()).toMatchObject({ resumedEnding: 0, tasks: 0, openDebt: { count: 1 } }); // not due yet: not even read
    // Due at its next check; the lease's lock (held until then) lapses just after.
    f.clock.set(cred.nextCheckAt as number);
    expect(await reap()).toMatchObject({ resumedEnding: 0, skipped: 1 });
    f.clock.advance(1);
    const run = await reap();
    expect(run.resumedEnding).toBe(1);
    expect(await f.ledger.lease('r3')).toMatchObject({ state: 'closed' });
    expect(await f.ledger.credential('r3')).toMatchObject({ state: 'verified', trustDebtMs: (cred.nextCheckAt as number) + 1 - T0 });
    expect(run.openDebt.count).toBe(0);
  });
});
