/**
 * The lifecycle benchmark: N tasks, C at a time, through the whole local broker (in-process bus,
 * dynalite ledger, embedded PostgreSQL target, local SPIFFE issuer). Each task is what a workflow
 * engine does: Task Started → wait for Lease Issued → (optionally use the credential) → Task Ended
 * → wait for Lease Revoked (every credential verified rejected).
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DETAIL_TYPES } from '../shared/events/schemas.ts';
import type { LeaseIssued, TaskStarted } from '../shared/events/schemas.ts';
import type { BusEvent } from '../shared/events/routing.ts';
import type { LifecycleObserver } from '../shared/lease/lifecycle.ts';
import type { CredentialRecord, LeaseWithCredentials } from '../shared/lease/records.ts';
import { percentile, summarizeDebt } from '../shared/lease/trust-debt.ts';
import { connectWithSecret, DEMO_WORKLOADS, forStartAnswer, forTask, waitForEvent } from '../demo/demo.ts';
import { startLocalRuntime } from '../local/runtime.ts';
import type { LocalRuntime } from '../local/runtime.ts';
import { CpuMeter, PgConnectionSampler, RssSampler, postmasterPid } from './samplers.ts';
import type { CpuFigures, PgConnectionFigures } from './samplers.ts';
import { instrumentRuntime } from './instrument.ts';
import type { OpFigures } from './instrument.ts';
import { startCpuProfile, startHeapSampling, summarizeCpuProfile, summarizeHeapProfile } from './cpu-profile.ts';
import type { CpuProfileSummary } from './cpu-profile.ts';
import { applyWhatIf } from './what-if.ts';
import type { WhatIf } from './what-if.ts';
import { demoPostgres } from '../shared/targets/postgres/local.ts';

/** The lease length the demo asks for (demo/demo.ts `runDemoTask`); the TTL-only baseline depends on it. */
export const LEASE_SECONDS = 900;

/** The demo's workloads (demo/demo.ts), round-robin: 4 PostgreSQL credentials per 3 tasks. */
export const BENCH_WORKLOADS = DEMO_WORKLOADS;

export interface LifecycleBenchOptions {
  tasks: number;
  concurrency: number;
  /** Lifecycles run first and left out of every figure (JIT, pool and cache warm-up). */
  warmup: number;
  /** The workload connects once with each issued credential (SELECT 1) before the task ends. */
  use: boolean;
  /** Overrides the admin pool size of every postgres target. */
  adminPoolMax?: number;
  /** Emulated changes (bench/what-if.ts), for experiments only. */
  whatIf?: WhatIf[];
  /** Profile pass: time every ledger/driver/SQL operation and take a CPU profile. */
  profile?: boolean;
  /** Where a raw .cpuprofile goes (profile pass only). */
  cpuProfilePath?: string;
  /**
   * A burst of ends: every measured task is started (C at a time) and issued first, then all their
   * `Task Ended` are put at once; the bus still runs C at a time per route.
   */
  burst?: boolean;
  progress?: (line: string) => void;
}

export interface Dist {
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
}

