import type { CredentialRow, Report } from './report.ts';
import { formatDuration } from './time.ts';

/** Fields holding epoch-ms instants; JSON and CSV write them as ISO 8601 (durations stay in ms). */
const INSTANT_KEYS = new Set([
  'generatedAt',
  'since',
  'until',
  'requestedAt',
  'issuedAt',
  'endedAt',
  'revokeStartedAt',
  'revokedAt',
  'verifiedAt',
  'naturalExpiry',
  'peakCredentialsAt',
  'peakTargetsAt',
]);

function withIsoTimes(value: unknown, key?: string): unknown {
  if (typeof value === 'number' && key !== undefined && INSTANT_KEYS.has(key)) return new Date(value).toISOString();
  if (Array.isArray(value)) return value.map((v) => withIsoTimes(v));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withIsoTimes(v, k)]));
  }
  return value;
}

/** The report for tools: instants as ISO 8601 strings, durations as `…Ms` numbers. */
export function reportToJson(report: Report): string {
  return `${JSON.stringify(withIsoTimes(report), null, 2)}\n`;
}

export const CSV_ROW_KINDS = ['credentials', 'open-debt', 'denials', 'blast-radius', 'summary'] as const;
export type CsvRowKind = (typeof CSV_ROW_KINDS)[number];

const CREDENTIAL_COLUMNS = [
  'taskId',
  'grant',
  'target',
  'kind',
  'workload',
  'state',
  'issuedAt',
  'endedAt',
  'endedAtSource',
  'endedAtClamped',
  'revokeStartedAt',
  'revokedAt',
  'verifiedAt',
  'naturalExpiry',
  'trustDebtMs',
  'pipelineMs',
  'revokeMs',
  'proofMs',
  'exposureMs',
  'avoidedDebtMs',
  'openDebtMs',
  'verifyAttempts',
  'lastError',
] as const satisfies ReadonlyArray<keyof CredentialRow>;

