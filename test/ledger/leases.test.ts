import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import { TTL_ATTRIBUTE } from '../../shared/ledger/table.ts';
import { startTestDynalite } from '../support/dynalite.ts';
import type { TestDynalite } from '../support/dynalite.ts';
import { DAY, MINUTE, T0, WORKLOAD_A, minimalLease, taskId } from './fixtures.ts';

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

describe('updateLease conditions', () => {
  it('returns false for a task with no lease item, and creates nothing', async () => {
    const id = taskId();
    expect(await ledger.updateLease(id, ['issuing'], { state: 'active' })).toBe(false);
    expect(await ledger.updateLease(id, ['issuing'], { state: 'active', expiresAt: T0 })).toBe(false);
    expect(await ledger.getLease(id)).toBeUndefined();
    expect(await rawItem(`LEASE#${id}`)).toBeUndefined();
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

  it('keeps the workload and day index keys in step with patched fields', async () => {
    const id = taskId();
    await ledger.createLease(minimalLease(id));
    expect(await rawItem(`LEASE#${id}`)).not.toHaveProperty('workloadPk');
    await ledger.updateLease(id, ['issuing'], { workload: WORKLOAD_A, requestedAt: T0 + DAY });
    expect(await rawItem(`LEASE#${id}`)).toMatchObject({ workloadPk: `WORKLOAD#${WORKLOAD_A}`, dayPk: 'DAY#2030-01-16' });
    await ledger.updateLease(id, ['issuing'], { workload: undefined });
    expect(await rawItem(`LEASE#${id}`)).not.toHaveProperty('workloadPk');
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
});
