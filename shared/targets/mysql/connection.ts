import { escape, escapeId } from 'sql-escaper';
import type * as Mysql2 from 'mysql2/promise';
import type { ConnectionOptions, PoolConnection } from 'mysql2/promise';
import type { MysqlSettings } from './settings.ts';
import { resolveSecretRef } from '../common-settings.ts';

export type Flavor = 'mariadb' | 'mysql';

/**
 * What the job modules (issue.ts, revoke.ts, verify.ts) use of a mysql target. The driver
 * implements it; a step can be timed or replaced on one driver instance and every job sees that.
 */
export interface MysqlAdmin {
  readonly name: string;
  readonly settings: MysqlSettings;
  /** Runs `fn` on one admin connection of the pool (at most `adminPoolMax` at once). */
  withConnection<T>(fn: (conn: PoolConnection) => Promise<T>): Promise<T>;
  /** The server's flavor (asked once, or as configured). */
  flavor(conn: PoolConnection): Promise<Flavor>;
  /** A login with the credential: 'refused' only for the server's own refusal (verify.ts). */
  tryLogin(secret: Record<string, string>, user: string, password: string): Promise<'refused' | 'still-valid' | 'inconclusive'>;
  /** Session ids of the user in the process list, whoever its account is now (revoke.ts, verify.ts). */
  sessionsOf(conn: PoolConnection, user: string): Promise<number[]>;
}

/** Resolves the admin password reference: `file:` and `env:` here, anything else through the runtime's resolver. */
export async function resolveAdminPassword(
  settings: MysqlSettings,
  target: string,
  resolveSecret: ((ref: string) => Promise<string>) | undefined,
): Promise<string> {
  if (settings.password !== undefined) return settings.password;
  return resolveSecretRef(`targets.${target}.settings.passwordSecret`, settings.passwordSecret, resolveSecret);
}

export function sslOptions({ ssl, sslCa }: MysqlSettings): ConnectionOptions['ssl'] {
  if (!ssl) return undefined;
  return { rejectUnauthorized: ssl === 'verify-full', ...(sslCa ? { ca: sslCa } : {}) };
}

/**
 * mysql2, loaded on first use: a Lambda bundle whose config has no mysql target leaves the client
 * out (infra/bundling.ts, the kind's `clientPackages`), so nothing may import it at load time.
 */
export type MysqlClient = typeof Mysql2;
let client: Promise<MysqlClient> | undefined;
export const mysqlClient = (): Promise<MysqlClient> =>
  (client ??= import('mysql2/promise').then((m) => ((m as unknown as { default?: MysqlClient }).default ?? m) as MysqlClient));

/** `'name'@'host'`, both quoted as mysql2 quotes them (its escaping is sql-escaper's). */
export function account(user: string, host: string): string {
  return `${escape(user)}@${escape(host)}`;
}

export { escape, escapeId };
