import type { DenialCode } from '../events/schemas.ts';

/** Base of every error tasklease raises on purpose; `code` is stable and safe to log. */
export class TaskLeaseError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The input event failed validation. Not retryable: the same bytes will fail again. */
export class InvalidEventError extends TaskLeaseError {
  constructor(message: string) {
    super('invalid-event', message);
  }
}

/** A lease request was refused; carried to `Lease Denied` and the ledger. */
export class DenialError extends TaskLeaseError {
  constructor(
    readonly denial: DenialCode,
    message: string,
  ) {
    super(denial, message);
  }
}

/** A target system failed; retryable. Messages must never include secret material. */
export class TargetError extends TaskLeaseError {
  constructor(message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super('target-error', message, options);
    this.retryable = options?.retryable ?? true;
  }
  readonly retryable: boolean;
}

/** A conditional ledger write lost a race: another delivery of the same event got there first. */
export class ConflictError extends TaskLeaseError {
  constructor(message: string) {
    super('conflict', message);
  }
}

/** Configuration is invalid; the message names the bad field. */
export class ConfigError extends TaskLeaseError {
  constructor(message: string) {
    super('config-error', message);
  }
}

/** A short, secret-free description of any thrown value. */
export function describeError(err: unknown): string {
  if (err instanceof TaskLeaseError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return `${err.name}${typeof code === 'string' ? ` ${code}` : ''}: ${err.message}`.slice(0, 500);
  }
  return String(err).slice(0, 500);
}
