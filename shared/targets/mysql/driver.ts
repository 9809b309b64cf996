import type { Pool, PoolConnection } from 'mysql2/promise';
import type { Grant } from '../../events/schemas.ts';
import { ConfigError } from '../../lease/errors.ts';
import type { IssueContext, IssuedCredential, RevokeContext, TargetDriver, VerifyContext, VerifyResult } from '../../lease/ports.ts';
import { cappedConcurrency } from '../driver.ts';
import type { DriverFactory, DriverServices } from '../driver.ts';
import { escape, mysqlClient, resolveAdminPassword, sslOptions } from './connection.ts';
import type { Flavor, MysqlAdmin } from './connection.ts';
import { errnoOf, MysqlTargetError, wrap } from './errors.ts';
import { issueUser } from './issue.ts';
import { managedUserPattern, MYSQL_KIND, userNameFor } from './names.ts';
import { revokeUser, sessionSql } from './revoke.ts';
import { MysqlAccessSchema, MysqlSettingsSchema } from './settings.ts';
import type { MysqlAccess, MysqlSettings } from './settings.ts';
import { tryLogin, verifyUser } from './verify.ts';

export { MysqlTargetError } from './errors.ts';
export { MAX_USER_LENGTH, MYSQL_KIND, userNameFor } from './names.ts';
export { MysqlAccessSchema, MysqlSettingsSchema, parseMysqlAccess, parseMysqlSettings } from './settings.ts';
export type { MysqlAccess, MysqlSettings, MysqlSettingsInput } from './settings.ts';

/** The services a mysql driver reads: an ARN/name admin password reference is resolved through `resolveSecret`. */
export type MysqlServices = Pick<DriverServices, 'resolveSecret'>;

/**
 * One MySQL/MariaDB server as a target: an account per credential, with the access level's grants
 * or role. The jobs live beside it (issue.ts, revoke.ts, verify.ts); this class holds the admin
 * pool (at most `adminPoolMax` connections, however many jobs the bus runs) and refuses to touch
 * any account whose name is not one tasklease makes.
 */
export class MysqlDriver implements TargetDriver, MysqlAdmin {
  readonly kind = MYSQL_KIND;
  private readonly pattern: RegExp;
  private pool: Pool | undefined;
  private poolReady: Promise<Pool> | undefined;
  private detected: Flavor | undefined;
  private closed = false;

