/*
 * Issue 12, attack 7 (the demo's side): the demo's waits trust only events the broker published.
 * The local bus refuses output events from other sources too; this checks the demo on its own,
 * against a bus that would deliver anything.
 */
import { describe, expect, it } from 'vitest';
import { forStartAnswer, forTask, waitForEvent } from '../../demo/demo.ts';
import type { LocalBus } from '../../local/bus.ts';
import type { BusEvent } from '../../shared/events/routing.ts';
import { DETAIL_TYPES, EVENT_SOURCE } from '../../shared/events/schemas.ts';

/** Just enough of a bus: watchers, and a way to deliver any event to them. */
function openBus() {
  const watchers = new Set<(e: BusEvent) => void>();
  let n = 0;
  return {
    bus: {
      watch(w: (e: BusEvent) => void) {
        watchers.add(w);
        return () => watchers.delete(w);
      },
    } as unknown as LocalBus,
    emit(detailType: string, source: string, detail: unknown) {
      for (const w of [...watchers]) w({ id: `e${n++}`, 'detail-type': detailType, source, time: new Date().toISOString(), detail });
    },
  };
}

describe("the demo's waits check the source", () => {
  it('a spoofed Lease Revoked from another source does not satisfy the wait; the broker one does', async () => {
    const { bus, emit } = openBus();
    const wait = waitForEvent(bus, forTask('t1', DETAIL_TYPES.leaseRevoked), 1_000);
    emit(DETAIL_TYPES.leaseRevoked, 'attacker.engine', { taskId: 't1', spoofed: true });
    emit(DETAIL_TYPES.leaseRevoked, EVENT_SOURCE, { taskId: 't1' });
    const got = await wait.promise;
    expect(got.source).toBe(EVENT_SOURCE);
    expect(got.detail).toEqual({ taskId: 't1' });
  });

  it('a spoofed Lease Issued alone times the wait out', async () => {
    const { bus, emit } = openBus();
    const wait = waitForEvent(bus, forTask('t2', DETAIL_TYPES.leaseIssued), 50);
    emit(DETAIL_TYPES.leaseIssued, 'tasklease.fake', { taskId: 't2' });
    await expect(wait.promise).rejects.toThrow(/timed out/);
  });

  it("the start's answer is not a refused Task Ended of the same task id", async () => {
    const { bus, emit } = openBus();
    const wait = waitForEvent(bus, forStartAnswer('t3'), 1_000);
    emit(DETAIL_TYPES.leaseDenied, EVENT_SOURCE, { taskId: 't3', request: 'end', reason: { code: 'end-not-allowed' } });
    emit(DETAIL_TYPES.leaseIssued, EVENT_SOURCE, { taskId: 't3' });
    expect((await wait.promise)['detail-type']).toBe(DETAIL_TYPES.leaseIssued);
  });
});
