/**
 * bench/results.json and the generated part of bench/README.md: each figure against its goal
 * from issue 7. Figures are reported, never asserted.
 */
import type { ColdStartResult } from './cold-start.ts';
import type { Dist, LifecycleBenchResult } from './lifecycle.ts';
import type { CostSummary } from './cost/model.ts';
import { renderCost, renderPrices } from './cost/render.ts';

export interface Machine {
  cpuCount: number;
  cpuModel: string;
  totalMemoryBytes: number;
  platform: string;
  kernel: string;
  nodeVersion: string;
  loadAverageAtStart: number[];
}

export interface Provenance {
  command: string;
  measuredAt: string;
  git: { commit: string; describe: string };
  machine: Machine;
}

export interface ScalePoint {
  tasks: number;
  result?: LifecycleBenchResult;
  skipped?: string;
}

export interface RunSpread {
  lifecyclesPerSecond: number;
  issuanceP50Ms: number | null;
  issuanceP99Ms: number | null;
  trustDebtP50Ms: number | null;
  trustDebtP99Ms: number | null;
  peakRssBytes: number;
  maxPgConnections: number;
  machineCores: number | null;
  otherCores?: number | null;
  cpuMsPerLifecycle?: { node: number; postgres: number | null };
}

export interface Results {
  schema: 1;
  /** The run with the median throughput of `runs` (each repeat in a fresh process and runtime). */
  lifecycle?: Provenance & { result: LifecycleBenchResult; runs?: RunSpread[] };
  scale?: Provenance & { runtimes: string; points: ScalePoint[] };
  coldStart?: Provenance & { result: ColdStartResult };
  /** An instrumented re-run, kept when a lifecycle figure misses its goal. */
  profile?: Provenance & { why: string[]; rawProfile?: string; result: LifecycleBenchResult };
  /** Runs with a changed setting (e.g. `--pool 20`), to size a suggested optimisation. */
  experiments?: Record<string, Provenance & { note: string; result: LifecycleBenchResult }>;
  /** Issue 13: the same lifecycles one at a time (the floor). */
  floorC1?: Provenance & { result: LifecycleBenchResult };
  /** Issue 13: 200 tasks issued, then all their ends at once. */
  burst?: Provenance & { result: LifecycleBenchResult };
  /** Issue 13: cost per task, counted at the SDK boundary of the real handlers. */
  cost?: Provenance & { summary: CostSummary; wallMs: number };
  goals?: GoalRow[];
}

export interface GoalRow {
  goal: string;
  target: string;
  figure: string;
  /** The same figure under TTL-only expiry, side by side. */
  baseline?: string;
  met: boolean | null;
}

/** 1 MB as decimal bytes: the stricter reading of the goal. */
export const BUNDLE_LIMIT_BYTES = 1_000_000;
/** "Flat" memory: peak RSS at 10,000 tasks at most this multiple of the peak at 1,000. */
export const FLAT_MEMORY_FACTOR = 1.2;

const fmt = (n: number | null | undefined, unit = '', digits = 1) =>
  n === null || n === undefined ? '—' : `${n.toLocaleString('en-US', { maximumFractionDigits: digits })}${unit}`;
const mb = (bytes: number | undefined) => (bytes === undefined ? '—' : `${(bytes / 1e6).toFixed(1)} MB`);
const kb = (bytes: number | undefined) => (bytes === undefined ? '—' : `${(bytes / 1e3).toFixed(1)} kB`);
const yes = (met: boolean | null) => (met === null ? 'not measured' : met ? '**met**' : '**missed**');

/** Trust debt from the put of Task Ended when the run has it (issue 13), else the ledger's own figure. */
export function debtOf(l: LifecycleBenchResult): { d: Dist; ttl: Dist; from: string } {
  return l.trustDebtFromPutMs && l.trustDebtFromPutMs.p50 !== null
    ? { d: l.trustDebtFromPutMs, ttl: l.ttlOnlyFromPutMs ?? l.ttlOnlyDebtMs, from: 'Task Ended put → verifiedAt' }
    : { d: l.trustDebtMs, ttl: l.ttlOnlyDebtMs, from: 'ledger: verifiedAt − endedAt' };
}

