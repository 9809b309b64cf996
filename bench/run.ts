/**
 * `npm run bench`: the benchmark harness of issues 7 and 13.
 *
 *   npm run bench                              the goals run: 1,000 lifecycles at concurrency 20 (3 repeats), 200 at concurrency 1,
 *                                              a burst of 200 ends, 10,000 lifecycles (memory), cost per task, cold start
 *                                              (+ a profile pass when a goal is missed)
 *   npm run bench -- --quick                   the same, smaller (own iterations; not for the README)
 *   npm run bench -- --cost-only               only the cost per task (real handlers, counted SDK calls)
 *   npm run bench -- --tasks 5000 --concurrency 50 --use
 *   npm run bench -- --scale                   N = 100, 1,000, 10,000, each in a fresh process and runtime
 *   npm run bench -- --cold-only               re-measure only the Lambda bundles (after functions/ change)
 *   npm run bench -- --pool 20 --experiment pool20   a run with a changed setting, kept apart from the headline
 *   npm run bench -- --render                  regenerate bench/README.md's tables from bench/results.json
 *
 * Figures go to bench/results.json (each section with its command, date, commit and machine) and
 * the generated block of bench/README.md. Sections a run does not measure are kept from the file.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { measureColdStart } from './cold-start.ts';
import { runLifecycleBench } from './lifecycle.ts';
import { waitForQuietMachine } from './samplers.ts';
import { WHAT_IF, isWhatIf } from './what-if.ts';
import type { WhatIf } from './what-if.ts';
import type { LifecycleBenchOptions, LifecycleBenchResult } from './lifecycle.ts';
import { evaluateGoals, missedLifecycleGoals, renderReadmeBlock, spliceReadme } from './report.ts';
import { DEMO_MIX, measureCost } from './cost/lifecycles.ts';
import type { CostMeasurement } from './cost/lifecycles.ts';
import { DEFAULT_ASSUMPTIONS, summarizeCost } from './cost/model.ts';
import { renderCost } from './cost/render.ts';
import type { Machine, Provenance, Results, RunSpread, ScalePoint } from './report.ts';

const BENCH_DIR = import.meta.dirname;
const ROOT = join(BENCH_DIR, '..');
const OUT_DIR = join(BENCH_DIR, 'out');
const PROFILE_DIR = join(BENCH_DIR, 'profiles');

const progress = (line: string) => process.stderr.write(`${line}\n`);
/** How long a run waits for other processes to leave the machine idle (`--quiet-wait`, seconds). */
let quietWaitMs = 0;

function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpuCount: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    totalMemoryBytes: os.totalmem(),
    platform: `${os.platform()} ${os.arch()}`,
    kernel: os.release(),
    nodeVersion: process.version,
    loadAverageAtStart: os.loadavg().map((n) => Math.round(n * 100) / 100),
  };
}

function git(): Provenance['git'] {
  const run = (...args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return 'unknown';
    }
  };
  return { commit: run('rev-parse', 'HEAD'), describe: run('describe', '--always', '--dirty') };
}

function provenance(command: string, m: Machine): Provenance {
  return { command, measuredAt: new Date().toISOString(), git: git(), machine: m };
}

