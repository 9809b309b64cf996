import { AsyncLocalStorage } from 'node:async_hooks';
import { ConditionalCheckFailedException, ProvisionedThroughputExceededException } from '@aws-sdk/client-dynamodb';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { grantKey } from '../shared/events/schemas.ts';
import type { OutputEvent } from '../shared/events/schemas.ts';
import type { BusEvent, RouteName } from '../shared/events/routing.ts';
import { TargetError } from '../shared/lease/errors.ts';
import { createBroker } from '../shared/broker/create.ts';
import type { Broker } from '../shared/broker/create.ts';
import type { BrokerMetrics } from '../shared/broker/ports.ts';
import type { LeaseLifecycle, LifecycleLogger, LifecycleObserver, LifecycleOptions } from '../shared/lease/lifecycle.ts';
import type { ReaperOptions, ReaperReport } from '../shared/lease/reaper.ts';
import type {
  Clock,
  EventPublisher,
  IssueContext,
  IssuedCredential,
  Ledger,
  RevokeContext,
  SecretPutInput,
  SecretStore,
  TargetDriver,
  TargetRegistry,
  VerifyContext,
} from '../shared/lease/ports.ts';
import { DynamoDbLedger } from '../shared/ledger/dynamodb-ledger.ts';
import { httpBundleSource } from '../shared/identity/bundle.ts';
import { ConfigPolicy } from '../shared/policy/evaluate.ts';
import { buildSvidVerifier } from '../shared/runtime/identity.ts';
import { LocalBus } from '../local/bus.ts';
import type { LocalBusOptions, RouteHandler } from '../local/bus.ts';
import { localDynamoClient } from '../local/dynalite.ts';
import { LocalReverifyQueue } from '../local/reverify-queue.ts';
import type { ReverifyQueueOptions } from '../local/reverify-queue.ts';
import type { LocalRuntime } from '../local/runtime.ts';

/*
 * Fault injection for the local runtime (issue 5 §4). Decorators around the broker's ports
 * (Ledger, TargetDriver, SecretStore, EventPublisher), SDK-level DynamoDB faults, and a bus that
 * duplicates, reorders and loses deliveries. Every decision is a pure function of
 * (seed, site, key, occurrence), so a seed reproduces the same fault plan.
 *
 * A "crash" models a Lambda dying mid-handler: the port call throws CrashError and the whole
 * invocation is dead from then on: every later port call inside it throws too, so no catch block
 * in the core can carry on as if the process had survived.
 */

// ─── Deterministic randomness ───────────────────────────────────────────────────────────────────

/** cyrb53: a fast 53-bit string hash, enough to spread (seed, site, key, n) over [0, 1). */
export function hash53(text: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** mulberry32: a small seeded PRNG for plans (per-task streams). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ─── Clock ──────────────────────────────────────────────────────────────────────────────────────

/** Real time plus an offset the chaos runner and tests move forward (lease expiry, backoff, locks). */
export class OffsetClock implements Clock {
  private offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
  }
  advance(ms: number): void {
    this.offset += ms;
  }
}

// ─── Faults ─────────────────────────────────────────────────────────────────────────────────────

/** Thrown at a crash point; not a TaskLeaseError, so queues treat it as a failure to redeliver. */
export class CrashError extends Error {
  readonly code = 'injected-crash';
  constructor(where: string) {
    super(`injected crash ${where}`);
    this.name = 'CrashError';
  }
}