const ttlFigure = (ttl: Dist, q: 'p50' | 'p99') => (ttl[q] === null ? '—' : `${fmt((ttl[q] as number) / 1000, ' s')} (${q})`);

export function evaluateGoals(r: Results): GoalRow[] {
  const rows: GoalRow[] = [];
  const l = r.lifecycle?.result;
  const cores = r.lifecycle?.machine.cpuCount;
  const c = l?.setup.concurrency ?? '—';
  // The first three rows are the ones a profile pass explains (missedLifecycleGoals).
  rows.push({
    goal: `throughput (task lifecycles/s)${cores ? ` on ${cores} cores` : ''}, concurrency ${c}`,
    target: '≥ 100 /s',
    figure: l ? `${fmt(l.throughput.lifecyclesPerSecond, '/s')} (${fmt(l.throughput.msPerLifecycle, ' ms', 2)} per lifecycle)` : '—',
    baseline: l ? 'issuance only (no end to handle): not measured separately' : undefined,
    met: l ? l.throughput.lifecyclesPerSecond >= 100 : null,
  });
  rows.push({
    goal: `issuance latency p99 (Task Started put → Lease Issued), concurrency ${c}`,
    target: '≤ 50 ms',
    figure: l ? `p50 ${fmt(l.issuanceMs.p50, ' ms')}, p99 ${fmt(l.issuanceMs.p99, ' ms')}` : '—',
    baseline: l ? 'the same issuance' : undefined,
    met: l && l.issuanceMs.p99 !== null ? l.issuanceMs.p99 <= 50 : null,
  });
  const main = l ? debtOf(l) : undefined;
  rows.push({
    goal: `trust debt p99 (${main?.from ?? 'Task Ended put → verifiedAt'}), concurrency ${c}`,
    target: '≤ 100 ms',
    figure: main ? `p50 ${fmt(main.d.p50, ' ms')}, p99 ${fmt(main.d.p99, ' ms')}, max ${fmt(main.d.max, ' ms')}` : '—',
    baseline: main ? ttlFigure(main.ttl, 'p99') : undefined,
    met: main && main.d.p99 !== null ? main.d.p99 <= 100 : null,
  });
  const f = r.floorC1?.result;
  const floor = f ? debtOf(f) : undefined;
  rows.push({
    goal: `trust debt p50 at concurrency 1 (${floor?.from ?? 'Task Ended put → verifiedAt'})`,
    target: '≤ 20 ms',
    figure: floor ? `p50 ${fmt(floor.d.p50, ' ms')}, p99 ${fmt(floor.d.p99, ' ms')} (${f?.setup.tasks} tasks)` : '—',
    baseline: floor ? ttlFigure(floor.ttl, 'p50') : undefined,
    met: floor && floor.d.p50 !== null ? floor.d.p50 <= 20 : null,
  });
  const b = r.burst?.result;
  const burst = b ? debtOf(b) : undefined;
  rows.push({
    goal: `trust debt p99 in a burst of ${b?.setup.tasks ?? 200} simultaneous ends (bus concurrency ${b?.setup.busConcurrency ?? '—'})`,
    target: '≤ 1 s',
    figure: burst ? `p50 ${fmt(burst.d.p50, ' ms')}, p99 ${fmt(burst.d.p99, ' ms')}, max ${fmt(burst.d.max, ' ms')}` : '—',
    baseline: burst ? ttlFigure(burst.ttl, 'p99') : undefined,
    met: burst && burst.d.p99 !== null ? burst.d.p99 <= 1000 : null,
  });
  const points = (r.scale?.points ?? []).filter((p) => p.result).sort((x, y) => x.tasks - y.tasks);
  const small = points[0];
  const large = points.length > 1 ? points[points.length - 1] : undefined;
  const ps = small?.result;
  const pl = large?.result;
  rows.push({
    goal: `memory flat from ${small ? small.tasks.toLocaleString('en-US') : '1,000'} to ${large ? large.tasks.toLocaleString('en-US') : '10,000'} tasks (peak RSS of the broker process)`,
    target: `peak RSS at 10× the tasks ≤ ${FLAT_MEMORY_FACTOR}× the peak`,
    figure:
      ps && pl
        ? `${mb(ps.memory.peakRssBytes)} → ${mb(pl.memory.peakRssBytes)} (${fmt(pl.memory.peakRssBytes / ps.memory.peakRssBytes, '×', 2)}); retained heap ${fmt(pl.memory.retainedHeapBytesPerTask / 1000, ' kB', 2)}/task`
        : (r.scale?.points.find((p) => p.skipped)?.skipped ?? '—'),
    met: ps && pl ? pl.memory.peakRssBytes <= FLAT_MEMORY_FACTOR * ps.memory.peakRssBytes : null,
  });
  const mix = r.cost?.summary.mix;
  const one = mix?.find((x) => x.proof.batchSize === 1) ?? mix?.[0];
  const deployed = mix?.find((x) => x.proof.batchSize === r.cost?.summary.shape.batchSize);
  rows.push({
    goal: 'cost per million tasks (demo mix, us-east-1 on-demand prices, counted at the SDK boundary)',
    target: 'reported beside TTL-only',
    figure: one
      ? `$${one.proof.usdPerMillionTasks.toFixed(0)} at 1 record per invocation${deployed && deployed !== one ? `, $${deployed.proof.usdPerMillionTasks.toFixed(0)} at ${deployed.proof.batchSize}` : ''}`
      : '—',
    baseline: one
      ? `$${one.ttlOnly.usdPerMillionTasks.toFixed(0)}${deployed && deployed !== one ? ` / $${deployed.ttlOnly.usdPerMillionTasks.toFixed(0)}` : ''}`
      : undefined,
    met: one ? true : null,
  });
  const ratioMin =
    l && l.baselineRatio.p50 !== null && l.baselineRatio.p99 !== null ? Math.min(l.baselineRatio.p50, l.baselineRatio.p99) : null;
  rows.push({
    goal: `issue 7: trust debt vs TTL-only baseline (${l?.setup.leaseSeconds ?? 900} s leases)`,
    target: '≥ 1,000× lower',
    figure: l ? `${fmt(l.baselineRatio.p50, '×', 0)} at p50, ${fmt(l.baselineRatio.p99, '×', 0)} at p99` : '—',
    met: ratioMin === null ? null : ratioMin >= 1000,
  });
  const measured = r.coldStart?.result.functions.filter((f) => f.status === 'measured' || f.status === 'init-failed') ?? [];
  const placeholders = measured.filter((f) => f.placeholder).length;
  const note = placeholders ? ` (${placeholders} of ${measured.length} entries are still placeholders)` : '';
  rows.push({
    goal: 'issue 7: bundle size per Lambda function (minified ESM, AWS SDK bundled in)',
    target: '≤ 1 MB each',
    figure: measured.length ? `largest ${kb(Math.max(...measured.map((f) => f.bundleBytes ?? 0)))}${note}` : '—',
    met: measured.length ? measured.every((f) => (f.bundleBytes ?? Infinity) <= BUNDLE_LIMIT_BYTES) : null,
  });
  const inits = measured.filter((f) => f.initMsMedian !== undefined);
  rows.push({
    goal: 'issue 7: module initialisation per function (median of fresh imports, local Node)',
    target: '≤ 150 ms each',
    figure: inits.length ? `slowest ${fmt(Math.max(...inits.map((f) => f.initMsMedian as number)), ' ms')}${note}` : '—',
    met:
      inits.length && inits.length === measured.length
        ? inits.every((f) => (f.initMsMedian as number) <= 150) && !measured.some((f) => f.status === 'init-failed')
        : null,
  });
  return rows;
}