export interface LifecycleBenchResult {
  setup: {
    tasks: number;
    concurrency: number;
    busConcurrency: number;
    warmup: number;
    use: boolean;
    leaseSeconds: number;
    reaper: 'off';
    burst?: boolean;
    adminPoolMax: number;
    whatIf: WhatIf[];
    credentials: number;
    workloads: string;
  };
  wallMs: number;
  throughput: {
    lifecyclesPerSecond: number;
    credentialsPerSecond: number;
    msPerLifecycle: number;
    /**
     * CPU time per lifecycle: this process (broker, in-process dynalite ledger, load generator) and
     * the PostgreSQL cluster. Less sensitive to a shared machine than wall-clock throughput.
     */
    cpuMsPerLifecycle: { node: number; postgres: number | null };
  };
  /** Task Started put on the bus → Lease Issued seen on the bus (what a workflow engine waits). */
  issuanceMs: Dist;
  /** Inside the Task Started handler: received → issued (LifecycleObserver.issued); excludes bus queueing. */
  issuanceHandlerMs: Dist;
  /** Task Ended put → Lease Revoked seen on the bus (end to proof, as the engine sees it). */
  endToRevokedMs: Dist;
  /** From the ledger: verifiedAt − endedAt per credential (ms clock), as the broker records it. */
  trustDebtMs: Dist;
  /**
   * verifiedAt − the moment the bench put `Task Ended` on the bus (Date.now() just before the put):
   * trust debt from the real end, whatever `endedAt` the broker recorded. The goals use this one.
   */
  trustDebtFromPutMs?: Dist;
  /** naturalExpiry − the put time of `Task Ended`: the TTL-only baseline from the same instant. */
  ttlOnlyFromPutMs?: Dist;
  /** The ledger's own split of each credential's debt, when the core records it (issue 13). */
  split?: Record<'pipelineMs' | 'revokeMs' | 'proofMs' | 'exposureMs', Dist>;
  /** Where the broker's recorded endedAt came from, by source. */
  endedAtSources?: Record<string, number>;
  /** From the ledger: naturalExpiry − endedAt per credential — the debt if left to expire. */
  ttlOnlyDebtMs: Dist;
  /** TTL-only baseline ÷ measured trust debt, at p50 and p99. */
  baselineRatio: { p50: number | null; p99: number | null };
  /** Per-credential steps from the ledger timestamps (ms). */
  steps: Record<string, Dist>;
  verifyAttempts: { mean: number; max: number; moreThanOne: number };
  memory: {
    startRssBytes: number;
    peakRssBytes: number;
    endRssBytes: number;
    heapAfterGcStartBytes: number;
    heapAfterGcEndBytes: number;
    /** (heap after GC at the end − at the start) ÷ measured tasks: what each lifecycle leaves behind. */
    retainedHeapBytesPerTask: number;
    /**
     * Heap allocated during the measured phase and still live after a full GC, per task, by the
     * component that allocated it (V8 sampling heap profiler, 32 kB sampling interval).
     */
    retainedPerTaskByComponent: Array<{ component: string; bytesPerTask: number }>;
  };
  postgres: PgConnectionFigures;
  cpu: CpuFigures;
  outcomes: {
    issued: number;
    denied: number;
    revocationFailed: number;
    credentialsVerified: number;
    credentialsOpen: number;
    deadLetters: number;
    secretsLeftInStore: number;
    errors: string[];
  };
  ledgerReadMs: number;
  profile?: { ops: Record<string, OpFigures>; cpu: CpuProfileSummary; cpuProfileFile?: string };
}

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

export function dist(values: readonly number[]): Dist {
  if (values.length === 0) return { p50: null, p90: null, p99: null, max: null, mean: null };
  const p = (q: number) => round(percentile(values, q) as number);
  let max = -Infinity;
  let total = 0;
  for (const v of values) {
    total += v;
    if (v > max) max = v;
  }
  return { p50: p(50), p90: p(90), p99: p(99), max: round(max), mean: round(total / values.length) };
}

