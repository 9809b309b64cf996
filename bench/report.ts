/**
 * bench/results.json and the generated part of bench/README.md: each figure against its goal
 * from issue 7. Figures are reported, never asserted.
 */
import type { ColdStartResult } from './cold-start.ts';
import type { LifecycleBenchResult } from './lifecycle.ts';

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
  goals?: GoalRow[];
}

export interface GoalRow {
  goal: string;
  target: string;
  figure: string;
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

export function evaluateGoals(r: Results): GoalRow[] {
  const rows: GoalRow[] = [];
  const l = r.lifecycle?.result;
  const cores = r.lifecycle?.machine.cpuCount;
  rows.push({
    goal: `throughput (task lifecycles/s)${cores ? ` on ${cores} cores` : ''}`,
    target: '≥ 100 /s on 2 cores',
    figure: l ? `${fmt(l.throughput.lifecyclesPerSecond, '/s')} (${fmt(l.throughput.msPerLifecycle, ' ms', 2)} per lifecycle)` : '—',
    met: l ? l.throughput.lifecyclesPerSecond >= 100 : null,
  });
  rows.push({
    goal: `issuance latency p99 (Task Started put → Lease Issued), concurrency ${l?.setup.concurrency ?? '—'}`,
    target: '≤ 50 ms',
    figure: l ? `p50 ${fmt(l.issuanceMs.p50, ' ms')}, p99 ${fmt(l.issuanceMs.p99, ' ms')}` : '—',
    met: l && l.issuanceMs.p99 !== null ? l.issuanceMs.p99 <= 50 : null,
  });
  rows.push({
    goal: `trust debt p99 (ledger: verifiedAt − endedAt), concurrency ${l?.setup.concurrency ?? '—'}`,
    target: '≤ 100 ms',
    figure: l ? `p50 ${fmt(l.trustDebtMs.p50, ' ms')}, p99 ${fmt(l.trustDebtMs.p99, ' ms')}, max ${fmt(l.trustDebtMs.max, ' ms')}` : '—',
    met: l && l.trustDebtMs.p99 !== null ? l.trustDebtMs.p99 <= 100 : null,
  });
  const ratioMin =
    l && l.baselineRatio.p50 !== null && l.baselineRatio.p99 !== null ? Math.min(l.baselineRatio.p50, l.baselineRatio.p99) : null;
  rows.push({
    goal: `trust debt vs TTL-only baseline (naturalExpiry − endedAt, ${l?.setup.leaseSeconds ?? 900} s leases)`,
    target: '≥ 1,000× lower',
    figure: l
      ? `${fmt(l.baselineRatio.p50, '×', 0)} at p50, ${fmt(l.baselineRatio.p99, '×', 0)} at p99 (baseline p50 ${fmt((l.ttlOnlyDebtMs.p50 ?? 0) / 1000, ' s')})`
      : '—',
    met: ratioMin === null ? null : ratioMin >= 1000,
  });
  const p1k = r.scale?.points.find((p) => p.tasks === 1000)?.result;
  const p10k = r.scale?.points.find((p) => p.tasks === 10000)?.result;
  rows.push({
    goal: 'memory flat from 1,000 to 10,000 tasks (peak RSS of the broker process)',
    target: `peak RSS at 10,000 ≤ ${FLAT_MEMORY_FACTOR}× peak at 1,000`,
    figure:
      p1k && p10k
        ? `${mb(p1k.memory.peakRssBytes)} → ${mb(p10k.memory.peakRssBytes)} (${fmt(p10k.memory.peakRssBytes / p1k.memory.peakRssBytes, '×', 2)}); retained heap ${fmt(p10k.memory.retainedHeapBytesPerTask / 1000, ' kB', 1)}/task, of which outside the in-process dynalite ledger ${fmt((brokerRetainedPerTask(p10k) ?? NaN) / 1000, ' kB', 2)}/task`
        : (r.scale?.points.find((p) => p.tasks === 10000)?.skipped ?? '—'),
    met: p1k && p10k ? p10k.memory.peakRssBytes <= FLAT_MEMORY_FACTOR * p1k.memory.peakRssBytes : null,
  });
  const measured = r.coldStart?.result.functions.filter((f) => f.status === 'measured' || f.status === 'init-failed') ?? [];
  const placeholders = measured.filter((f) => f.placeholder).length;
  const note = placeholders ? ` (${placeholders} of ${measured.length} entries are still placeholders)` : '';
  rows.push({
    goal: 'bundle size per Lambda function (minified ESM, AWS SDK bundled in)',
    target: '≤ 1 MB each',
    figure: measured.length ? `largest ${kb(Math.max(...measured.map((f) => f.bundleBytes ?? 0)))}${note}` : '—',
    met: measured.length ? measured.every((f) => (f.bundleBytes ?? Infinity) <= BUNDLE_LIMIT_BYTES) : null,
  });
  const inits = measured.filter((f) => f.initMsMedian !== undefined);
  rows.push({
    goal: 'module initialisation per function (median of fresh imports, local Node)',
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
      ['trust debt: verifiedAt − endedAt, from the ledger (ms)', ...d(l.trustDebtMs)],
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
  out.push('### Goals (issue 7)', '');
  out.push(
    table(
      ['goal', 'target', 'figure', 'result'],
      (r.goals ?? []).map((g) => [g.goal, g.target, g.figure, yes(g.met)]),
    ),
  );
  out.push('');
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
