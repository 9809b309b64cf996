/*
 * Issue 12, attacks 2 and 3 against the core (fakes): ends must be authenticated, tombstones are
 * bound to their ender, and a task token is answered only for a request whose SVID verified.
 */
import { describe, expect, it } from 'vitest';
import { InvalidEventError } from '../../../shared/lease/errors.ts';
import { LeaseLifecycle } from '../../../shared/lease/lifecycle.ts';
import { createReaperState, runReaper } from '../../../shared/lease/reaper.ts';
import { createFakePorts, FAKE_TRUST_DOMAIN, FAKE_WORKLOAD, fakeSvid } from '../../support/fakes.ts';

const OTHER = `${FAKE_TRUST_DOMAIN}/someone/else`;
const ENGINE = `${FAKE_TRUST_DOMAIN}/engines/sfn`;

async function active(taskId: string, overrides: Parameters<ReturnType<typeof createFakePorts>['started']>[1] = {}) {
  const f = createFakePorts();
  const core = new LeaseLifecycle(f.deps());
  expect((await core.taskStarted(f.started(taskId, overrides))).status).toBe('issued');
  f.events.events.length = 0;
  f.clock.advance(1_000);
  return { f, core };
}

/** Nothing moved: the lease is still active, nothing revoked, no Lease Revoked. */
async function expectUntouched(f: ReturnType<typeof createFakePorts>, taskId: string) {
  expect(await f.ledger.lease(taskId)).toMatchObject({ state: 'active' });
  expect(await f.ledger.lease(taskId)).not.toHaveProperty('endedAt');
  expect(f.driver.revokeCalls).toEqual([]);
  expect(f.events.ofType('leaseRevoked')).toEqual([]);
}

