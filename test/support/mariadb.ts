import mysql from 'mysql2/promise';
import { afterAll, beforeAll } from 'vitest';
import { findMariadbBinaries, MARIADB_PACKAGE, startEmbeddedMariadb } from '../../shared/targets/mysql/embedded.ts';
import type { EmbeddedMariadb, EmbeddedMariadbOptions } from '../../shared/targets/mysql/embedded.ts';

/**
 * Whether the MariaDB binaries are here. Missing: the mysql suites skip with one line naming the
 * package, except under CI=true, where a missing binary fails the run.
 */
export const MARIADB_AVAILABLE = findMariadbBinaries() !== undefined;
if (!MARIADB_AVAILABLE) {
  const line = `mysql target tests need MariaDB: install the ${MARIADB_PACKAGE} package (mariadbd and mariadb-install-db not found)`;
  if (process.env.CI === 'true') throw new Error(line);
  console.warn(`skipped: ${line}`);
}

/** One MariaDB per test file: started in beforeAll, stopped (data removed) in afterAll. */
export function useEmbeddedMariadb(opts: EmbeddedMariadbOptions = {}): () => EmbeddedMariadb {
  let instance: EmbeddedMariadb | undefined;
  beforeAll(async () => {
    if (MARIADB_AVAILABLE) instance = await startEmbeddedMariadb(opts);
  }, 90_000);
  afterAll(async () => {
    // A server that died under the tests (not stopped by them) says why: its last log lines.
    if (instance && !instance.isRunning() && !instance.stoppedOnPurpose()) {
      console.error(`mariadbd on port ${instance.port} exited unexpectedly:\n${instance.recentLogs().slice(-60).join('\n')}`);
    }
    await instance?.stop();
    instance = undefined;
  }, 30_000);
  return () => {
    if (!instance) throw new Error('embedded mariadb is not running (use it inside tests)');
    return instance;
  };
}

/** Runs SQL (several statements allowed) as the admin on a short-lived connection; the rows of the last statement. */
export async function adminQuery<R = Record<string, unknown>>(db: EmbeddedMariadb, sql: string, values: unknown[] = []): Promise<R[]> {
  const conn = await mysql.createConnection({
    host: db.host,
    port: db.port,
    user: db.adminUser,
    password: db.adminPassword,
    multipleStatements: true,
  });
  try {
    const [rows] = await conn.query(sql, values);
    const sets = Array.isArray(rows) && Array.isArray(rows[0]) ? rows : [rows];
    const last = sets[sets.length - 1];
    return (Array.isArray(last) ? last : []) as R[];
  } finally {
    await conn.end();
  }
}

/** Opens a connection with an issued credential, as the workload would. Caller ends it. */
export async function connectWith(secret: Record<string, string>): Promise<mysql.Connection> {
  const conn = await mysql.createConnection({
    host: secret.host,
    port: Number(secret.port),
    user: secret.username,
    password: secret.password,
    connectTimeout: 5_000,
  });
  // A killed session emits 'error' on an idle connection; tests observe it through their queries.
  conn.on('error', () => undefined);
  return conn;
}

/** The server errno a promise rejects with; undefined when it resolves, 'none' when the error has none. */
export async function errnoOf(p: Promise<unknown>): Promise<number | 'none' | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    const errno = (err as { errno?: unknown }).errno;
    return typeof errno === 'number' ? errno : 'none';
  }
}

export async function sessionCount(db: EmbeddedMariadb, user: string): Promise<number> {
  const rows = await adminQuery<{ n: number }>(db, 'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = ?', [user]);
  return Number(rows[0]?.n ?? 0);
}

export async function userExists(db: EmbeddedMariadb, user: string): Promise<boolean> {
  return (await adminQuery(db, "SELECT 1 FROM mysql.global_priv WHERE User = ? AND Host <> ''", [user])).length > 0;
}
