import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { GlobalSecondaryIndexDescription } from '@aws-sdk/client-dynamodb';
import { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import { GSI_NAMES, createTableInput, openSk } from '../../shared/ledger/table.ts';
import type { CredentialRecord, LeaseRecord } from '../../shared/lease/records.ts';
import type { OpenItemsPage } from '../../shared/lease/ports.ts';
import { startTestDynalite } from '../support/dynalite.ts';
import type { TestDynalite } from '../support/dynalite.ts';
import { DAY, MINUTE, T0, WORKLOAD_A, WORKLOAD_B, minimalCredential, minimalLease, taskId } from './fixtures.ts';

let dyn: TestDynalite;

beforeAll(async () => {
  dyn = await startTestDynalite();
});

afterAll(async () => {
  await dyn?.close();
});

const ids = (page: Pick<OpenItemsPage, 'leases' | 'credentials'>): string[] => [
  ...page.leases.map((l) => `L:${l.taskId}`),
  ...page.credentials.map((c) => `C:${c.taskId}/${c.grant.target}.${c.grant.access}`),
];

async function allOpen(ledger: DynamoDbLedger, dueBefore: number, limit: number): Promise<{ pages: OpenItemsPage[]; ids: string[] }> {
  const pages: OpenItemsPage[] = [];
  let cursor: string | undefined;
  do {
    const page = await ledger.listOpen(dueBefore, limit, cursor);
    pages.push(page);
    cursor = page.cursor;
  } while (cursor);
  return { pages, ids: pages.flatMap(ids) };
}

describe('table definition', () => {
  it('creates the keys and indexes the ledger relies on', async () => {
    const tableName = await dyn.newTable();
    const { Table } = await dyn.client.send(new DescribeTableCommand({ TableName: tableName }));
    expect(Table?.KeySchema).toEqual([
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ]);
    const gsis: Record<string, GlobalSecondaryIndexDescription> = Object.fromEntries((Table?.GlobalSecondaryIndexes ?? []).map((g) => [g.IndexName, g]));
    expect(Object.keys(gsis).sort()).toEqual([GSI_NAMES.byTime, GSI_NAMES.byWorkload, GSI_NAMES.open].sort());
    expect(gsis.open?.KeySchema?.map((k) => k.AttributeName)).toEqual(['openPk', 'openSk']);
    expect(gsis.open?.Projection?.ProjectionType).toBe('ALL');
    expect(gsis.byWorkload?.KeySchema?.map((k) => k.AttributeName)).toEqual(['workloadPk', 'requestedAt']);
    expect(gsis.byTime?.KeySchema?.map((k) => k.AttributeName)).toEqual(['dayPk', 'requestedAt']);
    const input = createTableInput('x');
    expect(input.BillingMode).toBe('PAY_PER_REQUEST');
    const names = input.AttributeDefinitions!.map((a) => a.AttributeName);
    expect(new Set(names).size).toBe(names.length);
  });

  it('orders open sort keys by due time, then task, then grant', () => {
    expect(openSk(T0, 'b')).toBe(`00${T0}#b`);
    expect(openSk(5, 'a', 'db.read')).toBe('000000000000005#a#db.read');
    expect([openSk(10, 'z'), openSk(9, 'a'), openSk(T0, 'a')].sort()).toEqual([openSk(9, 'a'), openSk(10, 'z'), openSk(T0, 'a')]);
  });
});

describe('open index', () => {
  it('holds unfinished leases and credentials, due at the nextCheckAt the core wrote, and drops them when finished', async () => {
    const { ledger } = await dyn.newLedger();
    const issuing = taskId('issuing');
    const active = taskId('active');
    // Due times as the core computes them (transitions.ts): issuing at its lock, active at expiry.
    await ledger.createLease(minimalLease(issuing, { lockedUntil: T0 + 1 * MINUTE, nextCheckAt: T0 + 1 * MINUTE }));
    await ledger.createLease(minimalLease(active, { state: 'active', expiresAt: T0 + 3 * MINUTE, nextCheckAt: T0 + 3 * MINUTE }));
    await ledger.createLease(minimalLease(taskId('denied'), { state: 'denied' }));
    await ledger.createCredential(minimalCredential(issuing, { intentAt: T0 + 2 * MINUTE, nextCheckAt: T0 + 2 * MINUTE }));
    await ledger.createCredential(
      minimalCredential(active, { state: 'verified', grant: { target: 'orders-db', access: 'write' }, verifiedAt: T0 }),
    );

    expect(ids(await ledger.listOpen(T0 + 10 * MINUTE, 100))).toEqual([
      `L:${issuing}`,
      `L:${active}`,
      `C:${issuing}/orders-db.read`,
    ]);
    // dueBefore is inclusive and excludes anything later.
    expect(ids(await ledger.listOpen(T0 + 1 * MINUTE - 1, 100))).toEqual([]);
    expect(ids(await ledger.listOpen(T0 + 1 * MINUTE, 100))).toEqual([`L:${issuing}`]);
    expect(ids(await ledger.listOpen(T0 + 2 * MINUTE, 100))).toEqual([`L:${issuing}`, `C:${issuing}/orders-db.read`]);

    // Returned records carry no index attributes.
    const page = await ledger.listOpen(T0 + 10 * MINUTE, 100);
    for (const record of [...page.leases, ...page.credentials]) {
      for (const internal of ['pk', 'sk', 'openPk', 'openSk', 'workloadPk', 'dayPk', 'ttl']) expect(record).not.toHaveProperty(internal);
    }
    expect(page.leases[0]).toStrictEqual(minimalLease(issuing, { lockedUntil: T0 + 1 * MINUTE, nextCheckAt: T0 + 1 * MINUTE }));

    // The credential moves to its next check time, then leaves once verified.
    await ledger.updateCredential(issuing, 'orders-db.read', ['intent'], { state: 'issued', nextCheckAt: T0 + 20 * MINUTE });
    expect(ids(await ledger.listOpen(T0 + 10 * MINUTE, 100))).not.toContain(`C:${issuing}/orders-db.read`);
    expect(ids(await ledger.listOpen(T0 + 20 * MINUTE, 100))).toContain(`C:${issuing}/orders-db.read`);
    await ledger.updateCredential(issuing, 'orders-db.read', ['issued'], { state: 'verified', nextCheckAt: undefined });
    expect(ids(await ledger.listOpen(Number.MAX_SAFE_INTEGER, 100))).not.toContain(`C:${issuing}/orders-db.read`);

    // The lease follows its state: issuing (lock) → active (expiry) → ending (lock) → closed (gone).
    await ledger.updateLease(issuing, ['issuing'], { state: 'active', expiresAt: T0 + 30 * MINUTE, lockedUntil: undefined, nextCheckAt: T0 + 30 * MINUTE });
    expect(ids(await ledger.listOpen(T0 + 29 * MINUTE, 100))).not.toContain(`L:${issuing}`);
    expect(ids(await ledger.listOpen(T0 + 30 * MINUTE, 100))).toContain(`L:${issuing}`);
    await ledger.updateLease(issuing, ['active'], { state: 'ending', lockedUntil: T0 + 31 * MINUTE, nextCheckAt: T0 + 31 * MINUTE });
    expect(ids(await ledger.listOpen(T0 + 30 * MINUTE, 100))).not.toContain(`L:${issuing}`);
    expect(ids(await ledger.listOpen(T0 + 31 * MINUTE, 100))).toContain(`L:${issuing}`);
    await ledger.updateLease(issuing, ['ending'], { state: 'closed', lockedUntil: undefined, nextCheckAt: undefined });
    expect(ids(await ledger.listOpen(Number.MAX_SAFE_INTEGER, 100))).toEqual([`L:${active}`]);
  });

  it('moves an item only with the due time it is given, and writes without reading first', async () => {
    const tableName = await dyn.newTable();
    // Count the requests the adapter sends: every update is exactly one conditional UpdateItem.
    const doc = DynamoDBDocumentClient.from(dyn.client);
    const sent: string[] = [];
    const send = doc.send.bind(doc) as (command: unknown) => Promise<unknown>;
    (doc as unknown as { send: (command: unknown) => Promise<unknown> }).send = (command) => {
      sent.push((command as { constructor: { name: string } }).constructor.name);
      return send(command);
    };
    const ledger = new DynamoDbLedger(doc, tableName);
    const id = taskId();
    await ledger.createLease(minimalLease(id, { lockedUntil: T0, expiresAt: T0 + 15 * MINUTE, nextCheckAt: T0 }));
    sent.length = 0;
    // A state change that does not say where the item is due keeps its place…
    await ledger.updateLease(id, ['issuing'], { state: 'active', issuedAt: T0, lockedUntil: undefined });
    expect(ids(await ledger.listOpen(T0, 10))).toEqual([`L:${id}`]);
    // …and the one that does moves it there.
    await ledger.updateLease(id, ['active'], { expiresAt: T0 + 15 * MINUTE, nextCheckAt: T0 + 15 * MINUTE });
    expect(ids(await ledger.listOpen(T0 + 15 * MINUTE - 1, 10))).toEqual([]);
    expect(ids(await ledger.listOpen(T0 + 15 * MINUTE, 10))).toEqual([`L:${id}`]);
    expect(sent.filter((c) => c !== 'QueryCommand')).toEqual(['UpdateCommand', 'UpdateCommand']);

    // A credential: a state change alone keeps the stored nextCheckAt; removing it finishes the item.
    await ledger.createCredential(minimalCredential(id, { intentAt: T0 + 1, nextCheckAt: T0 + 5 * MINUTE }));
    await ledger.updateCredential(id, 'orders-db.read', ['intent'], { state: 'issued', nextCheckAt: T0 + 7 * MINUTE });
    await ledger.updateCredential(id, 'orders-db.read', ['issued'], { state: 'revoking', revokeStartedAt: T0 });
    expect(ids(await ledger.listOpen(T0 + 7 * MINUTE - 1, 10))).toEqual([]);
    expect(ids(await ledger.listOpen(T0 + 7 * MINUTE, 10))).toEqual([`C:${id}/orders-db.read`]);
    await ledger.updateCredential(id, 'orders-db.read', ['revoking'], { state: 'verified', nextCheckAt: undefined });
    expect(ids(await ledger.listOpen(Number.MAX_SAFE_INTEGER, 10))).not.toContain(`C:${id}/orders-db.read`);
    expect(sent.filter((c) => c === 'GetCommand')).toEqual([]);

    // A lock that moves without a state change moves the due time, whichever allowed state it is in.
    const ending = taskId();
    await ledger.createLease(minimalLease(ending, { state: 'ending', lockedUntil: T0, nextCheckAt: T0 }));
    await ledger.updateLease(ending, ['issuing', 'ending'], { lockedUntil: T0 + 40 * MINUTE, nextCheckAt: T0 + 40 * MINUTE });
    expect(ids(await ledger.listOpen(T0 + 40 * MINUTE - 1, 10))).not.toContain(`L:${ending}`);
    expect(ids(await ledger.listOpen(T0 + 40 * MINUTE, 10))).toContain(`L:${ending}`);
  });

  it('pages through due items with limit and an opaque cursor, in due order, without gaps or repeats', async () => {
    const { ledger } = await dyn.newLedger();
    const expected: string[] = [];
    for (let i = 0; i < 23; i++) {
      const id = `t${String(i).padStart(2, '0')}`;
      const due = T0 + (i % 7) * MINUTE; // repeated due times: ties broken by task id
      await ledger.createLease(minimalLease(id, { lockedUntil: due, nextCheckAt: due }));
      await ledger.createCredential(minimalCredential(id, { intentAt: due + 1, nextCheckAt: due + 1 }));
      if (due <= T0 + 5 * MINUTE) expected.push(`L:${id}`);
      if (due + 1 <= T0 + 5 * MINUTE) expected.push(`C:${id}/orders-db.read`);
    }
    const { pages, ids: seen } = await allOpen(ledger, T0 + 5 * MINUTE, 7);
    expect(pages.every((p) => p.leases.length + p.credentials.length <= 7)).toBe(true);
    expect(pages.length).toBeGreaterThanOrEqual(Math.ceil(expected.length / 7));
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort()).toEqual([...expected].sort());

    for (const cursor of pages.map((p) => p.cursor).filter(Boolean)) expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    // Each page holds leases and credentials apart, so check due order across page boundaries.
    const dueOf = (r: LeaseRecord | CredentialRecord): number => r.nextCheckAt!;
    const dues = pages.map((p) => [...p.leases, ...p.credentials].map(dueOf)).filter((d) => d.length > 0);
    for (let i = 1; i < dues.length; i++) expect(Math.min(...dues[i]!)).toBeGreaterThanOrEqual(Math.max(...dues[i - 1]!));
  });

  it('rejects a forged cursor and a non-positive limit', async () => {
    const { ledger } = await dyn.newLedger();
    await expect(ledger.listOpen(T0, 10, 'not-a-cursor')).rejects.toThrow(TypeError);
    await expect(ledger.listOpen(T0, 10, Buffer.from('{"pk":{"S":"x"}}').toString('base64url'))).rejects.toThrow(TypeError);
    await expect(ledger.listOpen(T0, 0)).rejects.toThrow(RangeError);
  });
});