describe('Task Ended must be authenticated (nothing changes otherwise)', () => {
  it('an end with no SVID is malformed: Lease Denied invalid-event (request end), thrown, nothing revoked', async () => {
    const { f, core } = await active('n1');
    await expect(core.taskEnded({ taskId: 'n1', outcome: 'succeeded' })).rejects.toBeInstanceOf(InvalidEventError);
    await expectUntouched(f, 'n1');
    expect(f.events.ofType('leaseDenied')).toEqual([
      expect.objectContaining({ taskId: 'n1', request: 'end', reason: expect.objectContaining({ code: 'invalid-event' }) }),
    ]);
    expect(f.log.lines.map((l) => l.message)).toContain('invalid Task Ended rejected');
  });

  it.each([
    ['a garbage SVID', () => `${Buffer.from('{').toString('base64url')}.bm90LWpzb24.sig`, 'svid-invalid'],
    ['an expired SVID', () => fakeSvid(FAKE_WORKLOAD, { deny: 'svid-expired' }), 'svid-expired'],
    ['an untrusted SVID', () => fakeSvid(FAKE_WORKLOAD, { deny: 'svid-untrusted' }), 'svid-untrusted'],
  ])('an end with %s: end-unauthenticated, recorded with its reason, nothing revoked', async (_what, svid, underlying) => {
    const { f, core } = await active('n2');
    const token = svid();
    const r = await core.taskEnded({ taskId: 'n2', outcome: 'succeeded', svid: token });
    expect(r).toMatchObject({ status: 'rejected', code: 'end-unauthenticated' });
    await expectUntouched(f, 'n2');
    const [denied] = f.events.ofType('leaseDenied');
    expect(denied).toMatchObject({ taskId: 'n2', request: 'end', grants: [], reason: { code: 'end-unauthenticated' } });
    expect(denied).not.toHaveProperty('workload');
    expect(denied?.reason.message).toContain(underlying);
    const line = f.log.lines.find((l) => l.message === 'Task Ended rejected');
    expect(line?.attributes).toMatchObject({ taskId: 'n2', code: 'end-unauthenticated' });
    expect(f.observer.count('denied')).toBe(1);
    // The token itself is never echoed.
    for (const text of [f.log.text(), JSON.stringify(f.events.events), JSON.stringify(await f.ledger.getLease('n2'))]) {
      expect(text).not.toContain(token);
    }
  });

  it('an end signed by another workload of the same trust domain: end-not-allowed, nothing revoked', async () => {
    const { f, core } = await active('n3');
    const r = await core.taskEnded(f.ended('n3', 'succeeded', { spiffeId: OTHER }));
    expect(r).toMatchObject({ status: 'rejected', code: 'end-not-allowed' });
    await expectUntouched(f, 'n3');
    expect(f.events.ofType('leaseDenied')).toEqual([
      expect.objectContaining({
        taskId: 'n3',
        workload: OTHER,
        request: 'end',
        reason: expect.objectContaining({ code: 'end-not-allowed' }),
      }),
    ]);
    expect(f.log.lines.find((l) => l.message === 'Task Ended rejected')?.attributes).toMatchObject({ ender: OTHER });
    // The workload's own end still works afterwards.
    expect((await core.taskEnded(f.ended('n3'))).status).toBe('closed');
  });

  it("an engine identity the workload's rule allows (endedBy) ends it; the ender is recorded", async () => {
    const { f, core } = await active('n4');
    f.policy.endedBy[FAKE_WORKLOAD] = [ENGINE];
    expect((await core.taskEnded(f.ended('n4', 'succeeded', { spiffeId: ENGINE }))).status).toBe('closed');
    expect(await f.ledger.lease('n4')).toMatchObject({ state: 'closed', endedBy: ENGINE, outcome: 'succeeded' });
    expect(f.events.ofType('leaseRevoked')).toHaveLength(1);
  });

  it('an end may reuse the start SVID (no single-use claim), as long as it is still valid', async () => {
    const svid = fakeSvid(FAKE_WORKLOAD, { jti: 'start-and-end' });
    const { f, core } = await active('n5', { svid });
    expect((await core.taskEnded({ taskId: 'n5', outcome: 'succeeded', svid })).status).toBe('closed');
    // One start claim, and one end claim in its own namespace: the start's claim did not refuse the end.
    expect(f.ledger.writesOf('claimSvid').map(([key]) => String(key).startsWith('end:'))).toEqual([false, true]);
  });

  it('an end SVID ends one task only: copied onto another task it is refused end-svid-reused, nothing revoked', async () => {
    const { f, core } = await active('r1');
    expect((await core.taskStarted(f.started('r2'))).status).toBe('issued');
    f.events.events.length = 0;
    const end = f.ended('r1');
    expect((await core.taskEnded(end)).status).toBe('closed');
    const revokes = f.driver.revokeCalls.length;
    const r = await core.taskEnded({ ...end, taskId: 'r2' });
    expect(r).toMatchObject({ status: 'rejected', code: 'end-svid-reused' });
    expect(await f.ledger.lease('r2')).toMatchObject({ state: 'active' });
    expect(await f.ledger.lease('r2')).not.toHaveProperty('endedAt');
    expect(f.driver.revokeCalls).toHaveLength(revokes);
    expect(f.events.ofType('leaseDenied')).toEqual([
      expect.objectContaining({ taskId: 'r2', request: 'end', reason: expect.objectContaining({ code: 'end-svid-reused' }) }),
    ]);
    // A redelivery of the same end for its own task is the same claim: a duplicate, not a refusal.
    expect(await core.taskEnded(end)).toEqual({ status: 'duplicate', taskId: 'r1', state: 'closed' });
    // The reason names no token.
    expect(JSON.stringify(f.events.events) + f.log.text()).not.toContain(end.svid);
  });

  it("an engine's end SVID is bound to one task too: the engine mints one per end", async () => {
    const { f, core } = await active('r3');
    expect((await core.taskStarted(f.started('r4'))).status).toBe('issued');
    f.policy.endedBy[FAKE_WORKLOAD] = [ENGINE];
    const end = f.ended('r3', 'succeeded', { spiffeId: ENGINE });
    expect((await core.taskEnded(end)).status).toBe('closed');
    expect(await core.taskEnded({ ...end, taskId: 'r4' })).toMatchObject({ status: 'rejected', code: 'end-svid-reused' });
    expect((await core.taskEnded(f.ended('r4', 'succeeded', { spiffeId: ENGINE }))).status).toBe('closed');
  });

  it('an end for a lease that expired naturally changes nothing new', async () => {
    const { f, core } = await active('n6');
    const lease = await f.ledger.lease('n6');
    f.clock.set((lease.expiresAt as number) + 1_000);
    await runReaper(
      core,
      { ledger: f.ledger, clock: f.clock, log: f.log, targets: f.targets, state: createReaperState() },
      { reconcileEveryRuns: 0, verifyDeadlineMs: 1_000 },
    );
    expect(await f.ledger.lease('n6')).toMatchObject({ state: 'closed', outcome: 'expired' });
    const before = JSON.stringify(await f.ledger.getLease('n6'));
    const events = f.events.events.length;
    const revokes = f.driver.revokeCalls.length;
    expect(await core.taskEnded(f.ended('n6'))).toEqual({ status: 'duplicate', taskId: 'n6', state: 'closed' });
    expect(JSON.stringify(await f.ledger.getLease('n6'))).toBe(before);
    expect(f.events.events).toHaveLength(events);
    expect(f.driver.revokeCalls).toHaveLength(revokes);
  });
});

