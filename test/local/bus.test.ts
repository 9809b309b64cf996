import { afterEach, describe, expect, it } from 'vitest';
import { DETAIL_TYPES, EVENT_SOURCE } from '../../shared/events/schemas.ts';
import type { OutputEvent } from '../../shared/events/schemas.ts';
import type { BusEvent } from '../../shared/events/routing.ts';
import { LocalBus } from '../../local/bus.ts';

// The local bus's own policy (issue 12): only the broker's source may carry output events, and an
// unknown detail-type is refused with a reason instead of silently matching no rule.

let bus: LocalBus;
afterEach(() => bus?.close());

/** A bus with a consumer on each route and a watcher, recording what each one saw. */
function observedBus(): { seen: BusEvent[]; routed: Record<'task-started' | 'task-ended', BusEvent[]> } {
  bus = new LocalBus();
  const seen: BusEvent[] = [];
  const routed = { 'task-started': [] as BusEvent[], 'task-ended': [] as BusEvent[] };
  bus.watch((e) => seen.push(e));
  bus.on('task-started', async (e) => routed['task-started'].push(e));
  bus.on('task-ended', async (e) => routed['task-ended'].push(e));
  return { seen, routed };
}

const revoked = { taskId: 'victim-1', credentials: [] };

describe('LocalBus.put', () => {
  it('refuses a spoofed Lease Revoked from a non-broker source: no watcher or route ever sees it', async () => {
    const { seen, routed } = observedBus();
    const result = bus.put(DETAIL_TYPES.leaseRevoked, revoked, 'local.workflow-engine');
    const byDefault = bus.put(DETAIL_TYPES.leaseIssued, { taskId: 'victim-1' });
    await bus.drained();

    for (const r of [result, byDefault]) {
      expect(r.accepted).toBe(false);
      if (r.accepted) continue;
      expect(r.refusal.code).toBe('output-event-not-from-broker');
      expect(r.refusal.message).toContain(`only the broker (source '${EVENT_SOURCE}')`);
    }
    if (!result.accepted) expect(result.refusal.message).toContain("not source 'local.workflow-engine'");
    expect(seen).toEqual([]);
    expect(routed).toEqual({ 'task-started': [], 'task-ended': [] });
    expect(bus.rejected.map((r) => [r.detailType, r.refusal.code])).toEqual([
      [DETAIL_TYPES.leaseRevoked, 'output-event-not-from-broker'],
      [DETAIL_TYPES.leaseIssued, 'output-event-not-from-broker'],
    ]);
  });

  it('refuses every output detail-type from a source that is not the broker’s', () => {
    observedBus();
    for (const type of [DETAIL_TYPES.leaseIssued, DETAIL_TYPES.leaseDenied, DETAIL_TYPES.leaseRevoked, DETAIL_TYPES.revocationFailed]) {
      for (const source of ['my.engine', 'tasklease ', 'TASKLEASE', '']) {
        expect(bus.put(type, {}, source), `${type} from '${source}'`).toMatchObject({
          accepted: false,
          refusal: { code: 'output-event-not-from-broker' },
        });
      }
    }
  });

  it('refuses an unknown detail-type with its name in the reason, instead of dropping it silently', async () => {
    const { seen, routed } = observedBus();
    const near = bus.put('Task Started ', { taskId: 'misrouted' });
    const other = bus.put('Lease Stolen', { taskId: 'x' }, EVENT_SOURCE);
    const hostile = bus.put('Task\nStarted', { taskId: 'x' });
    await bus.drained();

    expect(near).toMatchObject({ accepted: false, refusal: { code: 'unknown-detail-type' } });
    if (!near.accepted) {
      expect(near.refusal.message).toContain("unknown detail-type 'Task Started '");
      expect(near.refusal.message).toContain("'Task Started' and 'Task Ended'");
    }
    // Even the broker's source cannot invent a detail-type.
    expect(other).toMatchObject({ accepted: false, refusal: { code: 'unknown-detail-type' } });
    if (!other.accepted) expect(other.refusal.message).toContain("'Lease Stolen'");
    // The sender's text is shown escaped, so a reason stays one readable line.
    if (!hostile.accepted) expect(hostile.refusal.message).toContain("'Task\\nStarted'");
    expect(hostile.accepted).toBe(false);
    expect(seen).toEqual([]);
    expect(routed).toEqual({ 'task-started': [], 'task-ended': [] });
  });

  it('still routes input events from any engine source, and watchers see their source', async () => {
    const { seen, routed } = observedBus();
    const started = bus.put(DETAIL_TYPES.taskStarted, { taskId: 't1' }, 'my.engine');
    const ended = bus.put(DETAIL_TYPES.taskEnded, { taskId: 't1', outcome: 'succeeded' });
    await bus.drained();

    expect(started.accepted && ended.accepted).toBe(true);
    expect(routed['task-started'].map((e) => [e.detail, e.source])).toEqual([[{ taskId: 't1' }, 'my.engine']]);
    expect(routed['task-ended'].map((e) => [e.detail, e.source])).toEqual([
      [{ taskId: 't1', outcome: 'succeeded' }, 'local.workflow-engine'],
    ]);
    expect(seen.map((e) => e['detail-type'])).toEqual([DETAIL_TYPES.taskStarted, DETAIL_TYPES.taskEnded]);
    expect(bus.rejected).toEqual([]);
  });

  it('says the bus is closed instead of pretending to take an event', async () => {
    observedBus();
    await bus.close();
    expect(bus.put(DETAIL_TYPES.taskStarted, { taskId: 'late' })).toMatchObject({ accepted: false, refusal: { code: 'bus-closed' } });
  });
});

