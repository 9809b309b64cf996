import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { seg } from './management.ts';
import type { RabbitmqAccess, RabbitmqSettingsInput } from './settings.ts';
import { findFreePort } from '../local-server.ts';

/*
 * A throw-away RabbitMQ for tests, the demo and the bench: Debian's `rabbitmq-server` run as a
 * child process (the script itself, not the service wrapper) on free loopback ports, with its own
 * epmd, Erlang cookie, data and log in a temporary directory, never the system service. The admin
 * is the broker's default user, created at first boot with a random password.
 */

/** What to install when the binaries are missing. */
export const RABBITMQ_PACKAGE = 'rabbitmq-server';

const HOST = '127.0.0.1';
const ADMIN_USER = 'tasklease-admin';
const START_TIMEOUT_MS = 90_000;

/** The demo vhost and its access levels: `read` consumes orders.*, `write` also declares and publishes. */
export const DEMO_VHOST = 'orders';
export const DEMO_ACCESS: Readonly<Record<'read' | 'write', RabbitmqAccess>> = {
  read: { vhosts: { [DEMO_VHOST]: { configure: '', write: '', read: '^orders\\.' } } },
  // The default exchange is `amq.default` to RabbitMQ's permission check.
  write: { vhosts: { [DEMO_VHOST]: { configure: '^orders\\.', write: '^(orders\\..*|amq\\.default)$', read: '^orders\\.' } } },
};

export interface RabbitmqBinaries {
  server: string;
  epmd: string;
}

/** rabbitmq-server and epmd, from $RABBITMQ_BIN_DIR or the Debian paths; undefined when absent. */
export function findRabbitmqBinaries(): RabbitmqBinaries | undefined {
  const dirs = [process.env.RABBITMQ_BIN_DIR, '/usr/lib/rabbitmq/bin', '/usr/local/lib/rabbitmq/bin', '/opt/homebrew/sbin'].filter(
    (d): d is string => !!d,
  );
  const server = dirs.map((d) => path.join(d, 'rabbitmq-server')).find((p) => existsSync(p));
  const epmd = ['/usr/bin/epmd', '/usr/local/bin/epmd', '/opt/homebrew/bin/epmd'].find((p) => existsSync(p));
  return server && epmd ? { server, epmd } : undefined;
}

export interface EmbeddedRabbitmqOptions {
  /** Vhosts to create besides `/` (default: the demo vhost). */
  vhosts?: string[];
  onLog?: (line: string) => void;
}

export interface EmbeddedRabbitmq {
  host: string;
  amqpPort: number;
  managementPort: number;
  amqpUrl: string;
  managementUrl: string;
  adminUser: string;
  adminPassword: string;
  dir: string;
  /** Settings for the rabbitmq driver, admin password inline (never a deployed config). */
  settings: RabbitmqSettingsInput & { adminPassword: string };
  access: typeof DEMO_ACCESS;
  /** A management API request as the admin; the parsed body. */
  api(method: string, apiPath: string, body?: unknown): Promise<{ status: number; body: unknown }>;
  /** The broker's log file so far. */
  readLog(): Promise<string>;
  isRunning(): boolean;
  /** The server and its epmd end, the directory is removed. Idempotent. */
  stop(): Promise<void>;
}

