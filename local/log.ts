import type { LifecycleLogger } from '../shared/lease/lifecycle.ts';

/** A plain structured logger for the local runtime: one JSON line per entry. */
export function consoleLogger(write: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): LifecycleLogger {
  const emit = (level: string) => (message: string, attributes?: Record<string, unknown>) =>
    write(JSON.stringify({ level, time: new Date().toISOString(), message, ...attributes }));
  return { info: emit('INFO'), warn: emit('WARN'), error: emit('ERROR') };
}
