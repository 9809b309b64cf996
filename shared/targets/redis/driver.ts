import type { Redis } from 'ioredis';
import type { Grant } from '../../events/schemas.ts';
import { ConfigError } from '../../lease/errors.ts';
import type { IssueContext, IssuedCredential, RevokeContext, TargetDriver, VerifyContext, VerifyResult } from '../../lease/ports.ts';
import { cappedConcurrency } from '../driver.ts';
import type { DriverFactory, DriverServices } from '../driver.ts';
import { connectionOptions, Limiter, openConnection, resolveAdminPassword } from './connection.ts';
import type { RedisAdmin } from './connection.ts';
import { RedisTargetError, replyCodeOf, wrap } from './errors.ts';
import { issueUser } from './issue.ts';
import { managedUserPattern, REDIS_KIND, userNameFor } from './names.ts';
import { revokeUser } from './revoke.ts';
import { RedisAccessSchema, RedisSettingsSchema } from './settings.ts';
import type { RedisAccess, RedisSettings } from './settings.ts';
import { tryLogin, verifyUser } from './verify.ts';

export { RedisTargetError } from './errors.ts';
export { passwordHash, setUserRules } from './issue.ts';
export { MAX_PREFIX_LENGTH, REDIS_KIND, userNameFor } from './names.ts';
export { CLOSING_RULES, parseRedisAccess, parseRedisSettings, RedisAccessSchema, RedisSettingsSchema } from './settings.ts';
export type { RedisAccess, RedisAccessInput, RedisSettings, RedisSettingsInput } from './settings.ts';

/** The services a redis driver reads: an ARN/name admin password reference is resolved through `resolveSecret`. */
export type RedisServices = Pick<DriverServices, 'resolveSecret'>;

/**
 * One Redis 7 server as a target: an ACL user per credential, with the access level's key,
 * channel and command rules. The jobs live beside it (issue.ts, revoke.ts, verify.ts); this class
 * holds one admin connection (Redis multiplexes it; at most `adminConcurrency` jobs use it at once)
 * and refuses to touch any user whose name is not one tasklease makes.
 */
export class RedisDriver implements TargetDriver, RedisAdmin {
  readonly kind = REDIS_KIND;
  private readonly pattern: RegExp;
  readonly limiter: Limiter;
  private client: Redis | undefined;
  private connecting: Promise<Redis> | undefined;
  private aclFile: boolean | undefined;
  private closed = false;

  constructor(
    readonly name: string,
    readonly settings: RedisSettings,
    private readonly access: Readonly<Record<string, RedisAccess>>,
    private readonly services: RedisServices = {},
  ) {
    this.pattern = managedUserPattern(settings.userPrefix);
    this.limiter = new Limiter(settings.adminConcurrency);
  }

  externalId(taskId: string, grant: Grant): string {
    return userNameFor(this.settings.userPrefix, taskId, grant);
  }

  async issue(ctx: IssueContext): Promise<IssuedCredential> {
    return issueUser(this, this.access, ctx, this.requireManaged(ctx.externalId));
  }

  async revoke(ctx: RevokeContext): Promise<void> {
    return revokeUser(this, ctx, this.requireManaged(ctx.externalId));
  }

  async verify(ctx: VerifyContext): Promise<VerifyResult> {
    return verifyUser(this, ctx, this.requireManaged(ctx.externalId));
  }

  /** ACL users with our prefix+hash names (Redis moves a deleted user's clients off it, so none outlives its user). */
  async listManaged(): Promise<string[]> {
    try {
      return await this.withAdmin(async (redis) => {
        const users = (await redis.call('ACL', 'USERS')) as unknown[];
        return users
          .map(String)
          .filter((n) => this.pattern.test(n))
          .sort();
      });
    } catch (err) {
      throw wrap('listManaged', err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    client?.disconnect();
  }

  // RedisAdmin: the jobs' steps, as methods so one driver instance can time or replace them.

  withAdmin<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
    return this.limiter.run(async () => fn(await this.admin()));
  }

  async usesAclFile(redis: Redis): Promise<boolean> {
    if (this.settings.aclSave !== 'auto') return this.settings.aclSave;
    if (this.aclFile !== undefined) return this.aclFile;
    try {
      const reply = (await redis.call('CONFIG', 'GET', 'aclfile')) as unknown[];
      this.aclFile = typeof reply[1] === 'string' && reply[1] !== '';
    } catch (err) {
      // Not knowing could leave a revoked user in the file, for the next restart to bring back.
      throw new RedisTargetError(
        `redis target ${this.name}: cannot tell whether the server uses an aclfile (CONFIG GET aclfile: ${replyCodeOf(err) ?? 'failed'}); ` +
          `allow the admin +config|get or set targets.${this.name}.settings.aclSave`,
        replyCodeOf(err),
      );
    }
    return this.aclFile;
  }

  tryLogin(secret: Record<string, string>, user: string, password: string): Promise<'refused' | 'still-valid' | 'inconclusive'> {
    return tryLogin(this, secret, user, password);
  }

  private requireManaged(externalId: string): string {
    // Refuse to touch any user that is not one of ours (the admin, `default`, a human, an application).
    if (!this.pattern.test(externalId)) {
      throw new RedisTargetError(`redis target ${this.name}: external id is not a tasklease-managed user name`, undefined, false);
    }
    return externalId;
  }

  /**
   * The admin connection, opened on first use and again after it dropped (it never reconnects on
   * its own: a job meets a dead server as an error, at once). An admin AUTH refused (a rotated
   * password) re-resolves the secret on the next job.
   */
  private admin(): Promise<Redis> {
    // A connect failure is thrown as it came: the job wraps it with its own name (`redis revoke failed: …`).
    if (this.closed) return Promise.reject(new RedisTargetError(`redis target ${this.name}: driver is closed`, undefined, false));
    if (this.client && this.client.status === 'ready') return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      try {
        const password = await resolveAdminPassword(this.settings, this.name, this.services.resolveSecret);
        const client = await openConnection(connectionOptions(this.settings, {}, { username: this.settings.user, password }));
        client.once('end', () => {
          if (this.client === client) this.client = undefined;
        });
        if (this.closed) {
          client.disconnect();
          throw new RedisTargetError(`redis target ${this.name}: driver is closed`, undefined, false);
        }
        this.client = client;
        return client;
      } finally {
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }
}

export const redisDriverFactory: DriverFactory<RedisSettings, RedisAccess, 'resolveSecret'> = {
  kind: REDIS_KIND,
  settingsSchema: RedisSettingsSchema,
  accessSchema: RedisAccessSchema,
  services: ['resolveSecret'],
  create(target, services) {
    const ref = target.settings.passwordSecret;
    if (ref !== undefined && !ref.startsWith('file:') && !ref.startsWith('env:') && !services.resolveSecret) {
      throw new ConfigError(`targets.${target.name}.settings.passwordSecret needs a runtime with a secret resolver`);
    }
    // The target's maxConcurrency bounds the admin work in every runtime, not only the local one.
    const settings = { ...target.settings, adminConcurrency: cappedConcurrency(target.settings.adminConcurrency, target) };
    return new RedisDriver(target.name, settings, target.access, services);
  },
};
