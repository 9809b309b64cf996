import pg from 'pg';
import type { Grant } from '../../events/schemas.ts';
import { ConfigError } from '../../lease/errors.ts';
import type { IssueContext, IssuedCredential, RevokeContext, TargetDriver, VerifyContext, VerifyResult } from '../../lease/ports.ts';
import type { DriverFactory, DriverServices } from '../driver.ts';
import { adminConnectionConfig } from './connection.ts';
import type { PostgresAdmin } from './connection.ts';
import { PostgresTargetError, wrap } from './errors.ts';
import { issueRole, QuietLogging } from './issue.ts';
import { managedRolePattern, POSTGRES_KIND, roleNameFor } from './names.ts';
import { awaitSessionsGone, releaseOwned, Revocations, revokeOnce, revokeRole } from './revoke.ts';
import type { Sweep } from './revoke.ts';
import { PostgresAccessSchema, PostgresSettingsSchema } from './settings.ts';
import type { PostgresAccess, PostgresSettings } from './settings.ts';
import { sessionCheck, tryLogin, verifyRole } from './verify.ts';
import type { SessionCheck } from './verify.ts';

// The names other modules import from this path (infra, tests, bench); their homes are beside it.
export { PostgresTargetError } from './errors.ts';
export { MAX_IDENTIFIER_LENGTH, POSTGRES_KIND, roleNameFor } from './names.ts';
export { scramSha256Verifier } from './scram.ts';
export { parsePostgresSettings, PgIdentifierSchema, PostgresAccessSchema, PostgresSettingsSchema } from './settings.ts';
export type { PostgresAccess, PostgresSettings, PostgresSettingsInput } from './settings.ts';

/** The services a postgres driver reads: the admin password's secret reference is resolved through `resolveSecret`. */
export type PostgresServices = Pick<DriverServices, 'resolveSecret'>;

/**
 * One PostgreSQL database as a target: a login role per credential, in the grant's group role.
 * The jobs live beside it (issue.ts, revoke.ts, verify.ts); this class holds the admin pool and
 * refuses to touch any role whose name is not one tasklease makes.
 */
export class PostgresDriver implements TargetDriver, PostgresAdmin {
  readonly kind = POSTGRES_KIND;
  readonly pool: pg.Pool;
  private readonly pattern: RegExp;
  readonly revocations = new Revocations();
  private readonly quiet = new QuietLogging();
  private closed = false;

  constructor(
    readonly name: string,
    readonly settings: PostgresSettings,
    private readonly access: Readonly<Record<string, PostgresAccess>>,
    private readonly services: PostgresServices = {},
  ) {
    this.pattern = managedRolePattern(settings.rolePrefix);
    this.pool = new pg.Pool({
      ...this.connectionConfig(settings.database),
      max: settings.adminPoolMax,
      idleTimeoutMillis: 30_000,
      allowExitOnIdle: true,
    });
    // A client losing its connection (server restart), idle or checked out, must not crash the process.
    this.pool.on('error', () => undefined);
    this.pool.on('connect', (client) => client.on('error', () => undefined));
  }

  externalId(taskId: string, grant: Grant): string {
    return roleNameFor(this.settings.rolePrefix, taskId, grant);
  }

  async issue(ctx: IssueContext): Promise<IssuedCredential> {
    return issueRole(this, this.access, ctx, this.requireManaged(ctx.externalId));
  }

  async revoke(ctx: RevokeContext): Promise<void> {
    return revokeRole(this, this.access, ctx, this.requireManaged(ctx.externalId));
  }

  async verify(ctx: VerifyContext): Promise<VerifyResult> {
    return verifyRole(this, ctx, this.requireManaged(ctx.externalId));
  }

  async listManaged(): Promise<string[]> {
    try {
      const { rows } = await this.pool.query<{ rolname: string }>(
        'SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname',
        [this.settings.rolePrefix],
      );
      return rows.map((r) => r.rolname).filter((n) => this.pattern.test(n));
    } catch (err) {
      throw wrap('listManaged', err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  // The jobs' steps, as methods so that one driver instance can time or replace them (bench/).

  connectionConfig(database: string): pg.ClientConfig {
    return adminConnectionConfig(this.settings, database, () => this.adminPassword());
  }

  beginQuiet(client: pg.PoolClient): Promise<void> {
    return this.quiet.begin(client);
  }

  revokeOnce(role: string, oids: Set<string>, owner: string | undefined): Promise<void> {
    return revokeOnce(this, role, oids, owner);
  }

  awaitSessionsGone(client: pg.PoolClient, role: string, oids: Set<string>, first: Sweep): Promise<string> {
    return awaitSessionsGone(this, client, role, oids, first);
  }

  releaseOwned(role: string, database: string, owner: string | undefined): Promise<void> {
    return releaseOwned(this, role, database, owner);
  }

  tryLogin(secret: Record<string, string>, role: string, password: string): Promise<'refused' | 'still-valid' | 'inconclusive'> {
    return tryLogin(this, secret, role, password);
  }

  sessionCheck(role: string, oids: readonly string[], since?: string): Promise<SessionCheck> {
    return sessionCheck(this, role, oids, since);
  }

  private requireManaged(externalId: string): string {
    // Refuse to touch any role that is not one of ours (the admin, a group role, a human).
    if (!this.pattern.test(externalId)) {
      throw new PostgresTargetError(`postgres target ${this.name}: external id is not a tasklease-managed role name`, undefined, false);
    }
    return externalId;
  }

  private adminPassword(): Promise<string> {
    if (this.settings.password !== undefined) return Promise.resolve(this.settings.password);
    const ref = this.settings.passwordSecret;
    const resolve = this.services.resolveSecret;
    if (!ref || !resolve) {
      return Promise.reject(new ConfigError(`postgres target ${this.name}: passwordSecret needs a secret resolver`));
    }
    // Caching is the resolver's (in AWS: a few minutes, so a rotated admin password is picked up).
    return resolve(ref);
  }
}

export const postgresDriverFactory: DriverFactory<PostgresSettings, PostgresAccess, 'resolveSecret'> = {
  kind: POSTGRES_KIND,
  settingsSchema: PostgresSettingsSchema,
  accessSchema: PostgresAccessSchema,
  services: ['resolveSecret'],
  create(target, services) {
    if (target.settings.passwordSecret !== undefined && !services.resolveSecret) {
      throw new ConfigError(`target ${target.name}: settings.passwordSecret needs a runtime with a secret resolver`);
    }
    return new PostgresDriver(target.name, target.settings, target.access, services);
  },
};
