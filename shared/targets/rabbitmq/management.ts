import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../lease/errors.ts';
import type { DriverServices } from '../driver.ts';
import { networkCause, RabbitmqTargetError, sanitize } from './errors.ts';
import type { RabbitmqSettings } from './settings.ts';

/** One path segment of the management API, percent-encoded (a vhost `/` is `%2F`, a connection name has spaces and `>`). */
export const seg = (s: string): string => encodeURIComponent(s);

export interface ApiResponse {
  status: number;
  body: unknown;
}

/** A small counting semaphore: the driver's admin requests in flight never exceed `max`. */
class Limiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  peak = 0;

  constructor(private readonly max: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    this.peak = Math.max(this.peak, this.active);
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/**
 * Resolves the admin password reference: `file:` and `env:` here, anything else (a Secrets
 * Manager ARN or name) through the runtime's resolver, which caches it.
 */
export async function resolveAdminPassword(
  settings: RabbitmqSettings,
  target: string,
  resolveSecret: DriverServices['resolveSecret'],
): Promise<string> {
  if (settings.adminPassword !== undefined) return settings.adminPassword;
  const ref = settings.adminPasswordSecret;
  const field = `targets.${target}.settings.adminPasswordSecret`;
  if (ref === undefined) throw new ConfigError(`${field} is required`);
  if (ref.startsWith('file:')) {
    const text = await readFile(ref.slice('file:'.length), 'utf8').catch(() => {
      throw new ConfigError(`${field}: the file cannot be read`);
    });
    return text.replace(/\r?\n$/, '');
  }
  if (ref.startsWith('env:')) {
    const value = process.env[ref.slice('env:'.length)];
    if (!value) throw new ConfigError(`${field}: the environment variable is not set`);
    return value;
  }
  if (!resolveSecret) throw new ConfigError(`${field} needs a runtime with a secret resolver`);
  return resolveSecret(ref);
}

/**
 * The management HTTP API as the admin, through Node's fetch. Every path is built from encoded
 * segments; no response body or password reaches an error message unredacted.
 */
export class ManagementApi {
  private readonly base: string;
  private readonly limiter: Limiter;
  private auth: Promise<{ header: string; password: string }> | undefined;

  constructor(
    private readonly target: string,
    private readonly settings: RabbitmqSettings,
    private readonly password: () => Promise<string>,
  ) {
    this.base = settings.managementUrl.replace(/\/+$/, '');
    this.limiter = new Limiter(settings.adminConcurrency);
  }

  /** The most admin requests this client ever had in flight at once. */
  get peakConcurrency(): number {
    return this.limiter.peak;
  }

  /** Runs `fn` in one of the driver's admin slots (verify's AMQP login: bounded like the API requests). */
  bounded<T>(fn: () => Promise<T>): Promise<T> {
    return this.limiter.run(fn);
  }

  /**
   * One request. `ok` lists the statuses that are answers (404 for an idempotent delete); any other
   * status, or no answer, throws a RabbitmqTargetError (retryable unless the request itself is wrong).
   */
  async request(
    op: string,
    method: string,
    path: string,
    ok: readonly number[],
    body?: unknown,
    secrets: string[] = [],
  ): Promise<ApiResponse> {
    return this.limiter.run(async () => {
      const { header: authorization, password } = await this.authorization();
      let res: Response;
      try {
        res = await fetch(`${this.base}${path}`, {
          method,
          headers: {
            // No accept header: some resources (user limits) offer no application/json and answer 406 to it.
            authorization,
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
            // Shown to the client whose connection the admin closes (DELETE /api/connections/…).
            'x-reason': 'tasklease: credential revoked',
          },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(this.settings.requestTimeoutMs),
        });
      } catch (err) {
        throw new RabbitmqTargetError(`rabbitmq ${op} failed: management API unreachable (${networkCause(err)})`);
      }
      let parsed: unknown;
      const text = await res.text().catch(() => '');
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      if (ok.includes(res.status)) return { status: res.status, body: parsed };
      // A rotated admin password: ask the resolver again next time.
      if (res.status === 401) this.auth = undefined;
      const reason = (parsed as { reason?: unknown } | undefined)?.reason;
      const detail = typeof reason === 'string' ? `: ${sanitize(reason, [...secrets, authorization, password])}` : '';
      // 400 is a request we built wrong (a vhost that does not exist): the same again fails the same way.
      throw new RabbitmqTargetError(`rabbitmq ${op} failed: HTTP ${res.status}${detail}`, res.status, res.status !== 400);
    });
  }

  private authorization(): Promise<{ header: string; password: string }> {
    this.auth ??= this.password().then(
      (password) => ({ header: `Basic ${Buffer.from(`${this.settings.adminUser}:${password}`).toString('base64')}`, password }),
      (err: unknown) => {
        this.auth = undefined;
        if (err instanceof ConfigError) throw err;
        throw new RabbitmqTargetError(`rabbitmq target ${this.target}: the admin password could not be resolved`);
      },
    );
    return this.auth;
  }
}