const liveDirs = new Set<string>();
const liveGroups = new Set<number>();
let exitHookInstalled = false;
function track(dir: string): void {
  liveDirs.add(dir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const pid of liveGroups) killGroup(pid, 'SIGKILL');
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: HOST, port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Each child in its own process group, so stop() ends it with every process it started (beam, erl_child_setup, inet_gethost). */
function spawnGroup(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, onLog: (line: string) => void): ChildProcess {
  const child = spawn(cmd, args, { env, cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = (b: Buffer) => String(b).split('\n').filter(Boolean).forEach(onLog);
  child.stdout?.on('data', lines);
  child.stderr?.on('data', lines);
  if (child.pid) liveGroups.add(child.pid);
  return child;
}

async function endGroup(child: ChildProcess | undefined): Promise<void> {
  if (!child?.pid) return;
  const exited = child.exitCode !== null || child.signalCode !== null;
  // A throw-away broker: its data is removed next, so nothing is gained by a graceful stop.
  killGroup(child.pid, 'SIGKILL');
  if (!exited) await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  liveGroups.delete(child.pid);
}

/** Starts a fresh RabbitMQ with the management plugin in a temp dir on free ports; throws when the binaries are missing. */
export async function startEmbeddedRabbitmq(opts: EmbeddedRabbitmqOptions = {}): Promise<EmbeddedRabbitmq> {
  const bin = findRabbitmqBinaries();
  if (!bin) throw new Error(`RabbitMQ binaries not found: install the ${RABBITMQ_PACKAGE} package`);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tasklease-rabbitmq-'));
  track(dir);
  const adminPassword = randomBytes(24).toString('base64url');
  const logs: string[] = [];
  const onLog = (line: string) => {
    logs.push(line);
    if (logs.length > 200) logs.shift();
    opts.onLog?.(line);
  };
  const [amqpPort, managementPort, distPort, epmdPort] = await Promise.all([
    findFreePort(),
    findFreePort(),
    findFreePort(),
    findFreePort(),
  ]);
  const logFile = path.join(dir, 'rabbit.log');
  const managementUrl = `http://${HOST}:${managementPort}/`;
  const auth = `Basic ${Buffer.from(`${ADMIN_USER}:${adminPassword}`).toString('base64')}`;
  let server: ChildProcess | undefined;
  let epmd: ChildProcess | undefined;
  let stopped = false;

  const api = async (method: string, apiPath: string, body?: unknown) => {
    const res = await fetch(`http://${HOST}:${managementPort}${apiPath}`, {
      method,
      headers: { authorization: auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
  };

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await endGroup(server);
    await endGroup(epmd);
    await fs.rm(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  };

  try {
    // Written 0600: it holds the admin's first-boot password.
    await fs.writeFile(
      path.join(dir, 'rabbitmq.conf'),
      [
        `listeners.tcp.default = ${HOST}:${amqpPort}`,
        `management.tcp.ip = ${HOST}`,
        `management.tcp.port = ${managementPort}`,
        'loopback_users = none',
        `default_user = ${ADMIN_USER}`,
        `default_pass = ${adminPassword}`,
        'default_user_tags.administrator = true',
        'default_permissions.configure = .*',
        'default_permissions.read = .*',
        'default_permissions.write = .*',
        `log.file = ${logFile}`,
        'log.file.level = debug',
        'log.console = false',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    await fs.writeFile(path.join(dir, 'enabled_plugins'), '[rabbitmq_management].\n');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      // The Erlang cookie goes to $HOME/.erlang.cookie.
      HOME: dir,
      LANG: 'C.UTF-8',
      ERL_EPMD_PORT: String(epmdPort),
      RABBITMQ_NODENAME: `tl${randomBytes(4).toString('hex')}@localhost`,
      RABBITMQ_NODE_IP_ADDRESS: HOST,
      RABBITMQ_NODE_PORT: String(amqpPort),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: dir,
      RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: path.join(dir, 'advanced.config'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
      // Not /etc/rabbitmq/rabbitmq-env.conf: nothing of the system install applies.
      RABBITMQ_CONF_ENV_FILE: path.join(dir, 'rabbitmq-env.conf'),
    };
    // Our own epmd on a free port, up before the node: the node's `epmd -daemon` would otherwise
    // start one that outlives the test.
    epmd = spawnGroup(bin.epmd, ['-port', String(epmdPort), '-address', HOST], env, dir, onLog);
    const epmdDeadline = Date.now() + 10_000;
    while (!(await accepts(epmdPort))) {
      if (Date.now() > epmdDeadline || epmd.exitCode !== null) throw new Error(`epmd did not start: ${logs.slice(-5).join(' | ')}`);
      await sleep(50);
    }
    server = spawnGroup(bin.server, [], env, dir, onLog);
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (server.exitCode !== null || server.signalCode !== null) {
        throw new Error(`rabbitmq-server exited during start-up: ${logs.slice(-10).join(' | ')}`);
      }
      const ready = await api('GET', '/api/overview').then(
        (r) => r.status === 200,
        () => false,
      );
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`rabbitmq-server did not answer within ${START_TIMEOUT_MS} ms`);
      await sleep(250);
    }
    for (const vhost of opts.vhosts ?? [DEMO_VHOST]) {
      const created = await api('PUT', `/api/vhosts/${seg(vhost)}`);
      if (created.status !== 201 && created.status !== 204) throw new Error(`vhost ${vhost}: HTTP ${created.status}`);
      await api('PUT', `/api/permissions/${seg(vhost)}/${seg(ADMIN_USER)}`, { configure: '.*', write: '.*', read: '.*' });
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const amqpUrl = `amqp://${HOST}:${amqpPort}`;
  return {
    host: HOST,
    amqpPort,
    managementPort,
    amqpUrl,
    managementUrl,
    adminUser: ADMIN_USER,
    adminPassword,
    dir,
    settings: { managementUrl, amqpUrl, adminUser: ADMIN_USER, adminPassword },
    access: DEMO_ACCESS,
    api,
    readLog: () => fs.readFile(logFile, 'utf8').catch(() => ''),
    isRunning: () => !stopped && server?.exitCode === null && server.signalCode === null,
    stop,
  };
}
