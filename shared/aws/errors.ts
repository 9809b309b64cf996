/**
 * AWS SDK v3 error helpers. Modeled exceptions carry their class name (`NoSuchEntityException`),
 * unmodeled ones the wire code (`AccessDenied`); both spellings are matched.
 */

/** The SDK error's name (or code), when it has one. */
export function awsErrorName(err: unknown): string | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const { name, Code, code } = err as { name?: unknown; Code?: unknown; code?: unknown };
  for (const v of [name, Code, code]) if (typeof v === 'string' && v && v !== 'Error') return v;
  return undefined;
}

/** True when `err` is one of the named AWS errors (with or without the `Exception` suffix). */
export function isAwsError(err: unknown, ...names: string[]): boolean {
  const n = awsErrorName(err);
  if (!n) return false;
  const bare = n.replace(/Exception$/, '');
  return names.some((want) => want === n || want.replace(/Exception$/, '') === bare);
}

/** HTTP status of an SDK error, when known. */
export function awsHttpStatus(err: unknown): number | undefined {
  const status = (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** A short description of an SDK error: name and first line of its message, bounded. */
export function describeAwsError(err: unknown): string {
  const name = awsErrorName(err) ?? 'Error';
  const message = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
  return `${name}: ${message}`.replace(/[\p{Cc}]/gu, ' ').slice(0, 300);
}
