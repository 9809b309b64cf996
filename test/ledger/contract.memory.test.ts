import { describe, expect, it } from 'vitest';
import { MemoryLedger } from '../../shared/ledger/memory-ledger.ts';
import { DAY, MINUTE, T0, minimalCredential, minimalLease, taskId } from './fixtures.ts';
import { ledgerContract } from './contract.ts';

ledgerContract('in memory', { create: async (options) => new MemoryLedger(options) });

describe('MemoryLedger retention', () => {
  it('starts the TTL of an item when it finishes, keeps it while nothing moves it, clears it when reopened', async () => {
    const NOW = T0 + 10 * MINUTE;
    const ledger = new MemoryLedger({ now: () => NOW, retentionDays: 7 });
    const id = taskId();
    await ledger.createLease(minimalLease(id, { state: 'active', nextCheckAt: T0 + MINUTE }));
    expect(ledger.ttlOf(id)).toBeUndefined();
    await ledger.updateLease(id, ['active'], { state: 'closed', nextCheckAt: undefined });
    expect(ledger.ttlOf(id)).toBe(Math.ceil((NOW + 7 * DAY) / 1000));
    expect(ledger.openSkOf(id)).toBeUndefined();
    await ledger.updateLease(id, ['closed'], { outcome: 'succeeded' });
    expect(ledger.ttlOf(id)).toBe(Math.ceil((NOW + 7 * DAY) / 1000));
    await ledger.updateLease(id, ['closed'], { state: 'issuing', nextCheckAt: T0 });
    expect(ledger.ttlOf(id)).toBeUndefined();
    await ledger.createCredential(minimalCredential(id));
    expect(ledger.ttlOf(id, 'orders-db.read')).toBe(Math.ceil((NOW + 7 * DAY) / 1000));
    expect(() => new MemoryLedger({ retentionDays: 0 })).toThrow(RangeError);
  });
});
