/**
 * Break-glass (issue 12) through the broker, against in-memory fakes: revoke a task, lock a
 * workload and revoke its live leases, deny its new starts `workload-locked`, unlock. The same
 * operations run in the local runtime (test/local/operator.test.ts) and the Lambda function
 * (test/functions/operator.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { createBroker } from '../../shared/broker/create.ts';
import { OperatorRequestError } from '../../shared/broker/operator.ts';
import { MemoryWorkloadLocks } from '../../shared/ledger/memory-locks.ts';
import { FAKE_TRUST_DOMAIN, FAKE_WORKLOAD, createFakePorts } from '../support/fakes.ts';

const CONFIG = {
  settings: { verifyDeadlineSeconds: 5, reaperIntervalSeconds: 60, openDebtObjectiveSeconds: 300 },
  rules: [{ maxLeaseSeconds: 3_600 }],
};
const OTHER = `${FAKE_TRUST_DOMAIN}/billing/other`;

function setup() {
  const f = createFakePorts();
  const locks = new MemoryWorkloadLocks();
  const broker = createBroker({ ...f, locks }, { config: CONFIG });
  return { f, locks, broker };
}

describe('break-glass revoke of one task', () => {
  it('revokes and proves at once, recording who and why; the lease is closed, Lease Revoked says operator', async () => {
    const { f, broker } = setup();
    expect((await broker.taskStarted(f.started('bg-1'))).status).toBe('issued');
    const r = await broker.operator({ action: 'revoke-task', taskId: 'bg-1', reason: 'leaked in a CI log', by: 'alice' });
    expect(r).toMatchObject({ action: 'revoke-task', found: true, revoked: [{ taskId: 'bg-1', status: 'closed' }] });
    expect(r.action === 'revoke-task' && r.revoked[0]?.credentials.every((c) => c.verified)).toBe(true);
    expect(f.driver.live.size).toBe(0);
    expect(await f.ledger.lease('bg-1')).toMatchObject({
      state: 'closed',
      outcome: 'cancelled',
      endedBy: 'operator:alice',
      endReason: 'leaked in a CI log',
    });
    expect(f.events.ofType('leaseRevoked')).toEqual([expect.objectContaining({ taskId: 'bg-1', outcome: 'cancelled' })]);
    expect(f.log.lines.find((l) => l.message === 'break-glass revoke of a task')?.attributes).toMatchObject({ by: 'alice' });
  });

  it('an unknown task: nothing to revoke, and no tombstone is left to block it', async () => {
    const { f, broker } = setup();
    expect(await broker.operator({ action: 'revoke-task', taskId: 'nope', reason: 'r', by: 'alice' })).toMatchObject({
      found: false,
      revoked: [],
    });
    expect(await f.ledger.getLease('nope')).toBeUndefined();
    expect((await broker.taskStarted(f.started('nope'))).status).toBe('issued');
  });

  it('an operator end needs no endedBy rule, but a forged end by another workload still cannot end a task', async () => {
    const { f, broker } = setup();
    await broker.taskStarted(f.started('bg-2'));
    expect(await broker.taskEnded(f.ended('bg-2', 'succeeded', { spiffeId: OTHER }))).toMatchObject({ status: 'rejected' });
    expect((await broker.operator({ action: 'revoke-task', taskId: 'bg-2', reason: 'r', by: 'bob' })).action).toBe('revoke-task');
    expect(await f.ledger.lease('bg-2')).toMatchObject({ state: 'closed', endedBy: 'operator:bob' });
  });
});

describe('break-glass lock of a workload', () => {
  it('locks, revokes every live lease, denies new starts workload-locked until unlocked', async () => {
    const { f, locks, broker } = setup();
    for (const id of ['w-1', 'w-2', 'w-3']) expect((await broker.taskStarted(f.started(id))).status).toBe('issued');
    await broker.taskEnded(f.ended('w-3'));
    const revokesBefore = f.driver.revokeCalls.length;

    const r = await broker.operator({ action: 'revoke-workload', workload: FAKE_WORKLOAD, reason: 'workload compromised', by: 'carol' });
    expect(r).toMatchObject({ action: 'revoke-workload', locked: true });
    expect(r.action === 'revoke-workload' && r.revoked.map((t) => [t.taskId, t.status]).sort()).toEqual([
      ['w-1', 'closed'],
      ['w-2', 'closed'],
    ]);
    // w-3 was already closed: not revoked twice.
    expect(f.driver.revokeCalls.length - revokesBefore).toBe(2);
    expect(f.driver.live.size).toBe(0);
    expect(await locks.get(FAKE_WORKLOAD)).toMatchObject({ by: 'carol', reason: 'workload compromised' });

    const denied = await broker.taskStarted(f.started('w-4', { taskToken: 'tok-w4' }));
    expect(denied).toMatchObject({ status: 'denied', code: 'workload-locked' });
    expect(denied.status === 'denied' && denied.message).toContain('carol');
    expect(f.events.ofType('leaseDenied')).toEqual([
      expect.objectContaining({ taskId: 'w-4', reason: expect.objectContaining({ code: 'workload-locked' }) }),
    ]);
    expect(f.driver.live.size).toBe(0);

    const u = await broker.operator({ action: 'unlock', workload: FAKE_WORKLOAD, reason: 'rotated, all clear', by: 'dave' });
    expect(u).toMatchObject({ action: 'unlock', unlocked: true, lock: { by: 'carol', reason: 'workload compromised' } });
    expect(locks.item(FAKE_WORKLOAD)).toMatchObject({ unlockedBy: 'dave', unlockReason: 'rotated, all clear' });
    // The same task id may start now: a workload-locked denial does not burn it.
    expect((await broker.taskStarted(f.started('w-4'))).status).toBe('issued');
    expect(await broker.operator({ action: 'unlock', workload: FAKE_WORKLOAD, reason: 'again', by: 'dave' })).toMatchObject({
      unlocked: false,
    });
  });

  it('a lock binds only its workload', async () => {
    const { f, broker } = setup();
    await broker.operator({ action: 'revoke-workload', workload: OTHER, reason: 'r', by: 'carol' });
    expect((await broker.taskStarted(f.started('free-1'))).status).toBe('issued');
  });
});

describe('operator requests are validated', () => {
  it.each([
    [{ action: 'revoke-task', taskId: 't', by: 'a' }, 'reason'],
    [{ action: 'revoke-task', taskId: 't', reason: '   ', by: 'a' }, 'reason'],
    [{ action: 'revoke-workload', workload: 'not-a-spiffe-id', reason: 'r', by: 'a' }, 'workload'],
    [{ action: 'drop-table', reason: 'r', by: 'a' }, 'action'],
    [{ action: 'unlock', workload: FAKE_WORKLOAD, reason: 'r', by: 'a', extra: 1 }, 'extra'],
  ])('%j is refused naming %s', async (request, field) => {
    const { broker } = setup();
    const err = await broker.operator(request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperatorRequestError);
    expect((err as Error).message).toContain(field);
  });

  it('locking without a lock store says so', async () => {
    const f = createFakePorts();
    const broker = createBroker(f, { config: CONFIG });
    await expect(broker.operator({ action: 'revoke-workload', workload: FAKE_WORKLOAD, reason: 'r', by: 'a' })).rejects.toThrow(
      /no workload locks/,
    );
  });
});