/** A forced full GC (V8's --expose-gc, switched on at runtime: tsx passes no node flags). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
}

function heapAfterGc(): number {
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

interface TaskTimes {
  started?: number;
  issued?: number;
  ended?: number;
  revoked?: number;
}

export async function runLifecycleBench(opts: LifecycleBenchOptions): Promise<LifecycleBenchResult> {
  const progress = opts.progress ?? (() => undefined);
  const handlerIssuance: number[] = [];
  const measuring = { on: false };
  const observer: LifecycleObserver = {
    issued: (_lease, _creds, latencyMs) => {
      if (measuring.on) handlerIssuance.push(latencyMs);
    },
  };
  const rt = await startLocalRuntime({
    adminPoolMax: opts.adminPoolMax,
    busConcurrency: opts.concurrency,
    reaperIntervalMs: false,
    observer,
  });
  let undo: (() => Promise<void>) | undefined;
  try {
    if (opts.whatIf?.length) undo = await applyWhatIf(rt, opts.whatIf);
    return await runOn(rt, opts, progress, handlerIssuance, measuring);
  } finally {
    await rt.stop();
    await undo?.();
  }
}

async function runOn(
  rt: LocalRuntime,
  opts: LifecycleBenchOptions,
  progress: (line: string) => void,
  handlerIssuance: number[],
  measuring: { on: boolean },
): Promise<LifecycleBenchResult> {
  const runId = `${Date.now().toString(36)}`;
  const times = new Map<string, TaskTimes>();
  /** Epoch ms just before each `Task Ended` put (the ledger's clock is epoch ms too). */
  const endPutAt = new Map<string, number>();
  const mark = (e: BusEvent, field: keyof TaskTimes) => {
    const taskId = (e.detail as { taskId?: string }).taskId;
    if (!taskId) return;
    let t = times.get(taskId);
    if (!t) times.set(taskId, (t = {}));
    t[field] = performance.now();
  };
  // put() calls watchers synchronously, before routing: the stamps are taken at the put itself.
  rt.bus.watch((e) => {
    switch (e['detail-type']) {
      case DETAIL_TYPES.taskStarted:
        return mark(e, 'started');
      case DETAIL_TYPES.leaseIssued:
        return mark(e, 'issued');
      case DETAIL_TYPES.taskEnded:
        return mark(e, 'ended');
      case DETAIL_TYPES.leaseRevoked:
        return mark(e, 'revoked');
    }
  });

  const pgAdmin = {
    host: demoPostgres(rt).host,
    port: demoPostgres(rt).port,
    user: demoPostgres(rt).adminUser,
    password: demoPostgres(rt).adminPassword,
    database: 'postgres',
  };
  const pgSampler = new PgConnectionSampler(pgAdmin);
  await pgSampler.start();
  const rss = new RssSampler();
  const counts = { issued: 0, denied: 0, revocationFailed: 0 };
  const errors: string[] = [];

  /** Task Started → Lease Issued; false when denied. */
  const startTask = async (taskId: string, index: number): Promise<boolean> => {
    const workload = BENCH_WORKLOADS[index % BENCH_WORKLOADS.length] as (typeof BENCH_WORKLOADS)[number];
    // The SVID is minted before the clock starts: it is the workload's, not the broker's, cost.
    const svid = await rt.mintSvid(workload.spiffeId);
    const answer = waitForEvent(rt.bus, forStartAnswer(taskId));
    const detail: TaskStarted = {
      taskId,
      svid,
      grants: workload.grants,
      maxDurationSeconds: LEASE_SECONDS,
      initiator: 'bench@tasklease.local',
      workflow: { engine: 'tasklease-bench', runId },
    };
    rt.bus.put(DETAIL_TYPES.taskStarted, detail);
    const first = await answer.promise;
    if (first['detail-type'] === DETAIL_TYPES.leaseDenied) {
      counts.denied++;
      errors.push(`${taskId}: denied ${JSON.stringify((first.detail as { reason?: unknown }).reason)}`);
      return false;
    }
    counts.issued++;
    if (opts.use) await useOnce(rt, first.detail as LeaseIssued);
    return true;
  };
  /** Puts Task Ended (the end SVID is minted first: the engine's cost) and returns the wait for the proof. */
  const endTask = async (taskId: string, index: number): Promise<() => Promise<void>> => {
    const workload = BENCH_WORKLOADS[index % BENCH_WORKLOADS.length] as (typeof BENCH_WORKLOADS)[number];
    const endSvid = await rt.mintSvid(workload.spiffeId);
    return () => {
      const revoked = waitForEvent(rt.bus, forTask(taskId, DETAIL_TYPES.leaseRevoked, DETAIL_TYPES.revocationFailed));
      endPutAt.set(taskId, Date.now());
      rt.bus.put(DETAIL_TYPES.taskEnded, { taskId, outcome: 'succeeded', svid: endSvid });
      return revoked.promise.then((last) => {
        if (last['detail-type'] === DETAIL_TYPES.revocationFailed) {
          counts.revocationFailed++;
          errors.push(`${taskId}: revocation not proven: ${JSON.stringify(last.detail)}`);
        }
      });
    };
  };
  const oneTask = async (taskId: string, index: number): Promise<void> => {
    if (!(await startTask(taskId, index))) return;
    const put = await endTask(taskId, index);
    await put();
  };

  /** All started (C at a time), then every end put in one synchronous loop. */
  const burstPhase = async (ids: string[]) => {
    const started: Array<{ id: string; i: number }> = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(opts.concurrency, ids.length) }, async () => {
        while (next < ids.length) {
          const i = next++;
          if (await startTask(ids[i] as string, i)) started.push({ id: ids[i] as string, i });
        }
      }),
    );
    progress(`  burst: ${started.length} issued; putting ${started.length} Task Ended at once`);
    const puts = await Promise.all(started.map((t) => endTask(t.id, t.i)));
    const waits = puts.map((put) => put());
    await Promise.all(waits);
    await rt.bus.drained();
  };

  const runPhase = async (ids: string[], label: string) => {
    let next = 0;
    let done = 0;
    const step = Math.max(1, Math.floor(ids.length / 10));
    await Promise.all(
      Array.from({ length: Math.min(opts.concurrency, ids.length) }, async () => {
        while (next < ids.length) {
          const i = next++;
          try {
            await oneTask(ids[i] as string, i);
          } catch (err) {
            errors.push(`${ids[i]}: ${err instanceof Error ? err.message : String(err)}`);
          }
          if (++done % step === 0 || done === ids.length) progress(`  ${label} ${done}/${ids.length}`);
        }
      }),
    );
    await rt.bus.drained();
  };

  const prefix = `bench-${runId}`;
  const warmIds = Array.from({ length: opts.warmup }, (_, i) => `${prefix}-warm-${String(i + 1).padStart(4, '0')}`);
  const ids = Array.from({ length: opts.tasks }, (_, i) => `${prefix}-${String(i + 1).padStart(6, '0')}`);
  if (warmIds.length) await runPhase(warmIds, 'warm-up');
  Object.assign(counts, { issued: 0, denied: 0, revocationFailed: 0 });
  errors.length = 0;

  const heapStart = heapAfterGc();
  const timer = opts.profile ? instrumentRuntime(rt) : undefined;
  const cpuProfiler = opts.profile ? await startCpuProfile() : undefined;
  // Always on (low overhead): what the run leaves live on the heap, by the code that allocated it.
  const heapSampler = await startHeapSampling(32_768);
  const cpu = new CpuMeter(postmasterPid(demoPostgres(rt).dataDir), os.cpus().length);
  measuring.on = true;
  const t0 = performance.now();
  if (opts.burst) await burstPhase(ids);
  else await runPhase(ids, 'tasks');
  const wallMs = performance.now() - t0;
  measuring.on = false;
  const cpuFigures = cpu.stop();
  const memory = rss.stop();
  const heapEnd = heapAfterGc();
  // Read the heap sample before the CPU profile exists, so the profile's own data is not counted.
  const rawHeap = await heapSampler.stop(collectGarbage);
  const rawProfile = await cpuProfiler?.stop();
  timer?.restore();
  const postgres = await pgSampler.stop();

  const r0 = performance.now();
  const measured = new Set(ids);
  const leases: LeaseWithCredentials[] = (await rt.ledger.listLeases({})).filter((l) => measured.has(l.lease.taskId));
  const ledgerReadMs = performance.now() - r0;
  const creds = leases.flatMap((l) => l.credentials);
  const leaseById = new Map(leases.map((l) => [l.lease.taskId, l.lease]));
  const summary = summarizeDebt(creds);
  const verified = creds.filter((c) => c.state === 'verified');

  const stepOf = (f: (c: CredentialRecord) => number | undefined) =>
    dist(
      creds.flatMap((c) => {
        const v = f(c);
        return v === undefined ? [] : [v];
      }),
    );
  const diff = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : b - a);
  const steps: Record<string, Dist> = {
    'requestedAt → intentAt (SVID check, policy, replay claim, lease + intent writes)': stepOf((c) =>
      diff(leaseById.get(c.taskId)?.requestedAt, c.intentAt),
    ),
    'intentAt → credential issuedAt (driver.issue + secret put)': stepOf((c) => diff(c.intentAt, c.issuedAt)),
    'credential issuedAt → lease issuedAt (ledger write, all grants issued)': stepOf((c) =>
      diff(c.issuedAt, leaseById.get(c.taskId)?.issuedAt),
    ),
    'endedAt → revokeStartedAt (ledger read + lease ending write)': stepOf((c) => diff(c.endedAt, c.revokeStartedAt)),
    'revokeStartedAt → revokedAt (ledger write + driver.revoke)': stepOf((c) => diff(c.revokeStartedAt, c.revokedAt)),
    'revokedAt → verifiedAt (ledger write, driver.verify, ledger write, secret delete)': stepOf((c) => diff(c.revokedAt, c.verifiedAt)),
  };

  const perTask = [...times.entries()].filter(([id]) => measured.has(id)).map(([, t]) => t);
  const gaps = (a: keyof TaskTimes, b: keyof TaskTimes) =>
    perTask.flatMap((t) => (t[a] !== undefined && t[b] !== undefined ? [(t[b] as number) - (t[a] as number)] : []));
  const debt = dist(verified.map((c) => c.trustDebtMs as number));
  const ttl = dist(creds.flatMap((c) => (c.naturalExpiry !== undefined && c.endedAt !== undefined ? [c.naturalExpiry - c.endedAt] : [])));
  // Cross-check with the shared summary, which the demo and the report use.
  if (summary.ttlOnlyDebtMs.p50 !== undefined && ttl.p50 !== null && Math.abs(summary.ttlOnlyDebtMs.p50 - ttl.p50) > 1) {
    throw new Error('TTL-only baseline disagrees with summarizeDebt');
  }
  const fromPut = verified.flatMap((c) => {
    const at = endPutAt.get(c.taskId);
    return at === undefined || c.verifiedAt === undefined ? [] : [c.verifiedAt - at];
  });
  const ttlFromPut = creds.flatMap((c) => {
    const at = endPutAt.get(c.taskId);
    return at === undefined || c.naturalExpiry === undefined ? [] : [c.naturalExpiry - at];
  });
  // Read loosely: the split fields arrive with the core's issue-13 change.
  const loose = verified as unknown as Array<Record<string, unknown>>;
  const splitOf = (field: string) => dist(loose.flatMap((c) => (typeof c[field] === 'number' ? [c[field] as number] : [])));
  const split = {
    pipelineMs: splitOf('pipelineMs'),
    revokeMs: splitOf('revokeMs'),
    proofMs: splitOf('proofMs'),
    exposureMs: splitOf('exposureMs'),
  };
  const endedAtSources: Record<string, number> = {};
  for (const l of leases as unknown as Array<{ lease: Record<string, unknown> }>) {
    const source = typeof l.lease.endedAtSource === 'string' ? l.lease.endedAtSource : 'not recorded';
    endedAtSources[source] = (endedAtSources[source] ?? 0) + 1;
  }
  const ratio = (a: number | null, b: number | null) => (a === null || b === null ? null : round(a / Math.max(b, 1), 0));
  const attempts = verified.map((c) => c.verifyAttempts);

  let profile: LifecycleBenchResult['profile'];
  const root = join(import.meta.dirname, '..');
  const retained = summarizeHeapProfile(rawHeap, root);
  if (timer && rawProfile) {
    let cpuProfileFile: string | undefined;
    if (opts.cpuProfilePath) {
      await writeFile(opts.cpuProfilePath, JSON.stringify(rawProfile));
      await writeFile(opts.cpuProfilePath.replace(/\.cpuprofile$/, '.heapprofile'), JSON.stringify(rawHeap));
      cpuProfileFile = opts.cpuProfilePath;
    }
    profile = { ops: timer.figures(), cpu: summarizeCpuProfile(rawProfile, root), cpuProfileFile };
  }

  const poolMax = rt.targets.all().map((d) => (d as unknown as { pool?: { options?: { max?: number } } }).pool?.options?.max ?? 0);
  return {
    setup: {
      tasks: opts.tasks,
      concurrency: opts.concurrency,
      busConcurrency: opts.concurrency,
      warmup: opts.warmup,
      use: opts.use,
      leaseSeconds: LEASE_SECONDS,
      reaper: 'off',
      ...(opts.burst ? { burst: true } : {}),
      adminPoolMax: Math.max(0, ...poolMax),
      whatIf: opts.whatIf ?? [],
      credentials: creds.length,
      workloads: 'the demo mix, round-robin: etl/nightly (read), etl/hourly (read), billing/writer (read + write)',
    },
    wallMs: Math.round(wallMs),
    throughput: {
      lifecyclesPerSecond: round(opts.tasks / (wallMs / 1000)),
      credentialsPerSecond: round(creds.length / (wallMs / 1000)),
      msPerLifecycle: round(wallMs / opts.tasks, 2),
      cpuMsPerLifecycle: {
        node: round((cpuFigures.nodeCores * cpuFigures.wallMs) / opts.tasks, 1),
        postgres: cpuFigures.postgresCores === undefined ? null : round((cpuFigures.postgresCores * cpuFigures.wallMs) / opts.tasks, 1),
      },
    },
    issuanceMs: dist(gaps('started', 'issued')),
    issuanceHandlerMs: dist(handlerIssuance),
    endToRevokedMs: dist(gaps('ended', 'revoked')),
    trustDebtMs: debt,
    trustDebtFromPutMs: dist(fromPut),
    ttlOnlyFromPutMs: dist(ttlFromPut),
    ...(split.pipelineMs.p50 !== null ? { split } : {}),
    endedAtSources,
    ttlOnlyDebtMs: ttl,
    baselineRatio: { p50: ratio(ttl.p50, debt.p50), p99: ratio(ttl.p99, debt.p99) },
    steps,
    verifyAttempts: {
      mean: attempts.length ? round(attempts.reduce((a, b) => a + b, 0) / attempts.length, 2) : 0,
      max: attempts.length ? Math.max(...attempts) : 0,
      moreThanOne: attempts.filter((a) => a > 1).length,
    },
    memory: {
      startRssBytes: memory.startBytes,
      peakRssBytes: memory.peakBytes,
      endRssBytes: memory.endBytes,
      heapAfterGcStartBytes: heapStart,
      heapAfterGcEndBytes: heapEnd,
      retainedHeapBytesPerTask: Math.round((heapEnd - heapStart) / opts.tasks),
      retainedPerTaskByComponent: retained.byComponent
        .slice(0, 8)
        .map((c) => ({ component: c.component, bytesPerTask: Math.round(c.bytes / opts.tasks) })),
    },
    postgres,
    cpu: cpuFigures,
    outcomes: {
      ...counts,
      credentialsVerified: verified.length,
      credentialsOpen: creds.length - verified.length,
      deadLetters: rt.bus.deadLetters.length,
      secretsLeftInStore: rt.secrets.size,
      errors: errors.slice(0, 20),
    },
    ledgerReadMs: Math.round(ledgerReadMs),
    ...(profile ? { profile } : {}),
  };
}

/** The workload's side, kept minimal: read the delivered secret, connect once, SELECT 1, disconnect. */
async function useOnce(rt: LocalRuntime, issued: LeaseIssued): Promise<void> {
  for (const cred of issued.credentials) {
    const secret = await rt.secrets.get(cred.secretName);
    if (!secret) throw new Error(`secret ${cred.secretName} was not delivered`);
    const client = await connectWithSecret(secret, 'tasklease-bench-workload');
    try {
      await client.query('SELECT 1');
    } finally {
      await client.end();
    }
  }
}
