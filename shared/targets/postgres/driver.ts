import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import pg from 'pg';
import * as z from 'zod';
import type { Grant } from '../../events/schemas.ts';
import { describeIssues } from '../../events/parse.ts';
import { ConfigError, TargetError } from '../../lease/errors.ts';
import type {
  IssueContext,
  IssuedCredential,
  RevokeContext,
  TargetDriver,
  VerifyContext,
  VerifyResult,
} from '../../lease/ports.ts';
import type { DriverDeps, DriverFactory } from '../driver.ts';

const { escapeIdentifier, escapeLiteral } = pg;
const pbkdf2Async = promisify(pbkdf2);

export const POSTGRES_KIND = 'postgres';

/** PostgreSQL's NAMEDATALEN − 1. */
const MAX_IDENTIFIER_LENGTH = 63;
/** The hash part of a role name: at least 128 bits, at most 160. */
const MIN_HASH_HEX = 32;
const MAX_HASH_HEX = 40;
const MAX_PREFIX_LENGTH = MAX_IDENTIFIER_LENGTH - MIN_HASH_HEX;

const PRINTABLE = /^[^\p{Cc}\p{Cs}]*$/u;

/** An unquoted-style identifier: what we accept for group roles. We still always quote it. */
export const PgIdentifierSchema = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty' })
  .max(MAX_IDENTIFIER_LENGTH, { error: `must be at most ${MAX_IDENTIFIER_LENGTH} characters` })
  .regex(/^[A-Za-z_][A-Za-z0-9_$]*$/, {
    error: 'must be a PostgreSQL identifier: a letter or underscore, then letters, digits, _ or $',
  });

const connectionText = (max: number) =>
  z
    .string({ error: 'must be a string' })
    .min(1, { error: 'must not be empty' })
    .max(max, { error: `must be at most ${max} characters` })
    .regex(PRINTABLE, { error: 'must not contain control characters' });

export const PostgresSettingsSchema = z
  .strictObject({
    host: connectionText(255),
    port: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be an integer' })
      .min(1, { error: 'must be between 1 and 65535' })
      .max(65_535, { error: 'must be between 1 and 65535' })
      .default(5432),
    database: connectionText(MAX_IDENTIFIER_LENGTH),
    /** The admin user: needs CREATEROLE, ADMIN OPTION on the group roles, pg_signal_backend. */
    user: connectionText(MAX_IDENTIFIER_LENGTH),
    password: connectionText(1024).optional(),
    /** A reference (ARN, name) resolved through the runtime's `resolveSecret`. */
    passwordSecret: connectionText(2048).optional(),
    ssl: z
      .union([z.literal('require'), z.literal('verify-full'), z.literal(false)], {
        error: "must be 'require', 'verify-full' or false",
      })
      .optional(),
    /** PEM CA bundle for `ssl: 'verify-full'` when the server's CA is not in Node's store (RDS). */
    sslCa: z.string().min(1).max(1_000_000).optional(),
    rolePrefix: z
      .string({ error: 'must be a string' })
      .min(1, { error: 'must not be empty' })
      .max(MAX_PREFIX_LENGTH, { error: `must be at most ${MAX_PREFIX_LENGTH} characters` })
      .regex(/^[a-z_][a-z0-9_]*$/, { error: 'must be lower-case letters, digits and _, not starting with a digit' })
      .refine((p) => !p.startsWith('pg_'), { error: "must not start with 'pg_' (reserved by PostgreSQL)" })
      .default('tl_'),
    adminPoolMax: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be an integer' })
      .min(1, { error: 'must be between 1 and 100' })
      .max(100, { error: 'must be between 1 and 100' })
      .default(4),
    connectTimeoutMs: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be an integer' })
      .min(100, { error: 'must be between 100 and 120000' })
      .max(120_000, { error: 'must be between 100 and 120000' })
      .default(5_000),
    /**
     * Who receives objects a task role created (REASSIGN OWNED). Default: the grant's group role,
     * which already had every privilege the task had. Never the admin by default: a task could
     * otherwise leave a SECURITY DEFINER function behind that then runs with the admin's rights.
     */
    reassignOwnedTo: PgIdentifierSchema.optional(),
    /** How long revoke waits for a role's sessions to end before failing (retryably). */
    sessionDrainTimeoutMs: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be an integer' })
      .min(100, { error: 'must be between 100 and 300000' })
      .max(300_000, { error: 'must be between 100 and 300000' })
      .default(10_000),
    /** Where the functions that reach this database run in AWS; read by the CDK stack, not by the driver. */
    vpc: z
      .strictObject({
        vpcId: z.string().regex(/^vpc-[0-9a-f]+$/, { error: 'must be a VPC id (vpc-…)' }),
        subnetIds: z.array(z.string().regex(/^subnet-[0-9a-f]+$/, { error: 'must be a subnet id (subnet-…)' })).min(1),
        securityGroupIds: z.array(z.string().regex(/^sg-[0-9a-f]+$/, { error: 'must be a security group id (sg-…)' })).min(1),
      })
      .optional(),
  })
  .superRefine((s, ctx) => {
    if ((s.password === undefined) === (s.passwordSecret === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['password'],
        message: 'exactly one of password or passwordSecret is required',
      });
    }
  });