describe('tombstones are bound to their authenticated ender', () => {
  it('a forged end-before-start by another workload does not block the real start', async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps());
    expect(await core.taskEnded(f.ended('b1', 'cancelled', { spiffeId: OTHER }))).toEqual({ status: 'tombstoned', taskId: 'b1' });
    expect(await f.ledger.lease('b1')).toMatchObject({ tombstone: true, endedBy: OTHER });
    const r = await core.taskStarted(f.started('b1', { taskToken: 'tok-b1' }));
    expect(r.status).toBe('issued');
    const lease = await f.ledger.lease('b1');
    expect(lease).toMatchObject({ state: 'active', workload: FAKE_WORKLOAD });
    for (const field of ['tombstone', 'endedBy', 'endedAt', 'outcome', 'denial', 'closedAt']) expect(lease).not.toHaveProperty(field);
    expect(f.ledger.ttlOf('b1')).toBeUndefined();
    expect(f.events.ofType('leaseDenied')).toEqual([]);
    expect(f.callback.successes.map((s) => s.taskToken)).toEqual(['tok-b1']);
    // And the workload can end it as usual.
    expect((await core.taskEnded(f.ended('b1'))).status).toBe('closed');
  });

  it('a forged end of a refused start (a reopenable denial) by another workload does not block the corrected start', async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps());
    await core.taskStarted(f.started('b2', { svid: fakeSvid(FAKE_WORKLOAD, { deny: 'svid-expired' }) }));
    expect((await core.taskEnded(f.ended('b2', 'cancelled', { spiffeId: OTHER }))).status).toBe('tombstoned');
    expect((await core.taskStarted(f.started('b2'))).status).toBe('issued');
  });

  it("the workload's own end, or its allowed engine's, before the start denies the late start task-already-ended", async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps());
    f.policy.endedBy[FAKE_WORKLOAD] = [ENGINE];
    await core.taskEnded(f.ended('b3', 'failed'));
    await core.taskEnded(f.ended('b4', 'failed', { spiffeId: ENGINE }));
    for (const taskId of ['b3', 'b4']) {
      expect(await core.taskStarted(f.started(taskId, { taskToken: `tok-${taskId}` }))).toMatchObject({
        status: 'denied',
        code: 'task-already-ended',
      });
    }
    expect(f.driver.issueCalls).toEqual([]);
    expect(f.callback.failures.map((x) => [x.taskToken, x.error])).toEqual([
      ['tok-b3', 'task-already-ended'],
      ['tok-b4', 'task-already-ended'],
    ]);
  });

  it('a start overturning a foreign tombstone that is then refused by policy leaves the tombstone and announces the denial', async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps());
    await core.taskEnded(f.ended('b5', 'failed', { spiffeId: OTHER }));
    f.policy.denyAll('policy-no-rule');
    expect(await core.taskStarted(f.started('b5'))).toMatchObject({ status: 'denied', code: 'policy-no-rule' });
    expect(await f.ledger.lease('b5')).toMatchObject({ tombstone: true, endedBy: OTHER });
    f.policy.decide = undefined;
    expect((await core.taskStarted(f.started('b5', { svid: fakeSvid(FAKE_WORKLOAD, { jti: 'b5-again' }) }))).status).toBe('issued');
  });

  it('a slow overturn cannot land on the lease another start already made of the tombstone', async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps());
    await core.taskEnded(f.ended('b6', 'failed', { spiffeId: OTHER }));
    // A concurrent start overturns it first and runs its lease to closed.
    f.ledger.failNext(
      'updateLease',
      async (ledger) => {
        await ledger.updateLease('b6', ['closed'], { state: 'closed', denial: undefined, tombstone: undefined, workload: OTHER });
      },
      (args) => (args[2] as { state?: string }).state === 'issuing',
    );
    const r = await core.taskStarted(f.started('b6'));
    expect(r).toEqual({ status: 'duplicate', taskId: 'b6', state: 'closed' });
    expect(await f.ledger.lease('b6')).toMatchObject({ state: 'closed', workload: OTHER });
    expect(f.driver.issueCalls).toEqual([]);
  });

  it('the broker alone (the reaper) never leaves a tombstone', async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps());
    expect(await core.endLease('b7', 'expired', f.clock.now())).toEqual({ status: 'duplicate', taskId: 'b7', state: 'closed' });
    expect(await f.ledger.getLease('b7')).toBeUndefined();
  });
});

