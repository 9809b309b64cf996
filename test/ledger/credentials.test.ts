import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import { INDEX_ATTRIBUTES, TABLE_KEYS, TTL_ATTRIBUTE } from '../../shared/ledger/table.ts';
import { grantKey } from '../../shared/events/schemas.ts';
import { startTestDynalite } from '../support/dynalite.ts';
import type { TestDynalite } from '../support/dynalite.ts';
import { DAY, MINUTE, T0, fullCredential, fullLease, minimalCredential, taskId } from './fixtures.ts';

let dyn: TestDynalite;
let ledger: DynamoDbLedger;
let tableName: string;
const NOW = T0 + 10 * MINUTE;

beforeAll(async () => {
  dyn = await startTestDynalite();
  ({ ledger, tableName } = await dyn.newLedger({ now: () => NOW }));
});

afterAll(async () => {
  await dyn?.close();
});

async function rawCredential(id: string, key: string): Promise<Record<string, unknown> | undefined> {
  return (await dyn.scanItems(tableName)).find((i) => i.pk === `LEASE#${id}` && i.sk === `CRED#${key}`);
}

describe('credentials', () => {
  it('returns false for an unknown credential without creating it', async () => {
    const id = taskId();
    expect(await ledger.updateCredential(id, 'orders-db.read', ['intent'], { state: 'issued', nextCheckAt: T0 })).toBe(false);
    expect(await ledger.updateCredential(id, 'orders-db.read', ['intent'], { state: 'issued' })).toBe(false);
    expect(await rawCredential(id, 'orders-db.read')).toBeUndefined();
  });

  it('sets the TTL once verified', async () => {
    const id = taskId();
    await ledger.createCredential(minimalCredential(id, { state: 'revoking', nextCheckAt: T0 }));
    expect(await rawCredential(id, 'orders-db.read')).not.toHaveProperty(TTL_ATTRIBUTE);
    await ledger.updateCredential(id, 'orders-db.read', ['revoking'], { state: 'verified', verifiedAt: NOW, nextCheckAt: undefined });
    expect((await rawCredential(id, 'orders-db.read'))?.[TTL_ATTRIBUTE]).toBe(Math.ceil((NOW + 90 * DAY) / 1000));
  });
});

describe('no secret material in the ledger', () => {
  const SECRETISH_NAME = /pass(word|wd)?$|^secret$|secret(value|string|key)|private.?key|access.?key|session.?token|^token$|credential$/i;

  function walk(value: unknown, visit: (name: string, v: unknown) => void, name = ''): void {
    if (Array.isArray(value)) value.forEach((v) => walk(v, visit, name));
    else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) walk(v, visit, k);
    else visit(name, value);
  }

  it('holds only record fields and the ledger keys, none secret-like, after a whole lifecycle', async () => {
    const { ledger: l, tableName: t } = await dyn.newLedger({ now: () => NOW });
    // What a driver would have handed to the secret store, never to the ledger.
    const password = randomBytes(32).toString('base64url');
    const id = taskId();
    const lease = fullLease(id);
    await l.createLease({ ...lease, state: 'issuing' });
    for (const grant of lease.grants) {
      const cred = { ...fullCredential(id), grant, state: 'intent' as const };
      await l.createCredential(cred);
      await l.updateCredential(id, grantKey(grant), ['intent'], { state: 'issued', issuedAt: T0, secretName: `tasklease/${id}` });
      await l.updateCredential(id, grantKey(grant), ['issued'], { state: 'revoking' });
      await l.updateCredential(id, grantKey(grant), ['revoking'], { state: 'verified', verifiedAt: NOW, nextCheckAt: undefined });
    }
    await l.updateLease(id, ['issuing'], { state: 'active', expiresAt: T0 + MINUTE, nextCheckAt: T0 + MINUTE });
    await l.updateLease(id, ['active'], { state: 'ending', lockedUntil: NOW, nextCheckAt: NOW });
    await l.updateLease(id, ['ending'], { state: 'closed', closedAt: NOW, taskToken: undefined, nextCheckAt: undefined });
    await l.claimSvid('replay-hash', id, T0 + MINUTE);

    const items = await dyn.scanItems(t);
    expect(items).toHaveLength(1 + lease.grants.length + 1);

    const ledgerAttributes = new Set<string>([
      TABLE_KEYS.partitionKey.name,
      TABLE_KEYS.sortKey.name,
      ...Object.values(INDEX_ATTRIBUTES),
      TTL_ATTRIBUTE,
    ]);
    const recordFields = new Set([...Object.keys(fullLease(id)), ...Object.keys(fullCredential(id)), 'verifiedAt', 'expiresAt']);
    for (const item of items) {
      for (const name of Object.keys(item)) {
        expect(ledgerAttributes.has(name) || recordFields.has(name), `unexpected attribute ${name}`).toBe(true);
      }
      walk(item, (name, v) => {
        expect(name).not.toMatch(SECRETISH_NAME);
        expect(String(v)).not.toContain(password);
        expect(String(v)).not.toMatch(/-----BEGIN|password=|AKIA[0-9A-Z]{16}/);
      });
    }
    // The SFN task token was removed once answered.
    expect(items.some((i) => 'taskToken' in i)).toBe(false);
  });
});
