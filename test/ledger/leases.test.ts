import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import type { LeaseRecord } from '../../shared/lease/records.ts';
import { TTL_ATTRIBUTE } from '../../shared/ledger/table.ts';
import { startTestDynalite } from '../support/dynalite.ts';
import type { TestDynalite } from '../support/dynalite.ts';
import { DAY, MINUTE, T0, WORKLOAD_A, fullLease, minimalLease, taskId } from './fixtures.ts';

let dyn: TestDynalite;
let ledger: DynamoDbLedger;
let tableName: string;
const NOW = T0 + 10 * MINUTE;

beforeAll(async () => {
  dyn = await startTestDynalite();
  ({ ledger, tableName } = await dyn.newLedger({ now: () => NOW, retentionDays: 7 }));
});

afterAll(async () => {
  await dyn?.close();
});

async function rawItem(pk: string, sk = 'LEASE'): Promise<Record<string, unknown> | undefined> {
  const items = await dyn.scanItems(tableName);
  return items.find((i) => i.pk === pk && i.sk === sk);
}

describe('createLease / getLease', () => {
  it('round-trips every field exactly, without ledger attributes', async () => {
    const lease = fullLease(taskId());
    expect(await ledger.createLease(lease)).toBe(true);
    const got = await ledger.getLease(lease.taskId);
    expect(got).toStrictEqual({ lease, credentials: [] });
  });

  it('round-trips a minimal lease with the optional fields absent, not undefined', async () => {
    const lease = minimalLease(taskId(), { workload: undefined, initiator: undefined });
    expect(await ledger.createLease(lease)).toBe(true);
    const got = await ledger.getLease(lease.taskId);
    expect(Object.keys(got!.lease).sort()).toEqual(['grants', 'requestedAt', 'state', 'taskId']);
    expect(got!.lease).toStrictEqual({ taskId: lease.taskId, state: 'issuing', grants: lease.grants, requestedAt: T0 });
  });

  it('returns undefined for an unknown task', async () => {
    expect(await ledger.getLease(taskId('nobody'))).toBeUndefined();
  });

  it('refuses a duplicate createLease and keeps the first item', async () => {
    const id = taskId();
    expect(await ledger.createLease(minimalLease(id, { rule: 'first' }))).toBe(true);
    expect(await ledger.createLease(minimalLease(id, { rule: 'second', state: 'denied' }))).toBe(false);
    expect((await ledger.getLease(id))!.lease).toMatchObject({ rule: 'first', state: 'issuing' });
  });

  it('lets exactly one of three concurrent createLease calls win', async () => {
    for (let i = 0; i < 20; i++) {
      const id = taskId();
      const results = await Promise.all([1, 2, 3].map((n) => ledger.createLease(minimalLease(id, { rule: `r${n}` }))));
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results.indexOf(true) + 1;
      expect((await ledger.getLease(id))!.lease.rule).toBe(`r${winner}`);
    }
  });
});

