import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BusEvent } from '../../shared/events/routing.ts';
import { grantKey } from '../../shared/events/schemas.ts';
import type { Ledger } from '../../shared/lease/ports.ts';
import type { LeaseRecord } from '../../shared/lease/records.ts';
import { buildReport, leaseMatches, readReportInputs } from '../report.ts';
import type { CredentialRow, Report, ReportFilter } from '../report.ts';

/** What the page gets: whitelisted, non-secret fields only (never task tokens, secret names or driver metadata). */
export interface LeaseView {
  taskId: string;
  state: LeaseRecord['state'];
  workload?: string;
  initiator?: string;
  rule?: string;
  grants: string[];
  requestedAt: number;
  issuedAt?: number;
  expiresAt?: number;
  endedAt?: number;
  /** Where endedAt came from (engine, queue, broker, expiry, operator) and whether an engine's time was clamped. */
  endedAtSource?: LeaseRecord['endedAtSource'];
  endedAtClamped?: boolean;
  outcome?: string;
  denial?: { code: string; message: string };
  credentials: CredentialRow[];
}

export interface DashboardData {
  generatedAt: number;
  /** Leases in the ledger (matching the filter); `leases` holds the most recent `shown` of them. */
  totalLeases: number;
  leases: LeaseView[];
  summary: Report['summary'];
  totals: Report['totals'];
  openDebt: { count: number; oldestMs?: number };
  denials: Report['denials'];
  blastRadius: Report['blastRadius'];
}

export interface DashboardOptions {
  ledger: Ledger;
  /** The local bus: each event triggers a refresh. Without one the server polls the ledger. */
  bus?: { watch(watcher: (event: BusEvent) => void): () => void };
  /** Default 0: a free port. Always bound to 127.0.0.1. */
  port?: number;
  /** Ledger poll interval while a page is open: default 1000 ms without a bus, 5000 ms with one. */
  pollMs?: number;
  /** Most recent leases drawn on the timeline; headline figures cover all of them. Default 300. */
  maxLeases?: number;
  /** A function is asked at every read, so a window like "the last hour" slides along. */
  filter?: ReportFilter | (() => ReportFilter);
  now?: () => number;
  /** Told when the ledger cannot be read (the page keeps the last good data). */
  onError?: (err: unknown) => void;
}

export interface DashboardHandle {
  url: string;
  port: number;
  /** Reads the ledger now and returns what `/api/ledger` serves. */
  snapshot(): Promise<DashboardData>;
  /** Pages connected to the live stream right now. */
  viewers(): number;
  /** Resolves true once a page is connected (at once if one is), false after `timeoutMs`. */
  waitForViewer(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

const PAGE_DIR = join(import.meta.dirname, 'page');
const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};
const SECURITY_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};
const REFRESH_DEBOUNCE_MS = 120;
const HEARTBEAT_MS = 15_000;

function leaseView(lease: LeaseRecord, credentials: CredentialRow[]): LeaseView {
  return {
    taskId: lease.taskId,
    state: lease.state,
    workload: lease.workload,
    initiator: lease.initiator,
    rule: lease.rule,
    grants: lease.grants.map(grantKey),
    requestedAt: lease.requestedAt,
    issuedAt: lease.issuedAt,
    expiresAt: lease.expiresAt,
    endedAt: lease.endedAt,
    endedAtSource: lease.endedAtSource,
    endedAtClamped: lease.endedAtClamped,
    outcome: lease.outcome,
    denial: lease.denial ? { code: lease.denial.code, message: lease.denial.message } : undefined,
    credentials,
  };
}

/** The page's data from the ledger: the report's figures plus the recent leases for the timeline. */
export async function dashboardData(
  ledger: Ledger,
  options: { now: number; filter?: ReportFilter; maxLeases?: number },
): Promise<DashboardData> {
  const filter = options.filter ?? {};
  const { leases: all, openCredentials } = await readReportInputs(ledger, filter);
  const report = buildReport(all, { now: options.now, filter, openCredentials });
  // The report already holds each matching credential as a row; the timeline groups them by task.
  const rowsByTask = new Map<string, CredentialRow[]>();
  for (const row of report.credentials) rowsByTask.set(row.taskId, [...(rowsByTask.get(row.taskId) ?? []), row]);
  const recent = all.filter((l) => leaseMatches(l.lease, filter)).slice(-(options.maxLeases ?? 300));
  return {
    generatedAt: options.now,
    totalLeases: report.leases,
    leases: recent.map(({ lease }) =>
      leaseView(
        lease,
        (rowsByTask.get(lease.taskId) ?? []).sort((a, b) => a.grant.localeCompare(b.grant)),
      ),
    ),
    summary: report.summary,
    totals: report.totals,
    openDebt: { count: report.openDebt.count, oldestMs: report.openDebt.oldestMs },
    denials: report.denials,
    blastRadius: report.blastRadius,
  };
}

/** Same data, without the read time: what decides whether the page needs an update. */
const fingerprint = (d: DashboardData) => JSON.stringify({ ...d, generatedAt: 0 });

/**
 * The local dashboard: a page on 127.0.0.1 drawing each credential's life against its task's, fed
 * by `/api/ledger` and kept live through Server-Sent Events on `/api/events`.
 */
