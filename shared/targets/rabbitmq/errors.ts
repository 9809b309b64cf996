import { TargetError } from '../../lease/errors.ts';

/** A target failure, with the management API's HTTP status when there was one. Messages are sanitised. */
export class RabbitmqTargetError extends TargetError {
  constructor(
    message: string,
    readonly status?: number,
    retryable = true,
  ) {
    super(message, { retryable });
  }
}

/** Removes every known secret and control characters, bounds the length. */
export function sanitize(message: string, secrets: readonly string[] = []): string {
  let out = message;
  for (const s of secrets) if (s) out = out.split(s).join('[redacted]');
  return out.replace(/[\p{Cc}]/gu, ' ').slice(0, 300);
}

/** The low-level cause of a failed fetch (ECONNREFUSED, a timeout), without anything it carried. */
export function networkCause(err: unknown): string {
  const e = err as { name?: unknown; cause?: { code?: unknown } } | null;
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'timed out';
  const code = e?.cause?.code;
  return typeof code === 'string' && /^[A-Z_]{2,40}$/.test(code) ? code : 'network error';
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
