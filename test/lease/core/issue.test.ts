import { describe, expect, it } from 'vitest';
import { LeaseLifecycle } from '../../../shared/lease/lifecycle.ts';
import type { FakeDriver } from '../../support/fakes.ts';
import { createFakePorts, FAKE_T0 as T0, targetDown } from '../../support/fakes.ts';

function setup() {
  const f = createFakePorts({ targets: ['billing-db'] });
  return { f, core: new LeaseLifecycle(f.deps()), billing: f.targets.get('billing-db') as FakeDriver };
}

const TWO = [
  { target: 'orders-db', access: 'read' },
  { target: 'billing-db', access: 'read' },
];

describe('issuing all grants or none', () => {
  it('one grant failing rolls back the other: revoked, proven, denied issue-failed, nothing announced as issued', async () => {
    const { f, core, billing } = setup();
    billing.issueOutcomes.push(targetDown('billing is down'));
    const r = await core.taskStarted(f.started('n1', { grants: TWO, taskToken: 'tok' }));
    expect(r).toMatchObject({ status: 'denied', code: 'issue-failed' });
    if (r.status !== 'denied') throw new Error('unreachable');
    expect(r.message).toMatch(/could not issue billing-db\.read \(target-error: billing is down\); nothing was left issued/);
    expect(f.driver.live.size + billing.live.size).toBe(0);
    expect(await f.ledger.lease('n1')).toMatchObject({ state: 'denied', outcome: 'issue-failed', closedAt: T0 });
    expect(f.ledger.openSkOf('n1')).toBeUndefined();
    const creds = (await f.ledger.getLease('n1'))!.credentials;
    expect(creds.map((c) => c.state)).toEqual(['verified', 'verified']);
    expect(f.events.types()).toEqual(['Lease Denied']);
    expect(f.callback.failures).toEqual([expect.objectContaining({ taskToken: 'tok', error: 'issue-failed' })]);
    expect(f.secrets.size).toBe(0);
  });

  it('a rollback that cannot prove a revocation leaves the lease ending, locked, with its debt open', async () => {
    const { f, core, billing } = setup();
    billing.issueOutcomes.push(targetDown());
    f.driver.revokeOutcomes.push(targetDown('cannot reach orders-db'));
    const r = await core.taskStarted(f.started('n2', { grants: TWO }));
    expect(r.status).toBe('denied');
    expect(await f.ledger.lease('n2')).toMatchObject({
      state: 'ending',
      outcome: 'issue-failed',
      lockedUntil: T0 + 60_000,
      nextCheckAt: T0 + 60_000,
    });
    expect(await f.ledger.credential('n2', 'orders-db.read')).toMatchObject({
      state: 'revoking',
      lastError: 'target-error: cannot reach orders-db',
    });
    expect(f.events.types()).toContain('Revocation Failed');

    // Once the lock lapses the end is taken over and, proven, announced with outcome failed.
    f.clock.advance(60_001);
    expect((await core.endLease('n2', 'expired', T0)).status).toBe('closed');
    expect(f.events.ofType('leaseRevoked')).toEqual([
      expect.objectContaining({ taskId: 'n2', outcome: 'failed', endedAt: new Date(T0).toISOString() }),
    ]);
    expect(await f.ledger.lease('n2')).toMatchObject({ state: 'closed', outcome: 'issue-failed' });
  });

  it('an intent that already exists (another issuer got there) fails the issue instead of doubling it', async () => {
    const { f, core } = setup();
    f.ledger.failNext('createCredential', 'conflict');
    const r = await core.taskStarted(f.started('n3'));
    expect(r).toMatchObject({ status: 'denied', code: 'issue-failed' });
    expect(f.driver.issueCalls).toEqual([]);
  });
});

describe('activation', () => {
  it('a lost response to the applied activation is recognised by its own issuedAt: announced once', async () => {
    const { f, core } = setup();
    f.ledger.failNext('updateLease', 'lost-response', (args) => (args[2] as { state?: string }).state === 'active');
    expect((await core.taskStarted(f.started('v1'))).status).toBe('issued');
    expect(await f.ledger.lease('v1')).toMatchObject({ state: 'active' });
    expect(f.events.ofType('leaseIssued')).toHaveLength(1);
  });

  it('Task Ended while issuing: never announced, straight to ending, revoked and closed by the issuer', async () => {
    const { f, core } = setup();
    f.driver.issueOutcomes.push(async () => {
      expect(await core.taskEnded(f.ended('v2', 'cancelled'))).toEqual({ status: 'deferred', taskId: 'v2' });
      expect(await core.taskEnded(f.ended('v2', 'cancelled'))).toEqual({ status: 'duplicate', taskId: 'v2', state: 'issuing' });
      return undefined;
    });
    const r = await core.taskStarted(f.started('v2', { taskToken: 'tok' }));
    expect(r).toEqual({ status: 'duplicate', taskId: 'v2', state: 'closed' });
    expect(f.events.types()).toEqual(['Lease Revoked']);
    expect(f.events.ofType('leaseRevoked')[0]).toMatchObject({
      outcome: 'cancelled',
      credentials: [expect.objectContaining({ verified: true })],
    });
    expect(f.callback.successes).toEqual([]);
    expect(await f.ledger.lease('v2')).toMatchObject({ state: 'closed', outcome: 'cancelled', endRequested: true });
    expect(f.driver.live.size).toBe(0);
  });

  it('a lease another worker took away meanwhile is not announced', async () => {
    const { f, core } = setup();
    f.ledger.failNext('updateLease', async (ledger) => {
      await ledger.updateLease('v3', ['issuing'], { state: 'denied', nextCheckAt: undefined });
    });
    expect(await core.taskStarted(f.started('v3'))).toEqual({ status: 'in-progress', taskId: 'v3' });
    expect(f.events.types()).toEqual([]);
    expect(f.log.lines.some((l) => l.message === 'lease left the issuing state while we issued; not announcing it')).toBe(true);
  });
});
