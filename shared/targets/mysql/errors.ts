import { ConfigError, TargetError } from '../../lease/errors.ts';

/** A target failure with the server's errno when it gave one. Messages are sanitised. */
export class MysqlTargetError extends TargetError {
  constructor(
    message: string,
    readonly errno?: number,
    retryable = true,
  ) {
    super(message, { retryable });
  }
}

/**
 * Login refusals that prove the password no longer opens a session: 1045 access denied (wrong
 * password, no such user; MariaDB answers a login of a dropped user with 1698 at random, the
 * same denial without "using password", so that probing cannot tell users apart), 4151 MariaDB's
 * locked account, 3118 MySQL's. mysql2 labels 4151 with an unrelated `code` (its table of names
 * follows MySQL's numbering), so match on errno.
 */
export const LOGIN_REFUSED_ERRNOS: ReadonlySet<number> = new Set([1045, 1698, 4151, 3118]);

/** Errors that will fail the same way again at issue: privileges, syntax, unknown role/object. */
const PERMANENT_ERRNOS = new Set([1044, 1045, 1064, 1142, 1143, 1227, 1410, 1396, 1470, 1959, 3523, 1049, 1146]);

export function errnoOf(err: unknown): number | undefined {
  const errno = (err as { errno?: unknown } | null)?.errno;
  return typeof errno === 'number' && Number.isInteger(errno) ? errno : undefined;
}

/** Removes every known secret and control characters, bounds the length. */
export function sanitize(message: string, secrets: readonly string[]): string {
  let out = message;
  for (const s of secrets) if (s) out = out.split(s).join('[redacted]');
  return out.replace(/[\p{Cc}]/gu, ' ').slice(0, 500);
}

/**
 * A mysql2 error as a MysqlTargetError: errno kept, secrets redacted. Only the message is read:
 * mysql2 errors also carry the statement (`sql`), which may hold a password hash or, on MySQL, the
 * password itself, so no `cause` either.
 */
export function wrap(op: string, err: unknown, secrets: readonly string[] = [], permanent = false): MysqlTargetError | ConfigError {
  if (err instanceof MysqlTargetError || err instanceof ConfigError) return err;
  const errno = errnoOf(err);
  const raw = err instanceof Error ? err.message : String(err);
  const retryable = !(permanent && errno !== undefined && PERMANENT_ERRNOS.has(errno));
  return new MysqlTargetError(`mysql ${op} failed${errno !== undefined ? ` (${errno})` : ''}: ${sanitize(raw, secrets)}`, errno, retryable);
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
