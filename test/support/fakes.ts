/*
 * In-memory fakes of every core port, scriptable, for unit tests of the lease core (and of the
 * broker built on it) that run in milliseconds: no PostgreSQL, no dynalite, no real time.
 *
 *   const f = createFakePorts();
 *   const core = new LeaseLifecycle(f.deps());
 *   await core.taskStarted(f.started('t-1'));
 *
 * Keep these exports stable: other areas' tests import them.
 */
import { DETAIL_TYPES, grantKey } from '../../shared/events/schemas.ts';
import type { DenialCode, Grant, OutputEvent, TaskEnded, TaskStarted } from '../../shared/events/schemas.ts';
import { DenialError, TargetError } from '../../shared/lease/errors.ts';
import type {
  LifecycleDeps,
  LifecycleLogger,
  LifecycleObserver,
  LifecycleOptions,
  ReverifyScheduler,
} from '../../shared/lease/lifecycle.ts';
import type {
  Clock,
  EventPublisher,
  IssueContext,
  IssuedCredential,
  EndDecision,
  PolicyDecision,
  PolicyEvaluator,
  PolicyRequest,
  RevokeContext,
  SecretPutInput,
  SvidVerifier,
  TargetDriver,
  TargetRegistry,
  TaskCallback,
  VerifiedWorkload,
  VerifyContext,
  VerifyResult,
} from '../../shared/lease/ports.ts';
import type { CredentialRecord, LeaseRecord } from '../../shared/lease/records.ts';
import { MemoryLedger } from '../../shared/ledger/memory-ledger.ts';
import { MemorySecretStore } from '../../shared/secrets/memory-store.ts';

export { MemoryLedger };

/** 2030-01-15T12:00:00Z: a fixed start so times in assertions are predictable. */
export const FAKE_T0 = Date.UTC(2030, 0, 15, 12);
export const FAKE_TRUST_DOMAIN = 'spiffe://fake.tasklease.test';
export const FAKE_WORKLOAD = `${FAKE_TRUST_DOMAIN}/etl/loader`;
export const FAKE_TARGET = 'orders-db';

// ─── Clock ──────────────────────────────────────────────────────────────────────────────────────

/** A clock that only moves when told to; `sleep` advances it instead of waiting. */
export class ManualClock implements Clock {
  /** Every sleep asked for, in order (the backoff a test can assert). */
  readonly sleeps: number[] = [];

  constructor(private t = FAKE_T0) {}

  now(): number {
    return this.t;
  }

  async sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.t += Math.max(0, ms);
  }

  advance(ms: number): number {
    this.t += ms;
    return this.t;
  }

  set(epochMs: number): void {
    this.t = epochMs;
  }
}

// ─── Ledger ─────────────────────────────────────────────────────────────────────────────────────

export type LedgerWriteMethod = 'createLease' | 'updateLease' | 'createCredential' | 'updateCredential' | 'claimSvid';

/**
 * What happens to a scripted write:
 * - `conflict`: not applied, returns false (another writer won the race);
 * - `lost-response`: applied, but the caller sees false (a retried write whose first try landed);
 * - `throw`: not applied, throws (the ledger was unreachable);
 * - `throw-after`: applied, then throws (the response was lost as an error);
 * - a function: runs first (to interleave a racing writer), then the write goes ahead.
 */
export type LedgerFault = 'conflict' | 'lost-response' | 'throw' | 'throw-after' | ((ledger: MemoryLedger) => Promise<void> | void);

interface ScriptedFault {
  method: LedgerWriteMethod;
  fault: LedgerFault;
  /** Only calls whose arguments match (all of them by default). */
  when?: (args: unknown[]) => boolean;
}

/** The in-memory ledger plus a call log and scripted faults on its writes. */
export class FakeLedger extends MemoryLedger {
  readonly calls: Array<{ method: string; args: unknown[] }> = [];
  private readonly script: ScriptedFault[] = [];

  /** Applies `fault` to the next write of `method` (whose arguments satisfy `when`). */
  failNext(method: LedgerWriteMethod, fault: LedgerFault, when?: (args: unknown[]) => boolean): this {
    this.script.push({ method, fault, when });
    return this;
  }

  /** Writes of one method, in order, with their arguments. */
  writesOf(method: LedgerWriteMethod): unknown[][] {
    return this.calls.filter((c) => c.method === method).map((c) => c.args);
  }

  /** A lease record straight from the store (throws if absent). */
  async lease(taskId: string): Promise<LeaseRecord> {
    const found = await this.getLease(taskId);
    if (!found) throw new Error(`no lease ${taskId}`);
    return found.lease;
  }

