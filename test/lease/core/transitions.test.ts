import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CredentialRecord, CredentialState, LeaseRecord, LeaseState } from '../../../shared/lease/records.ts';
import {
  CREDENTIAL_TRANSITIONS,
  LEASE_TRANSITIONS,
  credentialWrite,
  leaseDue,
  leaseWrite,
  newLease,
  transitionCredential,
  transitionLease,
} from '../../../shared/lease/transitions.ts';
import type { CredentialTransitionName, LeaseTransitionName } from '../../../shared/lease/transitions.ts';
import { FAKE_T0 as T0, MemoryLedger } from '../../support/fakes.ts';

const LEASE_STATES: LeaseState[] = ['issuing', 'active', 'ending', 'closed', 'denied'];
const CREDENTIAL_STATES: CredentialState[] = ['intent', 'issued', 'revoking', 'verified', 'still-valid'];

const lease = (state: LeaseState, extra: Partial<LeaseRecord> = {}): LeaseRecord => ({
  taskId: `t-${state}`,
  state,
  grants: [{ target: 'db', access: 'read' }],
  requestedAt: T0,
  expiresAt: T0 + 600_000,
  lockedUntil: T0 + 60_000,
  endedAt: state === 'ending' ? T0 + 1_000 : undefined,
  ...extra,
});

const cred = (state: CredentialState): CredentialRecord => ({
  taskId: 't',
  grant: { target: 'db', access: 'read' },
  target: 'db',
  kind: 'fake',
  externalId: 'x',
  state,
  workload: 'spiffe://td/w',
  intentAt: T0,
  verifyAttempts: 0,
  nextCheckAt: state === 'verified' ? undefined : T0 + 5,
});

describe('due times by state', () => {
  it('issuing and ending are due at their lock, active at its expiry, finished states never', () => {
    expect(leaseDue(lease('issuing'))).toBe(T0 + 60_000);
    expect(leaseDue(lease('active'))).toBe(T0 + 600_000);
    expect(leaseDue(lease('ending'))).toBe(T0 + 60_000);
    expect(leaseDue(lease('ending', { lockedUntil: undefined }))).toBe(T0 + 1_000);
    expect(leaseDue(lease('closed'))).toBeUndefined();
    expect(leaseDue(lease('denied'))).toBeUndefined();
  });

  it('creations carry the due time of the state they create', () => {
    const base = { taskId: 't', grants: [], requestedAt: T0, lockedUntil: T0 + 7 };
    expect(newLease('open', base)).toMatchObject({ state: 'issuing', nextCheckAt: T0 + 7 });
    expect(newLease('deny', base)).not.toHaveProperty('nextCheckAt');
    expect(newLease('deny', base).state).toBe('denied');
    expect(newLease('tombstone', base)).toMatchObject({ state: 'closed' });
    expect(newLease('tombstone', base)).not.toHaveProperty('nextCheckAt');
  });
});

