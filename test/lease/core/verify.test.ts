import { describe, expect, it } from 'vitest';
import { LeaseLifecycle } from '../../../shared/lease/lifecycle.ts';
import type { CredentialRecord } from '../../../shared/lease/records.ts';
import { createCore } from '../../../shared/lease/context.ts';
import { retryDelayMs } from '../../../shared/lease/verify.ts';
import { createFakePorts, FAKE_T0 as T0 } from '../../support/fakes.ts';

const OPTS = { lockMs: 60_000, verifyDeadlineMs: 1_000, verifyInitialDelayMs: 20, verifyMaxDelayMs: 200, retryMaxDelayMs: 300_000 };

async function issued(taskId = 'v1') {
  const f = createFakePorts();
  const core = new LeaseLifecycle(f.deps(OPTS));
  expect((await core.taskStarted(f.started(taskId))).status).toBe('issued');
  f.events.events.length = 0;
  return { f, core, cred: await f.ledger.credential(taskId) };
}

describe('revokeAndVerify', () => {
  it('retries verification with doubling backoff until the target rejects, then deletes the secret and records the debt', async () => {
    const { f, core, cred } = await issued();
    f.driver.verifyOutcomes.push('still-valid', 'inconclusive', new Error('timeout'), 'rejected');
    const done = await core.revokeAndVerify(cred, T0);
    expect(f.clock.sleeps).toEqual([20, 40, 80]);
    expect(done).toMatchObject({ state: 'verified', verifyAttempts: 4, verifiedAt: T0 + 140, trustDebtMs: 140 });
    expect(done.avoidedDebtMs).toBe((cred.naturalExpiry as number) - (T0 + 140));
    const stored = await f.ledger.credential('v1');
    expect(stored).toMatchObject({ state: 'verified', verifyAttempts: 4, revokedAt: T0, trustDebtMs: 140 });
    expect(stored).not.toHaveProperty('lastError');
    expect(stored).not.toHaveProperty('nextCheckAt');
    expect(f.ledger.openSkOf('v1', 'orders-db.read')).toBeUndefined();
    expect(await f.secrets.exists(cred.secretName as string)).toBe(false);
    expect(f.observer.count('stillValid')).toBe(1);
    expect(f.observer.count('verified')).toBe(1);
    // The old secret was offered to the driver to prove rejection with.
    expect(f.driver.verifyCalls[0]?.secret).toEqual(f.secrets.puts[0]?.value);
    expect(f.reverify.scheduled).toEqual([]);
  });

  it('still valid past the deadline: recorded still-valid, Revocation Failed with the open debt, re-verify scheduled after the backoff', async () => {
    const { f, core, cred } = await issued();
    for (let i = 0; i < 20; i++) f.driver.verifyOutcomes.push('still-valid');
    const done = await core.revokeAndVerify(cred, T0 - 500);
    expect(done.state).toBe('still-valid');
    const attempts = done.verifyAttempts;
    expect(f.clock.now() - T0).toBeLessThanOrEqual(OPTS.verifyDeadlineMs);
    const delay = retryDelayMs(createCore(f.deps(OPTS)), attempts);
    expect(delay).toBeGreaterThanOrEqual(1_000);
    expect(done.nextCheckAt).toBe(f.clock.now() + delay);
    expect(await f.ledger.credential('v1')).toMatchObject({
      state: 'still-valid',
      verifyAttempts: attempts,
      nextCheckAt: done.nextCheckAt,
    });
    expect(f.ledger.openSkOf('v1', 'orders-db.read')).toMatch(new RegExp(`^0*${done.nextCheckAt}#v1#orders-db.read$`));
    expect(f.events.ofType('revocationFailed')).toEqual([
      expect.objectContaining({
        state: 'still-valid',
        verifyAttempts: attempts,
        openDebtMs: f.clock.now() - (T0 - 500),
        lastError: `verification still-valid after ${attempts} attempts`,
      }),
    ]);
    expect(f.reverify.scheduled).toEqual([{ taskId: 'v1', grant: cred.grant, delayMs: delay }]);
    expect(await f.secrets.exists(cred.secretName as string)).toBe(true); // kept: the next attempt proves with it
    expect(f.observer.count('revocationFailed')).toBe(1);
  });

  it('inconclusive past the deadline stays revoking; a later call from still-valid proves it', async () => {
    const { f, core, cred } = await issued();
    for (let i = 0; i < 20; i++) f.driver.verifyOutcomes.push('inconclusive');
    expect((await core.revokeAndVerify(cred, T0)).state).toBe('revoking');
    f.driver.verifyOutcomes.length = 0;
    f.clock.advance(5_000);
    const again = await core.revokeAndVerify(await f.ledger.credential('v1'), T0);
    expect(again).toMatchObject({ state: 'verified', trustDebtMs: f.clock.now() - T0 });
    expect(f.driver.revokeCalls).toHaveLength(2); // revoke is idempotent and runs again
  });

  it('a failed revoke counts as an attempt and backs off; no driver at all is recorded the same way', async () => {
    const { f, core, cred } = await issued();
    f.driver.revokeOutcomes.push(new Error('connection refused'));
    const done = await core.revokeAndVerify(cred, T0);
    expect(done).toMatchObject({ state: 'revoking', verifyAttempts: 1, lastError: 'Error: connection refused', nextCheckAt: T0 + 1_000 });
    expect(f.driver.verifyCalls).toEqual([]);
    expect(f.reverify.scheduled.map((s) => s.delayMs)).toEqual([1_000]);

    const orphan: CredentialRecord = { ...cred, target: 'gone-db' };
    const none = await core.revokeAndVerify(orphan, T0);
    expect(none).toMatchObject({ state: 'revoking', lastError: 'no driver configured for target gone-db' });
  });

  it('a secret that still exists after delete is not proof', async () => {
    const { f, core, cred } = await issued();
    f.secrets.keepOnDelete = true;
    const done = await core.revokeAndVerify(cred, T0);
    expect(done).toMatchObject({ state: 'revoking', lastError: `secret ${cred.secretName} still exists after delete` });
    expect(f.events.ofType('revocationFailed')).toHaveLength(1);
  });

  it('an intent (crashed issue) is revoked through its derived secret name and deterministic external id', async () => {
    const { f, core, cred } = await issued();
    const intent: CredentialRecord = { ...cred, state: 'intent', secretName: undefined };
    const done = await core.revokeAndVerify(intent, T0);
    expect(done.state).toBe('verified');
    expect(f.driver.revokeCalls.at(-1)).toMatchObject({ externalId: 'fake_v1_read', intentAt: T0 });
    expect(f.secrets.deletes).toEqual(['tasklease/v1/orders-db.read']);
  });
});

describe('retry backoff', () => {
  it('doubles from the initial delay, at least a second, capped', () => {
    const core = createCore(createFakePorts().deps(OPTS));
    expect([0, 1, 5, 6, 10, 14, 40].map((n) => retryDelayMs(core, n))).toEqual([1_000, 1_000, 1_000, 1_280, 20_480, 300_000, 300_000]);
    const small = createCore(createFakePorts().deps({ ...OPTS, retryMaxDelayMs: 500 }));
    expect(retryDelayMs(small, 3)).toBe(500);
  });
});