export async function startDashboard(options: DashboardOptions): Promise<DashboardHandle> {
  const now = options.now ?? Date.now;
  const pollMs = options.pollMs ?? (options.bus ? 5000 : 1000);
  const assets = new Map<string, { body: Buffer; type: string }>();
  for (const [path, a] of Object.entries(ASSETS)) assets.set(path, { body: await readFile(join(PAGE_DIR, a.file)), type: a.type });

  const clients = new Set<ServerResponse>();
  const viewerWaiters = new Set<(seen: boolean) => void>();
  let last: DashboardData | undefined;
  let lastPrint = '';
  let ledgerOk = true;
  let closed = false;

  const filterNow = () => (typeof options.filter === 'function' ? options.filter() : options.filter);
  const snapshot = () => dashboardData(options.ledger, { now: now(), filter: filterNow(), maxLeases: options.maxLeases });
  const send = (res: ServerResponse, event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  const broadcast = (event: string, data: unknown) => {
    for (const res of clients) send(res, event, data);
  };

  // One refresh at a time; changes that arrive meanwhile fold into one more.
  let running: Promise<void> | undefined;
  let again = false;
  const refresh = async (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        try {
          const data = await snapshot();
          last = data;
          if (!ledgerOk) broadcast('status', { ledger: 'ok' });
          ledgerOk = true;
          const print = fingerprint(data);
          if (print !== lastPrint) {
            lastPrint = print;
            broadcast('ledger', data);
          }
        } catch (err) {
          if (ledgerOk) broadcast('status', { ledger: 'unreachable' });
          ledgerOk = false;
          options.onError?.(err);
        }
      } while (again && !closed);
    })().finally(() => (running = undefined));
    return running;
  };
  let debounce: NodeJS.Timeout | undefined;
  const refreshSoon = () => {
    if (closed || clients.size === 0 || debounce) return;
    debounce = setTimeout(() => {
      debounce = undefined;
      void refresh();
    }, REFRESH_DEBOUNCE_MS);
  };

  const unwatch = options.bus?.watch((e) => {
    if (clients.size === 0) return;
    // Only what the event is and which task: details can carry a workflow's task token.
    const taskId = (e.detail as { taskId?: unknown } | null)?.taskId;
    broadcast('activity', { type: e['detail-type'], taskId: typeof taskId === 'string' ? taskId : undefined, time: e.time });
    refreshSoon();
  });
  const poll = setInterval(() => {
    if (clients.size > 0) void refresh();
  }, pollMs);
  const heartbeat = setInterval(() => {
    for (const res of clients) res.write(': keep-alive\n\n');
  }, HEARTBEAT_MS);
  poll.unref();
  heartbeat.unref();

  let port = 0;
  // Loopback only, and only under a loopback name: a rebinding DNS name cannot reach the API.
  const hostAllowed = (host: string | undefined) => host === `127.0.0.1:${port}` || host === `localhost:${port}`;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!hostAllowed(req.headers.host)) {
      res.writeHead(421, { 'Content-Type': 'text/plain; charset=utf-8' }).end('misdirected request\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    const path = new URL(req.url ?? '/', `http://${req.headers.host}`).pathname;
    const asset = assets.get(path === '/index.html' ? '/' : path);
    if (asset) {
      res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': asset.type, 'Content-Length': asset.body.length });
      res.end(req.method === 'HEAD' ? undefined : asset.body);
      return;
    }
    if (path === '/api/ledger') {
      try {
        const data = await snapshot();
        res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'application/json; charset=utf-8' }).end(JSON.stringify(data));
      } catch (err) {
        options.onError?.(err);
        res
          .writeHead(503, { ...SECURITY_HEADERS, 'Content-Type': 'application/json; charset=utf-8' })
          .end(JSON.stringify({ error: 'ledger unreachable' }));
      }
      return;
    }
    if (path === '/api/events') {
      res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
      res.write('retry: 2000\n\n');
      clients.add(res);
      req.on('close', () => clients.delete(res));
      for (const wake of [...viewerWaiters]) wake(true);
      if (last) send(res, 'ledger', last);
      await refresh();
      return;
    }
    res.writeHead(404, { ...SECURITY_HEADERS, 'Content-Type': 'text/plain; charset=utf-8' }).end('not found\n');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      options.onError?.(err);
      if (!res.headersSent) res.writeHead(500).end();
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    snapshot,
    viewers: () => clients.size,
    waitForViewer: (timeoutMs) =>
      clients.size > 0
        ? Promise.resolve(true)
        : new Promise<boolean>((resolve) => {
            const done = (seen: boolean) => {
              clearTimeout(timer);
              viewerWaiters.delete(done);
              resolve(seen);
            };
            const timer = setTimeout(() => done(false), timeoutMs);
            viewerWaiters.add(done);
          }),
    close: () =>
      (closing ??= (async () => {
        closed = true;
        for (const wake of [...viewerWaiters]) wake(false);
        unwatch?.();
        clearInterval(poll);
        clearInterval(heartbeat);
        if (debounce) clearTimeout(debounce);
        for (const res of clients) res.end();
        clients.clear();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await running;
      })()),
  };
}
