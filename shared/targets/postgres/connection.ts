import type pg from 'pg';
import type { PostgresSettings } from './settings.ts';

/**
 * What the job modules (issue.ts, revoke.ts, verify.ts) use of a postgres target. The driver
 * implements it, and the jobs call their steps through it, so a step can be timed or replaced on
 * one driver instance (bench/instrument.ts, bench/what-if.ts) and every job sees that.
 */
export interface PostgresAdmin {
  /** The configured target name, for error messages. */
  readonly name: string;
  readonly settings: PostgresSettings;
  /** Admin connections to the target database. */
  readonly pool: pg.Pool;
  /** An admin connection to `database` (another database of the server, for REASSIGN/DROP OWNED). */
  connectionConfig(database: string): pg.ClientConfig;
  /** Inside a transaction: turns statement logging off where the admin may (issue.ts). */
  quietLogging(client: pg.PoolClient): Promise<void>;
  /** Terminates the role's backends until none is seen `quietLooks` times in a row (revoke.ts). */
  drainSessions(role: string, oids: Set<string>, quietLooks?: number): Promise<void>;
  /** One revocation attempt (revoke.ts). */
  revokeOnce(role: string, oids: Set<string>, owner: string | undefined): Promise<void>;
  /** Hands on or drops what the role owns in one database (revoke.ts). */
  releaseOwned(role: string, database: string, owner: string | undefined): Promise<void>;
  /** A login with the credential (verify.ts). */
  tryLogin(secret: Record<string, string>, role: string, password: string): Promise<'refused' | 'still-valid' | 'inconclusive'>;
  /** The role's backends, by name or oid (verify.ts). */
  sessionPids(role: string, oids: Iterable<string>): Promise<number[]>;
}

/** The admin's connection to `database`; the password is asked for at each connect (a rotated secret is picked up). */
export function adminConnectionConfig(settings: PostgresSettings, database: string, password: () => Promise<string>): pg.ClientConfig {
  return {
    host: settings.host,
    port: settings.port,
    database,
    user: settings.user,
    password,
    ssl: sslConfig(settings),
    connectionTimeoutMillis: settings.connectTimeoutMs,
    statement_timeout: 30_000,
    lock_timeout: 10_000,
    application_name: 'tasklease',
  };
}

export function sslConfig({ ssl, sslCa }: PostgresSettings): pg.ClientConfig['ssl'] {
  if (!ssl) return false;
  return { rejectUnauthorized: ssl === 'verify-full', ...(sslCa ? { ca: sslCa } : {}) };
}