export type PostgresSettings = z.output<typeof PostgresSettingsSchema>;
export type PostgresSettingsInput = z.input<typeof PostgresSettingsSchema>;

export const PostgresAccessSchema = z.strictObject({ groupRole: PgIdentifierSchema });
export type PostgresAccess = z.output<typeof PostgresAccessSchema>;

/** Parses settings or throws a {@link ConfigError} whose message names each bad field. */
export function parsePostgresSettings(raw: unknown, what = 'postgres settings'): PostgresSettings {
  const r = PostgresSettingsSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`${what}: ${describeIssues(r.error)}`);
  return r.data;
}

/** A target failure with the SQLSTATE when PostgreSQL gave one. Messages are sanitised. */
export class PostgresTargetError extends TargetError {
  constructor(
    message: string,
    readonly sqlState?: string,
    retryable = true,
  ) {
    super(message, { retryable });
  }
}

function hashLength(prefix: string): number {
  return Math.min(MAX_HASH_HEX, MAX_IDENTIFIER_LENGTH - prefix.length);
}

/** Deterministic role name: prefix + hex(sha256(task, grant)). Never contains task text. */
export function roleNameFor(prefix: string, taskId: string, grant: Grant): string {
  const digest = createHash('sha256')
    .update(JSON.stringify(['tasklease/postgres/v1', taskId, grant.target, grant.access]))
    .digest('hex');
  return prefix + digest.slice(0, hashLength(prefix));
}

function managedRolePattern(prefix: string): RegExp {
  // The prefix schema allows only [a-z0-9_]: nothing to escape.
  return new RegExp(`^${prefix}[0-9a-f]{${hashLength(prefix)}}$`);
}

/**
 * A SCRAM-SHA-256 verifier (RFC 5802/7677, PostgreSQL's storage format). Sending the verifier
 * instead of the password means the plaintext never reaches the server, so a statement log,
 * pg_stat_statements or an error report cannot contain it.
 */
