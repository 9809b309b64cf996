import { describe, expect, it } from 'vitest';
import { InvalidEventError } from '../../../shared/lease/errors.ts';
import { LeaseLifecycle } from '../../../shared/lease/lifecycle.ts';
import { createFakePorts, FAKE_T0 as T0, FAKE_WORKLOAD, fakeSvid } from '../../support/fakes.ts';

const OTHER = 'spiffe://fake.tasklease.test/someone/else';

function setup(lockMs = 60_000) {
  const f = createFakePorts();
  return { f, core: new LeaseLifecycle(f.deps({ lockMs })) };
}

describe('Task Started: issue', () => {
  it('records the lease, writes the intent first, delivers the secret, activates and announces once', async () => {
    const { f, core } = setup();
    const r = await core.taskStarted(f.started('t1', { taskToken: 'tok-1', initiator: 'alice' }));
    expect(r.status).toBe('issued');
    const lease = await f.ledger.lease('t1');
    expect(lease).toMatchObject({
      state: 'active',
      workload: FAKE_WORKLOAD,
      rule: 'fake-rule',
      expiresAt: T0 + 600_000,
      nextCheckAt: T0 + 600_000,
    });
    expect(lease).not.toHaveProperty('taskToken');
    expect(lease).not.toHaveProperty('lockedUntil');
    // The task token bound to this task first, then the SVID's claim; intent before the target call, issued after it.
    expect(f.ledger.calls.map((c) => c.method)).toEqual([
      'claimSvid',
      'claimSvid',
      'createLease',
      'createCredential',
      'updateCredential',
      'updateLease',
    ]);
    const c = await f.ledger.credential('t1');
    expect(c).toMatchObject({ state: 'issued', secretName: 'tasklease/t1/orders-db.read', nextCheckAt: T0 + 600_000, kind: 'fake' });
    expect(f.events.ofType('leaseIssued')).toEqual([
      expect.objectContaining({
        taskId: 't1',
        initiator: 'alice',
        credentials: [expect.objectContaining({ secretName: 'tasklease/t1/orders-db.read' })],
      }),
    ]);
    expect(f.callback.successes).toEqual([
      {
        taskToken: 'tok-1',
        output: expect.objectContaining({ taskId: 't1', secrets: [expect.objectContaining({ grant: 'orders-db.read' })] }),
      },
    ]);
    expect(f.observer.count('issued')).toBe(1);
    const password = f.secrets.puts[0]!.value.password!;
    for (const text of [
      f.log.text(),
      JSON.stringify(f.events.events),
      JSON.stringify(f.callback.successes),
      JSON.stringify(await f.ledger.getLease('t1')),
    ]) {
      expect(text).not.toContain(password);
    }
  });

  it('rejects a malformed detail: Lease Denied under its readable task id, then throws', async () => {
    const { f, core } = setup();
    await expect(core.taskStarted({ taskId: 'bad-1', svid: 'x' })).rejects.toBeInstanceOf(InvalidEventError);
    await expect(core.taskStarted({ taskId: '\u0000'.repeat(3) })).rejects.toBeInstanceOf(InvalidEventError);
    expect(f.events.ofType('leaseDenied').map((d) => [d.taskId, d.reason.code])).toEqual([
      ['bad-1', 'invalid-event'],
      ['(unreadable)', 'invalid-event'],
    ]);
    expect(await f.ledger.getLease('bad-1')).toBeUndefined();
  });

  it.each([
    ['policy-no-rule', (f: ReturnType<typeof createFakePorts>) => (f.policy.denyAll('policy-no-rule'), f.started('d1'))],
    ['unknown-target', (f: ReturnType<typeof createFakePorts>) => f.started('d1', { grants: [{ target: 'nowhere', access: 'read' }] })],
  ] as const)('denies %s: a denied record, Lease Denied, the token failed, nothing issued', async (code, make) => {
    const { f, core } = setup();
    const r = await core.taskStarted({ ...make(f), taskToken: 'tok-d' });
    expect(r).toMatchObject({ status: 'denied', code });
    expect(await f.ledger.lease('d1')).toMatchObject({ state: 'denied', denial: { code } });
    expect(f.ledger.ttlOf('d1')).toBeGreaterThan(0);
    expect(f.events.ofType('leaseDenied').map((d) => d.reason.code)).toEqual([code]);
    expect(f.callback.failures).toEqual([expect.objectContaining({ taskToken: 'tok-d', error: code })]);
    expect(f.driver.issueCalls).toEqual([]);
  });

  it('denies an SVID already used by another task (replay)', async () => {
    const { f, core } = setup();
    const svid = fakeSvid(FAKE_WORKLOAD, { jti: 'shared' });
    expect((await core.taskStarted(f.started('r1', { svid }))).status).toBe('issued');
    expect(await core.taskStarted(f.started('r2', { svid }))).toMatchObject({ status: 'denied', code: 'svid-replayed' });
  });
});