export const FAULT_KINDS = [
  'crash-before-ledger-write',
  'crash-after-ledger-write',
  'crash-before-target-call',
  'crash-after-target-call',
  'crash-before-secret-write',
  'crash-after-secret-write',
  'crash-before-publish',
  'target-unreachable',
  'target-slow',
  'secret-store-unavailable',
  'ledger-throttled',
  'ledger-conflict-after-write',
  'ledger-conflict-spurious',
  'delivery-duplicated-x3',
  'delivery-delayed',
  'task-ended-lost',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Probability of each fault at each opportunity (per port call, per SDK call, per delivery). */
export type FaultRates = Record<FaultKind, number>;

export const NO_FAULTS: FaultRates = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as FaultRates;

/** The chaos profile: roughly one task in four meets a crash somewhere. */
export const CHAOS_RATES: FaultRates = {
  'crash-before-ledger-write': 0.006,
  'crash-after-ledger-write': 0.006,
  'crash-before-target-call': 0.015,
  'crash-after-target-call': 0.015,
  'crash-before-secret-write': 0.005,
  'crash-after-secret-write': 0.005,
  'crash-before-publish': 0.005,
  'target-unreachable': 0.03,
  'target-slow': 0.05,
  'secret-store-unavailable': 0.005,
  'ledger-throttled': 0.004,
  'ledger-conflict-after-write': 0.006,
  'ledger-conflict-spurious': 0.003,
  'delivery-duplicated-x3': 0.1,
  'delivery-delayed': 0.1,
  'task-ended-lost': 0.05,
};

export interface FaultInjectorOptions {
  seed: number;
  rates?: Partial<FaultRates>;
  /** Delay range of a slow target call, ms. */
  slowMs?: [number, number];
  /** Delay range of a delayed (reordered) delivery, ms. */
  delayMs?: [number, number];
  /** The clock crash times are read from (the chaos runner's offset clock). Default Date.now. */
  now?: () => number;
}

interface InvocationContext {
  label: string;
  crashed: boolean;
}

export class FaultInjector {
  readonly seed: number;
  readonly counts: Record<FaultKind, number> = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  readonly slowMs: [number, number];
  readonly delayMs: [number, number];
  /** Every fault that fired: kind, site and key (task id), for debugging one seed. */
  readonly trace: string[] = [];
  /** When each injected crash killed an invocation, and which kind of invocation (reaper, task-ended…). */
  readonly crashes: Array<{ at: number; label: string }> = [];
  private readonly now: () => number;
  private rates: FaultRates;
  private readonly occurrences = new Map<string, number>();
  private readonly forced: Array<{ kind: FaultKind; where: string; key: string; left: number }> = [];
  private readonly als = new AsyncLocalStorage<InvocationContext>();
  private healedFlag = false;

  constructor(options: FaultInjectorOptions) {
    this.seed = options.seed >>> 0;
    this.rates = { ...NO_FAULTS, ...options.rates };
    this.slowMs = options.slowMs ?? [30, 250];
    this.delayMs = options.delayMs ?? [50, 3_000];
    this.now = options.now ?? Date.now;
  }

  get healed(): boolean {
    return this.healedFlag;
  }

  /** Turns every fault off (the outage is over); counters stay for the report. */
  heal(): void {
    this.healedFlag = true;
    this.rates = { ...NO_FAULTS };
  }

  /** A uniform draw in [0, 1) for the n-th time this (site, key) asks: reproducible per seed. */
  draw(site: string, key: string): number {
    const id = `${site}\u0000${key}`;
    const n = this.occurrences.get(id) ?? 0;
    this.occurrences.set(id, n + 1);
    return hash53(`${id}\u0000${n}`, this.seed) / 2 ** 53;
  }

  /**
   * Makes `kind` fire the next `times` times it is asked at a site containing `where` for `key`,
   * whatever the rates (tests use it to place one fault exactly). Works after heal() too.
   */
  force(kind: FaultKind, where: string, key: string, times = 1): void {
    this.forced.push({ kind, where, key, left: times });
  }

  /** Whether `kind` fires here; counts it when it does. */
  fires(kind: FaultKind, key: string, site: string = kind): boolean {
    const forced = this.forced.find((f) => f.left > 0 && f.kind === kind && f.key === key && site.includes(f.where));
    if (forced) {
      forced.left--;
      this.counts[kind]++;
      this.trace.push(`${kind} @ ${site} [${key}] (forced)`);
      return true;
    }
    const rate = this.rates[kind];
    if (!(rate > 0)) return false;
    if (this.draw(site, key) >= rate) return false;
    this.counts[kind]++;
    this.trace.push(`${kind} @ ${site} [${key}]`);
    return true;
  }

  between([lo, hi]: [number, number], site: string, key: string): number {
    return Math.round(lo + (hi - lo) * this.draw(site, key));
  }

  /** Runs one handler invocation (a Lambda call): a crash inside it kills the rest of it. */
  invoke<T>(label: string, fn: () => Promise<T>): Promise<T> {
    return this.als.run({ label, crashed: false }, fn);
  }

  /** Throws if the current invocation already crashed. */
  assertAlive(where: string): void {
    if (this.als.getStore()?.crashed) throw new CrashError(`(already dead) at ${where}`);
  }

  /** Crashes the current invocation here when `kind` fires. Crashes need an invocation. */
  maybeCrash(kind: FaultKind, key: string, where: string): void {
    const ctx = this.als.getStore();
    if (!ctx || ctx.crashed) return;
    if (this.fires(kind, key, `${kind}:${where}`)) {
      ctx.crashed = true;
      this.crashes.push({ at: this.now(), label: ctx.label });
      throw new CrashError(`${kind.replace(/^crash-/, '')} at ${where}`);
    }
  }

  /** The common shape of a faulty port call. */
  async around<T>(
    where: string,
    key: string,
    faults: { before?: FaultKind; after?: FaultKind; unreachable?: FaultKind; slow?: FaultKind },
    call: () => Promise<T>,
  ): Promise<T> {
    this.assertAlive(where);
    if (faults.before) this.maybeCrash(faults.before, key, where);
    if (faults.slow && this.fires(faults.slow, key, `${faults.slow}:${where}`)) {
      await new Promise((resolve) => setTimeout(resolve, this.between(this.slowMs, `slow-ms:${where}`, key)));
      this.assertAlive(where);
    }
    if (faults.unreachable && this.fires(faults.unreachable, key, `${faults.unreachable}:${where}`)) {
      throw new TargetError(`${where}: connect ECONNREFUSED (injected: unreachable)`);
    }
    const result = await call();
    this.assertAlive(where);
    if (faults.after) this.maybeCrash(faults.after, key, where);
    return result;
  }
}

// ─── Port decorators ────────────────────────────────────────────────────────────────────────────

/** Crash points before and after each ledger write; reads only die with a dead invocation. */
export function faultyLedger(ledger: Ledger, inj: FaultInjector): Ledger {
  const write = <T>(name: string, key: string, call: () => Promise<T>) =>
    inj.around(`ledger.${name}`, key, { before: 'crash-before-ledger-write', after: 'crash-after-ledger-write' }, call);
  const read = <T>(name: string, call: () => Promise<T>) => {
    inj.assertAlive(`ledger.${name}`);
    return call();
  };
  return {
    getLease: (taskId) => read('getLease', () => ledger.getLease(taskId)),
    createLease: (lease) => write('createLease', lease.taskId, () => ledger.createLease(lease)),
    updateLease: (taskId, from, patch, extra) => write('updateLease', taskId, () => ledger.updateLease(taskId, from, patch, extra)),
    createCredential: (cred) => write('createCredential', cred.taskId, () => ledger.createCredential(cred)),
    updateCredential: (taskId, key, from, patch) =>
      write('updateCredential', taskId, () => ledger.updateCredential(taskId, key, from, patch)),
    claimSvid: (replayKey, taskId, expiresAt) => write('claimSvid', taskId, () => ledger.claimSvid(replayKey, taskId, expiresAt)),
    listOpen: (dueBefore, limit, cursor) => read('listOpen', () => ledger.listOpen(dueBefore, limit, cursor)),
    listLeases: (filter) => read('listLeases', () => ledger.listLeases(filter)),
  };
}

/** One credential the broker tried to create on a target, as the driver decorator saw it. */
export interface IssueRecord {
  taskId: string;
  grant: string;
  target: string;
  externalId: string;
  attempts: number;
  /** Calls that returned (the credential exists on the target). */
  created: number;
  firstAt: number;
}

/**
 * Every credential that ever existed on a target passed through `issue`, so recording each call
 * (before it is made: a crash after the target call still leaves a role) gives the complete list.
 * Passwords are kept in memory only, for the login and leak checks, and never printed.
 */
export class CredentialRecorder {
  readonly issues = new Map<string, IssueRecord>();
  readonly passwords = new Map<string, string[]>();
  readonly revokes = { calls: 0, inFlight: 0, maxInFlight: 0, startedAt: [] as number[] };
  /** Role oids the harness read itself at issue (target/externalId → oids), independent of the driver. */
  readonly oids = new Map<string, Set<string>>();
  /** The oid each issue returned in its metadata (what the driver will record), to compare. */
  readonly driverOids = new Map<string, Set<string>>();
  /** Issues whose own oid look-up found no role (or failed). */
  captureMisses = 0;
  /**
   * The harness's own look-up of a new credential's oid, run when issue returns (before the
   * secret is stored, so before anyone else can log in with it). Unset: nothing is captured.
   */
  capture?: (target: string, externalId: string) => Promise<string | undefined>;

  private key(target: string, externalId: string) {
    return `${target}/${externalId}`;
  }

  attempt(target: string, ctx: IssueContext, now: number): void {
    const k = this.key(target, ctx.externalId);
    const rec = this.issues.get(k) ?? {
      taskId: ctx.lease.taskId,
      grant: grantKey(ctx.grant),
      target,
      externalId: ctx.externalId,
      attempts: 0,
      created: 0,
      firstAt: now,
    };
    rec.attempts++;
    this.issues.set(k, rec);
  }

  created(target: string, ctx: IssueContext, issued: IssuedCredential): void {
    const rec = this.issues.get(this.key(target, ctx.externalId));
    if (rec) rec.created++;
    const pw = issued.secret.password;
    if (pw) this.passwords.set(this.key(target, ctx.externalId), [...(this.passwords.get(this.key(target, ctx.externalId)) ?? []), pw]);
  }

  /** Reads the oid with the harness's own SQL; a failed look-up is counted, never fails the issue. */
  async captureOid(target: string, ctx: IssueContext, issued: IssuedCredential): Promise<void> {
    const k = this.key(target, ctx.externalId);
    const reported = issued.metadata?.roleOid;
    if (reported) this.driverOids.set(k, (this.driverOids.get(k) ?? new Set()).add(reported));
    if (!this.capture) return;
    const oid = await this.capture(target, ctx.externalId).catch(() => undefined);
    if (oid) this.oids.set(k, (this.oids.get(k) ?? new Set()).add(oid));
    else this.captureMisses++;
  }

  tasksWithIssues(): Set<string> {
    return new Set([...this.issues.values()].map((r) => r.taskId));
  }

  allPasswords(): string[] {
    return [...this.passwords.values()].flat();
  }
}

export function faultyDriver(
  target: string,
  driver: TargetDriver,
  inj: FaultInjector,
  recorder?: CredentialRecorder,
  clock?: Clock,
): TargetDriver {
  const faults = {
    before: 'crash-before-target-call',
    after: 'crash-after-target-call',
    unreachable: 'target-unreachable',
    slow: 'target-slow',
  } as const;
  const wrapped: TargetDriver = {
    kind: driver.kind,
    externalId: (taskId, grant) => driver.externalId(taskId, grant),
    issue: (ctx: IssueContext) =>
      inj.around(`${target}.issue`, ctx.lease.taskId, faults, async () => {
        recorder?.attempt(target, ctx, clock?.now() ?? Date.now());
        const issued = await driver.issue(ctx);
        recorder?.created(target, ctx, issued);
        await recorder?.captureOid(target, ctx, issued);
        return issued;
      }),
    revoke: (ctx: RevokeContext) =>
      inj.around(`${target}.revoke`, ctx.taskId, faults, async () => {
        if (recorder) {
          recorder.revokes.calls++;
          recorder.revokes.startedAt.push(Date.now());
          recorder.revokes.maxInFlight = Math.max(recorder.revokes.maxInFlight, ++recorder.revokes.inFlight);
        }
        try {
          await driver.revoke(ctx);
        } finally {
          if (recorder) recorder.revokes.inFlight--;
        }
      }),
    verify: (ctx: VerifyContext) =>
      inj.around(`${target}.verify`, ctx.taskId, { unreachable: 'target-unreachable', slow: 'target-slow' }, () => driver.verify(ctx)),
  };
  if (driver.listManaged)
    wrapped.listManaged = () =>
      inj.around(`${target}.listManaged`, 'reconcile', { unreachable: 'target-unreachable' }, () =>
        (driver.listManaged as () => Promise<string[]>)(),
      );
  return wrapped;
}

export function faultyTargets(
  registry: TargetRegistry & { names?(): string[] },
  inj: FaultInjector,
  recorder?: CredentialRecorder,
  clock?: Clock,
): TargetRegistry & { names(): string[] } {
  const names = registry.names?.() ?? [];
  const wrapped = new Map(names.map((n) => [n, faultyDriver(n, registry.get(n) as TargetDriver, inj, recorder, clock)]));
  return { get: (n) => wrapped.get(n), all: () => [...wrapped.values()], names: () => [...wrapped.keys()] };
}

export function faultySecretStore(store: SecretStore, inj: FaultInjector): SecretStore {
  const faults = {
    before: 'crash-before-secret-write',
    after: 'crash-after-secret-write',
    unreachable: 'secret-store-unavailable',
  } as const;
  const taskOf = (name: string) => name.split('/')[1] ?? name;
  return {
    put: (input: SecretPutInput) => inj.around('secrets.put', input.taskId, faults, () => store.put(input)),
    delete: (name) => inj.around('secrets.delete', taskOf(name), faults, () => store.delete(name)),
    get: (name) => inj.around('secrets.get', taskOf(name), { unreachable: 'secret-store-unavailable' }, () => store.get(name)),
    exists: (name) => inj.around('secrets.exists', taskOf(name), { unreachable: 'secret-store-unavailable' }, () => store.exists(name)),
  };
}

export function faultyPublisher(publisher: EventPublisher, inj: FaultInjector): EventPublisher {
  return {
    publish: (event: OutputEvent) =>
      inj.around(
        `events.${event.detailType}`,
        String((event.detail as { taskId?: string }).taskId),
        { before: 'crash-before-publish' },
        () => publisher.publish(event),
      ),
  };
}

/**
 * SDK-level ledger faults, errors shaped exactly like the SDK's (its own exception classes):
 * - throttling: ProvisionedThroughputExceededException after the SDK's own retries gave up;
 * - conflict after write: the conditional write was applied, its response lost, and the SDK's
 *   retry of it failed its condition (ConditionalCheckFailedException) — a real DynamoDB hazard;
 * - spurious conflict: ConditionalCheckFailedException without the write (what a racing writer
 *   inside the ledger's read-modify-write produces).
 */
export function installDynamoFaults(client: DynamoDBClient | DynamoDBDocumentClient, inj: FaultInjector): void {
  const conditional = (input: Record<string, unknown>) => typeof input.ConditionExpression === 'string';
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as Record<string, unknown>;
      const command = String(context.commandName ?? 'Command');
      const key = JSON.stringify(input.Key ?? (input.Item as Record<string, unknown> | undefined)?.pk ?? command);
      if (inj.fires('ledger-throttled', key, `throttle:${command}`)) {
        throw new ProvisionedThroughputExceededException({
          message: 'The level of configured provisioned throughput for the table was exceeded (injected)',
          $metadata: { httpStatusCode: 400, attempts: 3 },
        });
      }
      if (conditional(input) && inj.fires('ledger-conflict-spurious', key, `spurious:${command}`)) {
        throw new ConditionalCheckFailedException({
          message: 'The conditional request failed (injected, not applied)',
          $metadata: { httpStatusCode: 400 },
        });
      }
      const result = await next(args);
      if (conditional(input) && inj.fires('ledger-conflict-after-write', key, `after:${command}`)) {
        throw new ConditionalCheckFailedException({
          message: 'The conditional request failed (injected: applied, response lost, retry failed)',
          $metadata: { httpStatusCode: 400 },
        });
      }
      return result;
    },
    { step: 'initialize', name: 'taskleaseChaosFaults', tags: ['CHAOS'] },
  );
}