  /** One credential of a task (the first, or the one with `key`). */
  async credential(taskId: string, key?: string): Promise<CredentialRecord> {
    const found = await this.getLease(taskId);
    const c = found?.credentials.find((x) => key === undefined || grantKey(x.grant) === key);
    if (!c) throw new Error(`no credential ${taskId}/${key ?? '*'}`);
    return c;
  }

  override createLease(...args: Parameters<MemoryLedger['createLease']>) {
    return this.write('createLease', args, () => super.createLease(...args));
  }

  override updateLease(...args: Parameters<MemoryLedger['updateLease']>) {
    return this.write('updateLease', args, () => super.updateLease(...args));
  }

  override createCredential(...args: Parameters<MemoryLedger['createCredential']>) {
    return this.write('createCredential', args, () => super.createCredential(...args));
  }

  override updateCredential(...args: Parameters<MemoryLedger['updateCredential']>) {
    return this.write('updateCredential', args, () => super.updateCredential(...args));
  }

  override claimSvid(...args: Parameters<MemoryLedger['claimSvid']>) {
    return this.write('claimSvid', args, () => super.claimSvid(...args));
  }

  /**
   * A transaction's parts are logged and scripted as the updateLease/updateCredential calls they
   * stand for, so a fault meant for one write meets it inside a transaction too: a racing writer
   * (function) runs first; `conflict` or `throw` on any part leaves all unapplied; `lost-response`
   * and `throw-after` apply the whole transaction. `transactions` counts them.
   */
  transactions = 0;

  override async transact(writes: Parameters<MemoryLedger['transact']>[0]): Promise<boolean> {
    this.transactions++;
    let outcome: 'conflict' | 'lost-response' | 'throw' | 'throw-after' | undefined;
    for (const w of writes) {
      const method: LedgerWriteMethod = w.kind === 'lease' ? 'updateLease' : 'updateCredential';
      const args: unknown[] =
        w.kind === 'lease' ? [w.taskId, w.from, w.patch, ...(w.guard ? [w.guard] : [])] : [w.taskId, w.grantKey, w.from, w.patch];
      this.calls.push({ method, args: structuredClone(args) });
      const i = this.script.findIndex((s) => s.method === method && (s.when?.(args) ?? true));
      if (i < 0) continue;
      const [{ fault }] = this.script.splice(i, 1) as [ScriptedFault];
      if (typeof fault === 'function') await fault(this);
      else outcome ??= fault;
    }
    switch (outcome) {
      case 'conflict':
        return false;
      case 'throw':
        throw new Error('ledger.transact: injected failure');
      case 'lost-response':
        await super.transact(writes);
        return false;
      case 'throw-after':
        await super.transact(writes);
        throw new Error('ledger.transact: injected lost response');
      default:
        return super.transact(writes);
    }
  }

  private async write(method: LedgerWriteMethod, args: unknown[], apply: () => Promise<boolean>): Promise<boolean> {
    this.calls.push({ method, args: structuredClone(args) });
    const i = this.script.findIndex((s) => s.method === method && (s.when?.(args) ?? true));
    if (i < 0) return apply();
    const [{ fault }] = this.script.splice(i, 1) as [ScriptedFault];
    if (typeof fault === 'function') {
      await fault(this);
      return apply();
    }
    switch (fault) {
      case 'conflict':
        return false;
      case 'lost-response':
        await apply();
        return false;
      case 'throw':
        throw new Error(`ledger.${method}: injected failure`);
      case 'throw-after':
        await apply();
        throw new Error(`ledger.${method}: injected lost response`);
    }
  }
}

// ─── Secrets ────────────────────────────────────────────────────────────────────────────────────

/** The memory secret store, with a put log and switches for a delete that fails or does nothing. */
export class FakeSecretStore extends MemorySecretStore {
  readonly puts: SecretPutInput[] = [];
  readonly deletes: string[] = [];
  /** `delete` succeeds but the secret stays (the store's delete did not take). */
  keepOnDelete = false;
  /** `get` throws (the store is unreachable for reads). */
  failGet = false;

  override async put(input: SecretPutInput): Promise<{ name: string }> {
    this.puts.push(structuredClone(input));
    return super.put(input);
  }

  override async get(name: string) {
    if (this.failGet) throw new Error('secrets.get: injected failure');
    return super.get(name);
  }

  override async delete(name: string): Promise<void> {
    this.deletes.push(name);
    if (!this.keepOnDelete) await super.delete(name);
  }
}

// ─── Targets ────────────────────────────────────────────────────────────────────────────────────

