import { grantKey } from '../shared/events/schemas.ts';
import type { Grant } from '../shared/events/schemas.ts';
import type { ReverifyMessage } from '../shared/broker/reverify-message.ts';
import { describeError } from '../shared/lease/errors.ts';
import type { LifecycleLogger, ReverifyScheduler } from '../shared/lease/lifecycle.ts';

export type ReverifyHandler = (message: ReverifyMessage) => Promise<unknown>;

export interface ReverifyQueueOptions {
  /** Deliveries of one message before it is dropped to the dead letters (SQS maxReceiveCount). */
  maxReceiveCount: number;
  /** Redelivery delay after a failed handler: doubled per receive, capped (SQS visibility timeout). */
  retryDelayMs: number;
  retryMaxDelayMs: number;
  /** Messages handled at once (the re-verify function's reserved concurrency). */
  concurrency: number;
  log?: LifecycleLogger;
}

export interface ReverifyDeadLetter {
  message: ReverifyMessage;
  reason: string;
  receiveCount: number;
}

interface Pending {
  message: ReverifyMessage;
  receiveCount: number;
  timer?: NodeJS.Timeout;
}

/** setTimeout's longest delay; a longer one is waited in hops. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The local runtime's re-verify queue: the in-process twin of the SQS delay queue. The core asks
 * for a delay (its backoff); the message is delivered to the broker after that delay, so a failed
 * verification is retried within its backoff, not at the next reaper run. One pending message per
 * credential: a newer schedule supersedes the older one, as a stale SQS message is dropped by the
 * broker. A handler that throws is redelivered with backoff and, after `maxReceiveCount`
 * deliveries, dead-lettered; the reaper stays the backstop either way.
 */
export class LocalReverifyQueue implements ReverifyScheduler {
  readonly deadLetters: ReverifyDeadLetter[] = [];
  readonly stats = { scheduled: 0, superseded: 0, delivered: 0, failed: 0 };
  private readonly pending = new Map<string, Pending>();
  private readonly ready: Array<[string, Pending]> = [];
  private readonly idle = new Set<() => void>();
  private handler?: ReverifyHandler;
  private inFlight = 0;
  private closed = false;
  private readonly opts: ReverifyQueueOptions;

  constructor(options: Partial<ReverifyQueueOptions> = {}) {
    this.opts = { maxReceiveCount: 5, retryDelayMs: 200, retryMaxDelayMs: 5_000, concurrency: 4, ...options };
  }

  /** Attaches the consumer (the broker's `reverifyDue`). Messages due before it wait for it. */
  on(handler: ReverifyHandler): void {
    this.handler = handler;
    this.pump();
  }

  async schedule(taskId: string, grant: Grant, delayMs: number): Promise<void> {
    if (this.closed) return;
    const key = `${taskId}\u0000${grantKey(grant)}`;
    const prior = this.pending.get(key);
    if (prior?.timer) {
      clearTimeout(prior.timer);
      this.stats.superseded++;
    }
    this.stats.scheduled++;
    const entry: Pending = { message: { taskId, grant }, receiveCount: 0 };
    this.pending.set(key, entry);
    this.arm(key, entry, delayMs);
  }

  /** Messages waiting for their delay, ready, or being handled. */
  get size(): number {
    return this.pending.size + this.inFlight;
  }

  /** Resolves when nothing is pending or in flight. */
  drained(): Promise<void> {
    if (this.size === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  /** Drops every pending message (a stopped consumer) and waits up to `timeoutMs` for in-flight ones. */
  async close(timeoutMs = 5_000): Promise<void> {
    this.closed = true;
    for (const p of this.pending.values()) if (p.timer) clearTimeout(p.timer);
    this.pending.clear();
    this.ready.length = 0;
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    this.notifyIdle();
  }

  private arm(key: string, entry: Pending, delayMs: number): void {
    const wait = Math.max(0, Math.min(delayMs, MAX_TIMER_MS));
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (this.pending.get(key) !== entry) return;
      if (delayMs > MAX_TIMER_MS) return this.arm(key, entry, delayMs - MAX_TIMER_MS);
      this.ready.push([key, entry]);
      this.pump();
    }, wait);
    // Like the bus: a pending retry never keeps a finished process alive (the reaper is the backstop).
    entry.timer.unref();
  }

  private pump(): void {
    const handler = this.handler;
    if (!handler || this.closed) return;
    while (this.inFlight < this.opts.concurrency && this.ready.length > 0) {
      const [key, entry] = this.ready.shift() as [string, Pending];
      if (this.pending.get(key) !== entry) continue; // superseded while it waited
      this.pending.delete(key);
      this.inFlight++;
      void this.deliver(handler, key, entry).finally(() => {
        this.inFlight--;
        this.pump();
        this.notifyIdle();
      });
    }
  }

  private async deliver(handler: ReverifyHandler, key: string, entry: Pending): Promise<void> {
    entry.receiveCount++;
    this.stats.delivered++;
    try {
      await handler(entry.message);
    } catch (err) {
      this.stats.failed++;
      const reason = describeError(err);
      if (entry.receiveCount >= this.opts.maxReceiveCount) {
        this.deadLetters.push({ message: entry.message, reason, receiveCount: entry.receiveCount });
        this.opts.log?.error('re-verify message dead-lettered; the reaper retries the credential', {
          taskId: entry.message.taskId,
          grant: grantKey(entry.message.grant),
          receiveCount: entry.receiveCount,
          error: reason,
        });
        return;
      }
      this.opts.log?.warn('re-verify message failed; redelivering', {
        taskId: entry.message.taskId,
        grant: grantKey(entry.message.grant),
        receiveCount: entry.receiveCount,
        error: reason,
      });
      // A newer schedule for the credential (made by the failed attempt itself) wins over a redelivery.
      if (this.closed || this.pending.has(key)) return;
      this.pending.set(key, entry);
      this.arm(key, entry, Math.min(this.opts.retryDelayMs * 2 ** (entry.receiveCount - 1), this.opts.retryMaxDelayMs));
    }
  }

  private notifyIdle(): void {
    if (this.size > 0) return;
    for (const resolve of this.idle) resolve();
    this.idle.clear();
  }
}
