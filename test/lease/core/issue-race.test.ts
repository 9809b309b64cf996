import { describe, expect, it } from 'vitest';
import { grantKey } from '../../../shared/events/schemas.ts';
import type { Grant } from '../../../shared/events/schemas.ts';
import { LeaseLifecycle } from '../../../shared/lease/lifecycle.ts';
import type { CredentialState } from '../../../shared/lease/records.ts';
import { newLease } from '../../../shared/lease/transitions.ts';
import type { FakeDriver, FakePorts } from '../../support/fakes.ts';
import { createFakePorts, FAKE_T0 as T0, FAKE_TARGET, FAKE_WORKLOAD, targetDown } from '../../support/fakes.ts';

/*
 * An issuer that outlived its lock (chaos seed 90211 under load): a rollback or end had moved the
 * lease's credentials on while a redelivered Task Started took the `issuing` lease over.
 */

const ORDERS: Grant = { target: FAKE_TARGET, access: 'read' };
const BILLING: Grant = { target: 'billing-db', access: 'read' };

function setup() {
  const f = createFakePorts({ targets: ['billing-db'] });
  return { f, core: new LeaseLifecycle(f.deps()), billing: f.targets.get('billing-db') as FakeDriver };
}

/** An `issuing` lease whose lock lapsed, with one credential per grant in the given state. */
async function stalledLease(f: FakePorts, taskId: string, creds: Array<[Grant, CredentialState]>): Promise<void> {
  await f.ledger.createLease(
    newLease('open', {
      taskId,
      workload: FAKE_WORKLOAD,
      rule: 'fake-rule',
      grants: creds.map(([g]) => g),
      requestedAt: T0,
      expiresAt: T0 + 600_000,
      lockedUntil: T0 + 60_000,
    }),
  );
  for (const [grant, state] of creds) {
    const driver = f.targets.get(grant.target) as FakeDriver;
    await f.ledger.createCredential({
      taskId,
      grant,
      target: grant.target,
      kind: driver.kind,
      externalId: driver.externalId(taskId, grant),
      state: 'intent',
      workload: FAKE_WORKLOAD,
      intentAt: T0,
      verifyAttempts: 0,
      nextCheckAt: T0 + 60_000,
    });
    if (state !== 'intent') {
      await f.ledger.updateCredential(
        taskId,
        grantKey(grant),
        ['intent'],
        state === 'verified' ? { state, verifiedAt: T0, nextCheckAt: undefined } : { state, nextCheckAt: T0 + 60_000 },
      );
    }
  }
  f.clock.advance(60_001);
}

describe('never re-issuing over a credential someone else is ending', () => {
  for (const state of ['revoking', 'still-valid', 'verified'] as const) {
    it(`a prior credential already ${state}: nothing reaches the target, the lease is left to whoever ends it, nothing announced`, async () => {
      const { f, core, billing } = setup();
      // The other grant is still a bare intent: it must not be issued either (all or none).
      await stalledLease(f, 'p1', [
        [ORDERS, state],
        [BILLING, 'intent'],
      ]);
      const r = await core.taskStarted(f.started('p1', { grants: [ORDERS, BILLING] }));
      expect(r).toEqual({ status: 'in-progress', taskId: 'p1' });
      expect(f.driver.issueCalls).toEqual([]);
      expect(billing.issueCalls).toEqual([]);
      expect(f.driver.live.size + billing.live.size).toBe(0);
      expect(f.secrets.puts).toEqual([]);
      expect(f.events.types()).toEqual([]);
      expect(await f.ledger.credential('p1', 'orders-db.read')).toMatchObject({ state });
      // Still issuing: the rollback in progress (or, if it died, the reaper after our lock) finishes it.
      expect(await f.ledger.lease('p1')).toMatchObject({ state: 'issuing' });
    });
  }

  it('a prior intent is still revoked and re-issued as before', async () => {
    const { f, core } = setup();
    await stalledLease(f, 'p2', [[ORDERS, 'intent']]);
    const r = await core.taskStarted(f.started('p2'));
    expect(r.status).toBe('issued');
    expect(f.driver.revokeCalls.map((c) => c.externalId)).toEqual(['fake_p2_read']);
    expect(f.driver.live).toEqual(new Set(['fake_p2_read']));
    expect(await f.ledger.credential('p2')).toMatchObject({ state: 'issued' });
  });
});

