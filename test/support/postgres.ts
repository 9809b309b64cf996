import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { startEmbeddedPostgres } from '../../shared/targets/postgres/embedded.ts';
import type { EmbeddedPostgresInstance, EmbeddedPostgresOptions } from '../../shared/targets/postgres/embedded.ts';

/**
 * One embedded PostgreSQL per test file: started in beforeAll, stopped (data removed) in afterAll.
 * Returns an accessor, valid inside tests and later hooks.
 */
export function useEmbeddedPostgres(opts: EmbeddedPostgresOptions = {}): () => EmbeddedPostgresInstance {
  let instance: EmbeddedPostgresInstance | undefined;
  beforeAll(async () => {
    instance = await startEmbeddedPostgres(opts);
  });
  afterAll(async () => {
    await instance?.stop();
    instance = undefined;
  });
  return () => {
    if (!instance) throw new Error('embedded postgres is not running (use it inside tests)');
    return instance;
  };
}

/** Runs one query as the admin on a short-lived connection. */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  db: EmbeddedPostgresInstance,
  sql: string,
  params: unknown[] = [],
  database = db.database,
): Promise<R[]> {
  const client = new pg.Client({
    host: db.host,
    port: db.port,
    user: db.adminUser,
    password: db.adminPassword,
    database,
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Opens a connection with an issued credential (as the workload would). Caller ends it. */
export async function connectWith(secret: Record<string, string>, database?: string): Promise<pg.Client> {
  const client = new pg.Client({
    host: secret.host,
    port: Number(secret.port),
    database: database ?? secret.database,
    user: secret.username,
    password: secret.password,
    connectionTimeoutMillis: 5_000,
  });
  // A terminated backend emits 'error' on an idle client; tests observe it through their queries.
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** The SQLSTATE a promise rejects with (or undefined when it resolves / has none). */
export async function sqlStateOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? code : 'no-sqlstate';
  }
}

export async function roleExists(db: EmbeddedPostgresInstance, role: string): Promise<boolean> {
  return (await adminQuery(db, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).length > 0;
}

export async function sessionCount(db: EmbeddedPostgresInstance, role: string): Promise<number> {
  const rows = await adminQuery<{ n: number }>(db, 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [role]);
  return rows[0]?.n ?? 0;
}
