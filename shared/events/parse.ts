import type { z } from 'zod';
import { InvalidEventError } from '../lease/errors.ts';
import { parseJsonStrict } from './strict-json.ts';

/** One line per issue, each naming the field: `grants[0].target: must be lower-case …`. */
export function describeIssues(error: z.ZodError): string {
  // Bounded: hostile input (a 100 KB key) must not become a 100 KB reason in logs and events.
  const text = error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? formatPath(i.path) : '(detail)'}: ${i.message.slice(0, MAX_ISSUE_MESSAGE)}`)
    .join('; ');
  return text.length > MAX_REASON ? `${text.slice(0, MAX_REASON)}…` : text;
}

const MAX_ISSUE_MESSAGE = 200;
const MAX_REASON = 900;

function formatPath(path: PropertyKey[]): string {
  return path.map((p, idx) => (typeof p === 'number' ? `[${p}]` : `${idx === 0 ? '' : '.'}${String(p).slice(0, 40)}`)).join('');
}

/** Parse `value` or throw an {@link InvalidEventError} whose message names each bad field. */
export function parseDetail<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new InvalidEventError(`${what}: ${describeIssues(result.error)}`);
  return result.data;
}

/**
 * Parse JSON text (an SQS body holding an EventBridge event, a re-verify message) strictly, then
 * validate it with `schema`: duplicate keys anywhere, the `detail` included, are refused.
 */
export function parseJsonDetail<S extends z.ZodType>(schema: S, text: string, what: string): z.infer<S> {
  return parseDetail(schema, parseJsonStrict(text, what), what);
}