describe('listLeases', () => {
  let ledger: DynamoDbLedger;
  const at = (id: string, requestedAt: number, workload?: string): LeaseRecord =>
    minimalLease(id, { requestedAt, workload, state: 'closed', closedAt: requestedAt + MINUTE });

  // Four days, two workloads, one lease without a workload (its SVID was rejected).
  const leases = [
    at('d0-a', T0 - DAY, WORKLOAD_A),
    at('d1-a', T0, WORKLOAD_A),
    at('d1-b', T0 + MINUTE, WORKLOAD_B),
    at('d1-anon', T0 + 2 * MINUTE),
    at('d2-b', T0 + DAY, WORKLOAD_B),
    at('d3-a', T0 + 2 * DAY, WORKLOAD_A),
  ];
  const names = (found: { lease: LeaseRecord }[]): string[] => found.map((f) => f.lease.taskId);

  beforeAll(async () => {
    ({ ledger } = await dyn.newLedger({ now: () => T0 + 3 * DAY }));
    for (const lease of leases) {
      await ledger.createLease({ ...lease, state: 'denied' });
      await ledger.createCredential(minimalCredential(lease.taskId, { state: 'verified' }));
      await ledger.createCredential(minimalCredential(lease.taskId, { state: 'verified', grant: { target: 'b', access: 'read' } }));
    }
    await ledger.claimSvid('replay', 'd1-a', T0);
  });

  it('reads a time window day by day, inclusive, sorted, with credentials', async () => {
    const found = await ledger.listLeases({ since: T0, until: T0 + DAY });
    expect(names(found)).toEqual(['d1-a', 'd1-b', 'd1-anon', 'd2-b']);
    for (const { credentials } of found) expect(credentials.map((c) => c.grant.target)).toEqual(['b', 'orders-db']);
    expect(names(await ledger.listLeases({ since: T0 + 1, until: T0 + DAY - 1 }))).toEqual(['d1-b', 'd1-anon']);
  });

  it('runs an open-ended window up to now', async () => {
    expect(names(await ledger.listLeases({ since: T0 + DAY }))).toEqual(['d2-b', 'd3-a']);
  });

  it('reads one workload, with or without a window, and never the anonymous lease', async () => {
    expect(names(await ledger.listLeases({ workload: WORKLOAD_A }))).toEqual(['d0-a', 'd1-a', 'd3-a']);
    expect(names(await ledger.listLeases({ workload: WORKLOAD_A, since: T0 - 1, until: T0 + DAY }))).toEqual(['d1-a']);
    expect(names(await ledger.listLeases({ workload: 'spiffe://example.org/nobody' }))).toEqual([]);
  });

  it('scans when there is no start to the window, or it is too long for day queries', async () => {
    const all = await ledger.listLeases({});
    expect(names(all)).toEqual(leases.map((l) => l.taskId));
    expect(all.every((f) => f.credentials.length === 2)).toBe(true);
    expect(names(await ledger.listLeases({ until: T0 }))).toEqual(['d0-a', 'd1-a']);
    // since: 0 spans decades: more than maxWindowDays (400), so a scan rather than thousands of queries.
    expect(await ledger.listLeases({ since: 0, until: T0 + 3 * DAY })).toEqual(all);
  });

  it('gives the same answer from the scan fallback as from the day index', async () => {
    const scanning = new DynamoDbLedger(dyn.client, ledger.tableName, { maxWindowDays: 1 });
    const window = { since: T0 - DAY, until: T0 + DAY };
    expect(await scanning.listLeases(window)).toEqual(await ledger.listLeases(window));
    expect(names(await scanning.listLeases(window))).toEqual(['d0-a', 'd1-a', 'd1-b', 'd1-anon', 'd2-b']);
  });
});
