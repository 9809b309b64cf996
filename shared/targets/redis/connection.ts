import type { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import type { RedisSettings } from './settings.ts';
import { resolveSecretRef } from '../common-settings.ts';

/**
 * What the job modules (issue.ts, revoke.ts, verify.ts) use of a redis target. The driver
 * implements it; a step can be timed or replaced on one driver instance and every job sees that.
 */
export interface RedisAdmin {
  readonly name: string;
  readonly settings: RedisSettings;
  /** Runs `fn` with the admin connection, at most `adminConcurrency` jobs at once. */
  withAdmin<T>(fn: (redis: Redis) => Promise<T>): Promise<T>;
  /** Whether changes must be followed by ACL SAVE (asked once, or as configured). */
  usesAclFile(redis: Redis): Promise<boolean>;
  /** AUTH with the credential on a fresh connection: 'refused' only for the server's WRONGPASS (verify.ts). */
  tryLogin(secret: Record<string, string>, user: string, password: string): Promise<'refused' | 'still-valid' | 'inconclusive'>;
}

/** Resolves the admin password reference: `file:` and `env:` here, anything else through the runtime's resolver. */
export async function resolveAdminPassword(
  settings: RedisSettings,
  target: string,
  resolveSecret: ((ref: string) => Promise<string>) | undefined,
): Promise<string> {
  if (settings.password !== undefined) return settings.password;
  return resolveSecretRef(`targets.${target}.settings.passwordSecret`, settings.passwordSecret, resolveSecret);
}

/**
 * Options for one connection that never reconnects or queues on its own: a job sees a dead
 * server as an error at once (the broker retries), never as a command parked until the server is back.
 * RESP2, no INFO ready check, no CLIENT SETINFO: the connection sends nothing the caller did not ask for.
 */
export function connectionOptions(
  settings: RedisSettings,
  at: { host?: string | undefined; port?: number | undefined } = {},
  auth?: { username: string; password: string },
): RedisOptions {
  return {
    host: at.host ?? settings.host,
    port: at.port ?? settings.port,
    ...(auth ?? {}),
    ...(settings.tls ? { tls: { rejectUnauthorized: true, ...(settings.tlsCa ? { ca: settings.tlsCa } : {}) } } : {}),
    protocol: 2,
    lazyConnect: true,
    enableReadyCheck: false,
    disableClientInfo: true,
    enableOfflineQueue: false,
    autoResubscribe: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    reconnectOnError: null,
    connectTimeout: settings.connectTimeoutMs,
    commandTimeout: settings.commandTimeoutMs,
  };
}

/** A new connection, connected; errors after that surface on its commands, never as an unhandled 'error'. */
export async function openConnection(options: RedisOptions): Promise<Redis> {
  // ioredis loaded on first use: bundles of configs without a redis target leave it out (infra/bundling.ts).
  const { Redis: Client } = await import('ioredis');
  const redis = new Client(options);
  // ioredis rejects a failed connect with a bare "Connection is closed."; the socket's own error says why.
  let cause: unknown;
  redis.on('error', (err) => (cause ??= err));
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw cause ?? err;
  }
  return redis;
}

/** At most `max` holders at once; the others wait in order. */
export class Limiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  peak = 0;

  constructor(private readonly max: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    this.peak = Math.max(this.peak, this.active);
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter: `active` stays as it is.
      if (next) next();
      else this.active--;
    }
  }
}

/** The clients CLIENT LIST shows for `user` (its ids), from the raw reply. */
export function clientsOf(clientList: string, user: string): string[] {
  const ids: string[] = [];
  for (const line of clientList.split('\n')) {
    const fields = line.trim().split(' ');
    if (!fields.includes(`user=${user}`)) continue;
    const id = fields.find((f) => f.startsWith('id='))?.slice(3);
    if (id && /^[0-9]+$/.test(id)) ids.push(id);
  }
  return ids;
}