/** Lifecycle goals a profile pass should explain when missed. */
export function missedLifecycleGoals(rows: readonly GoalRow[]): string[] {
  return rows
    .slice(0, 3)
    .filter((g) => g.met === false)
    .map((g) => `${g.goal}: ${g.figure} (goal ${g.target})`);
}

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function provenance(p: Provenance): string {
  return `\`${p.command}\` — ${p.measuredAt}, commit \`${p.git.describe}\`, ${p.machine.cpuCount} × ${p.machine.cpuModel}, Node ${p.machine.nodeVersion}, load average at start ${p.machine.loadAverageAtStart.map((n) => n.toFixed(2)).join(' / ')}`;
}

function lifecycleTable(l: LifecycleBenchResult): string {
  const d = (x: { p50: number | null; p99: number | null; max: number | null }) => [fmt(x.p50), fmt(x.p99), fmt(x.max)];
  return table(
    ['figure', 'p50', 'p99', 'max'],
    [
      ['issuance: Task Started put → Lease Issued (ms)', ...d(l.issuanceMs)],
      ['issuance inside the handler: received → issued (ms)', ...d(l.issuanceHandlerMs)],
      ...(l.trustDebtFromPutMs ? [['trust debt from the real end: Task Ended put → verifiedAt (ms)', ...d(l.trustDebtFromPutMs)]] : []),
      ['trust debt as the broker records it: verifiedAt − endedAt, from the ledger (ms)', ...d(l.trustDebtMs)],
      ...Object.entries(l.split ?? {}).map(([k, v]) => [`  split: ${k.replace(/Ms$/, '')} (ledger, ms)`, ...d(v)]),
      ['end to proof: Task Ended put → Lease Revoked (ms)', ...d(l.endToRevokedMs)],
      [
        'TTL-only baseline: naturalExpiry − endedAt (s)',
        fmt((l.ttlOnlyDebtMs.p50 ?? 0) / 1000),
        fmt((l.ttlOnlyDebtMs.p99 ?? 0) / 1000),
        fmt((l.ttlOnlyDebtMs.max ?? 0) / 1000),
      ],
      ['baseline ÷ trust debt', fmt(l.baselineRatio.p50, '×', 0), fmt(l.baselineRatio.p99, '×', 0), ''],
    ],
  );
}

