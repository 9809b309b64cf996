import { randomUUID } from 'node:crypto';
import { EVENT_SOURCE } from '../shared/events/schemas.ts';
import type { OutputEvent } from '../shared/events/schemas.ts';
import { INPUT_DETAIL_TYPES, OUTPUT_DETAIL_TYPES, ROUTES } from '../shared/events/routing.ts';
import type { BusEvent, RouteName } from '../shared/events/routing.ts';
import { InvalidEventError, describeError } from '../shared/lease/errors.ts';
import type { EventPublisher } from '../shared/lease/ports.ts';

/** What the queue knows of a delivery, as SQS attributes do: when the event was put (the bus's clock, ms) and how often it was received. */
export interface Delivery {
  putAt: number;
  receiveCount: number;
}

export type RouteHandler = (event: BusEvent, delivery: Delivery) => Promise<unknown>;

export interface DeadLetter {
  route: RouteName;
  event: BusEvent;
  reason: string;
  receiveCount: number;
}

export interface LocalBusOptions {
  /** Messages in flight per route, like a queue's event-source maximum concurrency. */
  concurrency: number;
  /** Deliveries before a message is dead-lettered, like SQS maxReceiveCount. */
  maxReceiveCount: number;
  retryDelayMs: number;
  /** The bus's clock (epoch ms): the put time a delivery carries. Default Date.now. */
  now: () => number;
}

/** Why `put` refused an event; stable codes for tools, a message for people. */
export type PutRefusal =
  | { code: 'unknown-detail-type'; message: string }
  | { code: 'output-event-not-from-broker'; message: string }
  | { code: 'bus-closed'; message: string };

/** What `put` did, in the shape of a PutEvents result entry: the event it accepted, or why not. */
export type PutResult = { accepted: true; event: BusEvent } | { accepted: false; refusal: PutRefusal };

/** A refused put, kept like a failed PutEvents entry so a refusal is never silent. */
export interface RejectedPut {
  detailType: string;
  source: string;
  refusal: PutRefusal;
}

/** Why the bus refuses an event from `source`, or undefined when it takes it (the local bus policy). */
export function refusalOf(detailType: string, source: string): PutRefusal | undefined {
  if (OUTPUT_DETAIL_TYPES.includes(detailType)) {
    if (source === EVENT_SOURCE) return undefined;
    return {
      code: 'output-event-not-from-broker',
      message: `'${clip(detailType)}' is an output event: only the broker (source '${EVENT_SOURCE}') publishes it, not source '${clip(source)}'; engines put only ${INPUT_DETAIL_TYPES.map((t) => `'${t}'`).join(' and ')}`,
    };
  }
  if (INPUT_DETAIL_TYPES.includes(detailType)) return undefined;
  return {
    code: 'unknown-detail-type',
    message: `unknown detail-type '${clip(detailType)}': the bus takes ${INPUT_DETAIL_TYPES.map((t) => `'${t}'`).join(' and ')} (detail-types are exact and case-sensitive)`,
  };
}

/** Names in a refusal are the sender's text: bounded, and control characters shown escaped. */
function clip(text: string): string {
  const shown = JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
  return shown.slice(1, -1);
}

interface Message {
  route: RouteName;
  event: BusEvent;
  receiveCount: number;
  /** When the event was put: like SQS SentTimestamp, kept across redeliveries. */
  putAt: number;
}

/**
 * The in-process bus of the local runtime: rules by detail-type (the same ROUTES table the CDK
 * rules use), a queue per route with bounded concurrency, redelivery and a dead-letter list.
 * Output events are published on the same bus so watchers (demo, dashboard) see them.
 */
export class LocalBus implements EventPublisher {
  readonly deadLetters: DeadLetter[] = [];
  /** Puts the bus refused, with the reason (as PutEvents reports failed entries). */
  readonly rejected: RejectedPut[] = [];
  private readonly handlers = new Map<RouteName, RouteHandler>();
  private readonly queues = new Map<RouteName, Message[]>();
  private readonly inFlight = new Map<RouteName, number>();
  private readonly watchers = new Set<(event: BusEvent) => void>();
  private readonly idle = new Set<() => void>();
  private pendingRetries = 0;
  private closed = false;
  private readonly opts: LocalBusOptions;

  constructor(options: Partial<LocalBusOptions> = {}) {
    this.opts = { concurrency: 8, maxReceiveCount: 3, retryDelayMs: 50, now: Date.now, ...options };
    for (const r of ROUTES) {
      this.queues.set(r.name, []);
      this.inFlight.set(r.name, 0);
    }
  }

