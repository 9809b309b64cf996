import { CSV_ROW_KINDS, reportToCsv, reportToJson, reportToText } from '../../report/format.ts';
import type { CsvRowKind } from '../../report/format.ts';
import { loadReport } from '../../report/report.ts';
import { UsageError, defineCommand, wholeNumber } from '../command.ts';
import { CONNECTION_HELP, FILTER_HELP, LEDGER_OPTIONS, openLedger, reportFilter } from '../ledger-options.ts';

const USAGE = `Usage: tasklease report [connection] [filters] [--json | --csv [--rows KIND]] [--limit N]

Reads a ledger and prints its trust debt.

${CONNECTION_HELP}
${FILTER_HELP}
Output:
  (default)     a table for people: headline percentiles, open debt, denials, blast radius,
                then credentials worst debt first (--limit N rows, default 20; 0 for all)
  --json        the whole report; instants as ISO 8601, durations in ms
  --csv         RFC 4180 CSV; --rows ${CSV_ROW_KINDS.join(' | ')} (default credentials)
`;

export default defineCommand({
  usage: USAGE,
  options: {
    ...LEDGER_OPTIONS,
    json: { type: 'boolean', default: false },
    csv: { type: 'boolean', default: false },
    rows: { type: 'string' },
    limit: { type: 'string' },
  },
  async run(values, io) {
    if (values.json && values.csv) throw new UsageError('choose one of --json and --csv');
    const rows = (values.rows ?? 'credentials') as CsvRowKind;
    if (!CSV_ROW_KINDS.includes(rows)) throw new UsageError(`--rows takes one of ${CSV_ROW_KINDS.join(', ')}`);
    if (values.rows !== undefined && !values.csv) throw new UsageError('--rows goes with --csv');
    const limit = wholeNumber('limit', values.limit, 20);
    const now = Date.now();
    const filter = reportFilter(values, now);
    const { ledger, close } = openLedger(values);
    try {
      const r = await loadReport(ledger, filter, now);
      io.out(values.json ? reportToJson(r) : values.csv ? reportToCsv(r, rows) : reportToText(r, { limit }));
      return 0;
    } finally {
      close();
    }
  },
});