function runFacts(l: LifecycleBenchResult): string {
  const o = l.outcomes;
  const pgApps = Object.entries(l.postgres.maxByApplication)
    .map(([app, n]) => `${app} ${n}`)
    .join(', ');
  return [
    `- ${l.setup.tasks.toLocaleString('en-US')} tasks (${l.setup.credentials.toLocaleString('en-US')} credentials; ${l.setup.workloads}) at concurrency ${l.setup.concurrency}, bus concurrency ${l.setup.busConcurrency} per route, ${l.setup.warmup} warm-up lifecycles not counted, reaper off, ${l.setup.leaseSeconds} s leases, admin pool ${l.setup.adminPoolMax} connections, workload ${l.setup.use ? 'connects once with each credential (`--use`)' : "does not use the credential (the figure is the broker's; `--use` adds one login + SELECT 1 per credential)"}.`,
    `- wall ${fmt(l.wallMs / 1000, ' s', 2)}: **${fmt(l.throughput.lifecyclesPerSecond)} lifecycles/s** (${fmt(l.throughput.credentialsPerSecond)} credentials/s); CPU per lifecycle: ${fmt(l.throughput.cpuMsPerLifecycle?.node, ' ms')} in this process + ${fmt(l.throughput.cpuMsPerLifecycle?.postgres, ' ms')} in PostgreSQL.`,
    `- CPU: this process ${fmt(l.cpu.nodeCores, ' cores', 2)} (event loop busy ${fmt(l.cpu.nodeEventLoopUtilization * 100, ' %', 0)}), PostgreSQL ${fmt(l.cpu.postgresCores, ' cores', 2)}, whole machine ${fmt(l.cpu.machineCores, ' cores', 2)} of ${l.cpu.machineCoreCount}${
      l.cpu.otherCores !== undefined
        ? ` (other processes on the shared machine: ${fmt(l.cpu.otherCores, ' cores', 2)}${
            l.cpu.topOtherProcesses?.length
              ? `, busiest ${l.cpu.topOtherProcesses
                  .slice(0, 2)
                  .map((p) => `${p.comm} ${p.cores}`)
                  .join(', ')}`
              : ''
          })`
        : ''
    }.`,
    `- memory: peak RSS ${mb(l.memory.peakRssBytes)} (start ${mb(l.memory.startRssBytes)}); heap after GC ${mb(l.memory.heapAfterGcStartBytes)} → ${mb(l.memory.heapAfterGcEndBytes)}, ${fmt(l.memory.retainedHeapBytesPerTask / 1000, ' kB')} retained per task${retainedBreakdown(l)}.`,
    `- PostgreSQL connections: at most **${l.postgres.maxConnections}** client backends at once (${pgApps}; ${l.postgres.samples} samples every ~${l.postgres.intervalMs} ms).`,
    ...(l.endedAtSources
      ? [
          `- where the broker's endedAt came from: ${Object.entries(l.endedAtSources)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}.`,
        ]
      : []),
    `- outcomes: ${o.issued} issued, ${o.denied} denied, ${o.revocationFailed} revocations unproven, ${o.credentialsVerified}/${o.credentialsVerified + o.credentialsOpen} credentials verified rejected, ${o.deadLetters} dead letters, ${o.secretsLeftInStore} secrets left; verify attempts mean ${l.verifyAttempts.mean}, max ${l.verifyAttempts.max}.`,
  ].join('\n');
}

