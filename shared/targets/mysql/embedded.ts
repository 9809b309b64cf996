import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { nativePasswordHash } from './issue.ts';
import type { MysqlAccess, MysqlSettingsInput } from './settings.ts';
import { findFreePort, startRetryingPort, stopProcess } from '../local-server.ts';

/*
 * A throw-away MariaDB for tests, the demo and the bench: Debian's `mariadb-server` binaries run
 * as a child process on a free loopback port with a temporary data directory, never the system
 * service. The admin is a password user made at bootstrap; root is left to unix-socket auth only.
 */

/** What to install when the binaries are missing. */
export const MARIADB_PACKAGE = 'mariadb-server';

const HOST = '127.0.0.1';
const ADMIN_USER = 'tasklease_admin';
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

export const DEMO_DATABASE = 'orders';

/** The demo grants: `read` as a grant list, `write` as a role (both forms of an access level). */
export const DEMO_ACCESS: Readonly<Record<'read' | 'write', MysqlAccess>> = {
  read: { grants: [{ privileges: ['SELECT'], on: 'orders.*' }] },
  write: { role: 'orders_write' },
};

const SEED_SQL = `
CREATE DATABASE orders;
CREATE TABLE orders.orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(64) NOT NULL, qty INT NOT NULL);
INSERT INTO orders.orders (item, qty) VALUES ('apples', 3), ('pears', 5), ('plums', 7), ('figs', 2);
CREATE DATABASE reports;
CREATE ROLE orders_write;
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, CREATE VIEW, SHOW VIEW ON orders.* TO orders_write;
`;

export interface MariadbBinaries {
  mariadbd: string;
  installDb: string;
}

/** The server and bootstrap binaries, from $MARIADB_BIN_DIR or the usual places; undefined when absent. */
export function findMariadbBinaries(): MariadbBinaries | undefined {
  const dirs = [process.env.MARIADB_BIN_DIR, '/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', '/opt/homebrew/bin'].filter(
    (d): d is string => !!d,
  );
  const find = (names: string[]) => dirs.flatMap((d) => names.map((n) => path.join(d, n))).find((p) => existsSync(p));
  const mariadbd = find(['mariadbd', 'mysqld']);
  const installDb = find(['mariadb-install-db', 'mysql_install_db']);
  return mariadbd && installDb ? { mariadbd, installDb } : undefined;
}

export interface EmbeddedMariadbOptions {
  port?: number;
  /** Create the demo `orders` database, table and `orders_write` role. Default true. */
  seed?: boolean;
  onLog?: (line: string) => void;
  userPrefix?: string;
  /** More server options (`--disconnect-on-expired-password`, `--general-log=1` …). */
  serverArgs?: string[];
}

export interface EmbeddedMariadb {
  host: string;
  port: number;
  adminUser: string;
  adminPassword: string;
  dataDir: string;
  socket: string;
  /** Settings for the mysql driver, admin password inline (never a deployed config). */
  settings: MysqlSettingsInput & { password: string };
  access: typeof DEMO_ACCESS;
  isRunning(): boolean;
  /** Stops the server, keeps the data (outage simulation). */
  stopServer(): Promise<void>;
  /** Starts a server stopped with stopServer on the same port and data. */
  startServer(): Promise<void>;
  /** Final stop: the server ends and its directory is removed. Idempotent. */
  stop(): Promise<void>;
  recentLogs(): string[];
  /** False when the server exited without stopServer/stop asking it to (a crash). */
  stoppedOnPurpose(): boolean;
}

const liveDirs = new Set<string>();
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(dir: string): void {
  liveDirs.add(dir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of liveChildren) c.kill('SIGKILL');
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
}

function run(cmd: string, args: string[], onLog: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    const lines = (b: Buffer) =>
      String(b)
        .split('\n')
        .filter(Boolean)
        .forEach((l) => {
          tail.push(l);
          onLog(l);
        });
    child.stdout.on('data', lines);
    child.stderr.on('data', lines);
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      code === 0
        ? resolve()
        : reject(
            new Error(
              `${path.basename(cmd)} exited with ${code ?? signal}: ${tail
                .filter((l) => /error|signal/i.test(l))
                .slice(-4)
                .join(' | ')}`,
            ),
          ),
    );
  });
}