describe('updateLease conditions', () => {
  it('applies a transition from the expected state and refuses one from any other', async () => {
    const id = taskId();
    await ledger.createLease(minimalLease(id, { lockedUntil: T0 + MINUTE }));
    expect(await ledger.updateLease(id, ['active'], { state: 'ending' })).toBe(false);
    expect(await ledger.updateLease(id, ['closed', 'denied'], { state: 'ending' })).toBe(false);
    expect((await ledger.getLease(id))!.lease.state).toBe('issuing');

    expect(
      await ledger.updateLease(id, ['issuing'], { state: 'active', issuedAt: T0 + 1, expiresAt: T0 + 15 * MINUTE, lockedUntil: undefined }),
    ).toBe(true);
    expect(await ledger.updateLease(id, ['issuing'], { state: 'active' })).toBe(false);
    expect(await ledger.updateLease(id, ['issuing', 'active'], { state: 'ending', endedAt: T0 + 2 })).toBe(true);
    expect((await ledger.getLease(id))!.lease).toMatchObject({ state: 'ending', issuedAt: T0 + 1, endedAt: T0 + 2 });
  });

  it('returns false for a task with no lease item, and creates nothing', async () => {
    const id = taskId();
    expect(await ledger.updateLease(id, ['issuing'], { state: 'active' })).toBe(false);
    expect(await ledger.updateLease(id, ['issuing'], { state: 'active', expiresAt: T0 })).toBe(false);
    expect(await ledger.getLease(id)).toBeUndefined();
    expect(await rawItem(`LEASE#${id}`)).toBeUndefined();
  });

  it('lets exactly one of two concurrent transitions from the same state win, every time', async () => {
    for (let i = 0; i < 40; i++) {
      const id = taskId();
      await ledger.createLease(minimalLease(id, { lockedUntil: T0 + MINUTE }));
      const results = await Promise.all(
        [1, 2].map((n) => ledger.updateLease(id, ['issuing'], { state: 'active', issuedAt: T0 + n, expiresAt: T0 + n * MINUTE })),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results.indexOf(true) + 1;
      expect((await ledger.getLease(id))!.lease).toMatchObject({ state: 'active', issuedAt: T0 + winner });
    }
  });

  it('keeps exactly-one-winner for a transition that does not repeat the stored fields', async () => {
    // No expiresAt in the patch: it stays as stored (the write needs no read either way).
    for (let i = 0; i < 25; i++) {
      const id = taskId();
      await ledger.createLease(minimalLease(id, { lockedUntil: T0 + MINUTE, expiresAt: T0 + 15 * MINUTE }));
      const results = await Promise.all(
        [1, 2, 3].map((n) => ledger.updateLease(id, ['issuing'], { state: 'active', issuedAt: T0 + n, lockedUntil: undefined })),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results.indexOf(true) + 1;
      expect((await ledger.getLease(id))!.lease).toMatchObject({ state: 'active', issuedAt: T0 + winner, expiresAt: T0 + 15 * MINUTE });
    }
  });

  it('lets one of two concurrent end deliveries win while the other sees the state gone', async () => {
    for (let i = 0; i < 20; i++) {
      const id = taskId();
      await ledger.createLease(minimalLease(id, { state: 'active', expiresAt: T0 + 15 * MINUTE }));
      const [a, b] = await Promise.all([
        ledger.updateLease(id, ['active'], { state: 'ending', endedAt: T0 + 1, outcome: 'succeeded', lockedUntil: T0 + MINUTE }),
        ledger.updateLease(id, ['active'], { state: 'ending', endedAt: T0 + 2, outcome: 'failed', lockedUntil: T0 + MINUTE }),
      ]);
      expect([a, b].filter(Boolean)).toHaveLength(1);
      expect((await ledger.getLease(id))!.lease.outcome).toBe(a ? 'succeeded' : 'failed');
    }
  });
});

describe('lock takeover (lockedBefore)', () => {
  it('refuses while the lock is held and allows takeover once it has lapsed', async () => {
    const id = taskId();
    await ledger.createLease(minimalLease(id, { lockedUntil: T0 + 30_000 }));
    // Another worker at T0+10s: the lock is still held.
    expect(await ledger.updateLease(id, ['issuing'], { lockedUntil: T0 + 40_000 }, { lockedBefore: T0 + 10_000 })).toBe(false);
    // lockedUntil == now is not "before" now.
    expect(await ledger.updateLease(id, ['issuing'], { lockedUntil: T0 + 60_000 }, { lockedBefore: T0 + 30_000 })).toBe(false);
    expect((await ledger.getLease(id))!.lease.lockedUntil).toBe(T0 + 30_000);
    // At T0+31s it has lapsed.
    expect(await ledger.updateLease(id, ['issuing'], { lockedUntil: T0 + 61_000 }, { lockedBefore: T0 + 31_000 })).toBe(true);
    expect((await ledger.getLease(id))!.lease.lockedUntil).toBe(T0 + 61_000);
  });

  it('allows taking a lease that has no lock at all', async () => {
    const id = taskId();
    await ledger.createLease(minimalLease(id));
    expect(await ledger.updateLease(id, ['issuing'], { lockedUntil: T0 + 5_000 }, { lockedBefore: T0 })).toBe(true);
    expect((await ledger.getLease(id))!.lease.lockedUntil).toBe(T0 + 5_000);
  });

  it('hands a lapsed lock to exactly one of several concurrent takers', async () => {
    for (let i = 0; i < 25; i++) {
      const id = taskId();
      await ledger.createLease(minimalLease(id, { state: 'ending', lockedUntil: T0, endedAt: T0 - 1 }));
      const results = await Promise.all(
        [1, 2, 3, 4].map((n) => ledger.updateLease(id, ['ending'], { lockedUntil: T0 + n * 1_000 }, { lockedBefore: T0 + 1 })),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await ledger.getLease(id))!.lease.lockedUntil).toBe(T0 + (results.indexOf(true) + 1) * 1_000);
    }
  });
});

describe('endRequested condition', () => {
  it('blocks the issuer from activating once an end was requested', async () => {
    const id = taskId();
    await ledger.createLease(minimalLease(id, { lockedUntil: T0 + MINUTE }));
    // Absent: allowed (and a no-op patch proves the condition alone).
    expect(await ledger.updateLease(id, ['issuing'], {}, { notEndRequested: true })).toBe(true);
    // Explicit false: allowed.
    expect(await ledger.updateLease(id, ['issuing'], { endRequested: false })).toBe(true);
    expect(await ledger.updateLease(id, ['issuing'], { lockedUntil: T0 + 2 * MINUTE }, { notEndRequested: true })).toBe(true);
    // Task Ended arrives while issuing.
    expect(await ledger.updateLease(id, ['issuing'], { endRequested: true })).toBe(true);
    expect(
      await ledger.updateLease(id, ['issuing'], { state: 'active', expiresAt: T0 + 15 * MINUTE }, { notEndRequested: true }),
    ).toBe(false);
    expect((await ledger.getLease(id))!.lease).toMatchObject({ state: 'issuing', endRequested: true });
    // Without the condition the issuer can move straight on to ending.
    expect(await ledger.updateLease(id, ['issuing'], { state: 'ending', endedAt: T0 + 1 })).toBe(true);
  });

  it('combines lockedBefore and notEndRequested', async () => {
    const id = taskId();
    await ledger.createLease(minimalLease(id, { lockedUntil: T0, endRequested: true }));
    expect(await ledger.updateLease(id, ['issuing'], { lockedUntil: T0 + MINUTE }, { lockedBefore: T0 + 1, notEndRequested: true })).toBe(
      false,
    );
    expect(await ledger.updateLease(id, ['issuing'], { lockedUntil: T0 + MINUTE }, { lockedBefore: T0 + 1 })).toBe(true);
  });
});

describe('patches', () => {
  it('removes attributes whose patch value is undefined', async () => {
    const id = taskId();
    await ledger.createLease(
      minimalLease(id, { lockedUntil: T0 + MINUTE, taskToken: 'sfn-token-handle', endRequested: false, initiator: 'bob' }),
    );
    expect(await ledger.updateLease(id, ['issuing'], { taskToken: undefined, endRequested: undefined, rule: 'r1' })).toBe(true);
    const lease = (await ledger.getLease(id))!.lease;
    expect(lease).not.toHaveProperty('taskToken');
    expect(lease).not.toHaveProperty('endRequested');
    expect(lease).toMatchObject({ rule: 'r1', initiator: 'bob', lockedUntil: T0 + MINUTE });
    const raw = await rawItem(`LEASE#${id}`);
    expect(raw).not.toHaveProperty('taskToken');
    expect(raw).not.toHaveProperty('endRequested');
  });

  it('stores nested values (grants, workflow, denial) whole', async () => {
    const id = taskId();
    await ledger.createLease(minimalLease(id));
    const patch: Partial<LeaseRecord> = {
      state: 'denied',
      denial: { code: 'policy-grant-not-allowed', message: 'write is not allowed' },
      workflow: { engine: 'argo', runId: 'wf-1' },
      grants: [{ target: 'a', access: 'read' }],
    };
    expect(await ledger.updateLease(id, ['issuing'], patch)).toBe(true);
    expect((await ledger.getLease(id))!.lease).toMatchObject(patch);
  });

  it('keeps the workload and day index keys in step with patched fields', async () => {
    const id = taskId();
    await ledger.createLease(minimalLease(id));
    expect(await rawItem(`LEASE#${id}`)).not.toHaveProperty('workloadPk');
    await ledger.updateLease(id, ['issuing'], { workload: WORKLOAD_A, requestedAt: T0 + DAY });
    expect(await rawItem(`LEASE#${id}`)).toMatchObject({ workloadPk: `WORKLOAD#${WORKLOAD_A}`, dayPk: 'DAY#2030-01-16' });
    await ledger.updateLease(id, ['issuing'], { workload: undefined });
    expect(await rawItem(`LEASE#${id}`)).not.toHaveProperty('workloadPk');
  });

  it('refuses patches that would change the key or write ledger attributes', async () => {
    const id = taskId();
    await ledger.createLease(minimalLease(id));
    await expect(ledger.updateLease(id, ['issuing'], { taskId: 'other' })).rejects.toThrow(TypeError);
    await expect(ledger.updateLease(id, ['issuing'], { ttl: 1 } as Partial<LeaseRecord>)).rejects.toThrow(/ttl/);
    await expect(ledger.updateLease(id, ['issuing'], { openSk: 'x' } as Partial<LeaseRecord>)).rejects.toThrow(/openSk/);
    await expect(ledger.updateLease(id, [], { state: 'active' })).rejects.toThrow(RangeError);
    expect(await ledger.updateLease(id, ['issuing'], { taskId: id, rule: 'same-key-is-fine' })).toBe(true);
  });
});

describe('TTL', () => {
  const retention = Math.ceil((NOW + 7 * DAY) / 1000);

  it('is set when a lease closes and not before', async () => {
    const id = taskId();
    // The due time is the core's (transitions.ts): an open item carries nextCheckAt, a finished one none.
    await ledger.createLease(minimalLease(id, { state: 'active', expiresAt: T0 + 15 * MINUTE, nextCheckAt: T0 + 15 * MINUTE }));
    expect(await rawItem(`LEASE#${id}`)).not.toHaveProperty(TTL_ATTRIBUTE);
    await ledger.updateLease(id, ['active'], { state: 'ending', endedAt: T0, lockedUntil: T0 + MINUTE, nextCheckAt: T0 + MINUTE });
    expect(await rawItem(`LEASE#${id}`)).not.toHaveProperty(TTL_ATTRIBUTE);
    await ledger.updateLease(id, ['ending'], { state: 'closed', closedAt: NOW, lockedUntil: undefined, nextCheckAt: undefined });
    const raw = await rawItem(`LEASE#${id}`);
    expect(raw?.[TTL_ATTRIBUTE]).toBe(retention);
    // Stripped from the record the ledger returns.
    expect((await ledger.getLease(id))!.lease).not.toHaveProperty(TTL_ATTRIBUTE);
  });

  it('is set on a lease created denied (or as a closed tombstone)', async () => {
    const denied = taskId();
    await ledger.createLease(minimalLease(denied, { state: 'denied', denial: { code: 'svid-invalid', message: 'bad signature' } }));
    expect((await rawItem(`LEASE#${denied}`))?.[TTL_ATTRIBUTE]).toBe(retention);
    const tomb = taskId();
    await ledger.createLease(minimalLease(tomb, { state: 'closed', tombstone: true, outcome: 'succeeded' }));
    expect((await rawItem(`LEASE#${tomb}`))?.[TTL_ATTRIBUTE]).toBe(retention);
  });

  it('defaults to 90 days of retention', async () => {
    const { ledger: l90, tableName: t90 } = await dyn.newLedger({ now: () => NOW });
    const id = taskId();
    await l90.createLease(minimalLease(id, { state: 'denied' }));
    const items = await dyn.scanItems(t90);
    expect(items[0]?.[TTL_ATTRIBUTE]).toBe(Math.ceil((NOW + 90 * DAY) / 1000));
  });
});

describe('claimSvid', () => {
  it('accepts a redelivery by the same task and refuses any other task', async () => {
    const key = `jti-hash-${taskId()}`;
    const exp = T0 + 5 * MINUTE + 123;
    expect(await ledger.claimSvid(key, 'task-1', exp)).toBe(true);
    expect(await ledger.claimSvid(key, 'task-1', exp)).toBe(true);
    expect(await ledger.claimSvid(key, 'task-2', exp)).toBe(false);
    const raw = await rawItem(`SVID#${key}`, 'SVID');
    expect(raw).toMatchObject({ taskId: 'task-1', expiresAt: exp, [TTL_ATTRIBUTE]: Math.ceil(exp / 1000) });
  });

  it('gives a contested replay key to exactly one task', async () => {
    for (let i = 0; i < 20; i++) {
      const key = `jti-hash-${taskId()}`;
      const results = await Promise.all(['a', 'b', 'c'].map((t) => ledger.claimSvid(key, t, T0)));
      expect(results.filter(Boolean)).toHaveLength(1);
    }
  });

  it('does not show replay items as leases', async () => {
    const key = `jti-hash-${taskId()}`;
    await ledger.claimSvid(key, 'task-x', T0);
    const all = await ledger.listLeases({});
    expect(all.some(({ lease }) => lease.taskId === 'task-x' || String(lease.taskId).startsWith('SVID'))).toBe(false);
  });
});
