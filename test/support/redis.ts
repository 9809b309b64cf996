import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { findRedisServer, REDIS_PACKAGE, startEmbeddedRedis } from '../../shared/targets/redis/embedded.ts';
import type { EmbeddedRedis, EmbeddedRedisOptions } from '../../shared/targets/redis/embedded.ts';

/**
 * Whether redis-server is here. Missing: the redis suites skip with one line naming the package,
 * except under CI=true, where a missing binary fails the run.
 */
export const REDIS_AVAILABLE = findRedisServer() !== undefined;
if (!REDIS_AVAILABLE) {
  const line = `redis target tests need Redis: apt-get install ${REDIS_PACKAGE} (redis-server not found)`;
  if (process.env.CI === 'true') throw new Error(line);
  console.warn(`skipped: ${line}`);
}

/** One Redis per test file: started in beforeAll, stopped (directory removed) in afterAll. */
export function useEmbeddedRedis(opts: EmbeddedRedisOptions = {}): () => EmbeddedRedis {
  let instance: EmbeddedRedis | undefined;
  beforeAll(async () => {
    if (REDIS_AVAILABLE) instance = await startEmbeddedRedis(opts);
  }, 30_000);
  afterAll(async () => {
    if (instance && !instance.isRunning() && !instance.stoppedOnPurpose()) {
      console.error(`redis-server on port ${instance.port} exited unexpectedly:\n${instance.recentLogs().slice(-40).join('\n')}`);
    }
    await instance?.stop();
    instance = undefined;
  }, 30_000);
  return () => {
    if (!instance) throw new Error('embedded redis is not running (use it inside tests)');
    return instance;
  };
}

/** A connection that never reconnects: a killed connection stays dead, as a test needs to see. */
async function open(host: string, port: number, username?: string, password?: string): Promise<Redis> {
  const r = new Redis({
    host,
    port,
    ...(username !== undefined && password !== undefined ? { username, password } : {}),
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    autoResubscribe: false,
    protocol: 2,
    connectTimeout: 2_000,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
  } catch (err) {
    r.disconnect();
    throw err;
  }
  return r;
}

/**
 * Connects with an issued credential, as the workload would (AUTH sent as its own command, so a
 * refusal rejects with the server's reply: WRONGPASS). Caller disconnects it.
 */
export async function connectWith(secret: Record<string, string>): Promise<Redis> {
  const r = await open(secret.host!, Number(secret.port));
  try {
    await r.call('AUTH', secret.username!, secret.password!);
  } catch (err) {
    r.disconnect();
    throw err;
  }
  return r;
}

/** The `owner` superuser's connection, to look behind the driver's back. Caller disconnects it. */
export function ownerConnection(server: EmbeddedRedis): Promise<Redis> {
  return open(server.host, server.port, server.ownerUser, server.ownerPassword);
}

/** One command as the owner on a short-lived connection. */
export async function ownerCall(server: EmbeddedRedis, ...args: [string, ...Array<string | number>]): Promise<unknown> {
  const r = await ownerConnection(server);
  try {
    return await r.call(...args);
  } finally {
    r.disconnect();
  }
}

/**
 * What a promise rejects with: the reply's error word (`NOPERM`, `WRONGPASS`), 'closed' for a
 * connection that is gone, 'other' for anything else; undefined when it resolves.
 */
export async function refusal(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    const message = String((err as Error).message);
    if ((err as Error).name === 'ReplyError') return /^([A-Z]+)/.exec(message)?.[1] ?? 'other';
    return /closed|writeable|ECONNRESET|EPIPE|ended/i.test(message) ? 'closed' : 'other';
  }
}

/** Clients CLIENT LIST shows authenticated as `user`. */
export async function clientCount(server: EmbeddedRedis, user: string): Promise<number> {
  const list = String(await ownerCall(server, 'CLIENT', 'LIST'));
  return list.split('\n').filter((l) => l.split(' ').includes(`user=${user}`)).length;
}

export async function userExists(server: EmbeddedRedis, user: string): Promise<boolean> {
  return (await ownerCall(server, 'ACL', 'GETUSER', user)) !== null;
}