/** Starts a fresh MariaDB in a temp dir on a free port; throws when the binaries are missing. */
export async function startEmbeddedMariadb(opts: EmbeddedMariadbOptions = {}): Promise<EmbeddedMariadb> {
  const bin = findMariadbBinaries();
  if (!bin) throw new Error(`MariaDB binaries not found: install the ${MARIADB_PACKAGE} package`);
  const parent = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklease-mariadb-'));
  track(parent);
  const dataDir = path.join(parent, 'data');
  const socket = path.join(parent, 'mariadb.sock');
  const adminPassword = randomBytes(24).toString('base64url');
  const logs: string[] = [];
  const onLog = (line: string) => {
    logs.push(line);
    if (logs.length > 300) logs.shift();
    opts.onLog?.(line);
  };
  const asRoot = process.getuid?.() === 0;
  const userArgs = asRoot ? ['--user=root'] : [];

  let port = opts.port ?? (await findFreePort());
  let child: ChildProcess | undefined;
  let stopped = false;
  let stopping = false;
  let crashed = false;

  const cleanup = async () => {
    await fs.rm(parent, { recursive: true, force: true });
    liveDirs.delete(parent);
  };

  try {
    // Bootstrap: system tables, the admin (with a password, over TCP) and the demo data, in one run.
    const extra = path.join(parent, 'bootstrap.sql');
    // Bootstrap runs without grant tables loaded (no CREATE USER): the admin is written as a row,
    // as mariadb-install-db writes root, with all privileges and a native password hash.
    const priv = JSON.stringify({
      access: '18446744073709551615',
      plugin: 'mysql_native_password',
      authentication_string: nativePasswordHash(adminPassword),
    }).replace('"18446744073709551615"', '18446744073709551615');
    await fs.writeFile(extra, `INSERT INTO mysql.global_priv VALUES ('%', '${ADMIN_USER}', '${priv}');\n`, { mode: 0o600 });
    const install = () =>
      run(
        bin.installDb,
        [
          '--no-defaults',
          `--datadir=${dataDir}`,
          '--auth-root-authentication-method=socket',
          `--auth-root-socket-user=${os.userInfo().username}`,
          '--skip-test-db',
          '--skip-name-resolve',
          `--extra-file=${extra}`,
          ...userArgs,
        ],
        onLog,
      );
    // The bootstrap has been seen to fail now and then on a loaded machine: once more, from scratch.
    await install().catch(async (err: unknown) => {
      onLog(`[tasklease] bootstrap failed, retrying once: ${err instanceof Error ? err.message : String(err)}`);
      await fs.rm(dataDir, { recursive: true, force: true });
      await install();
    });
    await fs.rm(extra, { force: true });
  } catch (err) {
    await cleanup();
    throw err;
  }

  const startOnce = (): Promise<ChildProcess> =>
    new Promise((resolve, reject) => {
      const proc = spawn(
        bin.mariadbd,
        [
          '--no-defaults',
          `--datadir=${dataDir}`,
          `--socket=${socket}`,
          `--port=${port}`,
          `--bind-address=${HOST}`,
          `--pid-file=${path.join(parent, 'mariadb.pid')}`,
          '--skip-name-resolve',
          '--max-connections=500',
          // A throw-away instance: durability buys nothing and costs test time.
          '--innodb-buffer-pool-size=32M',
          '--innodb-flush-log-at-trx-commit=0',
          '--innodb-doublewrite=0',
          '--skip-log-bin',
          ...userArgs,
          ...(opts.serverArgs ?? []),
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      liveChildren.add(proc);
      let ready = false;
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(new Error(`mariadbd did not become ready in ${START_TIMEOUT_MS} ms: ${logs.slice(-3).join(' | ')}`));
      }, START_TIMEOUT_MS);
      const onData = (b: Buffer) => {
        for (const line of String(b).split('\n').filter(Boolean)) {
          onLog(line);
          if (!ready && line.includes('ready for connections')) {
            ready = true;
            clearTimeout(timer);
            resolve(proc);
          }
        }
      };
      proc.stdout?.on('data', onData);
      proc.stderr?.on('data', onData);
      proc.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      proc.once('exit', (code, signal) => {
        liveChildren.delete(proc);
        if (child === proc) child = undefined;
        if (ready && !stopping) {
          crashed = true;
          onLog(`[tasklease] mariadbd exited unexpectedly (code ${code}, signal ${signal})`);
        }
        if (!ready) {
          clearTimeout(timer);
          reject(new Error(`mariadbd exited with ${code} on port ${port}: ${logs.slice(-3).join(' | ')}`));
        }
      });
    });

  const startServer = async () => {
    if (child) return;
    child = await startOnce();
  };

  const stopServer = async () => {
    const proc = child;
    if (!proc) return;
    stopping = true;
    await stopProcess(proc, STOP_TIMEOUT_MS);
    child = undefined;
    stopping = false;
  };

  try {
    await startRetryingPort(startServer, opts.port !== undefined, async () => {
      port = await findFreePort();
    });
    if (opts.seed !== false) await seedDemo(port, adminPassword);
  } catch (err) {
    await stopServer().catch(() => undefined);
    await cleanup();
    throw err;
  }

  return {
    host: HOST,
    port,
    adminUser: ADMIN_USER,
    adminPassword,
    dataDir,
    socket,
    settings: {
      host: HOST,
      port,
      user: ADMIN_USER,
      password: adminPassword,
      flavor: 'mariadb',
      connectTimeoutMs: 5_000,
      ...(opts.userPrefix ? { userPrefix: opts.userPrefix } : {}),
    },
    access: DEMO_ACCESS,
    isRunning: () => child !== undefined,
    async stopServer() {
      if (stopped) throw new Error('embedded mariadb already stopped for good');
      await stopServer();
    },
    async startServer() {
      if (stopped) throw new Error('embedded mariadb already stopped for good');
      await startServer();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await stopServer();
      } finally {
        await cleanup();
      }
    },
    recentLogs: () => [...logs],
    stoppedOnPurpose: () => !crashed,
  };
}

async function seedDemo(port: number, password: string): Promise<void> {
  const conn = await mysql.createConnection({ host: HOST, port, user: ADMIN_USER, password, multipleStatements: true });
  try {
    await conn.query(SEED_SQL);
  } finally {
    await conn.end();
  }
}
