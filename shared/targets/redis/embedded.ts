import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { connectionOptions, openConnection } from './connection.ts';
import { passwordHash } from './issue.ts';
import { parseRedisSettings } from './settings.ts';
import type { RedisAccess, RedisSettingsInput } from './settings.ts';
import { findFreePort, startRetryingPort, stopProcess } from '../local-server.ts';

/*
 * A throw-away Redis for tests, the demo and the bench: Debian's `redis-server` as a child process
 * on a free loopback port with a temporary directory and an aclfile (so ACL SAVE is real), never
 * the system service. `default` is off; the admin has only what the driver needs; an `owner`
 * superuser exists for seeding and for tests to look behind the driver's back.
 */

/** What to install when the binary is missing. */
export const REDIS_PACKAGE = 'redis-server';

const HOST = '127.0.0.1';
const ADMIN_USER = 'tasklease_admin';
const OWNER_USER = 'owner';
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

/**
 * Everything the driver sends, and nothing else: no keys, no channels. (Redis has no grant option:
 * a user that may ACL SETUSER can create any user, so the admin is as powerful as its server.)
 */
export const ADMIN_RULES = [
  'on',
  'resetkeys',
  'resetchannels',
  '-@all',
  '+acl|setuser',
  '+acl|deluser',
  '+acl|getuser',
  '+acl|users',
  '+acl|save',
  '+client|kill',
  '+client|list',
  '+config|get',
  '+multi',
  '+exec',
  '+discard',
  '+ping',
] as const;

/** The demo levels: `read` (read-only key pattern) and `write` (keys and the `orders:` channels) on the `orders:` keys. */
export const DEMO_ACCESS: Readonly<Record<'read' | 'write', RedisAccess>> = {
  read: { keys: ['%R~orders:*'], channels: [], commands: ['+@read', '+@connection'] },
  write: { keys: ['~orders:*'], channels: ['&orders:*'], commands: ['+@read', '+@write', '+@pubsub', '+@connection'] },
};

export function findRedisServer(): string | undefined {
  const dirs = [process.env.REDIS_BIN_DIR, '/usr/bin', '/usr/sbin', '/usr/local/bin', '/opt/homebrew/bin'].filter((d): d is string => !!d);
  return dirs.map((d) => path.join(d, 'redis-server')).find((p) => existsSync(p));
}

export interface EmbeddedRedisOptions {
  port?: number;
  /** Start with an aclfile (ACL SAVE works). Default true; false: users only in memory, ACL SAVE refused. */
  aclFile?: boolean;
  /** Seed the demo `orders:` keys. Default true. */
  seed?: boolean;
  userPrefix?: string;
  serverArgs?: string[];
  onLog?: (line: string) => void;
}

