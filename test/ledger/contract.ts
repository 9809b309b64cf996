import { describe, expect, it, beforeAll } from 'vitest';
import type { Ledger, OpenItemsPage } from '../../shared/lease/ports.ts';
import type { CredentialRecord, LeaseRecord } from '../../shared/lease/records.ts';
import { DAY, MINUTE, T0, WORKLOAD_A, WORKLOAD_B, fullCredential, fullLease, minimalCredential, minimalLease, taskId } from './fixtures.ts';

/*
 * The Ledger port's contract: what every adapter must do, whatever it stores in. Run against
 * the DynamoDB adapter (contract.dynamodb.test.ts, on dynalite) and the in-memory one
 * (contract.memory.test.ts); a new adapter (PostgreSQL) runs the same suite. Adapter-specific
 * checks (raw items, TTL attributes, table definition, request counts) stay in leases.test.ts,
 * credentials.test.ts and queries.test.ts.
 */

export interface LedgerAdapter {
  /** A ledger over fresh, empty storage. */
  create(options?: { now?: () => number }): Promise<Ledger>;
}

const NOW = T0 + 10 * MINUTE;

const ids = (page: Pick<OpenItemsPage, 'leases' | 'credentials'>): string[] => [
  ...page.leases.map((l) => `L:${l.taskId}`),
  ...page.credentials.map((c) => `C:${c.taskId}/${c.grant.target}.${c.grant.access}`),
];

async function allOpen(ledger: Ledger, dueBefore: number, limit: number): Promise<{ pages: OpenItemsPage[]; ids: string[] }> {
  const pages: OpenItemsPage[] = [];
  let cursor: string | undefined;
  do {
    const page = await ledger.listOpen(dueBefore, limit, cursor);
    pages.push(page);
    cursor = page.cursor;
  } while (cursor);
  return { pages, ids: pages.flatMap(ids) };
}

