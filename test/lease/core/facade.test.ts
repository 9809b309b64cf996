import { describe, expect, it } from 'vitest';
import { LeaseLifecycle } from '../../../shared/lease/lifecycle.ts';
import { createFakePorts, FAKE_T0 } from '../../support/fakes.ts';

describe('the lifecycle facade over fake ports', () => {
  it('issues, ends, revokes and proves a lease without a database, on the manual clock', async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps());
    const started = await core.taskStarted(f.started('t-1'));
    expect(started).toMatchObject({ status: 'issued', taskId: 't-1' });
    expect(f.events.types()).toEqual(['Lease Issued']);
    expect(f.driver.live.size).toBe(1);
    f.clock.advance(1_000);
    const ended = await core.taskEnded(f.ended('t-1'));
    expect(ended.status).toBe('closed');
    expect(f.events.types()).toEqual(['Lease Issued', 'Lease Revoked']);
    expect(f.driver.live.size).toBe(0);
    expect(f.secrets.size).toBe(0);
    const lease = await f.ledger.lease('t-1');
    expect(lease).toMatchObject({ state: 'closed', endedAt: FAKE_T0 + 1_000, closedAt: FAKE_T0 + 1_000 });
    expect(await f.ledger.credential('t-1')).toMatchObject({ state: 'verified', trustDebtMs: 0, verifyAttempts: 1 });
    expect(f.ledger.ttlOf('t-1')).toBeGreaterThan(0);
    expect((await f.ledger.listOpen(Number.MAX_SAFE_INTEGER, 10)).leases).toEqual([]);
    // No secret in any log line or event.
    const password = f.secrets.puts[0]?.value.password as string;
    expect(password).toBeTruthy();
    expect(f.log.text()).not.toContain(password);
    expect(JSON.stringify(f.events.events)).not.toContain(password);
  });
});