  constructor(
    readonly name: string,
    readonly settings: MysqlSettings,
    private readonly access: Readonly<Record<string, MysqlAccess>>,
    private readonly services: MysqlServices = {},
  ) {
    this.pattern = managedUserPattern(settings.userPrefix);
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

  /** Accounts with our prefix+hash names, and names seen only in the process list (a dropped account's live session). */
  async listManaged(): Promise<string[]> {
    try {
      return await this.withConnection(async (conn) => {
        const flavor = await this.flavor(conn);
        const table = flavor === 'mariadb' ? 'mysql.global_priv' : 'mysql.user';
        const prefix = escape(this.settings.userPrefix);
        const len = this.settings.userPrefix.length;
        // Two statements, not a UNION: see accountState (verify.ts) on PROCESSLIST in compound queries.
        const [results] = await conn.query(
          `SELECT User AS name FROM ${table} WHERE LEFT(User, ${len}) = ${prefix} AND Host <> '';
           SELECT USER AS name FROM information_schema.PROCESSLIST WHERE LEFT(USER, ${len}) = ${prefix}`,
        );
        const rows = (results as unknown as Array<Array<{ name: unknown }>>).flat();
        const names = (rows as Array<{ name: unknown }>).map((r) => String(r.name)).filter((n) => this.pattern.test(n));
        return [...new Set(names)].sort();
      });
    } catch (err) {
      throw wrap('listManaged', err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const pool = this.pool ?? (await this.poolReady?.catch(() => undefined));
    this.pool = undefined;
    await pool?.end().catch(() => undefined);
  }

  // MysqlAdmin: the jobs' steps, as methods so one driver instance can time or replace them.

  async withConnection<T>(fn: (conn: PoolConnection) => Promise<T>): Promise<T> {
    const conn = await this.connect();
    let fatal = false;
    try {
      return await fn(conn);
    } catch (err) {
      fatal = (err as { fatal?: unknown } | null)?.fatal === true;
      throw err;
    } finally {
      if (fatal) conn.destroy();
      else conn.release();
    }
  }

  async flavor(conn: PoolConnection): Promise<Flavor> {
    if (this.settings.flavor !== 'auto') return this.settings.flavor;
    if (this.detected) return this.detected;
    const [rows] = await conn.query('SELECT VERSION() AS v');
    this.detected = /mariadb/i.test(String((rows as Array<{ v: unknown }>)[0]?.v)) ? 'mariadb' : 'mysql';
    return this.detected;
  }

  tryLogin(secret: Record<string, string>, user: string, password: string): Promise<'refused' | 'still-valid' | 'inconclusive'> {
    return tryLogin(this, secret, user, password);
  }

  async sessionsOf(conn: PoolConnection, user: string): Promise<number[]> {
    const [rows] = await conn.query(sessionSql(user));
    return (rows as Array<{ id: unknown }>).map((r) => Number(r.id));
  }

  private requireManaged(externalId: string): string {
    // Refuse to touch any account that is not one of ours (the admin, a role, a human).
    if (!this.pattern.test(externalId)) {
      throw new MysqlTargetError(`mysql target ${this.name}: external id is not a tasklease-managed user name`, undefined, false);
    }
    return externalId;
  }

  /** A pooled admin connection; an admin login refused (a rotated password) re-resolves the secret once. */
  private async connect(): Promise<PoolConnection> {
    if (this.closed) throw new MysqlTargetError(`mysql target ${this.name}: driver is closed`, undefined, false);
    for (let attempt = 1; ; attempt++) {
      const pool = await this.adminPool();
      try {
        return await pool.getConnection();
      } catch (err) {
        if (attempt === 1 && errnoOf(err) === 1045 && this.settings.passwordSecret !== undefined) {
          this.resetPool(pool);
          continue;
        }
        throw err;
      }
    }
  }

  private resetPool(pool: Pool): void {
    if (this.pool !== pool) return;
    this.pool = undefined;
    this.poolReady = undefined;
    void pool.end().catch(() => undefined);
  }

  private adminPool(): Promise<Pool> {
    if (this.pool) return Promise.resolve(this.pool);
    this.poolReady ??= Promise.all([resolveAdminPassword(this.settings, this.name, this.services.resolveSecret), mysqlClient()]).then(
      ([password, mysql]) => {
        const ssl = sslOptions(this.settings);
        this.pool = mysql.createPool({
          host: this.settings.host,
          port: this.settings.port,
          user: this.settings.user,
          password,
          connectTimeout: this.settings.connectTimeoutMs,
          ...(ssl ? { ssl } : {}),
          connectionLimit: this.settings.adminPoolMax,
          maxIdle: this.settings.adminPoolMax,
          idleTimeout: 30_000,
          queueLimit: 0,
          waitForConnections: true,
          // Each job sends its statements as one batch: one round trip. Every value in them is escaped.
          multipleStatements: true,
          enableKeepAlive: true,
        });
        return this.pool;
      },
      (err: unknown) => {
        this.poolReady = undefined;
        throw err instanceof ConfigError ? err : wrap('admin secret', err);
      },
    );
    return this.poolReady;
  }
}

export const mysqlDriverFactory: DriverFactory<MysqlSettings, MysqlAccess, 'resolveSecret'> = {
  kind: MYSQL_KIND,
  settingsSchema: MysqlSettingsSchema,
  accessSchema: MysqlAccessSchema,
  services: ['resolveSecret'],
  create(target, services) {
    const ref = target.settings.passwordSecret;
    if (ref !== undefined && !ref.startsWith('file:') && !ref.startsWith('env:') && !services.resolveSecret) {
      throw new ConfigError(`targets.${target.name}.settings.passwordSecret needs a runtime with a secret resolver`);
    }
    // The target's maxConcurrency bounds the admin pool in every runtime, not only the local one.
    const settings = { ...target.settings, adminPoolMax: cappedConcurrency(target.settings.adminPoolMax, target) };
    return new MysqlDriver(target.name, settings, target.access, services);
  },
};