  /** Attaches the consumer of a route's queue. */
  on(route: RouteName, handler: RouteHandler): void {
    this.handlers.set(route, handler);
    this.pump(route);
  }

  /** Sees every event put on the bus, input and output alike. */
  watch(watcher: (event: BusEvent) => void): () => void {
    this.watchers.add(watcher);
    return () => this.watchers.delete(watcher);
  }

  /**
   * PutEvents, as a workflow engine calls it: refuses an unknown detail-type and an output
   * detail-type from any source but the broker's (the AWS bus policy does the same), otherwise
   * matches the event against the rules and enqueues it for each matching route. A refused event
   * reaches no watcher and no route; the result (and `rejected`) says why.
   */
  put(detailType: string, detail: unknown, source = 'local.workflow-engine'): PutResult {
    const refusal = this.closed
      ? { code: 'bus-closed' as const, message: `the bus is closed: '${clip(detailType)}' was not delivered` }
      : refusalOf(detailType, source);
    if (refusal) {
      this.rejected.push({ detailType, source, refusal });
      return { accepted: false, refusal };
    }
    return { accepted: true, event: this.deliverToAll(detailType, detail, source) };
  }

  /** The broker's side (EventPublisher): its output events, always with the broker's source. */
  async publish(event: OutputEvent): Promise<void> {
    if (this.closed) return;
    this.deliverToAll(event.detailType, event.detail, EVENT_SOURCE);
  }

  private deliverToAll(detailType: string, detail: unknown, source: string): BusEvent {
    const putAt = this.opts.now();
    const event: BusEvent = { id: randomUUID(), 'detail-type': detailType, source, time: new Date(putAt).toISOString(), detail };
    for (const w of this.watchers) w(event);
    for (const r of ROUTES) {
      if (r.detailType === detailType) {
        this.queues.get(r.name)?.push({ route: r.name, event, receiveCount: 0, putAt });
        this.pump(r.name);
      }
    }
    return event;
  }

  /**
   * Stops delivering: queued messages are dropped (as a stopped consumer leaves them on its
   * queue) and in-flight ones get up to `timeoutMs` to finish, so shutdown never waits on work
   * that keeps arriving.
   */
  async close(timeoutMs = 5_000): Promise<void> {
    this.closed = true;
    for (const q of this.queues.values()) q.length = 0;
    const deadline = Date.now() + timeoutMs;
    while ([...this.inFlight.values()].some((n) => n > 0) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    this.notifyIdle();
  }

  /** Resolves when no message is queued, in flight or waiting for redelivery. */
  drained(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  private isIdle(): boolean {
    if (this.closed) return true;
    if (this.pendingRetries > 0) return false;
    for (const r of ROUTES) {
      if ((this.queues.get(r.name)?.length ?? 0) > 0 || (this.inFlight.get(r.name) ?? 0) > 0) return false;
    }
    return true;
  }

  private pump(route: RouteName): void {
    const handler = this.handlers.get(route);
    const queue = this.queues.get(route) as Message[];
    if (!handler || this.closed) return;
    while ((this.inFlight.get(route) ?? 0) < this.opts.concurrency && queue.length > 0) {
      const msg = queue.shift() as Message;
      this.inFlight.set(route, (this.inFlight.get(route) ?? 0) + 1);
      void this.deliver(handler, msg).finally(() => {
        this.inFlight.set(route, (this.inFlight.get(route) ?? 0) - 1);
        this.pump(route);
        this.notifyIdle();
      });
    }
  }

  private async deliver(handler: RouteHandler, msg: Message): Promise<void> {
    msg.receiveCount++;
    try {
      await handler(msg.event, { putAt: msg.putAt, receiveCount: msg.receiveCount });
    } catch (err) {
      // A malformed event fails the same way every time: straight to the dead letters.
      if (err instanceof InvalidEventError || msg.receiveCount >= this.opts.maxReceiveCount) {
        this.deadLetters.push({ route: msg.route, event: msg.event, reason: describeError(err), receiveCount: msg.receiveCount });
        return;
      }
      this.pendingRetries++;
      setTimeout(() => {
        this.pendingRetries--;
        if (this.closed) return;
        this.queues.get(msg.route)?.push(msg);
        this.pump(msg.route);
      }, this.opts.retryDelayMs * msg.receiveCount);
    }
  }

  private notifyIdle(): void {
    if (!this.isIdle()) return;
    for (const resolve of this.idle) resolve();
    this.idle.clear();
  }
}