// ─── Bus ────────────────────────────────────────────────────────────────────────────────────────

/**
 * Input delivery with faults: each put may be duplicated ×3, delayed (so deliveries reorder, a
 * `Task Ended` can overtake its `Task Started`), and a `Task Ended` may be lost altogether.
 * Redelivery after a failed handler and dead letters are the LocalBus's own (SQS-like).
 */
export class FaultyBus {
  readonly bus: LocalBus;
  readonly lost: BusEvent[] = [];
  private pending = 0;
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly inj: FaultInjector,
    options: Partial<LocalBusOptions> = {},
  ) {
    this.bus = new LocalBus(options);
  }

  on(route: RouteName, handler: RouteHandler): void {
    this.bus.on(route, handler);
  }

  /** Puts an input event through the faults; returns how many copies will be delivered. */
  put(detailType: string, detail: { taskId?: unknown } & Record<string, unknown>): number {
    const key = `${detailType}:${String(detail.taskId)}`;
    if (detailType === 'Task Ended' && this.inj.fires('task-ended-lost', key)) {
      this.lost.push({ id: 'lost', 'detail-type': detailType, source: 'chaos', time: new Date().toISOString(), detail });
      return 0;
    }
    const copies = this.inj.fires('delivery-duplicated-x3', key) ? 3 : 1;
    for (let i = 0; i < copies; i++) {
      if (this.inj.fires('delivery-delayed', `${key}#${i}`)) {
        this.pending++;
        setTimeout(
          () => {
            this.bus.put(detailType, detail);
            this.pending--;
            this.notify();
          },
          this.inj.between(this.inj.delayMs, 'delay-ms', `${key}#${i}`),
        );
      } else {
        this.bus.put(detailType, detail);
      }
    }
    return copies;
  }

  /** Resolves once no delayed delivery is pending and the bus is idle. */
  async drained(): Promise<void> {
    for (;;) {
      if (this.pending > 0) await new Promise<void>((resolve) => this.waiters.add(resolve));
      await this.bus.drained();
      if (this.pending === 0) return;
    }
  }

  private notify(): void {
    if (this.pending > 0) return;
    for (const w of this.waiters) w();
    this.waiters.clear();
  }
}