export function ledgerContract(name: string, adapter: LedgerAdapter): void {
  describe(`Ledger contract: ${name}`, () => {
    let ledger: Ledger;

    beforeAll(async () => {
      ledger = await adapter.create({ now: () => NOW });
    });

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
          await ledger.updateLease(id, ['issuing'], {
            state: 'active',
            issuedAt: T0 + 1,
            expiresAt: T0 + 15 * MINUTE,
            lockedUntil: undefined,
          }),
        ).toBe(true);
        expect(await ledger.updateLease(id, ['issuing'], { state: 'active' })).toBe(false);
        expect(await ledger.updateLease(id, ['issuing', 'active'], { state: 'ending', endedAt: T0 + 2 })).toBe(true);
        expect((await ledger.getLease(id))!.lease).toMatchObject({ state: 'ending', issuedAt: T0 + 1, endedAt: T0 + 2 });
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
        expect(await ledger.updateLease(id, ['issuing'], { state: 'active', expiresAt: T0 + 15 * MINUTE }, { notEndRequested: true })).toBe(
          false,
        );
        expect((await ledger.getLease(id))!.lease).toMatchObject({ state: 'issuing', endRequested: true });
        // Without the condition the issuer can move straight on to ending.
        expect(await ledger.updateLease(id, ['issuing'], { state: 'ending', endedAt: T0 + 1 })).toBe(true);
      });
      it('combines lockedBefore and notEndRequested', async () => {
        const id = taskId();
        await ledger.createLease(minimalLease(id, { lockedUntil: T0, endRequested: true }));
        expect(
          await ledger.updateLease(id, ['issuing'], { lockedUntil: T0 + MINUTE }, { lockedBefore: T0 + 1, notEndRequested: true }),
        ).toBe(false);
        expect(await ledger.updateLease(id, ['issuing'], { lockedUntil: T0 + MINUTE }, { lockedBefore: T0 + 1 })).toBe(true);
      });
    });

    describe('patches', () => {
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

    describe('claimSvid', () => {
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
        expect(await ledger.updateCredential(id, key, ['intent'], { state: 'issued', issuedAt: T0 + 1, naturalExpiry: T0 + DAY })).toBe(
          true,
        );
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
    });

    describe('open index', () => {
      it('holds unfinished leases and credentials, due at the nextCheckAt the core wrote, and drops them when finished', async () => {
        const ledger = await adapter.create();
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

        expect(ids(await ledger.listOpen(T0 + 10 * MINUTE, 100))).toEqual([`L:${issuing}`, `L:${active}`, `C:${issuing}/orders-db.read`]);
        // dueBefore is inclusive and excludes anything later.
        expect(ids(await ledger.listOpen(T0 + 1 * MINUTE - 1, 100))).toEqual([]);
        expect(ids(await ledger.listOpen(T0 + 1 * MINUTE, 100))).toEqual([`L:${issuing}`]);
        expect(ids(await ledger.listOpen(T0 + 2 * MINUTE, 100))).toEqual([`L:${issuing}`, `C:${issuing}/orders-db.read`]);

        // Returned records carry no index attributes.
        const page = await ledger.listOpen(T0 + 10 * MINUTE, 100);
        for (const record of [...page.leases, ...page.credentials]) {
          for (const internal of ['pk', 'sk', 'openPk', 'openSk', 'workloadPk', 'dayPk', 'ttl'])
            expect(record).not.toHaveProperty(internal);
        }
        expect(page.leases[0]).toStrictEqual(minimalLease(issuing, { lockedUntil: T0 + 1 * MINUTE, nextCheckAt: T0 + 1 * MINUTE }));

        // The credential moves to its next check time, then leaves once verified.
        await ledger.updateCredential(issuing, 'orders-db.read', ['intent'], { state: 'issued', nextCheckAt: T0 + 20 * MINUTE });
        expect(ids(await ledger.listOpen(T0 + 10 * MINUTE, 100))).not.toContain(`C:${issuing}/orders-db.read`);
        expect(ids(await ledger.listOpen(T0 + 20 * MINUTE, 100))).toContain(`C:${issuing}/orders-db.read`);
        await ledger.updateCredential(issuing, 'orders-db.read', ['issued'], { state: 'verified', nextCheckAt: undefined });
        expect(ids(await ledger.listOpen(Number.MAX_SAFE_INTEGER, 100))).not.toContain(`C:${issuing}/orders-db.read`);

        // The lease follows its state: issuing (lock) → active (expiry) → ending (lock) → closed (gone).
        await ledger.updateLease(issuing, ['issuing'], {
          state: 'active',
          expiresAt: T0 + 30 * MINUTE,
          lockedUntil: undefined,
          nextCheckAt: T0 + 30 * MINUTE,
        });
        expect(ids(await ledger.listOpen(T0 + 29 * MINUTE, 100))).not.toContain(`L:${issuing}`);
        expect(ids(await ledger.listOpen(T0 + 30 * MINUTE, 100))).toContain(`L:${issuing}`);
        await ledger.updateLease(issuing, ['active'], { state: 'ending', lockedUntil: T0 + 31 * MINUTE, nextCheckAt: T0 + 31 * MINUTE });
        expect(ids(await ledger.listOpen(T0 + 30 * MINUTE, 100))).not.toContain(`L:${issuing}`);
        expect(ids(await ledger.listOpen(T0 + 31 * MINUTE, 100))).toContain(`L:${issuing}`);
        await ledger.updateLease(issuing, ['ending'], { state: 'closed', lockedUntil: undefined, nextCheckAt: undefined });
        expect(ids(await ledger.listOpen(Number.MAX_SAFE_INTEGER, 100))).toEqual([`L:${active}`]);
      });
      it('pages through due items with limit and an opaque cursor, in due order, without gaps or repeats', async () => {
        const ledger = await adapter.create();
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
        const ledger = await adapter.create();
        await expect(ledger.listOpen(T0, 10, 'not-a-cursor')).rejects.toThrow(TypeError);
        await expect(ledger.listOpen(T0, 10, Buffer.from('{"pk":{"S":"x"}}').toString('base64url'))).rejects.toThrow(TypeError);
        await expect(ledger.listOpen(T0, 0)).rejects.toThrow(RangeError);
      });
    });

    describe('listLeases', () => {
      let ledger: Ledger;
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
        ledger = await adapter.create({ now: () => T0 + 3 * DAY });
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
    });
  });
}