type Scripted<T> = T | Error | ((ctx: never) => T | Promise<T>);

/**
 * A target driver whose outcomes are scripted per call: queue results with `issueOutcomes`,
 * `revokeOutcomes`, `verifyOutcomes` (an Error is thrown; a function is called); when a queue is
 * empty, issue succeeds, revoke succeeds and verify answers `rejected` once revoked.
 */
export class FakeDriver implements TargetDriver {
  readonly kind: string;
  /** External ids that exist on the fake target right now. */
  readonly live = new Set<string>();
  readonly issueCalls: IssueContext[] = [];
  readonly revokeCalls: RevokeContext[] = [];
  readonly verifyCalls: VerifyContext[] = [];
  readonly issueOutcomes: Array<Scripted<IssuedCredential | undefined>> = [];
  readonly revokeOutcomes: Array<Scripted<void>> = [];
  readonly verifyOutcomes: Array<Scripted<VerifyResult>> = [];
  /** How long issued credentials live on the target (naturalExpiry = now + this). */
  naturalLifetimeMs = 15 * 60_000;
  private serial = 0;

  constructor(
    private readonly clock: Clock,
    options: { kind?: string } = {},
  ) {
    this.kind = options.kind ?? 'fake';
  }

  externalId(taskId: string, grant: Grant): string {
    return `fake_${taskId}_${grant.access}`;
  }

  async issue(ctx: IssueContext): Promise<IssuedCredential> {
    this.issueCalls.push(structuredClone(ctx));
    const scripted = await this.next(this.issueOutcomes, ctx);
    this.live.add(ctx.externalId);
    return (
      scripted ?? {
        secret: { username: ctx.externalId, password: `pw-${ctx.externalId}-${++this.serial}` },
        naturalExpiry: this.clock.now() + this.naturalLifetimeMs,
        metadata: { serial: String(this.serial) },
      }
    );
  }

  async revoke(ctx: RevokeContext): Promise<void> {
    this.revokeCalls.push(structuredClone(ctx));
    await this.next(this.revokeOutcomes, ctx);
    this.live.delete(ctx.externalId);
  }

  async verify(ctx: VerifyContext): Promise<VerifyResult> {
    this.verifyCalls.push(structuredClone(ctx));
    const scripted = await this.next(this.verifyOutcomes, ctx);
    return scripted ?? (this.live.has(ctx.externalId) ? 'still-valid' : 'rejected');
  }

  async listManaged(): Promise<string[]> {
    return [...this.live];
  }

  private async next<T>(queue: Array<Scripted<T>>, ctx: unknown): Promise<T | undefined> {
    if (queue.length === 0) return undefined;
    const outcome = queue.shift() as Scripted<T>;
    if (outcome instanceof Error) throw outcome;
    if (typeof outcome === 'function') return (outcome as (c: unknown) => T | Promise<T>)(ctx);
    return outcome;
  }
}

/** A registry over named fake drivers, with the `names()` reconciliation uses. */
export class FakeTargetRegistry implements TargetRegistry {
  constructor(readonly drivers: Record<string, TargetDriver>) {}

  get(target: string): TargetDriver | undefined {
    return Object.hasOwn(this.drivers, target) ? this.drivers[target] : undefined;
  }

  all(): TargetDriver[] {
    return Object.values(this.drivers);
  }

  names(): string[] {
    return Object.keys(this.drivers);
  }
}

/** A retryable target failure, as drivers raise them. */
export const targetDown = (message = 'connect ECONNREFUSED (fake target down)'): TargetError => new TargetError(message);

// ─── Events, callbacks, scheduling, logs ────────────────────────────────────────────────────────

export class RecordingEventPublisher implements EventPublisher {
  readonly events: OutputEvent[] = [];
  /** Makes the next `n` publishes throw (after nothing was recorded). */
  failNext = 0;

  async publish(event: OutputEvent): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('events.publish: injected failure');
    }
    this.events.push(structuredClone(event));
  }

  /** Details of every event of one type, in publish order (`ofType('leaseIssued')`). */
  ofType<K extends OutputEvent['detailType']>(detailType: K): Array<Extract<OutputEvent, { detailType: K }>['detail']>;
  ofType<K extends keyof typeof DETAIL_TYPES>(type: K): Array<Extract<OutputEvent, { detailType: (typeof DETAIL_TYPES)[K] }>['detail']>;
  ofType(type: string): unknown[] {
    const detailType = (DETAIL_TYPES as Record<string, string>)[type] ?? type;
    return this.events.filter((e) => e.detailType === detailType).map((e) => e.detail);
  }

  types(): string[] {
    return this.events.map((e) => e.detailType);
  }
}

