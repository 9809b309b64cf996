import { createHash, randomBytes } from 'node:crypto';
import type { IssueContext, IssuedCredential } from '../../lease/ports.ts';
import { account, escape, escapeId } from './connection.ts';
import type { Flavor, MysqlAdmin } from './connection.ts';
import { MysqlTargetError, wrap } from './errors.ts';
import { objectOf } from './settings.ts';
import type { MysqlAccess } from './settings.ts';

const DAY_MS = 86_400_000;

/**
 * mysql_native_password's stored form, `*` + hex(SHA1(SHA1(password))). Sending it instead of the
 * password (MariaDB's `IDENTIFIED BY PASSWORD`) keeps the plaintext out of the general log, the
 * slow log and any statement an error quotes; the stored form alone does not answer the login
 * challenge (that needs SHA1(password)).
 */
export function nativePasswordHash(password: string): string {
  const stage1 = createHash('sha1').update(password, 'utf8').digest();
  return `*${createHash('sha1').update(stage1).digest('hex').toUpperCase()}`;
}

/**
 * The natural expiry both servers have: `PASSWORD EXPIRE INTERVAL N DAY`, day-granular and counted
 * from the password change, so the lease's end rounded up to whole days. An expired password is
 * not a refused login: the client gets a sandboxed session that may `SET PASSWORD` and go on,
 * unless the server runs with `disconnect_on_expired_password=ON`. The revoke, and the reaper that
 * bounds every lease by its expiresAt, are what end the credential.
 */
export function expiryDays(expiresAt: number, now: number): number {
  return Math.max(1, Math.ceil((expiresAt - now) / DAY_MS));
}

/** Every statement of one issue, in order (exported for tests of quoting). */
export function issueStatements(
  flavor: Flavor,
  level: MysqlAccess,
  user: string,
  host: string,
  secret: { password: string; hash: string },
  days: number,
): string[] {
  const acct = account(user, host);
  const identified = flavor === 'mariadb' ? `IDENTIFIED BY PASSWORD ${escape(secret.hash)}` : `IDENTIFIED BY ${escape(secret.password)}`;
  const limits = level.maxUserConnections !== undefined ? ` WITH MAX_USER_CONNECTIONS ${level.maxUserConnections}` : '';
  const options = `${limits} ACCOUNT UNLOCK PASSWORD EXPIRE INTERVAL ${days} DAY`;
  const out = [
    `CREATE USER IF NOT EXISTS ${acct} ${identified}${options}`,
    // An account left by an attempt that crashed before it was recorded: re-keyed, so only the password returned now works.
    `ALTER USER ${acct} ${identified}${options}`,
  ];
  for (const grant of level.grants ?? []) {
    const { schema, table } = objectOf(grant.on);
    out.push(`GRANT ${grant.privileges.join(', ')} ON ${escapeId(schema)}.${table ? escapeId(table) : '*'} TO ${acct}`);
  }
  if (level.role !== undefined) {
    const role = escapeId(level.role);
    out.push(`GRANT ${role} TO ${acct}`);
    // The role is active from login on: MariaDB's default role (one per user), MySQL's `SET DEFAULT ROLE … TO`.
    out.push(flavor === 'mariadb' ? `SET DEFAULT ROLE ${role} FOR ${acct}` : `SET DEFAULT ROLE ${role} TO ${acct}`);
  }
  return out;
}

/**
 * Creates the task's account (prefix + hash name, random 256-bit password, password expiry at the
 * lease's end rounded up to days) with the access level's grants or role, in one round trip. A
 * failure part-way drops the account again, so a failed issue leaves nothing that can log in.
 */
export async function issueUser(
  admin: MysqlAdmin,
  access: Readonly<Record<string, MysqlAccess>>,
  ctx: IssueContext,
  user: string,
  now = Date.now(),
): Promise<IssuedCredential> {
  const level = Object.hasOwn(access, ctx.grant.access) ? access[ctx.grant.access] : undefined;
  if (!level) {
    throw new MysqlTargetError(
      `mysql target ${admin.name} has no access named ${JSON.stringify(ctx.grant.access.slice(0, 64))}`,
      undefined,
      false,
    );
  }
  if (!Number.isFinite(ctx.lease.expiresAt)) throw new MysqlTargetError('lease expiresAt is not a valid time', undefined, false);
  const password = randomBytes(32).toString('base64url');
  const hash = nativePasswordHash(password);
  const secrets = [password, hash, hash.slice(1)];
  const days = expiryDays(ctx.lease.expiresAt, now);
  const { host, port, userHost } = admin.settings;
  await admin
    .withConnection(async (conn) => {
      const flavor = await admin.flavor(conn);
      const sql = issueStatements(flavor, level, user, userHost, { password, hash }, days).join(';\n');
      try {
        await conn.query(sql);
      } catch (err) {
        // DDL commits one statement at a time: undo what the batch did before it failed.
        await conn.query(`DROP USER IF EXISTS ${account(user, userHost)}`).catch(() => undefined);
        throw wrap('issue', err, secrets, true);
      }
    })
    .catch((err: unknown) => {
      throw wrap('issue', err, secrets);
    });
  return {
    secret: { host, port: String(port), username: user, password },
    // The server's own expiry: the end of the last whole day the lease reaches into.
    naturalExpiry: now + days * DAY_MS,
    metadata: { userHost, passwordExpireDays: String(days) },
  };
}