export interface EmbeddedRedis {
  host: string;
  port: number;
  adminUser: string;
  adminPassword: string;
  ownerUser: string;
  ownerPassword: string;
  dir: string;
  /** The aclfile, when started with one. */
  aclFile: string | undefined;
  /** Settings for the redis driver, admin password inline (never a deployed config). */
  settings: RedisSettingsInput & { password: string };
  access: typeof DEMO_ACCESS;
  isRunning(): boolean;
  /** Stops the server, keeps its directory and aclfile (outage simulation). */
  stopServer(): Promise<void>;
  /** Starts a server stopped with stopServer on the same port and aclfile. */
  startServer(): Promise<void>;
  /** Final stop: the server ends and its directory is removed. Idempotent. */
  stop(): Promise<void>;
  recentLogs(): string[];
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

/** Starts a fresh Redis in a temp dir on a free port; throws when the binary is missing. */
export async function startEmbeddedRedis(opts: EmbeddedRedisOptions = {}): Promise<EmbeddedRedis> {
  const bin = findRedisServer();
  if (!bin) throw new Error(`redis-server not found: install the ${REDIS_PACKAGE} package`);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklease-redis-'));
  track(dir);
  const adminPassword = randomBytes(24).toString('base64url');
  const ownerPassword = randomBytes(24).toString('base64url');
  const withAclFile = opts.aclFile !== false;
  const aclFile = withAclFile ? path.join(dir, 'users.acl') : undefined;
  const users = [
    'user default off resetkeys resetchannels -@all',
    `user ${ADMIN_USER} #${passwordHash(adminPassword)} ${ADMIN_RULES.join(' ')}`,
    `user ${OWNER_USER} on #${passwordHash(ownerPassword)} ~* &* +@all`,
  ];
  const logs: string[] = [];
  const onLog = (line: string) => {
    logs.push(line);
    if (logs.length > 300) logs.shift();
    opts.onLog?.(line);
  };
  let port = opts.port ?? (await findFreePort());
  let child: ChildProcess | undefined;
  let stopped = false;
  let stopping = false;
  let crashed = false;

  const cleanup = async () => {
    await fs.rm(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  };

  if (aclFile) await fs.writeFile(aclFile, `${users.join('\n')}\n`, { mode: 0o600 });
  // Without an aclfile the users go in a config file (which Redis reads once; ACL SAVE is then refused).
  const confFile = path.join(dir, 'redis.conf');
  await fs.writeFile(confFile, aclFile ? '' : `${users.join('\n')}\n`, { mode: 0o600 });

  const ping = async (): Promise<boolean> => {
    const settings = parseRedisSettings({ host: HOST, port, user: OWNER_USER, password: ownerPassword, connectTimeoutMs: 500 });
    try {
      const r = await openConnection(connectionOptions(settings, {}, { username: OWNER_USER, password: ownerPassword }));
      try {
        return (await r.call('PING')) === 'PONG';
      } finally {
        r.disconnect();
      }
    } catch {
      return false;
    }
  };

  const startOnce = async (): Promise<ChildProcess> => {
    const proc = spawn(
      bin,
      [
        confFile,
        '--port',
        String(port),
        '--bind',
        HOST,
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
        '--logfile',
        '',
        ...(aclFile ? ['--aclfile', aclFile] : []),
        ...(opts.serverArgs ?? []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    liveChildren.add(proc);
    let exited: string | undefined;
    const onData = (b: Buffer) => String(b).split('\n').filter(Boolean).forEach(onLog);
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    proc.once('error', (err) => (exited = String(err)));
    proc.once('exit', (code, signal) => {
      liveChildren.delete(proc);
      exited = `code ${code}, signal ${signal}`;
      if (child === proc) {
        child = undefined;
        if (!stopping) {
          crashed = true;
          onLog(`[tasklease] redis-server exited unexpectedly (${exited})`);
        }
      }
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (exited) throw new Error(`redis-server exited (${exited}) on port ${port}: ${logs.slice(-3).join(' | ')}`);
      if (await ping()) return proc;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server did not answer PING in ${START_TIMEOUT_MS} ms: ${logs.slice(-3).join(' | ')}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };

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
    if (opts.seed !== false) await seedDemo(port, ownerPassword);
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
    ownerUser: OWNER_USER,
    ownerPassword,
    dir,
    aclFile,
    settings: {
      host: HOST,
      port,
      user: ADMIN_USER,
      password: adminPassword,
      connectTimeoutMs: 2_000,
      ...(opts.userPrefix ? { userPrefix: opts.userPrefix } : {}),
    },
    access: DEMO_ACCESS,
    isRunning: () => child !== undefined,
    async stopServer() {
      if (stopped) throw new Error('embedded redis already stopped for good');
      await stopServer();
    },
    async startServer() {
      if (stopped) throw new Error('embedded redis already stopped for good');
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
  const settings = parseRedisSettings({ host: HOST, port, user: OWNER_USER, password });
  const r = await openConnection(connectionOptions(settings, {}, { username: OWNER_USER, password }));
  try {
    await r.call('HSET', 'orders:1', 'item', 'apples', 'qty', '3');
    await r.call('HSET', 'orders:2', 'item', 'pears', 'qty', '5');
    await r.call('SET', 'reports:total', '8');
  } finally {
    r.disconnect();
  }
}
