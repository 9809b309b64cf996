import { describe, expect, it } from 'vitest';
import { InvalidEventError } from '../../../shared/lease/errors.ts';
import { LeaseLifecycle } from '../../../shared/lease/lifecycle.ts';
import { createFakePorts, FAKE_T0 as T0, FAKE_WORKLOAD } from '../../support/fakes.ts';

async function active(taskId = 'e1') {
  const f = createFakePorts();
  const core = new LeaseLifecycle(f.deps());
  expect((await core.taskStarted(f.started(taskId))).status).toBe('issued');
  f.events.events.length = 0;
  f.clock.advance(1_000);
  return { f, core };
}

describe('Task Ended for an active lease', () => {
  it('ends, revokes, proves, closes and announces the debt; the lease leaves the open index', async () => {
    const { f, core } = await active();
    const r = await core.taskEnded(f.ended('e1', 'failed'));
    expect(r.status).toBe('closed');
    expect(await f.ledger.lease('e1')).toMatchObject({ state: 'closed', outcome: 'failed', endedAt: T0 + 1_000, closedAt: T0 + 1_000 });
    expect(f.ledger.openSkOf('e1')).toBeUndefined();
    expect(await f.ledger.credential('e1')).toMatchObject({ state: 'verified', endedAt: T0 + 1_000, trustDebtMs: 0, verifyAttempts: 1 });
    expect(f.events.ofType('leaseRevoked')).toEqual([
      expect.objectContaining({
        taskId: 'e1',
        outcome: 'failed',
        endedAt: new Date(T0 + 1_000).toISOString(),
        credentials: [expect.objectContaining({ verified: true, trustDebtMs: 0 })],
      }),
    ]);
    expect(f.observer.count('ended')).toBe(1);
    expect(await core.taskEnded(f.ended('e1'))).toEqual({ status: 'duplicate', taskId: 'e1', state: 'closed' });
    await expect(core.taskEnded({ taskId: 'e1', outcome: 'nope' })).rejects.toBeInstanceOf(InvalidEventError);
  });

  it('ends the lease and marks every credential revoking in one transaction, then revokes (issue 13: fewer ledger writes)', async () => {
    const { f, core } = await active('e-tx');
    const before = f.ledger.transactions;
    const updates = f.ledger.writesOf('updateCredential').length;
    expect((await core.taskEnded(f.ended('e-tx'))).status).toBe('closed');
    // One transaction: the lease's end and the credential's write-ahead mark, before the target was touched.
    expect(f.ledger.transactions - before).toBe(1);
    const after = f.ledger.writesOf('updateCredential').slice(updates);
    expect(after.map((a) => (a[3] as { state?: string }).state)).toEqual(['revoking', 'verified']);
    expect(after[0]![3]).toMatchObject({ endedAt: T0 + 1_000, revokeStartedAt: T0 + 1_000, nextCheckAt: expect.any(Number) });
    expect(await f.ledger.credential('e-tx')).toMatchObject({ state: 'verified', revokeStartedAt: T0 + 1_000 });
  });

  it('a transaction that loses to a concurrent writer changes nothing; the end then goes one write at a time', async () => {
    const { f, core } = await active('e-tx2');
    f.ledger.failNext('updateCredential', 'conflict', (args) => (args[3] as { state?: string }).state === 'revoking');
    expect((await core.taskEnded(f.ended('e-tx2'))).status).toBe('closed');
    const lease = f.ledger.writesOf('updateLease').map((a) => (a[2] as { state?: string }).state);
    // The failed transaction's end, then the one-by-one end, then the close.
    expect(lease.slice(-3)).toEqual(['ending', 'ending', 'closed']);
    expect(await f.ledger.credential('e-tx2')).toMatchObject({ state: 'verified' });
  });

  it('a proof write that did not land is retried; a lease never closes over a credential the ledger does not hold as verified', async () => {
    const isProof = (args: unknown[]) => (args[3] as { state?: string }).state === 'verified';
    const once = await active('e-proof-1');
    once.f.ledger.failNext('updateCredential', 'conflict', isProof);
    expect((await once.core.taskEnded(once.f.ended('e-proof-1'))).status).toBe('closed');
    expect(await once.f.ledger.credential('e-proof-1')).toMatchObject({ state: 'verified' });

    // Found by chaos (seed 490623068): before, the lease closed while its credential stayed unproven in the ledger.
    const always = await active('e-proof-2');
    for (let i = 0; i < 3; i++) always.f.ledger.failNext('updateCredential', 'conflict', isProof);
    expect((await always.core.taskEnded(always.f.ended('e-proof-2'))).status).toBe('open-debt');
    expect(await always.f.ledger.lease('e-proof-2')).toMatchObject({ state: 'ending' });
    expect((await always.f.ledger.credential('e-proof-2')).state).not.toBe('verified');
  });

  it('a lost race on the end write re-reads and defers to the winner holding the lock', async () => {
    const { f, core } = await active('e2');
    f.ledger.failNext('updateLease', async (ledger) => {
      await ledger.updateLease('e2', ['active'], {
        state: 'ending',
        endedAt: T0,
        outcome: 'succeeded',
        lockedUntil: T0 + 120_000,
        nextCheckAt: T0 + 120_000,
      });
    });
    expect(await core.taskEnded(f.ended('e2'))).toEqual({ status: 'in-progress', taskId: 'e2' });
    expect(f.driver.revokeCalls).toEqual([]);
  });

  it('takes over an ending lease whose worker died once its lock has lapsed', async () => {
    const { f, core } = await active('e3');
    // The ending worker dies inside the revoke call.
    f.driver.revokeOutcomes.push(() => new Promise<never>(() => undefined));
    void core.taskEnded(f.ended('e3'));
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(await f.ledger.lease('e3')).toMatchObject({ state: 'ending', lockedUntil: T0 + 61_000, nextCheckAt: T0 + 61_000 });
    expect(await core.taskEnded(f.ended('e3'))).toEqual({ status: 'in-progress', taskId: 'e3' });
    f.clock.advance(60_001);
    expect((await core.taskEnded(f.ended('e3'))).status).toBe('closed');
    // Debt runs from the first end, not the takeover.
    expect(await f.ledger.credential('e3')).toMatchObject({ state: 'verified', trustDebtMs: 60_001 });
  });

  it('a lost response to the applied close still announces, once; a close someone else made is not announced again', async () => {
    const { f, core } = await active('e4');
    f.ledger.failNext('updateLease', 'lost-response', (args) => (args[2] as { state?: string }).state === 'closed');
    expect((await core.taskEnded(f.ended('e4'))).status).toBe('closed');
    expect(f.events.ofType('leaseRevoked')).toHaveLength(1);

    const other = await active('e5');
    other.f.ledger.failNext(
      'updateLease',
      async (ledger) => {
        await ledger.updateLease('e5', ['ending'], { state: 'closed', closedAt: T0 - 1, nextCheckAt: undefined });
      },
      (args) => (args[2] as { state?: string }).state === 'closed',
    );
    expect(await other.core.taskEnded(other.f.ended('e5'))).toEqual({ status: 'duplicate', taskId: 'e5', state: 'closed' });
    expect(other.f.events.ofType('leaseRevoked')).toEqual([]);
  });

  it('unproven revocation: open-debt, the lease due again at the credential next check', async () => {
    const { f, core } = await active('e6');
    f.driver.revokeOutcomes.push(new Error('ECONNREFUSED'));
    const r = await core.taskEnded(f.ended('e6'));
    expect(r.status).toBe('open-debt');
    const cred = await f.ledger.credential('e6');
    expect(cred).toMatchObject({ state: 'revoking', verifyAttempts: 1, lastError: 'Error: ECONNREFUSED' });
    expect(await f.ledger.lease('e6')).toMatchObject({ state: 'ending', lockedUntil: cred.nextCheckAt, nextCheckAt: cred.nextCheckAt });
    expect(f.events.types()).toEqual(['Revocation Failed']);
  });

  it('gives up deciding after five lost races, leaving the work to the next delivery', async () => {
    const { f, core } = await active('e7');
    // Each round tries the end twice: in one transaction with the credentials' marks, then alone.
    for (let i = 0; i < 10; i++) f.ledger.failNext('updateLease', 'conflict');
    expect(await core.taskEnded(f.ended('e7'))).toEqual({ status: 'in-progress', taskId: 'e7' });
    expect(f.ledger.writesOf('updateLease')).toHaveLength(5 * 2 + 1); // five lost rounds + the activation before
    expect((await f.ledger.lease('e7')).state).toBe('active');
  });
});