describe('the final issue write losing its race', () => {
  it('the credential was proven revoked meanwhile: what was just created is revoked and its secret deleted, nothing announced', async () => {
    const { f, core } = setup();
    // The reaper's rollback proves the intent revoked between our target call and our last write.
    f.ledger.failNext(
      'updateCredential',
      async (ledger) => {
        await ledger.updateCredential('w1', 'orders-db.read', ['intent'], { state: 'revoking', nextCheckAt: T0 + 60_000 });
        await ledger.updateCredential('w1', 'orders-db.read', ['revoking'], { state: 'verified', verifiedAt: T0, nextCheckAt: undefined });
      },
      (args) => (args[3] as { state?: string }).state === 'issued',
    );
    const r = await core.taskStarted(f.started('w1', { taskToken: 'tok' }));
    expect(r).toEqual({ status: 'in-progress', taskId: 'w1' });
    expect(f.driver.issueCalls).toHaveLength(1);
    expect(f.driver.revokeCalls.map((c) => c.externalId)).toEqual(['fake_w1_read']);
    expect(f.driver.live.size).toBe(0);
    expect(await f.secrets.exists('tasklease/w1/orders-db.read')).toBe(false);
    expect(f.secrets.size).toBe(0);
    expect(f.events.types()).toEqual([]);
    expect(f.callback.successes).toEqual([]);
    expect(await f.ledger.credential('w1')).toMatchObject({ state: 'verified' });
    expect(f.log.text()).not.toMatch(/pw-/);
  });

  it('with two grants, the one that did issue is revoked and proven too: nothing left on either target', async () => {
    const { f, core, billing } = setup();
    f.ledger.failNext(
      'updateCredential',
      async (ledger) => {
        await ledger.updateCredential('w2', 'billing-db.read', ['intent'], { state: 'revoking', nextCheckAt: T0 + 60_000 });
      },
      (args) => args[1] === 'billing-db.read' && (args[3] as { state?: string }).state === 'issued',
    );
    const r = await core.taskStarted(f.started('w2', { grants: [ORDERS, BILLING] }));
    expect(r).toEqual({ status: 'in-progress', taskId: 'w2' });
    expect(f.driver.live.size + billing.live.size).toBe(0);
    expect(f.secrets.size).toBe(0);
    expect(await f.ledger.credential('w2', 'orders-db.read')).toMatchObject({ state: 'verified' });
    expect(f.events.types()).toEqual([]);
  });

  it('a grant that failed on its target meanwhile has its intent revoked too, not rolled back over the other worker', async () => {
    const { f, core, billing } = setup();
    billing.issueOutcomes.push(targetDown());
    f.ledger.failNext(
      'updateCredential',
      async (ledger) => {
        await ledger.updateCredential('w4', 'orders-db.read', ['intent'], { state: 'revoking', nextCheckAt: T0 + 60_000 });
      },
      (args) => args[1] === 'orders-db.read' && (args[3] as { state?: string }).state === 'issued',
    );
    const r = await core.taskStarted(f.started('w4', { grants: [ORDERS, BILLING] }));
    expect(r).toEqual({ status: 'in-progress', taskId: 'w4' });
    expect(f.driver.live.size + billing.live.size).toBe(0);
    expect(await f.ledger.credential('w4', 'billing-db.read')).toMatchObject({ state: 'verified' });
    // The other worker's credential stays theirs to prove; the lease stays theirs to finish.
    expect(await f.ledger.credential('w4', 'orders-db.read')).toMatchObject({ state: 'revoking' });
    expect(await f.ledger.lease('w4')).toMatchObject({ state: 'issuing' });
    expect(f.events.types()).toEqual([]);
  });

  it('a lost response to our own applied issue write is recognised: the credential is kept and the lease issued', async () => {
    const { f, core } = setup();
    f.ledger.failNext('updateCredential', 'lost-response', (args) => (args[3] as { state?: string }).state === 'issued');
    const r = await core.taskStarted(f.started('w3'));
    expect(r.status).toBe('issued');
    expect(f.driver.revokeCalls).toEqual([]);
    expect(f.driver.live).toEqual(new Set(['fake_w3_read']));
    expect(await f.secrets.exists('tasklease/w3/orders-db.read')).toBe(true);
    expect(f.events.types()).toEqual(['Lease Issued']);
  });
});
