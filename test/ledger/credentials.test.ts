import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import { INDEX_ATTRIBUTES, TABLE_KEYS, TTL_ATTRIBUTE } from '../../shared/ledger/table.ts';
import { grantKey } from '../../shared/events/schemas.ts';
import type { CredentialRecord } from '../../shared/lease/records.ts';
import { startTestDynalite } from '../support/dynalite.ts';
import type { TestDynalite } from '../support/dynalite.ts';
import { DAY, MINUTE, T0, fullCredential, fullLease, minimalCredential, minimalLease, taskId } from './fixtures.ts';

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
  it('round-trips every field and comes back with its lease, in grant order', async () => {
    const id = taskId();
    const lease = fullLease(id);
    const write = fullCredential(id);
    const read = minimalCredential(id, { externalId: 'tl_read' });
    expect(await ledger.createLease(lease)).toBe(true);
    expect(await ledger.createCredential(write)).toBe(true);
    expect(await ledger.createCredential(read)).toBe(true);
    expect(await ledger.getLease(id)).toStrictEqual({ lease, credentials: [read, write] });
  });

  it('round-trips a minimal credential with the optional fields absent', async () => {
    const id = taskId();
    await ledger.createLease(minimalLease(id));
    const cred = minimalCredential(id);
    await ledger.createCredential(cred);
    const [got] = (await ledger.getLease(id))!.credentials;
    expect(got).toStrictEqual(cred);
  });

  it('writes the intent once: a duplicate createCredential returns false and changes nothing', async () => {
    const id = taskId();
    await ledger.createLease(minimalLease(id));
    expect(await ledger.createCredential(minimalCredential(id, { externalId: 'first' }))).toBe(true);
    expect(await ledger.createCredential(minimalCredential(id, { externalId: 'second', state: 'issued' }))).toBe(false);
    expect((await ledger.getLease(id))!.credentials).toMatchObject([{ externalId: 'first', state: 'intent' }]);
  });

  it('walks intent → issued → revoking → still-valid → verified only from the expected states', async () => {
    const id = taskId();
    const key = 'orders-db.read';
    await ledger.createLease(minimalLease(id));
    await ledger.createCredential(minimalCredential(id));
    expect(await ledger.updateCredential(id, key, ['issued'], { state: 'revoking' })).toBe(false);
    expect(await ledger.updateCredential(id, key, ['intent'], { state: 'issued', issuedAt: T0 + 1, naturalExpiry: T0 + DAY })).toBe(true);
    expect(await ledger.updateCredential(id, key, ['intent'], { state: 'issued' })).toBe(false);
    expect(await ledger.updateCredential(id, key, ['issued'], { state: 'revoking', revokeStartedAt: T0 + 2 })).toBe(true);
    expect(
      await ledger.updateCredential(id, key, ['revoking'], {
        state: 'still-valid',
        verifyAttempts: 1,
        lastError: 'still accepted',
        nextCheckAt: T0 + 3,
      }),
    ).toBe(true);
    expect(
      await ledger.updateCredential(id, key, ['revoking', 'still-valid'], {
        state: 'verified',
        revokedAt: T0 + 4,
        verifiedAt: T0 + 5,
        verifyAttempts: 2,
        trustDebtMs: 5,
        lastError: undefined,
        nextCheckAt: undefined,
      }),
    ).toBe(true);
    expect(await ledger.updateCredential(id, key, ['revoking', 'still-valid'], { state: 'verified' })).toBe(false);
    const [cred] = (await ledger.getLease(id))!.credentials;
    expect(cred).toMatchObject({ state: 'verified', verifiedAt: T0 + 5, verifyAttempts: 2, trustDebtMs: 5 });
    expect(cred).not.toHaveProperty('lastError');
    expect(cred).not.toHaveProperty('nextCheckAt');
  });

  it('returns false for an unknown credential without creating it', async () => {
    const id = taskId();
    expect(await ledger.updateCredential(id, 'orders-db.read', ['intent'], { state: 'issued', nextCheckAt: T0 })).toBe(false);
    expect(await ledger.updateCredential(id, 'orders-db.read', ['intent'], { state: 'issued' })).toBe(false);
    expect(await rawCredential(id, 'orders-db.read')).toBeUndefined();
  });

  it('lets exactly one of two concurrent revocations win, every time', async () => {
    for (let i = 0; i < 30; i++) {
      const id = taskId();
      await ledger.createLease(minimalLease(id, { state: 'ending', lockedUntil: T0 }));
      await ledger.createCredential(minimalCredential(id, { state: 'issued', issuedAt: T0 }));
      // Half the rounds move the due time, half keep it: one conditional write either way.
      const patch = (n: number): Partial<CredentialRecord> =>
        i % 2 ? { state: 'revoking', revokeStartedAt: T0 + n, nextCheckAt: T0 + n } : { state: 'revoking', revokeStartedAt: T0 + n };
      const results = await Promise.all([1, 2].map((n) => ledger.updateCredential(id, 'orders-db.read', ['issued'], patch(n))));
      expect(results.filter(Boolean)).toHaveLength(1);
      const [cred] = (await ledger.getLease(id))!.credentials;
      expect(cred).toMatchObject({ state: 'revoking', revokeStartedAt: T0 + results.indexOf(true) + 1 });
    }
  });

  it('refuses a patch that changes the grant', async () => {
    const id = taskId();
    await ledger.createCredential(minimalCredential(id));
    await expect(
      ledger.updateCredential(id, 'orders-db.read', ['intent'], { grant: { target: 'orders-db', access: 'write' } }),
    ).rejects.toThrow(TypeError);
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