describe('Task Started: reopenable denials', () => {
  it('a corrected request reopens a policy denial; the latest refusal replaces the reason meanwhile', async () => {
    const { f, core } = setup();
    f.policy.denyAll('policy-no-rule');
    await core.taskStarted(f.started('o1', { svid: fakeSvid(FAKE_WORKLOAD, { jti: 'a' }) }));
    await core.taskStarted(f.started('o1', { svid: fakeSvid(FAKE_WORKLOAD, { jti: 'b', deny: 'svid-expired' }) }));
    expect((await f.ledger.lease('o1')).denial?.code).toBe('svid-expired');
    f.policy.decide = undefined;
    expect((await core.taskStarted(f.started('o1', { svid: fakeSvid(FAKE_WORKLOAD, { jti: 'c' }) }))).status).toBe('issued');
    const lease = await f.ledger.lease('o1');
    expect(lease).toMatchObject({ state: 'active' });
    expect(lease).not.toHaveProperty('denial');
    expect(lease).not.toHaveProperty('closedAt');
    expect(f.ledger.ttlOf('o1')).toBeUndefined();
  });

  it('a denial tombstoned by Task Ended is not reopened: the late start is refused as already ended', async () => {
    const { f, core } = setup();
    f.policy.denyAll();
    await core.taskStarted(f.started('o2'));
    expect(await core.taskEnded(f.ended('o2'))).toEqual({ status: 'tombstoned', taskId: 'o2' });
    f.policy.decide = undefined;
    expect(await core.taskStarted(f.started('o2', { svid: fakeSvid(FAKE_WORKLOAD, { jti: 'new' }) }))).toMatchObject({
      status: 'denied',
      code: 'task-already-ended',
    });
    expect(f.driver.issueCalls).toEqual([]);
  });

  it('loses the reopen race to a Task Ended that tombstoned the denial meanwhile', async () => {
    const { f, core } = setup();
    f.policy.denyAll();
    await core.taskStarted(f.started('o3'));
    f.policy.decide = undefined;
    f.ledger.failNext('updateLease', async (ledger) => {
      await ledger.updateLease('o3', ['denied'], { tombstone: true, endedBy: FAKE_WORKLOAD, outcome: 'cancelled', endedAt: T0 });
    });
    const r = await core.taskStarted(f.started('o3', { svid: fakeSvid(FAKE_WORKLOAD, { jti: 'again' }) }));
    expect(r).toMatchObject({ status: 'denied', code: 'task-already-ended' });
    expect(f.driver.issueCalls).toEqual([]);
  });
});

describe('Task Started: the task already has a lease', () => {
  it('Task Ended first leaves a tombstone: the late start is denied once, then a duplicate', async () => {
    const { f, core } = setup();
    expect(await core.taskEnded(f.ended('e1', 'failed'))).toEqual({ status: 'tombstoned', taskId: 'e1' });
    expect(await f.ledger.lease('e1')).toMatchObject({ state: 'closed', tombstone: true, outcome: 'failed' });
    expect(await core.taskStarted(f.started('e1'))).toMatchObject({ status: 'denied', code: 'task-already-ended' });
    expect(await f.ledger.lease('e1')).toMatchObject({ state: 'closed', workload: FAKE_WORKLOAD, denial: { code: 'task-already-ended' } });
    expect(await core.taskStarted(f.started('e1'))).toEqual({ status: 'duplicate', taskId: 'e1', state: 'closed' });
    expect(f.events.ofType('leaseDenied')).toHaveLength(1);
  });

  it('a redelivered start of an active lease announces it again (at-least-once); a second token answer is refused and logged', async () => {
    const { f, core } = setup();
    await core.taskStarted(f.started('a1', { taskToken: 'tok' }));
    expect(await core.taskStarted(f.started('a1', { taskToken: 'tok' }))).toEqual({ status: 'duplicate', taskId: 'a1', state: 'active' });
    expect(f.events.ofType('leaseIssued')).toHaveLength(2);
    expect(f.callback.successes).toHaveLength(1);
    expect(f.log.lines.some((l) => l.message === 'task token already answered or gone')).toBe(true);
    // Another workload's start is never announced someone else's lease.
    await core.taskStarted(f.started('a1', { svid: fakeSvid(OTHER) }));
    expect(f.events.ofType('leaseIssued')).toHaveLength(2);
  });

  it('a start that loses the createLease race defers to the winner', async () => {
    const { f, core } = setup();
    f.ledger.failNext('createLease', async (ledger) => {
      await ledger.createLease({
        taskId: 'c1',
        state: 'issuing',
        workload: FAKE_WORKLOAD,
        grants: [],
        requestedAt: T0,
        lockedUntil: T0 + 60_000,
        nextCheckAt: T0 + 60_000,
      });
    });
    expect(await core.taskStarted(f.started('c1'))).toEqual({ status: 'in-progress', taskId: 'c1' });
    expect(f.driver.issueCalls).toEqual([]);
  });
});