function positive(name: string, raw: string | undefined, min = 1): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} takes a whole number ≥ ${min}, got ${raw}`);
  return n;
}

/** Runs one lifecycle bench in a fresh Node process (fresh runtime, clean RSS) and reads its result. */
async function runInChild(args: string[]): Promise<LifecycleBenchResult> {
  await mkdir(OUT_DIR, { recursive: true });
  const busy = await waitForQuietMachine(quietWaitMs, os.cpus().length, progress);
  if (busy !== undefined) progress(`  machine busy before start: ${busy} cores`);
  const file = join(OUT_DIR, `child-${process.pid}-${Date.now()}.json`);
  const code = await new Promise<number | null>((resolve, reject) => {
    // process.execArgv carries tsx's loader flags, so the child runs the .ts entry the same way.
    const child = spawn(process.execPath, [...process.execArgv, join(BENCH_DIR, 'run.ts'), '--child-result', file, ...args], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: process.env,
    });
    child.once('error', reject);
    child.once('exit', resolve);
  });
  if (code !== 0) throw new Error(`benchmark child exited with ${code}`);
  const result = JSON.parse(await readFile(file, 'utf8')) as LifecycleBenchResult;
  await rm(file, { force: true });
  if (busy !== undefined) result.cpu.busyBeforeStartCores = busy;
  return result;
}

/** The cost measurement in a fresh Node process (the handlers keep their container state per process). */
async function costInChild(args: string[]): Promise<CostMeasurement> {
  await mkdir(OUT_DIR, { recursive: true });
  const file = join(OUT_DIR, `cost-${process.pid}-${Date.now()}.json`);
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, join(BENCH_DIR, 'run.ts'), '--child-cost', file, ...args], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: process.env,
    });
    child.once('error', reject);
    child.once('exit', resolve);
  });
  if (code !== 0) throw new Error(`cost child exited with ${code}`);
  const result = JSON.parse(await readFile(file, 'utf8')) as CostMeasurement;
  await rm(file, { force: true });
  return result;
}

async function loadResults(path: string): Promise<Results> {
  if (!existsSync(path)) return { schema: 1 };
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Results;
  } catch {
    return { schema: 1 };
  }
}

async function saveResults(path: string, results: Results): Promise<void> {
  results.goals = evaluateGoals(results);
  await writeFile(path, `${JSON.stringify(results, null, 2)}\n`);
  const readmePath = join(BENCH_DIR, 'README.md');
  const readme = existsSync(readmePath) ? await readFile(readmePath, 'utf8') : '# Benchmarks\n';
  await writeFile(readmePath, spliceReadme(readme, renderReadmeBlock(results)));
  progress(`results: ${relative(process.cwd(), path)}, table: ${relative(process.cwd(), readmePath)}`);
}

/** One run's headline figures, for the spread across repeats. */
function spread(l: LifecycleBenchResult): RunSpread {
  return {
    lifecyclesPerSecond: l.throughput.lifecyclesPerSecond,
    issuanceP50Ms: l.issuanceMs.p50,
    issuanceP99Ms: l.issuanceMs.p99,
    trustDebtP50Ms: l.trustDebtMs.p50,
    trustDebtP99Ms: l.trustDebtMs.p99,
    peakRssBytes: l.memory.peakRssBytes,
    maxPgConnections: l.postgres.maxConnections,
    machineCores: l.cpu.machineCores ?? null,
    otherCores: l.cpu.otherCores ?? null,
    cpuMsPerLifecycle: l.throughput.cpuMsPerLifecycle,
  };
}

function printSummary(l: LifecycleBenchResult): void {
  const f = (n: number | null) => (n === null ? '—' : String(n));
  progress(
    [
      `  ${l.setup.tasks} lifecycles in ${(l.wallMs / 1000).toFixed(2)} s: ${l.throughput.lifecyclesPerSecond}/s`,
      `  issuance ms p50 ${f(l.issuanceMs.p50)} p99 ${f(l.issuanceMs.p99)} | trust debt ms p50 ${f(l.trustDebtMs.p50)} p99 ${f(l.trustDebtMs.p99)} max ${f(l.trustDebtMs.max)}`,
      `  TTL-only baseline s p50 ${f((l.ttlOnlyDebtMs.p50 ?? 0) / 1000)} → ratio p50 ${f(l.baselineRatio.p50)}× p99 ${f(l.baselineRatio.p99)}×`,
      `  peak RSS ${(l.memory.peakRssBytes / 1e6).toFixed(1)} MB | most PG connections ${l.postgres.maxConnections} | outcomes ${JSON.stringify({ ...l.outcomes, errors: l.outcomes.errors.length })}`,
    ].join('\n'),
  );
}

async function main(): Promise<number> {
  // Lambda runs Node 24; on a Node 20 machine the SDK's upgrade notice is noise.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { values } = parseArgs({
    options: {
      tasks: { type: 'string', default: '1000' },
      concurrency: { type: 'string', default: '20' },
      warmup: { type: 'string' },
      use: { type: 'boolean', default: false },
      repeat: { type: 'string', default: '3' },
      scale: { type: 'boolean', default: false },
      'scale-sizes': { type: 'string', default: '100,1000,10000' },
      'scale-budget': { type: 'string', default: '600' },
      'cold-only': { type: 'boolean', default: false },
      'no-cold': { type: 'boolean', default: false },
      profile: { type: 'boolean' },
      'no-profile': { type: 'boolean', default: false },
      'cold-runs': { type: 'string', default: '5' },
      'quiet-wait': { type: 'string', default: '180' },
      pool: { type: 'string' },
      'what-if': { type: 'string' },
      experiment: { type: 'string' },
      note: { type: 'string' },
      results: { type: 'string', default: join(BENCH_DIR, 'results.json') },
      'child-result': { type: 'string' },
      'profile-out': { type: 'string' },
      render: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      burst: { type: 'boolean', default: false },
      'cost-only': { type: 'boolean', default: false },
      'no-cost': { type: 'boolean', default: false },
      'cost-tasks': { type: 'string' },
      'task-seconds': { type: 'string', default: String(DEFAULT_ASSUMPTIONS.taskSeconds) },
      'child-cost': { type: 'string' },
    },
  });
  if (values.help) {
    progress(
      readFileSync(new URL(import.meta.url), 'utf8')
        .split('*/')[0]
        ?.replace(/^\/\*\*?|^ \* ?/gm, '') ?? '',
    );
    return 0;
  }
  quietWaitMs = positive('quiet-wait', values['quiet-wait'], 0) * 1000;
  const quick = values.quick;
  const tasks = quick && values.tasks === '1000' ? 300 : positive('tasks', values.tasks);
  const concurrency = positive('concurrency', values.concurrency);
  const warmup = values.warmup === undefined ? concurrency : positive('warmup', values.warmup, 0);
  const adminPoolMax = values.pool === undefined ? undefined : positive('pool', values.pool);
  const whatIf = (values['what-if'] ?? '')
    .split(',')
    .map((w) => w.trim())
    .filter(Boolean);
  for (const w of whatIf) if (!isWhatIf(w)) throw new Error(`--what-if: unknown patch ${w}; known: ${Object.keys(WHAT_IF).join(', ')}`);
  if (whatIf.length && !values.experiment && !values['child-result'])
    throw new Error('--what-if changes the broker: use it with --experiment <name>');
  const base: LifecycleBenchOptions = {
    tasks,
    concurrency,
    warmup,
    use: values.use,
    adminPoolMax,
    whatIf: whatIf as WhatIf[],
    burst: values.burst,
    progress,
  };
  const costTasks = values['cost-tasks'] === undefined ? (quick ? 5 : 30) : positive('cost-tasks', values['cost-tasks']);
  const costArgs = ['--cost-tasks', String(costTasks)];
  const forwarded = [
    `--concurrency`,
    String(concurrency),
    `--warmup`,
    String(warmup),
    ...(values.use ? ['--use'] : []),
    ...(adminPoolMax ? ['--pool', String(adminPoolMax)] : []),
    ...(whatIf.length ? ['--what-if', whatIf.join(',')] : []),
  ];

  // Internal: the cost measurement in this (fresh) process, result to a file.
  if (values['child-cost']) {
    const measured = await measureCost({ tasks: costTasks, warmup: 3, batchSizes: [1], progress });
    await writeFile(values['child-cost'], JSON.stringify(measured));
    return 0;
  }

  // Internal: one lifecycle bench in this (fresh) process, result to a file.
  if (values['child-result']) {
    const profileOut = values['profile-out'];
    const result = await runLifecycleBench({ ...base, profile: profileOut !== undefined, cpuProfilePath: profileOut });
    await writeFile(values['child-result'], JSON.stringify(result));
    return 0;
  }

  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const m = machine();
  const resultsPath = values.results;
  const results = await loadResults(resultsPath);
  if (values.render) {
    // Only regenerate the README block (and goals) from the recorded results.
    await saveResults(resultsPath, results);
    return 0;
  }
  progress(`tasklease bench on ${m.cpuCount} × ${m.cpuModel}, Node ${m.nodeVersion}, load ${m.loadAverageAtStart.join(' / ')}`);

  if (values.experiment && !values['cold-only']) {
    progress(
      `experiment ${values.experiment}: ${tasks} lifecycles at concurrency ${concurrency}${adminPoolMax ? `, admin pool ${adminPoolMax}` : ''}…`,
    );
    const result = await runInChild(['--tasks', String(tasks), ...forwarded]);
    printSummary(result);
    results.experiments = {
      ...results.experiments,
      [values.experiment]: {
        ...provenance(command, m),
        note:
          [values.note, ...whatIf.map((w) => `what-if \`${w}\`: ${WHAT_IF[w as WhatIf]}.`)].filter(Boolean).join(' ') ||
          `adminPoolMax ${adminPoolMax ?? 'default'}, use ${values.use}`,
        result,
      },
    };
  }

  const costOnly = values['cost-only'];
  const goalsRun = !values['cold-only'] && !values.scale && !values.experiment && !costOnly;
  if (goalsRun) {
    // The machine may be shared: repeat, report the run with the median throughput, keep the spread.
    const repeat = quick ? 1 : positive('repeat', values.repeat);
    const runs: LifecycleBenchResult[] = [];
    for (let i = 1; i <= repeat; i++) {
      progress(
        `lifecycles (run ${i}/${repeat}): ${tasks} tasks at concurrency ${concurrency} (+${warmup} warm-up), reaper off, ${values.use ? 'workload uses each credential' : 'broker only'}…`,
      );
      const result = await runInChild(['--tasks', String(tasks), ...forwarded]);
      printSummary(result);
      runs.push(result);
    }
    const sorted = [...runs].sort((a, b) => a.throughput.lifecyclesPerSecond - b.throughput.lifecyclesPerSecond);
    const result = sorted[Math.floor((sorted.length - 1) / 2)] as LifecycleBenchResult;
    results.lifecycle = { ...provenance(command, m), result, runs: runs.map(spread) };

    // Issue 13's other goals, each in a fresh process and runtime, in the same run.
    const floorTasks = quick ? 100 : 200;
    progress(`floor: ${floorTasks} lifecycles at concurrency 1…`);
    const floor = await runInChild(['--tasks', String(floorTasks), '--concurrency', '1', '--warmup', '5']);
    printSummary(floor);
    results.floorC1 = { ...provenance(command, m), result: floor };

    progress(`burst: 200 tasks issued, then 200 Task Ended at once (bus concurrency ${concurrency})…`);
    const burst = await runInChild(['--tasks', '200', '--concurrency', String(concurrency), '--warmup', String(warmup), '--burst']);
    printSummary(burst);
    results.burst = { ...provenance(command, m), result: burst };

    // Memory: the headline's run is the small point; the large one runs 10× as many tasks.
    const big = tasks * 10;
    progress(
      `memory: ${big.toLocaleString('en-US')} lifecycles at concurrency ${concurrency} (compared with the ${tasks.toLocaleString('en-US')}-task run)…`,
    );
    const large = await runInChild(['--tasks', String(big), ...forwarded]);
    printSummary(large);
    results.scale = {
      ...provenance(command, m),
      runtimes: `one fresh Node process and one fresh local runtime per N; N = ${tasks.toLocaleString('en-US')} is the headline's median run`,
      points: [
        { tasks, result },
        { tasks: big, result: large },
      ],
    };
  }

  if ((goalsRun || costOnly) && !values['no-cost']) {
    progress(`cost: ${costTasks} lifecycles per workload and batch size through the real handlers, every SDK call counted…`);
    const measured = await costInChild(costArgs);
    const assumptions = { ...DEFAULT_ASSUMPTIONS, taskSeconds: positive('task-seconds', values['task-seconds']) };
    const summary = summarizeCost(measured, DEMO_MIX, assumptions);
    progress(renderCost(summary));
    results.cost = { ...provenance(command, m), summary, wallMs: Math.round(measured.wallMs) };
  }

  if (values.scale) {
    const sizes = (values['scale-sizes'] ?? '').split(',').map((s) => positive('scale-sizes', s.trim()));
    const budgetS = positive('scale-budget', values['scale-budget']);
    const points: ScalePoint[] = [];
    let last: { tasks: number; seconds: number } | undefined;
    for (const n of sizes.sort((a, b) => a - b)) {
      if (last) {
        // Lifecycles plus the end-of-run ledger read, both linear in N; 10% margin.
        const estimate = (last.seconds / last.tasks) * n * 1.1;
        if (estimate > budgetS) {
          const reason = `estimated ${Math.round(estimate)} s from the ${last.tasks.toLocaleString('en-US')}-task run > --scale-budget ${budgetS} s`;
          progress(`scale: N=${n} skipped: ${reason}`);
          points.push({ tasks: n, skipped: reason });
          continue;
        }
        progress(`scale: N=${n}, estimated ${Math.round(estimate)} s…`);
      } else progress(`scale: N=${n}…`);
      const result = await runInChild(['--tasks', String(n), ...forwarded]);
      printSummary(result);
      points.push({ tasks: n, result });
      last = { tasks: n, seconds: (result.wallMs + result.ledgerReadMs) / 1000 };
    }
    results.scale = {
      ...provenance(command, m),
      runtimes:
        'one fresh Node process and one fresh local runtime (dynalite, embedded PostgreSQL, SPIFFE issuer) per N, run one after another',
      points,
    };
  }

  // Every mode re-measures the bundles (seconds): a changed functions/ entry is never left stale.
  if (!values['no-cold'] && !costOnly) {
    progress('cold start: bundling FUNCTION_ENTRIES and importing each bundle in fresh processes…');
    const result = await measureColdStart({
      runs: positive('cold-runs', values['cold-runs']),
      outDir: join(OUT_DIR, 'cold-start'),
      progress,
    });
    results.coldStart = { ...provenance(command, m), result };
  }

  // A profile pass when a lifecycle goal is missed (or asked for): same N and concurrency, instrumented.
  const missed = missedLifecycleGoals(evaluateGoals(results));
  const wantProfile = goalsRun && !values['no-profile'] && (values.profile ?? missed.length > 0);
  if (wantProfile) {
    progress(`profile pass (${missed.length ? `missed: ${missed.length} goal(s)` : 'asked for'}): instrumented re-run…`);
    await mkdir(PROFILE_DIR, { recursive: true });
    const rawPath = join(OUT_DIR, 'lifecycle.cpuprofile');
    const result = await runInChild(['--tasks', String(tasks), ...forwarded, '--profile-out', rawPath]);
    // Keep the raw V8 profile with the results, gzipped (open with Chrome DevTools after gunzip).
    const kept = join(PROFILE_DIR, 'lifecycle.cpuprofile.gz');
    await writeFile(kept, gzipSync(await readFile(rawPath)));
    if (result.profile) result.profile.cpuProfileFile = relative(ROOT, kept);
    results.profile = {
      ...provenance(command, m),
      why: missed.length ? missed : ['asked for (--profile)'],
      rawProfile: relative(ROOT, kept),
      result,
    };
    await writeFile(join(PROFILE_DIR, 'ops.json'), `${JSON.stringify(result.profile, null, 2)}\n`);
  }

  await saveResults(resultsPath, results);
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof Error ? (err.stack ?? err.message) : err);
      process.exit(1);
    },
  );
}