describe('LocalBus.publish (the broker’s EventPublisher)', () => {
  it('delivers the broker’s output events to watchers, tagged with the broker’s source, and routes none of them', async () => {
    const { seen, routed } = observedBus();
    const event = { detailType: DETAIL_TYPES.leaseRevoked, detail: revoked } as unknown as OutputEvent;
    await bus.publish(event);
    // The broker's own source through put is the broker's event too (the dashboard test relays one).
    const viaPut = bus.put(DETAIL_TYPES.leaseIssued, { taskId: 'victim-1' }, EVENT_SOURCE);
    await bus.drained();

    expect(viaPut.accepted).toBe(true);
    expect(seen.map((e) => [e['detail-type'], e.source])).toEqual([
      [DETAIL_TYPES.leaseRevoked, EVENT_SOURCE],
      [DETAIL_TYPES.leaseIssued, EVENT_SOURCE],
    ]);
    expect(seen[0]?.detail).toEqual(revoked);
    expect(routed).toEqual({ 'task-started': [], 'task-ended': [] });
    expect(bus.rejected).toEqual([]);
  });
});

describe('LocalBus deliveries carry the put time (issue 13)', () => {
  it('by the bus’s clock, kept across redeliveries like SQS SentTimestamp', async () => {
    let t = 1_700_000_000_123;
    bus = new LocalBus({ now: () => t, retryDelayMs: 1 });
    const deliveries: Array<{ putAt: number; receiveCount: number; time: string }> = [];
    bus.on('task-ended', async (e, d) => {
      deliveries.push({ ...d, time: e.time });
      t += 500;
      if (d.receiveCount === 1) throw new Error('transient');
    });
    bus.put(DETAIL_TYPES.taskEnded, { taskId: 'x' });
    await bus.drained();
    expect(deliveries).toEqual([
      { putAt: 1_700_000_000_123, receiveCount: 1, time: '2023-11-14T22:13:20.123Z' },
      { putAt: 1_700_000_000_123, receiveCount: 2, time: '2023-11-14T22:13:20.123Z' },
    ]);
  });
});