describe('Task Ended for anything else', () => {
  it('before any Task Started: a tombstone; a lost race on it re-reads', async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps());
    f.ledger.failNext('createLease', 'conflict');
    expect(await core.taskEnded(f.ended('x1'))).toEqual({ status: 'tombstoned', taskId: 'x1' });
    expect(f.ledger.writesOf('createLease')).toHaveLength(2);
    expect(f.ledger.ttlOf('x1')).toBeGreaterThan(0);
    expect(f.log.lines.map((l) => l.message)).toContain('Task Ended before Task Started: tombstone left, bound to its ender');
    expect(await f.ledger.lease('x1')).toMatchObject({ state: 'closed', tombstone: true, endedBy: FAKE_WORKLOAD });
  });

  it('a denial that is not reopenable (issue-failed) stays as it is', async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps());
    f.driver.issueOutcomes.push(new Error('boom'));
    await core.taskStarted(f.started('x2'));
    expect(await core.taskEnded(f.ended('x2'))).toEqual({ status: 'duplicate', taskId: 'x2', state: 'denied' });
    expect(await f.ledger.lease('x2')).not.toHaveProperty('tombstone');
  });

  it('the reaper ends an expired lease with outcome expired, its debt measured from the expiry', async () => {
    const { f, core } = await active('x3');
    const lease = await f.ledger.lease('x3');
    f.clock.set((lease.expiresAt as number) + 5_000);
    expect((await core.endLease('x3', 'expired', lease.expiresAt as number)).status).toBe('closed');
    expect(await f.ledger.credential('x3')).toMatchObject({ state: 'verified', trustDebtMs: 5_000 });
    expect(f.events.ofType('leaseRevoked')[0]).toMatchObject({ outcome: 'expired' });
  });
});