describe('task tokens are answered only for a verified requester of its own lease', () => {
  it("a Task Started with a garbage SVID and a victim's token never answers the token", async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps());
    const r = await core.taskStarted(f.started('k1', { svid: fakeSvid(FAKE_WORKLOAD, { deny: 'svid-invalid' }), taskToken: 'victim-tok' }));
    expect(r).toMatchObject({ status: 'denied', code: 'svid-invalid' });
    expect(await f.ledger.lease('k1')).toMatchObject({ state: 'denied', denial: { code: 'svid-invalid' } });
    expect(f.events.ofType('leaseDenied').map((d) => d.reason.code)).toEqual(['svid-invalid']);
    expect(f.callback.failures).toEqual([]);
    expect(f.callback.successes).toEqual([]);
  });

  it("the attacker's own valid SVID and a victim's token for the victim's task: the token is not answered with the attacker's lease", async () => {
    const { f, core } = await active('k2', { taskToken: 'victim-tok' });
    expect(f.callback.successes.map((s) => s.taskToken)).toEqual(['victim-tok']);
    const r = await core.taskStarted(f.started('k2', { svid: fakeSvid(OTHER), taskToken: 'victim-tok-2' }));
    expect(r).toEqual({ status: 'duplicate', taskId: 'k2', state: 'active' });
    expect(f.callback.successes.map((s) => s.taskToken)).toEqual(['victim-tok']);
    expect(f.callback.failures).toEqual([]);
    expect(f.events.ofType('leaseIssued')).toEqual([]);
  });

  it("a valid SVID with another task's token on a fresh task id: denied task-token-reused, the token never answered again", async () => {
    const { f, core } = await active('k4', { taskToken: 'victim-tok-4' });
    expect(f.callback.successes.map((s) => s.taskToken)).toEqual(['victim-tok-4']);
    const r = await core.taskStarted(f.started('k4-attacker', { svid: fakeSvid(OTHER, { jti: 'attacker-4' }), taskToken: 'victim-tok-4' }));
    expect(r).toMatchObject({ status: 'denied', code: 'task-token-reused' });
    // Neither a success with the attacker's secret names nor a failure on the victim's token.
    expect(f.callback.successes.map((s) => s.taskToken)).toEqual(['victim-tok-4']);
    expect(f.callback.failures).toEqual([]);
    expect(f.events.ofType('leaseIssued')).toEqual([]);
    expect(await f.ledger.lease('k4-attacker')).toMatchObject({ state: 'denied', workload: OTHER });
    expect(await f.ledger.lease('k4-attacker')).not.toHaveProperty('taskToken');
    // The reason names no token, and the ledger keeps only the token's hash as its claim.
    expect(JSON.stringify(f.events.events) + f.log.text()).not.toContain('victim-tok-4');
    expect(JSON.stringify(f.ledger.writesOf('claimSvid'))).not.toContain('victim-tok-4');
    // A redelivery of the victim's own start is still the same claim.
    expect(await core.taskStarted(f.started('k4', { taskToken: 'victim-tok-4' }))).toMatchObject({ status: 'duplicate' });
  });

  it("a late start by another workload over the victim's own tombstone gets its own lease, never the victim's token answered with a denial", async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps());
    await core.taskEnded(f.ended('k3', 'failed'));
    const r = await core.taskStarted(f.started('k3', { svid: fakeSvid(OTHER), taskToken: 'attacker-tok' }));
    expect(r.status).toBe('issued');
    expect(await f.ledger.lease('k3')).toMatchObject({ workload: OTHER });
    expect(f.callback.failures).toEqual([]);
  });
});

describe('initiators are recorded as asserted', () => {
  it('the lease, Lease Issued and the policy request say the initiator is asserted', async () => {
    const { f } = await active('i1', { initiator: 'alice@example.com' });
    expect(await f.ledger.lease('i1')).toMatchObject({ initiator: 'alice@example.com', initiatorProof: 'asserted' });
    expect(f.policy.requests[0]).toMatchObject({ initiator: 'alice@example.com', initiatorProof: 'asserted' });
    const g = createFakePorts();
    await new LeaseLifecycle(g.deps()).taskStarted(g.started('i2', { initiator: 'bob' }));
    expect(g.events.ofType('leaseIssued')[0]).toMatchObject({ initiator: 'bob', initiatorProof: 'asserted' });
    g.policy.denyAll('policy-initiator-unproven', 'unproven');
    await new LeaseLifecycle(g.deps()).taskStarted(g.started('i3', { initiator: 'bob' }));
    expect(g.events.ofType('leaseDenied')[0]).toMatchObject({ initiator: 'bob', initiatorProof: 'asserted' });
  });

  it('no initiator, no proof field', async () => {
    const { f } = await active('i4');
    expect(await f.ledger.lease('i4')).not.toHaveProperty('initiatorProof');
  });
});
