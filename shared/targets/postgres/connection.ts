import type pg from 'pg';
import type { Revocations, Sweep } from './revoke.ts';
import type { PostgresSettings } from './settings.ts';
import type { SessionCheck } from './verify.ts';

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
  /** BEGIN on `client`, with statement logging turned off where the admin may (issue.ts). */
  beginQuiet(client: pg.PoolClient): Promise<void>;
  /** What this driver learned revoking a role (its oids, the server time of the drop), for the verify after it. */
  readonly revocations: Revocations;
  /** One revocation attempt, on one admin connection (revoke.ts). */
  revokeOnce(role: string, oids: Set<string>, owner: string | undefined): Promise<void>;
  /** After the drop: waits for the role's signalled backends to exit and for logins starting at the drop (revoke.ts). */
  awaitSessionsGone(client: pg.PoolClient, role: string, oids: Set<string>, first: Sweep): Promise<string>;
  /** Hands on or drops what the role owns in another database (revoke.ts). */
  releaseOwned(role: string, database: string, owner: string | undefined): Promise<void>;
  /** A login with the credential (verify.ts). */
  tryLogin(secret: Record<string, string>, role: string, password: string): Promise<'refused' | 'still-valid' | 'inconclusive'>;
  /** The role's sessions (by name or oid), logins still starting, orphan sessions, the role itself: one statement (verify.ts). */
  sessionCheck(role: string, oids: readonly string[], since?: string): Promise<SessionCheck>;
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