export class RecordingCallback implements TaskCallback {
  readonly successes: Array<{ taskToken: string; output: unknown }> = [];
  readonly failures: Array<{ taskToken: string; error: string; cause: string }> = [];
  /** Tokens already answered: a second answer is refused, like Step Functions does. */
  private readonly answered = new Set<string>();

  async success(taskToken: string, output: unknown): Promise<void> {
    this.claim(taskToken);
    this.successes.push({ taskToken, output: structuredClone(output) });
  }

  async failure(taskToken: string, error: string, cause: string): Promise<void> {
    this.claim(taskToken);
    this.failures.push({ taskToken, error, cause });
  }

  private claim(taskToken: string): void {
    if (this.answered.has(taskToken)) throw new Error('TaskTimedOut: task token already answered');
    this.answered.add(taskToken);
  }
}

export class RecordingScheduler implements ReverifyScheduler {
  readonly scheduled: Array<{ taskId: string; grant: Grant; delayMs: number }> = [];

  async schedule(taskId: string, grant: Grant, delayMs: number): Promise<void> {
    this.scheduled.push({ taskId, grant: { ...grant }, delayMs });
  }
}

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  message: string;
  attributes?: Record<string, unknown>;
}

export class RecordingLogger implements LifecycleLogger {
  readonly lines: LogLine[] = [];
  info(message: string, attributes?: Record<string, unknown>): void {
    this.lines.push({ level: 'info', message, attributes });
  }
  warn(message: string, attributes?: Record<string, unknown>): void {
    this.lines.push({ level: 'warn', message, attributes });
  }
  error(message: string, attributes?: Record<string, unknown>): void {
    this.lines.push({ level: 'error', message, attributes });
  }
  /** Everything logged, as one string: for "no secret in any log line" checks. */
  text(): string {
    return JSON.stringify(this.lines);
  }
}

/** Counts every observer hook call by name. */
export class RecordingObserver implements Required<LifecycleObserver> {
  readonly calls: Array<{ hook: keyof LifecycleObserver; taskId: string }> = [];
  issued(lease: LeaseRecord): void {
    this.calls.push({ hook: 'issued', taskId: lease.taskId });
  }
  denied(_code: DenialCode, lease: Pick<LeaseRecord, 'taskId'>): void {
    this.calls.push({ hook: 'denied', taskId: lease.taskId });
  }
  verified(c: CredentialRecord): void {
    this.calls.push({ hook: 'verified', taskId: c.taskId });
  }
  stillValid(c: CredentialRecord): void {
    this.calls.push({ hook: 'stillValid', taskId: c.taskId });
  }
  revocationFailed(c: CredentialRecord): void {
    this.calls.push({ hook: 'revocationFailed', taskId: c.taskId });
  }
  ended(lease: LeaseRecord): void {
    this.calls.push({ hook: 'ended', taskId: lease.taskId });
  }
  count(hook: keyof LifecycleObserver): number {
    return this.calls.filter((c) => c.hook === hook).length;
  }
}

// ─── Identity and policy ────────────────────────────────────────────────────────────────────────

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');

/**
 * A token the fake verifier accepts: a compact-JWS-shaped string (so it passes the event schema)
 * carrying the workload, a jti (the replay key) and an expiry, or a denial to raise.
 */
export function fakeSvid(spiffeId = FAKE_WORKLOAD, options: { jti?: string; expiresAt?: number; deny?: DenialCode } = {}): string {
  return `${b64({ alg: 'none' })}.${b64({ sub: spiffeId, jti: options.jti ?? `jti-${Math.random().toString(36).slice(2)}`, exp: options.expiresAt, deny: options.deny })}.sig`;
}

export class FakeSvidVerifier implements SvidVerifier {
  readonly verified: string[] = [];

  constructor(private readonly clock: Clock) {}

  async verify(token: string): Promise<VerifiedWorkload> {
    let claims: { sub?: string; jti?: string; exp?: number; deny?: DenialCode };
    try {
      claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as typeof claims;
    } catch {
      throw new DenialError('svid-invalid', 'not a fake SVID');
    }
    if (claims.deny) throw new DenialError(claims.deny, `fake SVID refused (${claims.deny})`);
    if (!claims.sub) throw new DenialError('svid-invalid', 'fake SVID without a subject');
    const expiresAt = claims.exp ?? this.clock.now() + 5 * 60_000;
    if (expiresAt <= this.clock.now()) throw new DenialError('svid-expired', 'fake SVID expired');
    this.verified.push(claims.sub);
    return {
      spiffeId: claims.sub,
      trustDomain: new URL(claims.sub).host,
      replayKey: `fake-${claims.jti ?? token}`,
      expiresAt,
    };
  }
}

