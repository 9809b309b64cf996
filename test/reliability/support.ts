import pg from 'pg';
import { DETAIL_TYPES } from '../../shared/events/schemas.ts';
import type { Grant, TaskEnded, TaskStarted } from '../../shared/events/schemas.ts';
import type { BusEvent } from '../../shared/events/routing.ts';
import type { LifecycleLogger, LifecycleOptions } from '../../shared/lease/lifecycle.ts';
import type { ReaperOptions, ReaperReport } from '../../shared/lease/reaper.ts';
import type { ReverifyQueueOptions } from '../../local/reverify-queue.ts';
import { OffsetClock } from '../../chaos/faults.ts';
import { startLocalRuntime } from '../../local/runtime.ts';
import type { LocalRuntime } from '../../local/runtime.ts';
import { demoPostgres } from '../../shared/targets/postgres/local.ts';

export const TD = 'spiffe://demo.tasklease.local';
export const READER = `${TD}/etl/reliability`;
export const WRITER = `${TD}/billing/writer`;
export const READ: Grant = { target: 'orders-db', access: 'read' };
export const WRITE: Grant = { target: 'orders-db', access: 'write' };
export const ROLE_PATTERN = '^tl_[0-9a-f]+$';

export interface Harness {
  rt: LocalRuntime;
  clock: OffsetClock;
  events: BusEvent[];
  logs: string[];
  /** One reaper run of the runtime's broker (its state keeps rate limits and cadence across runs). */
  reap(options?: Partial<ReaperOptions>): Promise<ReaperReport>;
  started(taskId: string, workload?: string, grants?: Grant[], maxDurationSeconds?: number): Promise<TaskStarted>;
  /** An authenticated Task Ended, signed by `workload` (the reader by default) with a fresh SVID. */
  ended(taskId: string, outcome?: TaskEnded['outcome'], workload?: string): Promise<TaskEnded>;
  admin<R extends pg.QueryResultRow>(sql: string, params?: unknown[], database?: string): Promise<R[]>;
  /** Managed roles currently in pg_roles. */
  roles(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * A local runtime on an offset clock, with its reaper run by hand. The re-verify delay queue is
 * off unless asked for: these tests move the clock themselves and assert what the reaper alone
 * does (the backstop when the in-memory queue is lost with its process).
 */
export async function startHarness(
  options: { lifecycle?: Partial<LifecycleOptions>; reverify?: Partial<ReverifyQueueOptions> } = {},
): Promise<Harness> {
  const clock = new OffsetClock();
  const logs: string[] = [];
  const log: LifecycleLogger = {
    info: (m, a) => void logs.push(JSON.stringify({ level: 'info', m, ...a })),
    warn: (m, a) => void logs.push(JSON.stringify({ level: 'warn', m, ...a })),
    error: (m, a) => void logs.push(JSON.stringify({ level: 'error', m, ...a })),
  };
  const rt = await startLocalRuntime({
    reaperIntervalMs: false,
    clock,
    log,
    lifecycle: { verifyDeadlineMs: 2_000, ...options.lifecycle },
    reverify: options.reverify ?? false,
  });
  const events: BusEvent[] = [];
  rt.bus.watch((e) => events.push(e));
  const admin = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = [], database = demoPostgres(rt).database) => {
    const c = new pg.Client({
      host: demoPostgres(rt).host,
      port: demoPostgres(rt).port,
      user: demoPostgres(rt).adminUser,
      password: demoPostgres(rt).adminPassword,
      database,
    });
    c.on('error', () => undefined);
    await c.connect();
    try {
      return (await c.query<R>(sql, params)).rows;
    } finally {
      await c.end();
    }
  };
  return {
    rt,
    clock,
    events,
    logs,
    reap: (o) => rt.broker.reap({ reconcile: { graceMs: 0 }, ...o }),
    started: async (taskId, workload = READER, grants = [READ], maxDurationSeconds = 600) => ({
      taskId,
      svid: await rt.mintSvid(workload, 3_600),
      grants,
      maxDurationSeconds,
      initiator: 'reliability@tasklease.local',
    }),
    ended: async (taskId, outcome = 'succeeded', workload = READER) => ({ taskId, outcome, svid: await rt.mintSvid(workload, 3_600) }),
    admin,
    roles: async () =>
      (await admin<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname ~ $1', [ROLE_PATTERN])).map((r) => r.rolname),
    stop: () => rt.stop(),
  };
}

export const ofType = (events: BusEvent[], type: string, taskId?: string) =>
  events.filter((e) => e['detail-type'] === type && (taskId === undefined || (e.detail as { taskId?: string }).taskId === taskId));

export const revocationFailures = (events: BusEvent[], taskId?: string) => ofType(events, DETAIL_TYPES.revocationFailed, taskId);

/** Opens a session with an issued secret (as the workload would). Caller ends it. */
export async function connectWith(secret: Record<string, string>): Promise<pg.Client> {
  const c = new pg.Client({
    host: secret.host,
    port: Number(secret.port),
    database: secret.database,
    user: secret.username,
    password: secret.password,
    connectionTimeoutMillis: 5_000,
  });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

export async function loginRefused(secret: Record<string, string>): Promise<boolean> {
  try {
    const c = await connectWith(secret);
    await c.end();
    return false;
  } catch (err) {
    return ['28P01', '28000'].includes((err as { code?: string }).code ?? '');
  }
}
