import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { GlobalSecondaryIndexDescription } from '@aws-sdk/client-dynamodb';
import { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import { GSI_NAMES, createTableInput, openSk } from '../../shared/ledger/table.ts';
import type { LeaseRecord } from '../../shared/lease/records.ts';
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

describe('table definition', () => {
  it('creates the keys and indexes the ledger relies on', async () => {
    const tableName = await dyn.newTable();
    const { Table } = await dyn.client.send(new DescribeTableCommand({ TableName: tableName }));
    expect(Table?.KeySchema).toEqual([
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ]);
    const gsis: Record<string, GlobalSecondaryIndexDescription> = Object.fromEntries(
      (Table?.GlobalSecondaryIndexes ?? []).map((g) => [g.IndexName, g]),
    );
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