describe('Task Started: taking over a stale issuing lock', () => {
  /** The worker dies inside the target call, after the target made the credential: it never returns. */
  function crashInsideIssue(f: ReturnType<typeof createFakePorts>, core: LeaseLifecycle, taskId: string): void {
    f.driver.issueOutcomes.push((ctx: { externalId: string }) => {
      f.driver.live.add(ctx.externalId);
      return new Promise<never>(() => undefined);
    });
    void core.taskStarted(f.started(taskId));
  }

  const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

  it('waits while the lock holds, never lets a stranger in, then the same workload resumes: revoke the half-made credential, issue afresh, announce', async () => {
    const { f, core } = setup();
    crashInsideIssue(f, core, 's1');
    await settle();
    expect(await f.ledger.lease('s1')).toMatchObject({ state: 'issuing', lockedUntil: T0 + 60_000 });
    expect(await f.ledger.credential('s1')).toMatchObject({ state: 'intent', nextCheckAt: T0 + 60_000 });
    expect(f.driver.live.has('fake_s1_read')).toBe(true);

    expect(await core.taskStarted(f.started('s1', { svid: fakeSvid(FAKE_WORKLOAD, { jti: 'r1' }) }))).toEqual({
      status: 'in-progress',
      taskId: 's1',
    });
    f.clock.advance(60_001);
    expect(await core.taskStarted(f.started('s1', { svid: fakeSvid(OTHER, { jti: 'x' }) }))).toEqual({
      status: 'in-progress',
      taskId: 's1',
    });
    expect(f.driver.revokeCalls).toEqual([]);

    const r = await core.taskStarted(f.started('s1', { svid: fakeSvid(FAKE_WORKLOAD, { jti: 'r2' }) }));
    expect(r.status).toBe('issued');
    expect(f.driver.revokeCalls.map((c) => [c.externalId, c.intentAt])).toEqual([['fake_s1_read', T0]]);
    expect(f.driver.issueCalls).toHaveLength(2);
    expect(await f.ledger.lease('s1')).toMatchObject({ state: 'active', nextCheckAt: T0 + 600_000 });
    expect(f.events.ofType('leaseIssued')).toHaveLength(1);
  });

  it('rolls back instead when the policy no longer allows the stalled lease', async () => {
    const { f, core } = setup();
    crashInsideIssue(f, core, 's2');
    await settle();
    f.clock.advance(60_001);
    f.policy.denyAll('policy-grant-not-allowed', 'read is no longer allowed');
    const r = await core.taskStarted(f.started('s2', { svid: fakeSvid(FAKE_WORKLOAD, { jti: 'r3' }) }));
    expect(r).toMatchObject({ status: 'denied', code: 'policy-grant-not-allowed' });
    expect(f.driver.live.size).toBe(0);
    expect(await f.ledger.lease('s2')).toMatchObject({ state: 'denied', outcome: 'issue-failed', denial: { code: 'issue-failed' } });
    expect((await f.ledger.lease('s2')).denial?.message).toMatch(/issuing resumed after an interruption, but read is no longer allowed/);
    expect(await f.ledger.credential('s2')).toMatchObject({ state: 'verified' });
  });
});
