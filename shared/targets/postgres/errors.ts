import { ConfigError, TargetError } from '../../lease/errors.ts';

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

/** SQLSTATE classes/codes that mean "this will fail the same way again". */
const PERMANENT_CLASSES = ['22', '42', '0A'];

export function sqlStateOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Removes every known secret and control characters, bounds the length. */
function sanitize(message: string, secrets: readonly string[]): string {
  let out = message;
  for (const s of secrets) if (s) out = out.split(s).join('[redacted]');
  return out.replace(/[\p{Cc}]/gu, ' ').slice(0, 500);
}

/** A pg error as a PostgresTargetError: SQLSTATE kept, secrets redacted, retryable unless the class is permanent. */
export function wrap(op: string, err: unknown, secrets: readonly string[] = []): PostgresTargetError | ConfigError {
  if (err instanceof PostgresTargetError || err instanceof ConfigError) return err;
  const state = sqlStateOf(err);
  const detail = (err as { detail?: unknown } | null)?.detail;
  // PostgreSQL's detail names the blocking objects (2BP01): worth keeping, after sanitising.
  const raw = (err instanceof Error ? err.message : String(err)) + (typeof detail === 'string' ? ` — ${detail}` : '');
  const retryable = state === undefined || !PERMANENT_CLASSES.includes(state.slice(0, 2));
  // No `cause`: a driver error object can carry fields we did not vet.
  return new PostgresTargetError(`postgres ${op} failed${state ? ` (${state})` : ''}: ${sanitize(raw, secrets)}`, state, retryable);
}

/** Errors worth an immediate in-call retry: concurrent catalog updates, lock conflicts. */
export const TRANSIENT_STATES = new Set(['40001', '40P01', 'XX000', '2BP01', '55P03']);

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
