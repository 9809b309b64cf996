/**
 * Timing instrumentation for the profile pass: wraps the ledger, the target drivers, the
 * PostgreSQL client and the admin pools of a running local runtime *from the outside* (no code
 * outside bench/ changes) and records how long each operation took, so a slow step can be named
 * down to the SQL statement. Its figures include its own small overhead; the headline figures
 * come from an uninstrumented run.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { percentile } from '../shared/lease/trust-debt.ts';
import type { LocalRuntime } from '../local/runtime.ts';

export interface OpFigures {
  count: number;
  totalMs: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** SQL statements by what they do, so timings group by step rather than by literal text. */
const SQL_LABELS: ReadonlyArray<readonly [RegExp, string]> = [
  [/^BEGIN\b/i, 'BEGIN'],
  [/^COMMIT\b/i, 'COMMIT'],
  [/^ROLLBACK TO SAVEPOINT/i, 'ROLLBACK TO SAVEPOINT'],
  [/^ROLLBACK\b/i, 'ROLLBACK'],
  [/^SAVEPOINT\b/i, 'SAVEPOINT'],
  [/^RELEASE SAVEPOINT/i, 'RELEASE SAVEPOINT'],
  [/^SELECT set_config/i, 'SELECT set_config (quiet logging)'],
  [/^CREATE ROLE/i, 'CREATE ROLE'],
  [/^ALTER ROLE .* NOLOGIN/i, 'ALTER ROLE … NOLOGIN PASSWORD NULL'],
  [/^ALTER ROLE/i, 'ALTER ROLE (re-key)'],
  [/^GRANT\b/i, 'GRANT'],
  [/^SELECT oid::text AS oid FROM pg_roles/i, 'SELECT oid FROM pg_roles'],
  [/^SELECT pid FROM pg_stat_activity/i, 'SELECT pid FROM pg_stat_activity (session poll)'],
  [/pg_terminate_backend/i, 'SELECT pg_terminate_backend'],
  [/^REASSIGN OWNED/i, 'REASSIGN OWNED'],
  [/^DROP OWNED/i, 'DROP OWNED'],
  [/pg_shdepend/i, 'SELECT … pg_shdepend (other databases)'],
  [/^DROP ROLE/i, 'DROP ROLE'],
  [/^SELECT rolcanlogin/i, 'SELECT rolcanlogin'],
  [/^SELECT rolname FROM pg_roles/i, 'SELECT rolname (listManaged)'],
  [/application_name/i, 'bench: pg_stat_activity connection sampler'],
];

function sqlLabel(text: string): string {
  const t = text.trim();
  for (const [re, label] of SQL_LABELS) if (re.test(t)) return label;
  return t.split(/\s+/).slice(0, 3).join(' ');
}

type AnyFn = (...args: unknown[]) => unknown;

export class OpTimer {
  private readonly samples = new Map<string, number[]>();
  private readonly restores: Array<() => void> = [];

  record(op: string, ms: number): void {
    let list = this.samples.get(op);
    if (!list) this.samples.set(op, (list = []));
    list.push(ms);
  }

