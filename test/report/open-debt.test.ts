import { describe, expect, it } from 'vitest';
import { loadReport } from '../../report/report.ts';
import { measureOpenDebt } from '../../shared/lease/reaper.ts';
import { openDebt } from '../../shared/lease/trust-debt.ts';
import { MemoryLedger } from '../../shared/ledger/memory-ledger.ts';
import type { CredentialRecord, LeaseRecord } from '../../shared/lease/records.ts';

const T0 = Date.UTC(2030, 0, 15, 12);
const MINUTE = 60_000;
const W = 'spiffe://example.org/etl/loader';

const lease = (taskId: string, extra: Partial<LeaseRecord>): LeaseRecord => ({
  taskId,
  state: 'active',
  workload: W,
  rule: 'r',
  grants: [{ target: 'orders-db', access: 'read' }],
  requestedAt: T0,
  issuedAt: T0 + 100,
  expiresAt: T0 + 10 * MINUTE,
  ...extra,
});

const cred = (taskId: string, extra: Partial<CredentialRecord>): CredentialRecord => ({
  taskId,
  grant: { target: 'orders-db', access: 'read' },
  target: 'orders-db',
  kind: 'postgres',
  externalId: `tl_${taskId}`,
  state: 'issued',
  workload: W,
  intentAt: T0,
  issuedAt: T0 + 100,
  naturalExpiry: T0 + 15 * MINUTE,
  verifyAttempts: 0,
  ...extra,
});

describe('one open-debt definition', () => {
  it('the report and the reaper count a lost Task Ended the same way, from the lease expiry', async () => {
    const ledger = new MemoryLedger({ now: () => T0 });
    // lost: Task Ended never came; the lease expired at T0+10m and its credential is still issued
    // (due at the lease's expiry, as the issuing step writes it).
    await ledger.createLease(lease('lost', { nextCheckAt: T0 + 10 * MINUTE }));
    await ledger.createCredential(cred('lost', { nextCheckAt: T0 + 10 * MINUTE }));
    // ended: Task Ended at T0+2m, revocation not proven yet.
    await ledger.createLease(
      lease('ended', { state: 'ending', endedAt: T0 + 2 * MINUTE, lockedUntil: T0 + 3 * MINUTE, nextCheckAt: T0 + 3 * MINUTE }),
    );
    await ledger.createCredential(
      cred('ended', { state: 'revoking', endedAt: T0 + 2 * MINUTE, verifyAttempts: 2, nextCheckAt: T0 + 3 * MINUTE }),
    );
    // live: in use, its lease runs until T0+60m: no debt.
    await ledger.createLease(lease('live', { expiresAt: T0 + 60 * MINUTE, nextCheckAt: T0 + 60 * MINUTE }));
    await ledger.createCredential(cred('live', { nextCheckAt: T0 + 60 * MINUTE }));

    const now = T0 + 30 * MINUTE;
    const reaper = await measureOpenDebt(ledger, now, 10, 1_000);
    const report = await loadReport(ledger, {}, now);

    expect(reaper.count).toBe(2);
    expect(report.openDebt.count).toBe(reaper.count);
    expect(report.openDebt.oldestMs).toBe(reaper.oldestMs);
    expect(reaper.oldestMs).toBe(28 * MINUTE); // since the end at T0+2m
    const byTask = (items: Array<{ taskId: string; openDebtMs?: number }>) =>
      Object.fromEntries(items.map((i) => [i.taskId, i.openDebtMs]));
    expect(byTask(report.openDebt.items)).toEqual(byTask(reaper.items));
    expect(byTask(reaper.items)).toEqual({ ended: 28 * MINUTE, lost: 20 * MINUTE });
    expect(report.totals.openDebtMs).toBe(48 * MINUTE);
    // The per-credential row says the same, and a credential still in use has none.
    expect(report.credentials.find((c) => c.taskId === 'lost')?.openDebtMs).toBe(20 * MINUTE);
    expect(report.credentials.find((c) => c.taskId === 'live')?.openDebtMs).toBeUndefined();
  });

  it('starts counting a lost Task Ended only once the lease has expired', () => {
    const issued = cred('x', { nextCheckAt: T0 + 10 * MINUTE });
    expect(openDebt(issued, T0 + 10 * MINUTE - 1)).toBeUndefined();
    expect(openDebt(issued, T0 + 10 * MINUTE)).toBe(0);
    expect(openDebt(issued, T0 + 11 * MINUTE)).toBe(MINUTE);
    expect(openDebt({ ...issued, state: 'verified', endedAt: T0 }, T0 + 11 * MINUTE)).toBeUndefined();
    // An intent was never handed out: not debt until its task ends.
    expect(openDebt({ ...issued, state: 'intent' }, T0 + 11 * MINUTE)).toBeUndefined();
    expect(openDebt({ ...issued, state: 'intent', endedAt: T0 + MINUTE }, T0 + 11 * MINUTE)).toBe(10 * MINUTE);
  });
});
