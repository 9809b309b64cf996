import { describe, expect, it } from 'vitest';
import { TargetRateLimiter } from '../../shared/lease/reaper.ts';
import type { Clock } from '../../shared/lease/ports.ts';

/** A clock whose sleep advances virtual time: the token bucket's arithmetic, exactly. */
function virtualClock(): Clock & { t: number } {
  const c = {
    t: 1_000_000,
    now: () => c.t,
    sleep: async (ms: number) => {
      c.t += ms;
    },
  };
  return c;
}

describe('per-target token bucket of the reaper', () => {
  it('lets a burst through, then paces to the rate, per target', async () => {
    const clock = virtualClock();
    const limiter = new TargetRateLimiter(clock, 10, 5);
    const start = clock.t;
    const at: number[] = [];
    for (let i = 0; i < 25; i++) {
      await limiter.take('orders-db');
      at.push(clock.t - start);
    }
    expect(at.slice(0, 5)).toEqual([0, 0, 0, 0, 0]); // the burst
    for (let i = 5; i < at.length; i++) expect(at[i]).toBeGreaterThanOrEqual((i - 4) * 100); // then 10/s
    expect(at.at(-1)).toBeLessThanOrEqual(20 * 100 + 25);
    // For any two takes i < j: at most burst + rate × elapsed.
    for (let i = 0; i < at.length; i++)
      for (let j = i + 1; j < at.length; j++)
        expect(j - i + 1).toBeLessThanOrEqual(5 + Math.floor((10 * ((at[j] as number) - (at[i] as number))) / 1000) + 1);
    // Another target has its own bucket.
    const before = clock.t;
    await limiter.take('billing-db');
    expect(clock.t).toBe(before);
  });

  it('refills while idle, never above the burst', async () => {
    const clock = virtualClock();
    const limiter = new TargetRateLimiter(clock, 10, 5);
    for (let i = 0; i < 5; i++) await limiter.take('t');
    clock.t += 60_000; // a quiet minute
    let waited = 0;
    for (let i = 0; i < 6; i++) waited += await limiter.take('t');
    expect(waited).toBeGreaterThan(0); // the sixth had to wait: the bucket held 5, not 600
    expect(waited).toBeLessThanOrEqual(100);
  });

  it('a rate of 0 or Infinity disables pacing', async () => {
    const clock = virtualClock();
    for (const rate of [0, Number.POSITIVE_INFINITY]) {
      const limiter = new TargetRateLimiter(clock, rate, 1);
      for (let i = 0; i < 100; i++) expect(await limiter.take('t')).toBe(0);
    }
  });
});