/**
 * Allows everything (rule `fake-rule`) unless `decide` is set; records every request. Ends by
 * anyone but the workload are refused unless `endedBy[workload]` lists the ender.
 */
export class FakePolicy implements PolicyEvaluator {
  readonly requests: PolicyRequest[] = [];
  decide?: (request: PolicyRequest) => PolicyDecision;
  /** Engine SPIFFE IDs allowed to end each workload's tasks (a rule's `endedBy`). */
  readonly endedBy: Record<string, string[]> = {};
  maxLeaseSeconds = 3_600;
  readerPrincipal?: string;

  evaluate(request: PolicyRequest): PolicyDecision {
    this.requests.push(structuredClone(request));
    if (this.decide) return this.decide(request);
    return {
      allowed: true,
      rule: 'fake-rule',
      maxLeaseSeconds: this.maxLeaseSeconds,
      ...(this.readerPrincipal ? { readerPrincipal: this.readerPrincipal } : {}),
    };
  }

  mayEnd(ender: string, workload: string): EndDecision {
    return this.endedBy[workload]?.includes(ender)
      ? { allowed: true }
      : { allowed: false, message: `${ender} may not end tasks of ${workload} (fake policy)` };
  }

  /** From now on, refuse with `code`. */
  denyAll(code: DenialCode = 'policy-no-rule', message = 'no rule matches (fake policy)'): void {
    this.decide = () => ({ allowed: false, code, message });
  }
}

// ─── Everything at once ─────────────────────────────────────────────────────────────────────────

export interface FakePorts {
  clock: ManualClock;
  ledger: FakeLedger;
  secrets: FakeSecretStore;
  events: RecordingEventPublisher;
  identity: FakeSvidVerifier;
  policy: FakePolicy;
  callback: RecordingCallback;
  reverify: RecordingScheduler;
  log: RecordingLogger;
  observer: RecordingObserver;
  /** The driver behind target `orders-db` (FAKE_TARGET). */
  driver: FakeDriver;
  targets: FakeTargetRegistry;
  /** Lifecycle deps over these fakes; `options` overrides the lifecycle options. */
  deps(options?: Partial<LifecycleOptions>): LifecycleDeps;
  /** A valid `Task Started` detail for `taskId` (one read grant on orders-db by default). */
  started(taskId: string, overrides?: Partial<TaskStarted>): TaskStarted;
  /** A valid, authenticated `Task Ended` detail: signed by the lease's workload unless `by` says who. */
  ended(taskId: string, outcome?: TaskEnded['outcome'], by?: { spiffeId?: string; svid?: string }): TaskEnded;
}

export function createFakePorts(options: { now?: number; targets?: string[] } = {}): FakePorts {
  const clock = new ManualClock(options.now ?? FAKE_T0);
  const ledger = new FakeLedger({ now: () => clock.now() });
  const driver = new FakeDriver(clock);
  const drivers: Record<string, TargetDriver> = { [FAKE_TARGET]: driver };
  for (const name of options.targets ?? []) if (!drivers[name]) drivers[name] = new FakeDriver(clock);
  const ports = {
    clock,
    ledger,
    secrets: new FakeSecretStore(),
    events: new RecordingEventPublisher(),
    identity: new FakeSvidVerifier(clock),
    policy: new FakePolicy(),
    callback: new RecordingCallback(),
    reverify: new RecordingScheduler(),
    log: new RecordingLogger(),
    observer: new RecordingObserver(),
    driver,
    targets: new FakeTargetRegistry(drivers),
  };
  return {
    ...ports,
    // Every fake is a lifecycle port (the extra `driver` handle is ignored by the core).
    deps: (lifecycleOptions) => ({ ...ports, options: lifecycleOptions }),
    started: (taskId, overrides = {}) => ({
      taskId,
      svid: fakeSvid(FAKE_WORKLOAD, { jti: `jti-${taskId}` }),
      grants: [{ target: FAKE_TARGET, access: 'read' }],
      maxDurationSeconds: 600,
      ...overrides,
    }),
    ended: (taskId, outcome = 'succeeded', by = {}) => ({
      taskId,
      outcome,
      svid: by.svid ?? fakeSvid(by.spiffeId ?? FAKE_WORKLOAD, { jti: `jti-end-${taskId}` }),
    }),
  };
}
