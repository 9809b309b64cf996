const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * A point in time from the command line: an ISO 8601 date/time (`2025-01-31`, `2025-01-31T12:00:00Z`)
 * or a duration before `now` (`90s`, `15m`, `1h`, `2d`, `1w`, `1h30m`).
 */
export function parseTimeArg(value: string, now: number): number {
  const text = value.trim();
  const relative = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$/.exec(text);
  if (relative) {
    let total = 0;
    for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) total += Number(n) * (UNIT_MS[unit as string] as number);
    return now - total;
  }
  // Only strings that look like ISO dates: Date.parse accepts much that is surely a typo.
  if (/^\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?$/.test(text)) {
    const ms = Date.parse(text);
    if (Number.isFinite(ms)) return ms;
  }
  throw new RangeError(`"${value}" is neither an ISO 8601 time (2025-01-31T12:00:00Z) nor a duration ago (90s, 15m, 1h, 2d, 1w)`);
}

/** A duration for people: `183 ms`, `4.2 s`, `14m 59s`, `2h 05m`, `3d 04h`. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '—';
  const sign = ms < 0 ? '-' : '';
  const a = Math.abs(ms);
  if (a < 1000) return `${sign}${Math.round(a)} ms`;
  if (a < 60_000) return `${sign}${(a / 1000).toFixed(a < 10_000 ? 2 : 1)} s`;
  // Whole seconds down: 899.8 s of avoided debt is 14m 59s, not a rounded-up 15 minutes.
  const s = Math.floor(a / 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) return `${sign}${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86_400) return `${sign}${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${sign}${Math.floor(s / 86_400)}d ${pad(Math.floor((s % 86_400) / 3600))}h`;
}