export async function scramSha256Verifier(password: string, iterations = 4096): Promise<string> {
  const salt = randomBytes(16);
  const salted = await pbkdf2Async(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** SQLSTATE classes/codes that mean "this will fail the same way again". */
const PERMANENT_CLASSES = ['22', '42', '0A'];

function sqlStateOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Removes every known secret and control characters, bounds the length. */
function sanitize(message: string, secrets: readonly string[]): string {
  let out = message;
  for (const s of secrets) if (s) out = out.split(s).join('[redacted]');
  return out.replace(/[\p{Cc}]/gu, ' ').slice(0, 500);
}

function wrap(op: string, err: unknown, secrets: readonly string[] = []): PostgresTargetError | ConfigError {
  if (err instanceof PostgresTargetError || err instanceof ConfigError) return err;
  const state = sqlStateOf(err);
  const detail = (err as { detail?: unknown } | null)?.detail;
  // PostgreSQL's detail names the blocking objects (2BP01): worth keeping, after sanitising.
  const raw = (err instanceof Error ? err.message : String(err)) + (typeof detail === 'string' ? ` — ${detail}` : '');
  const retryable = state === undefined || !PERMANENT_CLASSES.includes(state.slice(0, 2));
  // No `cause`: a driver error object can carry fields we did not vet.
  return new PostgresTargetError(
    `postgres ${op} failed${state ? ` (${state})` : ''}: ${sanitize(raw, secrets)}`,
    state,
    retryable,
  );
}

/** Errors worth an immediate in-call retry: concurrent catalog updates, lock conflicts. */
const TRANSIENT_STATES = new Set(['40001', '40P01', 'XX000', '2BP01', '55P03']);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Statement-logging settings turned off for the CREATE ROLE transaction, each best-effort. */
const QUIET_SETTINGS: ReadonlyArray<readonly [string, string]> = [
  ['log_statement', 'none'],
  ['log_min_error_statement', 'panic'],
  ['log_min_duration_statement', '-1'],
  ['pg_stat_statements.track_utility', 'off'],
];

export class PostgresDriver implements TargetDriver {
  readonly kind = POSTGRES_KIND;
  private readonly pool: pg.Pool;
  private readonly pattern: RegExp;
  private closed = false;

  constructor(
    readonly name: string,
    private readonly settings: PostgresSettings,
    private readonly access: Readonly<Record<string, PostgresAccess>>,
    private readonly deps: DriverDeps = {},
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
    const role = this.requireManaged(ctx.externalId);
    const access = Object.hasOwn(this.access, ctx.grant.access) ? this.access[ctx.grant.access] : undefined;
    if (!access) {
      throw new PostgresTargetError(
        `postgres target ${this.name} has no access named ${JSON.stringify(ctx.grant.access.slice(0, 64))}`,
        undefined,
        false,
      );
    }
    if (!Number.isFinite(ctx.lease.expiresAt)) {
      throw new PostgresTargetError('lease expiresAt is not a valid time', undefined, false);
    }
    const password = randomBytes(32).toString('base64url');
    const verifier = await scramSha256Verifier(password);
    const secrets = [password, verifier];
    const validUntil = escapeLiteral(new Date(ctx.lease.expiresAt).toISOString());
    const roleId = escapeIdentifier(role);
    const groupId = escapeIdentifier(access.groupRole);
    const pw = escapeLiteral(verifier);

    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw wrap('connect', err, secrets);
    }
    let broken = false;
    try {
      await client.query('BEGIN');
      await this.quietLogging(client);
      try {
        await client.query(
          `CREATE ROLE ${roleId} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS ` +
            `PASSWORD ${pw} VALID UNTIL ${validUntil} IN ROLE ${groupId}`,
        );
      } catch (err) {
        if (sqlStateOf(err) !== '42710') throw err;
        // The role exists: an earlier attempt created it and crashed before recording it.
        // Re-key it so only the password returned now works.
        await client.query('ROLLBACK');
        await client.query('BEGIN');
        await this.quietLogging(client);
        await client.query(`ALTER ROLE ${roleId} WITH LOGIN PASSWORD ${pw} VALID UNTIL ${validUntil}`);
        await client.query(`GRANT ${groupId} TO ${roleId}`);
      }
      const { rows } = await client.query<{ oid: string }>('SELECT oid::text AS oid FROM pg_roles WHERE rolname = $1', [
        role,
      ]);
      await client.query('COMMIT');
      return {
        secret: {
          host: this.settings.host,
          port: String(this.settings.port),
          database: this.settings.database,
          username: role,
          password,
        },
        naturalExpiry: ctx.lease.expiresAt,
        metadata: rows[0] ? { roleOid: rows[0].oid } : {},
      };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw wrap('issue', err, secrets);
    } finally {
      client.release(broken);
    }
  }

  async revoke(ctx: RevokeContext): Promise<void> {
    const role = this.requireManaged(ctx.externalId);
    const oids = new Set<string>();
    const known = ctx.metadata?.roleOid;
    if (known && /^[0-9]+$/.test(known)) oids.add(known);

    const access = Object.hasOwn(this.access, ctx.grant.access) ? this.access[ctx.grant.access] : undefined;
    const owner = this.settings.reassignOwnedTo ?? access?.groupRole;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.revokeOnce(role, oids, owner);
        return;
      } catch (err) {
        const state = sqlStateOf(err);
        if (attempt < 4 && state !== undefined && TRANSIENT_STATES.has(state)) {
          await sleep(50 * attempt);
          continue;
        }
        const wrapped = wrap('revoke', err);
        // A revocation is never abandoned: whatever failed (even a privilege), retrying may succeed later.
        throw wrapped instanceof PostgresTargetError && !wrapped.retryable
          ? new PostgresTargetError(wrapped.message, wrapped.sqlState, true)
          : wrapped;
      }
    }
  }

  async verify(ctx: VerifyContext): Promise<VerifyResult> {
    const role = this.requireManaged(ctx.externalId);
    const oids = ctx.metadata?.roleOid && /^[0-9]+$/.test(ctx.metadata.roleOid) ? [ctx.metadata.roleOid] : [];
    const password = ctx.secret?.password;
    if (password) {
      const login = await this.tryLogin(ctx.secret ?? {}, role, password);
      if (login !== 'refused') return login;
    }
    try {
      const sessions = await this.sessionPids(role, oids);
      if (sessions.length > 0) return 'still-valid';
      if (password) return 'rejected';
      const { rows } = await this.pool.query<{ rolcanlogin: boolean }>(
        'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1',
        [role],
      );
      if (rows.length === 0) return 'rejected';
      // A role that can still log in is a usable credential; a NOLOGIN leftover is a half-done revoke.
      return rows[0]?.rolcanlogin ? 'still-valid' : 'inconclusive';
    } catch {
      return 'inconclusive';
    }
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

  // ---------------------------------------------------------------------------------------------

  private requireManaged(externalId: string): string {
    // Refuse to touch any role that is not one of ours (the admin, a group role, a human).
    if (!this.pattern.test(externalId)) {
      throw new PostgresTargetError(
        `postgres target ${this.name}: external id is not a tasklease-managed role name`,
        undefined,
        false,
      );
    }
    return externalId;
  }

  private connectionConfig(database: string): pg.ClientConfig {
    const s = this.settings;
    return {
      host: s.host,
      port: s.port,
      database,
      user: s.user,
      password: () => this.adminPassword(),
      ssl: this.sslConfig(),
      connectionTimeoutMillis: s.connectTimeoutMs,
      statement_timeout: 30_000,
      lock_timeout: 10_000,
      application_name: 'tasklease',
    };
  }

  private sslConfig(): pg.ClientConfig['ssl'] {
    const { ssl, sslCa } = this.settings;
    if (!ssl) return false;
    return { rejectUnauthorized: ssl === 'verify-full', ...(sslCa ? { ca: sslCa } : {}) };
  }

  private adminPassword(): Promise<string> {
    if (this.settings.password !== undefined) return Promise.resolve(this.settings.password);
    const ref = this.settings.passwordSecret;
    const resolve = this.deps.resolveSecret;
    if (!ref || !resolve) {
      return Promise.reject(new ConfigError(`postgres target ${this.name}: passwordSecret needs a secret resolver`));
    }
    // Caching is the resolver's (in AWS: a few minutes, so a rotated admin password is picked up).
    return resolve(ref);
  }

  /** Best effort: keeps CREATE ROLE out of statement logs where the admin may change these settings. */
  private async quietLogging(client: pg.PoolClient): Promise<void> {
    // Learned once per driver: which settings this admin may set. Afterwards one round trip.
    if (this.quietAllowed) {
      await client.query('SAVEPOINT tl_quiet');
      try {
        await client.query(`SELECT ${this.quietAllowed.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ')}`, this.quietAllowed.flat());
        await client.query('RELEASE SAVEPOINT tl_quiet');
        return;
      } catch {
        // Privileges changed under us: learn again, one setting at a time.
        await client.query('ROLLBACK TO SAVEPOINT tl_quiet');
        this.quietAllowed = undefined;
      }
    }
    const allowed: Array<readonly [string, string]> = [];
    for (const [name, value] of QUIET_SETTINGS) {
      await client.query('SAVEPOINT tl_quiet');
      try {
        await client.query('SELECT set_config($1, $2, true)', [name, value]);
        await client.query('RELEASE SAVEPOINT tl_quiet');
        allowed.push([name, value]);
      } catch {
        await client.query('ROLLBACK TO SAVEPOINT tl_quiet');
      }
    }
    if (allowed.length) this.quietAllowed = allowed;
  }

  private quietAllowed: Array<readonly [string, string]> | undefined;

  private async revokeOnce(role: string, oids: Set<string>, owner: string | undefined): Promise<void> {
    const roleId = escapeIdentifier(role);
    const found = await this.pool.query<{ oid: string }>('SELECT oid::text AS oid FROM pg_roles WHERE rolname = $1', [
      role,
    ]);
    const oid = found.rows[0]?.oid;
    if (oid) oids.add(oid);

    if (oid) {
      // Stop new logins first (and drop the password, so a login is refused at the password check).
      await this.ignoreMissingRole(this.pool.query(`ALTER ROLE ${roleId} WITH NOLOGIN PASSWORD NULL`));
    }
    // Sessions survive NOLOGIN, a password change and even DROP ROLE: end them explicitly.
    // One quiet look suffices here: the drain after DROP ROLE (and verify) look again.
    await this.drainSessions(role, oids, 1);

    if (oid) {
      // Ownership and privileges are per database: clean the target database, then every other
      // database where the catalog says the role still has something.
      await this.releaseOwned(role, this.settings.database, owner);
      const others = await this.pool.query<{ datname: string }>(
        `SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid
          WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = $1::oid AND d.datname <> current_database()
            AND d.datallowconn`,
        [oid],
      );
      for (const { datname } of others.rows) await this.releaseOwned(role, datname, owner);
      await this.pool.query(`DROP ROLE IF EXISTS ${roleId}`);
    }
    // A login that passed authentication just before NOLOGIN committed can appear late: look again.
    await this.drainSessions(role, oids);
  }

  private async releaseOwned(role: string, database: string, owner: string | undefined): Promise<void> {
    const roleId = escapeIdentifier(role);
    // No known owner (an access level removed from the config since): drop, never give to the admin.
    const to = owner ? escapeIdentifier(owner) : undefined;
    await this.inDatabase(database, async (q) => {
      try {
        await q('BEGIN');
        if (to) await q(`REASSIGN OWNED BY ${roleId} TO ${to}`);
        await q(`DROP OWNED BY ${roleId}`);
        await q('COMMIT');
      } catch (err) {
        await q('ROLLBACK');
        if (sqlStateOf(err) !== '42704') throw err; // role already gone: nothing to release
      }
    });
  }

  /** Runs `fn` on one connection to `database`: a pooled one for the target database, else a short-lived one. */
  private async inDatabase(database: string, fn: (q: (sql: string) => Promise<unknown>) => Promise<void>): Promise<void> {
    if (database === this.settings.database) {
      const client = await this.pool.connect();
      let broken = false;
      try {
        await fn((sql) => client.query(sql));
      } catch (err) {
        broken = true;
        throw err;
      } finally {
        client.release(broken);
      }
      return;
    }
    const client = new pg.Client(this.connectionConfig(database));
    client.on('error', () => undefined);
    try {
      await client.connect();
      await fn((sql) => client.query(sql));
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private async ignoreMissingRole(p: Promise<unknown>): Promise<void> {
    try {
      await p;
    } catch (err) {
      if (sqlStateOf(err) !== '42704') throw err;
    }
  }

  private async sessionPids(role: string, oids: Iterable<string>): Promise<number[]> {
    const { rows } = await this.pool.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
        WHERE (usename = $1 OR usesysid = ANY($2::oid[])) AND pid <> pg_backend_pid()`,
      [role, [...oids]],
    );
    return rows.map((r) => r.pid);
  }

  /** Terminates the role's backends until none is seen twice in a row, or fails after the drain timeout. */
  private async drainSessions(role: string, oids: Set<string>, quietLooks = 2): Promise<void> {
    const deadline = Date.now() + this.settings.sessionDrainTimeoutMs;
    let quiet = 0;
    for (;;) {
      // Find and signal in one round trip; then poll below: the timeout form of
      // pg_terminate_backend waits for each backend in turn at ~100 ms granularity.
      const pids = await this.terminateSessions(role, oids);
      if (pids.length === 0) {
        if (++quiet >= quietLooks) return;
      } else {
        quiet = 0;
      }
      if (Date.now() > deadline) {
        throw new PostgresTargetError(
          `postgres revoke: sessions of ${role} still open after ${this.settings.sessionDrainTimeoutMs} ms`,
        );
      }
      await sleep(pids.length === 0 ? 5 : 20);
    }
  }

  /** Signals every backend of the role (by name or by oid); returns the pids it signalled. */
  private async terminateSessions(role: string, oids: Iterable<string>): Promise<number[]> {
    const { rows } = await this.pool.query<{ pid: number }>(
      `SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE (usename = $1 OR usesysid = ANY($2::oid[])) AND pid <> pg_backend_pid()`,
      [role, [...oids]],
    );
    return rows.map((r) => r.pid);
  }

  /** 'refused' means PostgreSQL rejected the login itself; the caller then checks sessions. */
  private async tryLogin(
    secret: Record<string, string>,
    role: string,
    password: string,
  ): Promise<'refused' | 'still-valid' | 'inconclusive'> {
    const port = Number(secret.port ?? this.settings.port);
    const client = new pg.Client({
      host: secret.host ?? this.settings.host,
      port: Number.isInteger(port) ? port : this.settings.port,
      database: secret.database ?? this.settings.database,
      user: role,
      password,
      ssl: this.sslConfig(),
      connectionTimeoutMillis: this.settings.connectTimeoutMs,
      application_name: 'tasklease-verify',
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (err) {
      const state = sqlStateOf(err);
      return state === '28P01' || state === '28000' ? 'refused' : 'inconclusive';
    }
    // The old password still works: that is a live credential. Close what we opened.
    await client.end().catch(() => undefined);
    return 'still-valid';
  }
}

export const postgresDriverFactory: DriverFactory<PostgresSettings, PostgresAccess> = {
  kind: POSTGRES_KIND,
  settingsSchema: PostgresSettingsSchema,
  accessSchema: PostgresAccessSchema,
  create(target, deps) {
    const settings = parsePostgresSettings(target.settings, `target ${target.name}: settings`);
    const access: Record<string, PostgresAccess> = {};
    for (const [name, value] of Object.entries(target.access)) {
      const r = PostgresAccessSchema.safeParse(value);
      if (!r.success) throw new ConfigError(`target ${target.name}: access.${name}: ${describeIssues(r.error)}`);
      access[name] = r.data;
    }
    if (settings.passwordSecret !== undefined && !deps.resolveSecret) {
      throw new ConfigError(`target ${target.name}: settings.passwordSecret needs a runtime with a secret resolver`);
    }
    return new PostgresDriver(target.name, settings, access, deps);
  },
};