function csvCell(value: unknown, key: string): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'number') return INSTANT_KEYS.has(key) ? new Date(value).toISOString() : String(value);
  let text = Array.isArray(value) ? value.join(' ') : String(value);
  // A text cell a spreadsheet would read as a formula is kept as text.
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function csv(columns: readonly string[], rows: ReadonlyArray<Record<string, unknown>>): string {
  const lines = [columns.join(',')];
  for (const row of rows) lines.push(columns.map((c) => csvCell(row[c], c)).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

/** RFC 4180 CSV of one part of the report; `credentials` (worst debt first) by default. */
export function reportToCsv(report: Report, kind: CsvRowKind = 'credentials'): string {
  switch (kind) {
    case 'credentials':
      return csv(CREDENTIAL_COLUMNS, report.credentials as unknown as Array<Record<string, unknown>>);
    case 'open-debt':
      return csv(CREDENTIAL_COLUMNS, report.openDebt.items as unknown as Array<Record<string, unknown>>);
    case 'denials':
      return csv(
        ['taskId', 'workload', 'code', 'message', 'requestedAt'],
        report.denials.items as unknown as Array<Record<string, unknown>>,
      );
    case 'blast-radius':
      return csv(
        ['workload', 'peakCredentials', 'peakCredentialsAt', 'peakTargets', 'peakTargetsAt', 'nowCredentials', 'nowTargets', 'targetsNow'],
        report.blastRadius.map((b) => ({ ...b, nowCredentials: b.now.credentials, nowTargets: b.now.targets })),
      );
    case 'summary': {
      const s = report.summary;
      return csv(
        [
          'generatedAt',
          'leases',
          'credentials',
          'verifiedRejected',
          'notVerified',
          'trustDebtP50Ms',
          'trustDebtP90Ms',
          'trustDebtP99Ms',
          'trustDebtMaxMs',
          'pipelineP50Ms',
          'pipelineP99Ms',
          'revokeP50Ms',
          'revokeP99Ms',
          'proofP50Ms',
          'proofP99Ms',
          'exposureP50Ms',
          'exposureP99Ms',
          'avoidedDebtP50Ms',
          'avoidedDebtMinMs',
          'openDebtCount',
          'openDebtOldestMs',
          'denials',
          'stillValid',
        ],
        [
          {
            generatedAt: report.generatedAt,
            leases: report.leases,
            credentials: s.credentials,
            verifiedRejected: s.verifiedRejected,
            notVerified: s.open,
            trustDebtP50Ms: s.trustDebtMs.p50,
            trustDebtP90Ms: s.trustDebtMs.p90,
            trustDebtP99Ms: s.trustDebtMs.p99,
            trustDebtMaxMs: s.trustDebtMs.max,
            pipelineP50Ms: s.split.pipelineMs.p50,
            pipelineP99Ms: s.split.pipelineMs.p99,
            revokeP50Ms: s.split.revokeMs.p50,
            revokeP99Ms: s.split.revokeMs.p99,
            proofP50Ms: s.split.proofMs.p50,
            proofP99Ms: s.split.proofMs.p99,
            exposureP50Ms: s.split.exposureMs.p50,
            exposureP99Ms: s.split.exposureMs.p99,
            avoidedDebtP50Ms: s.avoidedDebtMs.p50,
            avoidedDebtMinMs: s.avoidedDebtMs.min,
            openDebtCount: report.openDebt.count,
            openDebtOldestMs: report.openDebt.oldestMs,
            denials: report.denials.total,
            stillValid: report.totals.stillValid,
          },
        ],
      );
    }
  }
}

type Align = 'left' | 'right';

function table(header: string[], rows: string[][], align: Align[], indent = '  '): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: string[]) =>
    indent +
    cells
      .map((c, i) => (align[i] === 'right' ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [fmt(header), indent + widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(fmt)];
}

export interface TextOptions {
  /** Credential rows to print, worst first; 0 for all. Default 20. */
  limit?: number;
}

/** The report for people: headline figures first, then the worst debts. Times are UTC. */
export function reportToText(report: Report, options: TextOptions = {}): string {
  const limit = options.limit ?? 20;
  const out: string[] = [];
  const { summary: s, filter: f } = report;
  const ms = formatDuration;
  const instants = report.credentials.flatMap((r) => [r.issuedAt, r.endedAt, r.verifiedAt]).filter((t): t is number => t !== undefined);
  const oneDay = instants.length === 0 || new Set(instants.map((t) => new Date(t).toISOString().slice(0, 10))).size === 1;
  const at = (t: number | undefined) => {
    if (t === undefined) return '—';
    const iso = new Date(t).toISOString();
    return oneDay ? iso.slice(11, 23) : `${iso.slice(5, 10)} ${iso.slice(11, 19)}`;
  };

  const scope = [
    f.since !== undefined ? `since ${new Date(f.since).toISOString()}` : '',
    f.until !== undefined ? `until ${new Date(f.until).toISOString()}` : '',
    f.workload !== undefined ? `workload ${f.workload}` : '',
    f.target !== undefined ? `target ${f.target}` : '',
  ].filter(Boolean);
  out.push(`tasklease report at ${new Date(report.generatedAt).toISOString()}${scope.length ? ` — ${scope.join(', ')}` : ' — all leases'}`);
  const states = Object.entries(report.leasesByState)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  out.push(
    `leases ${report.leases}${states ? ` (${states})` : ''}; credentials ${s.credentials}, verified rejected ${s.verifiedRejected}, not yet verified ${s.open}`,
  );
  out.push('');

  out.push('Trust debt (task ended → credential proven rejected)');
  const p = s.trustDebtMs;
  out.push(`  p50 ${ms(p.p50)}   p90 ${ms(p.p90)}   p99 ${ms(p.p99)}   max ${ms(p.max)}   total ${ms(report.totals.trustDebtMs)}`);
  const sp = s.split;
  out.push(
    `  split p50/p99: pipeline (end → revoke starts) ${ms(sp.pipelineMs.p50)}/${ms(sp.pipelineMs.p99)}, revoke (→ target refuses) ${ms(sp.revokeMs.p50)}/${ms(sp.revokeMs.p99)}, proof (→ proven) ${ms(sp.proofMs.p50)}/${ms(sp.proofMs.p99)}`,
  );
  out.push(
    `  exposure (end → target refuses: really usable) p50 ${ms(sp.exposureMs.p50)}, p99 ${ms(sp.exposureMs.p99)}, max ${ms(sp.exposureMs.max)}`,
  );
  const sources = endSources(report.credentials);
  if (sources) out.push(`  end measured from: ${sources}`);
  out.push(
    `  avoided debt (what TTL-only expiry would have left open): p50 ${ms(s.avoidedDebtMs.p50)}, min ${ms(s.avoidedDebtMs.min)}, total ${ms(report.totals.avoidedDebtMs)}`,
  );
  out.push(`  verification attempts ${report.totals.verifyAttempts}; found still valid after revocation ${report.totals.stillValid}`);
  out.push('');

  if (report.openDebt.count === 0) out.push('Open debt: none (every ended task’s credentials are proven rejected)');
  else {
    out.push(
      `Open debt: ${report.openDebt.count} credential(s), oldest ${ms(report.openDebt.oldestMs)}, total ${ms(report.totals.openDebtMs)}`,
    );
    out.push(
      ...table(
        ['task', 'grant', 'workload', 'state', 'ended', 'age', 'attempts', 'last error'],
        report.openDebt.items.map((r) => [
          r.taskId,
          r.grant,
          r.workload,
          r.state,
          at(r.endedAt),
          ms(r.openDebtMs),
          String(r.verifyAttempts),
          r.lastError ?? '',
        ]),
        ['left', 'left', 'left', 'left', 'left', 'right', 'right', 'left'],
      ),
    );
  }
  out.push('');

  if (report.denials.total === 0) out.push('Denials: none');
  else {
    out.push(`Denials: ${report.denials.total} — ${report.denials.byReason.map((r) => `${r.code} ${r.count}`).join(', ')}`);
    for (const d of report.denials.items) out.push(`  ${d.taskId}  ${d.workload ?? '(unverified workload)'}  ${d.code}: ${d.message}`);
  }
  out.push('');

  if (report.blastRadius.length === 0) out.push('Blast radius: no issued credentials');
  else {
    out.push('Blast radius (credentials / distinct targets live at once, per workload)');
    out.push(
      ...table(
        ['workload', 'peak creds', 'peak targets', 'peak at', 'now creds', 'now targets'],
        report.blastRadius.map((b) => [
          b.workload,
          String(b.peakCredentials),
          String(b.peakTargets),
          at(b.peakCredentialsAt),
          String(b.now.credentials),
          b.now.targets === 0 ? '0' : `${b.now.targets} (${b.targetsNow.join(' ')})`,
        ]),
        ['left', 'right', 'right', 'left', 'right', 'left'],
      ),
    );
  }
  out.push('');

  const shown = limit > 0 ? report.credentials.slice(0, limit) : report.credentials;
  out.push(`Credentials, worst debt first (${shown.length} of ${report.credentials.length}; times UTC)`);
  if (shown.length > 0) {
    out.push(
      ...table(
        [
          'task',
          'grant',
          'workload',
          'state',
          'issued',
          'ended',
          'from',
          'verified',
          'trust debt',
          'pipeline',
          'revoke',
          'proof',
          'exposure',
          'avoided debt',
        ],
        shown.map((r) => [
          r.taskId,
          r.grant,
          r.workload,
          r.state,
          at(r.issuedAt),
          at(r.endedAt),
          r.endedAtSource === undefined ? '—' : `${r.endedAtSource}${r.endedAtClamped ? ' (clamped)' : ''}`,
          at(r.verifiedAt),
          r.trustDebtMs !== undefined ? ms(r.trustDebtMs) : r.openDebtMs !== undefined ? `open ${ms(r.openDebtMs)}` : '—',
          ms(r.pipelineMs),
          ms(r.revokeMs),
          ms(r.proofMs),
          ms(r.exposureMs),
          ms(r.avoidedDebtMs),
        ]),
        ['left', 'left', 'left', 'left', 'left', 'left', 'left', 'left', 'right', 'right', 'right', 'right', 'right', 'right'],
      ),
    );
  }
  if (shown.length < report.credentials.length) out.push(`  … ${report.credentials.length - shown.length} more (--limit 0 shows all)`);
  return `${out.join('\n')}\n`;
}

/** How many credentials' ends came from each source (engine, queue, …), clamped ones called out. */
function endSources(rows: readonly CredentialRow[]): string {
  const counts = new Map<string, number>();
  for (const r of rows) {
    if (r.endedAtSource === undefined) continue;
    const key = r.endedAtClamped ? `${r.endedAtSource} (clamped)` : r.endedAtSource;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
}
