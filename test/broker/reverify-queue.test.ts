/** The local re-verify delay queue (local/reverify-queue.ts) on fake timers. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ReverifyMessage } from '../../shared/broker/reverify-message.ts';
import { LocalReverifyQueue } from '../../local/reverify-queue.ts';

const GRANT = { target: 'orders-db', access: 'read' };

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('LocalReverifyQueue', () => {
  it('delivers after the delay the core asked for, not before', async () => {
    const q = new LocalReverifyQueue();
    const got: ReverifyMessage[] = [];
    q.on(async (m) => void got.push(m));
    await q.schedule('t-1', GRANT, 1_500);
    await vi.advanceTimersByTimeAsync(1_499);
    expect(got).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(got).toEqual([{ taskId: 't-1', grant: GRANT }]);
    expect(q.size).toBe(0);
  });

  it('keeps one pending message per credential: a newer schedule supersedes the older', async () => {
    const q = new LocalReverifyQueue();
    const at: number[] = [];
    q.on(async () => void at.push(Date.now()));
    const t0 = Date.now();
    await q.schedule('t-2', GRANT, 1_000);
    await q.schedule('t-2', GRANT, 4_000);
    await q.schedule('t-3', GRANT, 2_000);
    expect(q.size).toBe(2);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(at.map((t) => t - t0)).toEqual([2_000, 4_000]);
    expect(q.stats).toMatchObject({ scheduled: 3, superseded: 1, delivered: 2 });
  });

  it('redelivers a failed message with doubling delays, then dead-letters it', async () => {
    const q = new LocalReverifyQueue({ maxReceiveCount: 3, retryDelayMs: 100, retryMaxDelayMs: 150 });
    const at: number[] = [];
    q.on(async () => {
      at.push(Date.now());
      throw new Error('ledger unavailable');
    });
    const t0 = Date.now();
    await q.schedule('t-4', GRANT, 0);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(at.map((t) => t - t0)).toEqual([0, 100, 250]);
    expect(q.deadLetters).toEqual([
      { message: { taskId: 't-4', grant: GRANT }, reason: expect.stringContaining('ledger unavailable'), receiveCount: 3 },
    ]);
    expect(q.size).toBe(0);
  });

  it('a schedule made by the failed attempt itself wins over the redelivery', async () => {
    const q = new LocalReverifyQueue({ retryDelayMs: 100 });
    let calls = 0;
    q.on(async (m) => {
      calls++;
      if (calls === 1) {
        await q.schedule(m.taskId, m.grant, 3_000);
        throw new Error('half-done');
      }
    });
    await q.schedule('t-5', GRANT, 0);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(calls).toBe(2);
  });

  it('holds messages until a consumer attaches, and drops everything on close', async () => {
    const q = new LocalReverifyQueue();
    await q.schedule('t-6', GRANT, 10);
    await q.schedule('t-7', GRANT, 5_000);
    await vi.advanceTimersByTimeAsync(20);
    const got: string[] = [];
    q.on(async (m) => void got.push(m.taskId));
    await vi.advanceTimersByTimeAsync(0);
    expect(got).toEqual(['t-6']);
    await q.close();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(got).toEqual(['t-6']);
    await q.schedule('t-8', GRANT, 0);
    expect(q.size).toBe(0);
  });
});
