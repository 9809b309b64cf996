import { describe, expect, it } from 'vitest';
import type { TargetDriver, TargetRegistry } from '../../../shared/lease/ports.ts';
import { reconcile } from '../../../shared/lease/reconcile.ts';
import { FakeDriver, ManualClock, MemoryLedger } from '../../support/fakes.ts';

/** A registry shaped like buildTargetRegistry's: names only through `entries()`. */
function entriesOnly(drivers: Record<string, TargetDriver>): TargetRegistry {
  return {
    get: (name) => drivers[name],
    all: () => Object.values(drivers),
    entries: () => Object.entries(drivers).map(([name, driver]) => ({ name, driver })),
  };
}

describe('reconciliation names each driver by its configured target', () => {
  it('uses entries(): findings name the target, not the kind', async () => {
    const clock = new ManualClock();
    const driver = new FakeDriver(clock, { kind: 'postgres' });
    driver.live.add('fake_lost_read');
    const report = await reconcile(
      { ledger: new MemoryLedger({ now: () => clock.now() }), targets: entriesOnly({ 'orders-db': driver }), clock },
      { graceMs: 0 },
    );
    expect(report.targets).toEqual([{ target: 'orders-db', kind: 'postgres', onTarget: 1 }]);
    expect(report.orphans).toEqual([expect.objectContaining({ target: 'orders-db', externalId: 'fake_lost_read', action: 'revoked' })]);
    expect(driver.live.size).toBe(0);
  });

  it('falls back to names() (chaos faultyTargets has only that), then to the kind', async () => {
    const clock = new ManualClock();
    const ledger = new MemoryLedger({ now: () => clock.now() });
    const driver = new FakeDriver(clock, { kind: 'postgres' });
    const byNames = { get: (n: string) => (n === 'billing-db' ? driver : undefined), all: () => [driver], names: () => ['billing-db'] };
    expect((await reconcile({ ledger, targets: byNames, clock }, { graceMs: 0 })).targets).toEqual([
      { target: 'billing-db', kind: 'postgres', onTarget: 0 },
    ]);
    const nameless = { get: byNames.get, all: byNames.all };
    expect((await reconcile({ ledger, targets: nameless, clock }, { graceMs: 0 })).targets).toEqual([
      { target: 'postgres', kind: 'postgres', onTarget: 0 },
    ]);
  });
});