// ─── A broker assembled with faulty ports ───────────────────────────────────────────────────────

export interface FaultyBrokerOptions {
  lifecycle?: Partial<LifecycleOptions>;
  bus?: Partial<LocalBusOptions>;
  reaper?: Partial<ReaperOptions>;
  log?: LifecycleLogger;
  observer?: LifecycleObserver;
  /** Install SDK-level DynamoDB faults on the broker's own ledger client. Default true. */
  dynamoFaults?: boolean;
  /**
   * The local re-verify delay queue, each delivery its own invocation (a crash inside it ends
   * that attempt, and the queue redelivers). `false`: unproven revocations wait for the reaper.
   */
  reverify?: Partial<ReverifyQueueOptions> | false;
  /** The reaper's gauges; default none (measuring blast radius each run would read every lease). */
  metrics?: BrokerMetrics;
}

export interface FaultyBroker {
  /** The broker built by createBroker over the faulty ports. */
  broker: Broker;
  lifecycle: LeaseLifecycle;
  bus: FaultyBus;
  /** The broker's ledger (faulty); use `rt.ledger` for fault-free reads. */
  ledger: Ledger;
  targets: TargetRegistry & { names(): string[] };
  recorder: CredentialRecorder;
  reverify?: LocalReverifyQueue;
  /** One reaper run as its own invocation (a crash inside it ends that run). */
  reap(options?: Partial<ReaperOptions>): Promise<ReaperReport>;
  close(): Promise<void>;
}