/** Retained heap per task by allocating component (sampling heap profiler). */
function retainedBreakdown(l: LifecycleBenchResult): string {
  const parts = (l.memory.retainedPerTaskByComponent ?? []).filter((c) => c.bytesPerTask >= 100);
  return parts.length
    ? ` — by allocating component: ${parts.map((c) => `${c.component} ${fmt(c.bytesPerTask / 1000, ' kB', 2)}`).join('; ')}`
    : '';
}

/** Retained heap per task outside the stand-in ledger (dynalite): the broker's own growth. */
export function brokerRetainedPerTask(l: LifecycleBenchResult): number | undefined {
  const parts = l.memory.retainedPerTaskByComponent;
  if (!parts?.length) return undefined;
  return parts.filter((c) => !c.component.startsWith('ledger server')).reduce((a, c) => a + c.bytesPerTask, 0);
}

function stepsTable(l: LifecycleBenchResult): string {
  return table(
    ['step (per credential, ledger timestamps, ms clock)', 'p50', 'p99', 'max'],
    Object.entries(l.steps).map(([name, x]) => [name, fmt(x.p50), fmt(x.p99), fmt(x.max)]),
  );
}

export function renderReadmeBlock(r: Results): string {
  const out: string[] = [];
  out.push('### Goals (issue 13, then issue 7)', '');
  out.push(
    table(
      ['goal', 'target', 'figure', 'TTL-only baseline', 'result'],
      (r.goals ?? []).map((g) => [g.goal, g.target, g.figure, g.baseline ?? '', yes(g.met)]),
    ),
  );
  out.push('');
  for (const [title, section] of [
    ['Concurrency 1 (the floor)', r.floorC1],
    ['Burst of simultaneous ends', r.burst],
  ] as const) {
    if (!section) continue;
    const l = section.result;
    out.push(`### ${title}`, '', provenance(section), '', lifecycleTable(l), '', runFacts(l), '', stepsTable(l), '');
  }
  if (r.cost) {
    out.push(
      '### Cost per task',
      '',
      provenance(r.cost),
      '',
      "Counted at the SDK boundary of the real handlers (functions/task-started.ts, task-ended.ts, reaper.ts through functions/lib/runtime.ts), run in-process: DynamoDB against dynalite in its own process through the real SDK (a middleware on the handlers' own client counts each command; read units from dynalite's `ReturnConsumedCapacity: INDEXES`, write units computed from the item before and after each write and the GSIs it lands in, since dynalite reports no index writes); STS, IAM, Secrets Manager, EventBridge, SQS and Step Functions answered by test/aws/fake-aws.ts (aws-sdk-client-mock) and counted from the mocks' call history, the same `client.send` boundary. Modelled from the counted figures: EventBridge's delivery to the queues, the event source mapping's receive and delete per batch, the KMS requests Secrets Manager makes, how long each secret is stored, X-Ray traces. Lambda GB-seconds are the handlers' own time on this machine (a separate pass that counts nothing), not Lambda's.",
      '',
      renderCost(r.cost.summary),
      '',
      'Prices used:',
      '',
      renderPrices(),
      '',
    );
  }
  if (r.lifecycle) {
    const l = r.lifecycle.result;
    out.push('### Lifecycle run', '', provenance(r.lifecycle), '', lifecycleTable(l), '', runFacts(l), '', stepsTable(l), '');
    const runs = r.lifecycle.runs ?? [];
    if (runs.length > 1) {
      out.push(
        `Each repeat ran in a fresh process and runtime; the figures above are from the run with the median throughput. All ${runs.length}:`,
        '',
        table(
          [
            'run',
            'lifecycles/s',
            'CPU ms per lifecycle (node + PG)',
            'issuance p50 / p99',
            'trust debt p50 / p99',
            'peak RSS',
            'most PG connections',
            'machine cores busy (other processes)',
          ],
          runs.map((x, i) => [
            String(i + 1),
            fmt(x.lifecyclesPerSecond),
            x.cpuMsPerLifecycle ? `${fmt(x.cpuMsPerLifecycle.node)} + ${fmt(x.cpuMsPerLifecycle.postgres)}` : '—',
            `${fmt(x.issuanceP50Ms)} / ${fmt(x.issuanceP99Ms)} ms`,
            `${fmt(x.trustDebtP50Ms)} / ${fmt(x.trustDebtP99Ms)} ms`,
            mb(x.peakRssBytes),
            String(x.maxPgConnections),
            `${fmt(x.machineCores, '', 2)} (${fmt(x.otherCores, '', 2)})`,
          ]),
        ),
        '',
      );
    }
  }
  if (r.scale) {
    out.push('### Scaling (`--scale`)', '', provenance(r.scale), '', `Runtimes: ${r.scale.runtimes}.`, '');
    out.push(
      table(
        [
          'tasks',
          'wall',
          'lifecycles/s',
          'wall ms per lifecycle',
          'CPU ms per lifecycle (node + PG)',
          'issuance p50 / p99',
          'trust debt p50 / p99',
          'peak RSS',
          'retained heap per task (outside dynalite)',
          'most PG connections',
          'other processes (cores)',
        ],
        r.scale.points.map((p) =>
          p.result
            ? [
                p.tasks.toLocaleString('en-US'),
                fmt(p.result.wallMs / 1000, ' s'),
                fmt(p.result.throughput.lifecyclesPerSecond),
                fmt(p.result.throughput.msPerLifecycle, '', 2),
                `${fmt(p.result.throughput.cpuMsPerLifecycle?.node)} + ${fmt(p.result.throughput.cpuMsPerLifecycle?.postgres)}`,
                `${fmt(p.result.issuanceMs.p50)} / ${fmt(p.result.issuanceMs.p99)} ms`,
                `${fmt(p.result.trustDebtMs.p50)} / ${fmt(p.result.trustDebtMs.p99)} ms`,
                mb(p.result.memory.peakRssBytes),
                `${kb(p.result.memory.retainedHeapBytesPerTask)} (${kb(brokerRetainedPerTask(p.result))})`,
                String(p.result.postgres.maxConnections),
                fmt(p.result.cpu.otherCores, '', 2),
              ]
            : [p.tasks.toLocaleString('en-US'), `skipped: ${p.skipped ?? ''}`, '', '', '', '', '', '', '', '', ''],
        ),
      ),
      '',
    );
  }
  if (r.coldStart) {
    const c = r.coldStart.result;
    out.push('### Cold start', '', provenance(r.coldStart), '', c.note, '');
    out.push(
      table(
        ['function', 'entry', 'status', 'bundle', 'gzip', 'init median', 'init runs (ms)', 'inputs hash'],
        c.functions.map((f) => [
          f.function,
          f.entry,
          `${f.status}${f.placeholder ? ' (placeholder entry)' : ''}${f.error ? `: ${f.error}` : ''}`,
          kb(f.bundleBytes),
          kb(f.bundleGzipBytes),
          fmt(f.initMsMedian, ' ms', 2),
          (f.initMsRuns ?? []).map((x) => x.toFixed(1)).join(', '),
          f.inputsHash ?? '—',
        ]),
      ),
      '',
    );
    const lean = c.functions.filter((f) => f.whatIf?.bundleBytes !== undefined);
    if (lean.length) {
      out.push(
        `What-if (measured, not built): ${lean[0]?.whatIf?.changes.join('; ')}.`,
        '',
        table(
          ['function', 'bundle now', 'bundle with the changes', 'init now', 'init with the changes'],
          lean.map((f) => [
            f.function,
            kb(f.bundleBytes),
            kb(f.whatIf?.bundleBytes),
            fmt(f.initMsMedian, ' ms', 2),
            `${fmt(f.whatIf?.initMsMedian, ' ms', 2)}${f.whatIf?.error ? ` (${f.whatIf.error})` : ''}`,
          ]),
        ),
        '',
      );
    }
    const biggest = c.functions.find((f) => f.byPackage?.length);
    if (biggest?.byPackage) {
      out.push(
        `What is in the ${biggest.function} bundle (minified bytes by package; the other functions are alike):`,
        '',
        table(
          ['package', 'bytes'],
          biggest.byPackage.slice(0, 12).map((x) => [x.package, kb(x.bytes)]),
        ),
        '',
      );
    }
  }
  if (r.profile) {
    const p = r.profile;
    out.push('### Profile of the slowest steps', '', provenance(p), '', `Why: ${p.why.join('; ')}`, '');
    out.push(
      'Instrumented re-run (timers around every ledger call, driver call, SQL statement, connection and admin-pool checkout, plus a V8 CPU profile); its figures include that overhead.',
      '',
    );
    if (p.result.profile) {
      out.push(
        table(
          ['operation', 'count', 'mean ms', 'p50 ms', 'p99 ms', 'total ms'],
          Object.entries(p.result.profile.ops)
            .slice(0, 30)
            .map(([op, f]) => [op, String(f.count), fmt(f.meanMs, '', 2), fmt(f.p50Ms, '', 2), fmt(f.p99Ms, '', 2), fmt(f.totalMs, '', 0)]),
        ),
        '',
        `CPU profile of the broker process (${fmt(p.result.profile.cpu.sampledMs / 1000, ' s')} sampled${p.rawProfile ? `, raw profile \`${p.rawProfile}\`` : ''}). By component (native code, node core and V8 builtins charged to the package or project file that called them):`,
        '',
        table(
          ['component', 'ms', 'share'],
          p.result.profile.cpu.byComponent.slice(0, 12).map((a) => [a.component, fmt(a.ms, '', 0), fmt(a.share * 100, ' %', 1)]),
        ),
        '',
        'Self time by area (where the CPU literally was):',
        '',
        table(
          ['area', 'self ms', 'share'],
          p.result.profile.cpu.byArea.slice(0, 15).map((a) => [a.area, fmt(a.selfMs, '', 0), fmt(a.share * 100, ' %', 1)]),
        ),
        '',
        table(
          ['hottest functions (self time)', 'where', 'self ms', 'share'],
          p.result.profile.cpu.topFunctions.slice(0, 15).map((f) => [f.fn, f.where, fmt(f.selfMs, '', 0), fmt(f.share * 100, ' %', 1)]),
        ),
        '',
      );
    }
  }
  if (r.experiments && Object.keys(r.experiments).length) {
    out.push(
      '### Experiments',
      '',
      'Runs with one setting changed, kept apart from the headline to size a finding or a suggested change (what-ifs: `bench/what-if.ts`).',
      '',
    );
    const row = (name: string, l: LifecycleBenchResult) => [
      name,
      `${l.setup.tasks.toLocaleString('en-US')} × C${l.setup.concurrency}`,
      fmt(l.throughput.lifecyclesPerSecond),
      `${fmt(l.throughput.cpuMsPerLifecycle?.node)} + ${fmt(l.throughput.cpuMsPerLifecycle?.postgres)}`,
      `${fmt(l.issuanceMs.p50)} / ${fmt(l.issuanceMs.p99)}`,
      `${fmt(l.trustDebtMs.p50)} / ${fmt(l.trustDebtMs.p99)}`,
    ];
    out.push(
      table(
        [
          'run',
          'tasks × concurrency',
          'lifecycles/s',
          'CPU ms per lifecycle (node + PG)',
          'issuance p50 / p99 ms',
          'trust debt p50 / p99 ms',
        ],
        [
          ...(r.lifecycle ? [row('**headline** (no change)', r.lifecycle.result)] : []),
          ...Object.entries(r.experiments).map(([name, e]) => row(name, e.result)),
        ],
      ),
      '',
    );
    for (const [name, e] of Object.entries(r.experiments)) {
      const l = e.result;
      out.push(
        `#### ${name}`,
        '',
        e.note,
        '',
        provenance(e),
        '',
        table(
          [
            'tasks',
            'concurrency',
            'admin pool',
            'lifecycles/s',
            'CPU ms per lifecycle (node + PG)',
            'issuance p50 / p99',
            'trust debt p50 / p99',
            'most PG connections',
            'other processes (cores)',
          ],
          [
            [
              l.setup.tasks.toLocaleString('en-US'),
              String(l.setup.concurrency),
              String(l.setup.adminPoolMax),
              fmt(l.throughput.lifecyclesPerSecond),
              `${fmt(l.throughput.cpuMsPerLifecycle?.node)} + ${fmt(l.throughput.cpuMsPerLifecycle?.postgres)}`,
              `${fmt(l.issuanceMs.p50)} / ${fmt(l.issuanceMs.p99)} ms`,
              `${fmt(l.trustDebtMs.p50)} / ${fmt(l.trustDebtMs.p99)} ms`,
              String(l.postgres.maxConnections),
              `${fmt(l.cpu.otherCores, '', 2)}${l.cpu.childProcessCores ? ` (+ ${fmt(l.cpu.childProcessCores, '', 2)} in the bench's own child process)` : ''}`,
            ],
          ],
        ),
        '',
        stepsTable(l),
        '',
      );
    }
  }
  return out.join('\n');
}

export const BEGIN_MARK = '<!-- results:begin (generated by bench/run.ts from bench/results.json; do not edit by hand) -->';
export const END_MARK = '<!-- results:end -->';

/** Replaces the generated block of the README (or appends one). */
export function spliceReadme(readme: string, block: string): string {
  const start = readme.indexOf(BEGIN_MARK);
  const end = readme.indexOf(END_MARK);
  const generated = `${BEGIN_MARK}\n\n${block}\n${END_MARK}`;
  if (start >= 0 && end > start) return readme.slice(0, start) + generated + readme.slice(end + END_MARK.length);
  return `${readme.trimEnd()}\n\n${generated}\n`;
}