  /** Times a promise-returning call. */
  async time<T>(op: string, p: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await p();
    } finally {
      this.record(op, performance.now() - t0);
    }
  }

  /** Replaces `obj[method]` with a timed wrapper (own property; removed again by `restore`). */
  wrapMethod(obj: object, method: string, op: string): void {
    const target = obj as Record<string, unknown>;
    const original = target[method];
    if (typeof original !== 'function') return;
    const hadOwn = Object.hasOwn(target, method);
    const time = this.time.bind(this);
    target[method] = function (this: unknown, ...args: unknown[]) {
      return time(op, async () => (original as AnyFn).apply(this, args));
    };
    this.restores.push(() => {
      if (hadOwn) target[method] = original;
      else delete target[method];
    });
  }

  /** Wraps every method of `obj`'s prototype chain up to Object (ledger, driver). */
  wrapAll(obj: object, prefix: string, only?: readonly string[]): void {
    const names = new Set<string>();
    for (let p = Object.getPrototypeOf(obj); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
      for (const n of Object.getOwnPropertyNames(p)) if (n !== 'constructor') names.add(n);
    }
    for (const n of names) {
      if (only && !only.includes(n)) continue;
      this.wrapMethod(obj, n, `${prefix}.${n}`);
    }
  }

  /**
   * Times every SQL statement (by label), every connection attempt and — for each pg.Pool given —
   * the wait for a pooled client. Query callbacks are not used by the driver; promises only.
   */
  instrumentPg(pools: readonly pg.Pool[]): void {
    const proto = pg.Client.prototype as unknown as Record<string, AnyFn>;
    const originalQuery = proto.query as AnyFn;
    const originalConnect = proto.connect as AnyFn;
    const timer = { record: this.record.bind(this) };
    proto.query = function (this: pg.Client, ...args: unknown[]) {
      const first = args[0];
      const text = typeof first === 'string' ? first : (first as { text?: string } | null)?.text;
      if (text === undefined) return originalQuery.apply(this, args);
      const t0 = performance.now();
      const label = `sql: ${sqlLabel(text)}`;
      // pg.Pool#query uses the callback form; the driver's own client.query calls the promise form.
      const last = args.length - 1;
      const cb = args[last];
      if (typeof cb === 'function') {
        args[last] = (...cbArgs: unknown[]) => {
          timer.record(label, performance.now() - t0);
          return (cb as AnyFn)(...cbArgs);
        };
        return originalQuery.apply(this, args);
      }
      const result = originalQuery.apply(this, args);
      if (!(result instanceof Promise)) return result;
      return result.finally(() => timer.record(label, performance.now() - t0));
    };
    proto.connect = function (this: pg.Client & { connectionParameters?: { application_name?: string } }, ...args: unknown[]) {
      const result = originalConnect.apply(this, args);
      if (!(result instanceof Promise)) return result;
      const t0 = performance.now();
      const app = this.connectionParameters?.application_name ?? '?';
      return result.then(
        (v) => {
          timer.record(`pg connect (${app}): accepted`, performance.now() - t0);
          return v;
        },
        (err: unknown) => {
          timer.record(`pg connect (${app}): refused`, performance.now() - t0);
          throw err;
        },
      );
    };
    this.restores.push(() => {
      proto.query = originalQuery;
      proto.connect = originalConnect;
    });

    for (const pool of pools) {
      const p = pool as unknown as Record<string, AnyFn>;
      const original = p.connect as AnyFn;
      p.connect = function (this: unknown, ...args: unknown[]) {
        const t0 = performance.now();
        const cb = args[0];
        if (typeof cb === 'function') {
          // pg.Pool#query checks out its client through the callback form.
          return original.call(this, (err: unknown, client: unknown, done: unknown) => {
            timer.record('admin pool: wait for a client', performance.now() - t0);
            (cb as AnyFn)(err, client, done);
          });
        }
        const r = original.apply(this, args) as Promise<unknown>;
        return r.finally(() => timer.record('admin pool: wait for a client', performance.now() - t0));
      };
      this.restores.push(() => {
        delete p.connect;
      });
    }
  }

  restore(): void {
    for (const r of this.restores.reverse()) r();
    this.restores.length = 0;
  }

  figures(): Record<string, OpFigures> {
    const out: Record<string, OpFigures> = {};
    const r = (n: number) => Math.round(n * 100) / 100;
    for (const [op, list] of [...this.samples.entries()].sort((a, b) => sum(b[1]) - sum(a[1]))) {
      const total = sum(list);
      out[op] = {
        count: list.length,
        totalMs: r(total),
        meanMs: r(total / list.length),
        p50Ms: r(percentile(list, 50) ?? 0),
        p99Ms: r(percentile(list, 99) ?? 0),
        maxMs: r(Math.max(...list)),
      };
    }
    return out;
  }
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/** The admin pools of the runtime's postgres drivers (a private field: read, never changed). */
export function driverPools(rt: LocalRuntime): pg.Pool[] {
  return rt.targets
    .all()
    .map((d) => (d as unknown as { pool?: unknown }).pool)
    .filter((p): p is pg.Pool => p instanceof pg.Pool);
}

/** Instruments a started runtime: ledger methods, driver methods, SQL, connects, pool waits. */
export function instrumentRuntime(rt: LocalRuntime): OpTimer {
  const timer = new OpTimer();
  timer.wrapAll(rt.ledger, 'ledger', ['getLease', 'createLease', 'updateLease', 'createCredential', 'updateCredential', 'claimSvid']);
  // Each DynamoDB request the ledger sends, by command: shows read-modify-write updates (Get + Update).
  const doc = (rt.ledger as unknown as { doc?: { send?: AnyFn } }).doc;
  if (doc && typeof doc.send === 'function') {
    const send = doc.send;
    const record = timer.record.bind(timer);
    doc.send = function (this: unknown, ...args: unknown[]) {
      const name = (args[0] as { constructor?: { name?: string } } | undefined)?.constructor?.name ?? 'command';
      const t0 = performance.now();
      const r = send.apply(this, args) as Promise<unknown>;
      return r.finally(() => record(`dynamodb request: ${name}`, performance.now() - t0));
    };
  }
  for (const d of rt.targets.all()) timer.wrapAll(d, `driver ${d.kind}`, ['issue', 'revoke', 'verify']);
  // Inside a driver, each SQL statement and admin checkout is timed on its pool (instrumentPg).
  timer.instrumentPg(driverPools(rt));
  return timer;
}