describe('every lease transition of the table', () => {
  const names = Object.keys(LEASE_TRANSITIONS).filter(
    (n) => LEASE_TRANSITIONS[n as LeaseTransitionName].from.length > 0,
  ) as LeaseTransitionName[];

  it.each(names)('%s applies from exactly its from-states, to its state, with the due time of that state', async (name) => {
    const rule = LEASE_TRANSITIONS[name];
    for (const state of LEASE_STATES) {
      const ledger = new MemoryLedger({ now: () => T0 });
      const base = lease(state, { nextCheckAt: leaseDue(lease(state)) });
      await ledger.createLease(base);
      const patch: Partial<LeaseRecord> = { lockedUntil: T0 + 90_000 };
      const applied = await transitionLease(ledger, name, base, patch);
      expect(applied, `${name} from ${state}`).toBe((rule.from as readonly LeaseState[]).includes(state));
      if (!applied) continue;
      const after = (await ledger.getLease(base.taskId))!.lease;
      const to = rule.to === 'unchanged' ? state : rule.to;
      expect(after.state).toBe(to);
      // The open index holds exactly what the state machine says: open at its due time, or finished.
      expect(after.nextCheckAt).toBe(leaseDue(after));
      expect(ledger.openSkOf(base.taskId) === undefined).toBe(leaseDue(after) === undefined);
      expect(ledger.ttlOf(base.taskId) === undefined).toBe(leaseDue(after) !== undefined);
    }
  });

  it('keeps the due time of a write that does not touch what it is read from', () => {
    expect(leaseWrite('requestEnd', lease('issuing'), { endRequested: true, endedAt: T0 }).patch).toEqual({
      endRequested: true,
      endedAt: T0,
    });
    expect(leaseWrite('takeOverIssuing', lease('issuing'), { lockedUntil: T0 + 9 }).patch).toEqual({
      lockedUntil: T0 + 9,
      nextCheckAt: T0 + 9,
    });
    expect(leaseWrite('close', lease('ending'), { closedAt: T0 }).patch).toEqual({ closedAt: T0, state: 'closed', nextCheckAt: undefined });
    expect(leaseWrite('activate', lease('issuing'), { expiresAt: T0 + 5, lockedUntil: undefined }).patch).toMatchObject({
      state: 'active',
      nextCheckAt: T0 + 5,
    });
    expect(() => leaseWrite('open' as LeaseTransitionName, lease('issuing'), {})).toThrow(RangeError);
  });
});

describe('every credential transition of the table', () => {
  const names = Object.keys(CREDENTIAL_TRANSITIONS).filter(
    (n) => CREDENTIAL_TRANSITIONS[n as CredentialTransitionName].from.length > 0,
  ) as CredentialTransitionName[];

  it.each(names)('%s applies from exactly its from-states', async (name) => {
    const rule = CREDENTIAL_TRANSITIONS[name];
    for (const state of CREDENTIAL_STATES) {
      const ledger = new MemoryLedger({ now: () => T0 });
      await ledger.createLease(newLease('tombstone', { taskId: 't', grants: [], requestedAt: T0 }));
      await ledger.createCredential(cred(state));
      const applied = await transitionCredential(ledger, name, cred(state), { nextCheckAt: T0 + 77 });
      expect(applied, `${name} from ${state}`).toBe((rule.from as readonly CredentialState[]).includes(state));
      if (!applied) continue;
      const [after] = (await ledger.getLease('t'))?.credentials ?? [];
      expect(after?.state).toBe(rule.to === 'unchanged' ? state : rule.to);
      if (after?.state === 'verified') {
        expect(after.nextCheckAt).toBeUndefined();
        expect(ledger.openSkOf('t', 'db.read')).toBeUndefined();
      } else {
        expect(after?.nextCheckAt).toBe(T0 + 77);
        expect(ledger.openSkOf('t', 'db.read')).toMatch(/#t#db\.read$/);
      }
    }
  });

  it('refuses a state change that does not say when the credential is next due', () => {
    expect(() => credentialWrite('issue', { issuedAt: T0 })).toThrow(/next due/);
    expect(credentialWrite('verify', { verifiedAt: T0 }).patch).toEqual({ verifiedAt: T0, state: 'verified', nextCheckAt: undefined });
    expect(credentialWrite('recordAttempt', { verifyAttempts: 2 }).patch).toEqual({ verifyAttempts: 2 });
  });
});

describe('the table is the one place', () => {
  it('no job of the core writes the ledger conditionally except through transitions.ts', () => {
    const dir = join(import.meta.dirname, '..', '..', '..', 'shared', 'lease');
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts') && f !== 'transitions.ts' && f !== 'ports.ts')) {
      const text = readFileSync(join(dir, file), 'utf8');
      expect(text, file).not.toMatch(/\.update(Lease|Credential)\(/);
    }
  });
});
