import { ConfigError, TargetError } from '../../lease/errors.ts';

/** A target failure with the first word of the server's reply (`NOPERM`, `WRONGPASS`, `ERR`) when it gave one. */
export class RedisTargetError extends TargetError {
  constructor(
    message: string,
    readonly replyCode?: string,
    retryable = true,
  ) {
    super(message, { retryable });
  }
}

/** The error word of a Redis reply error (`WRONGPASS invalid username-password pair …` → `WRONGPASS`). */
export function replyCodeOf(err: unknown): string | undefined {
  if ((err as { name?: unknown } | null)?.name !== 'ReplyError') return undefined;
  const m = /^([A-Z]+)\b/.exec(String((err as Error).message));
  return m?.[1];
}

/** Removes every known secret and control characters, bounds the length. */
export function sanitize(message: string, secrets: readonly string[]): string {
  let out = message;
  for (const s of secrets) if (s) out = out.split(s).join('[redacted]');
  return out.replace(/[\p{Cc}]/gu, ' ').slice(0, 500);
}

/**
 * An ioredis error as a RedisTargetError: the reply code kept, secrets redacted, no `cause` (an
 * ioredis error carries the command and its arguments, which may hold the password hash).
 * `permanent`: the reply errors that fail the same way again (a rule the server refuses) are not retryable.
 */
export function wrap(op: string, err: unknown, secrets: readonly string[] = [], permanent = false): RedisTargetError | ConfigError {
  if (err instanceof RedisTargetError || err instanceof ConfigError) return err;
  const code = replyCodeOf(err);
  const raw = err instanceof Error ? err.message : String(err);
  const retryable = !(permanent && (code === 'ERR' || code === 'NOPERM'));
  return new RedisTargetError(`redis ${op} failed${code ? ` (${code})` : ''}: ${sanitize(raw, secrets)}`, code, retryable);
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
