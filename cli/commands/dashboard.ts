import { startDashboard } from '../../report/dashboard/server.ts';
import { defineCommand, wholeNumber } from '../command.ts';
import { CONNECTION_HELP, FILTER_HELP, LEDGER_OPTIONS, isLocalEndpoint, openLedger, reportFilter } from '../ledger-options.ts';

const USAGE = `Usage: tasklease dashboard [connection] [filters] [--port N] [--poll-ms N]

Serves the timeline page over a ledger on http://127.0.0.1:PORT until Ctrl-C.

${CONNECTION_HELP}
${FILTER_HELP}
Dashboard:
  --port N      the port (default: a free one); always bound to 127.0.0.1
  --poll-ms N   while a page is open, re-read the window every N ms: default 1000 on a local
                endpoint, 10000 on AWS (each read is a query or scan: bound it with --since, e.g. 24h)
`;

export default defineCommand({
  usage: USAGE,
  options: {
    ...LEDGER_OPTIONS,
    port: { type: 'string' },
    'poll-ms': { type: 'string' },
  },
  async run(values, io) {
    const port = wholeNumber('port', values.port, 0);
    // Each poll reads the whole window: cheap on dynalite, not free on a real table.
    const pollMs = wholeNumber('poll-ms', values['poll-ms'], isLocalEndpoint(values.endpoint) ? 1000 : 10_000);
    reportFilter(values, Date.now()); // reject bad filters before serving
    const { ledger, close } = openLedger(values);
    try {
      let warned = false;
      const dash = await startDashboard({
        ledger,
        port,
        pollMs: Math.max(100, pollMs),
        // Relative times ("1h") slide with the clock.
        filter: () => reportFilter(values, Date.now()),
        onError: (err) => {
          if (warned) return;
          warned = true;
          io.err(`cannot read the ledger (${(err as Error).name ?? 'error'}: ${(err as Error).message}); retrying\n`);
        },
      });
      io.err(`tasklease dashboard on ${dash.url}  (Ctrl-C to stop)\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await dash.close();
    } finally {
      close();
    }
    return 0;
  },
});