/**
 * The broker of a started local runtime, rebuilt through createBroker with every port behind the
 * fault decorators; the bus routes and the delay queue call it as the runtime's own do, each
 * delivery one invocation. The runtime's own broker and bus stay untouched and fault-free.
 */
export function createFaultyBroker(rt: LocalRuntime, inj: FaultInjector, clock: Clock, options: FaultyBrokerOptions = {}): FaultyBroker {
  const client = localDynamoClient(rt.dynamo.endpoint);
  const doc = DynamoDBDocumentClient.from(client);
  if (options.dynamoFaults !== false) installDynamoFaults(doc, inj);
  const ledger = faultyLedger(new DynamoDbLedger(doc, rt.dynamo.tableName, { now: () => clock.now() }), inj);
  const recorder = new CredentialRecorder();
  const targets = faultyTargets(rt.targets, inj, recorder, clock);
  const bus = new FaultyBus(inj, { concurrency: 8, maxReceiveCount: 5, retryDelayMs: 100, ...options.bus });
  const queue = options.reverify === false ? undefined : new LocalReverifyQueue({ log: options.log, ...options.reverify });
  const { verifier } = buildSvidVerifier(rt.config, { localBundle: () => httpBundleSource(rt.issuer.bundleUrl), clock });
  const broker = createBroker(
    {
      ledger,
      targets,
      secrets: faultySecretStore(rt.secrets, inj),
      events: faultyPublisher(bus.bus, inj),
      identity: verifier,
      policy: new ConfigPolicy(rt.config),
      clock,
      reverify: queue,
      log: options.log,
      observer: options.observer,
      metrics: options.metrics,
    },
    { config: rt.config, lifecycle: options.lifecycle, reaper: options.reaper },
  );
  bus.on('task-started', (e) => inj.invoke('task-started', () => broker.taskStarted(e.detail)));
  // The bus's put time is the end when Task Ended carries no endedAt, as in the local runtime.
  bus.on('task-ended', (e, delivery) => inj.invoke('task-ended', () => broker.taskEnded(e.detail, { queuedAt: delivery.putAt })));
  queue?.on(async (message) => {
    // Logged like the Lambda's `message processed` line, so a failing invariant shows each delivery.
    const outcome = await inj.invoke('reverify', () => broker.reverifyDue(message));
    options.log?.info('re-verify message processed', { ...outcome });
    return outcome;
  });
  return {
    broker,
    lifecycle: broker.lifecycle,
    bus,
    ledger,
    targets,
    recorder,
    reverify: queue,
    reap: (o) => inj.invoke('reaper', () => broker.reap(o)),
    async close() {
      await bus.drained();
      await queue?.close();
      client.destroy();
    },
  };
}
