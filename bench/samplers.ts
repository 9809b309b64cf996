import { readFileSync, readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { EventLoopUtilization } from 'node:perf_hooks';
import pg from 'pg';

/** Peak resident set size of this process, sampled on a timer (RSS is what the OS charges us). */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  readonly startBytes = process.memoryUsage.rss();
  peakBytes = this.startBytes;
  samples = 0;

  constructor(intervalMs = 50) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): number {
    const rss = process.memoryUsage.rss();
    this.samples++;
    if (rss > this.peakBytes) this.peakBytes = rss;
    return rss;
  }

  stop(): { startBytes: number; peakBytes: number; endBytes: number; samples: number } {
    clearInterval(this.timer);
    this.timer = undefined;
    const endBytes = this.sample();
    return { startBytes: this.startBytes, peakBytes: this.peakBytes, endBytes, samples: this.samples };
  }
}

export interface PgConnectionFigures {
  /** Most client backends seen at once (the sampler's own connection excluded). */
  maxConnections: number;
  /** Most backends seen at once per application_name ('tasklease' = the admin pool, 'tasklease-verify' = refused-login probes). */
  maxByApplication: Record<string, number>;
  samples: number;
  intervalMs: number;
}

/**
 * Counts PostgreSQL client backends every `intervalMs` on its own admin connection. A query is
 * only sent after the previous answer, so a slow server lowers the sample rate rather than
 * queueing probes.
 */
export class PgConnectionSampler {
  private readonly client: pg.Client;
  private running = true;
  private loop: Promise<void> | undefined;
  private readonly figures: PgConnectionFigures;

  constructor(
    connection: pg.ClientConfig,
    private readonly intervalMs = 50,
  ) {
    this.client = new pg.Client({ ...connection, application_name: 'tasklease-bench-sampler' });
    this.client.on('error', () => undefined);
    this.figures = { maxConnections: 0, maxByApplication: {}, samples: 0, intervalMs };
  }

  async start(): Promise<void> {
    await this.client.connect();
    this.loop = (async () => {
      while (this.running) {
        try {
          const { rows } = await this.client.query<{ app: string; n: number }>(
            `SELECT coalesce(nullif(application_name, ''), '(unnamed)') AS app, count(*)::int AS n
               FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
              GROUP BY 1`,
          );
          let total = 0;
          for (const { app, n } of rows) {
            total += n;
            this.figures.maxByApplication[app] = Math.max(this.figures.maxByApplication[app] ?? 0, n);
          }
          this.figures.maxConnections = Math.max(this.figures.maxConnections, total);
          this.figures.samples++;
        } catch {
          if (!this.running) break;
        }
        await new Promise((resolve) => setTimeout(resolve, this.intervalMs));
      }
    })();
  }

  async stop(): Promise<PgConnectionFigures> {
    this.running = false;
    await this.loop;
    await this.client.end().catch(() => undefined);
    return this.figures;
  }
}

/** Linux /proc CPU accounting, in clock ticks; undefined elsewhere. */
const TICKS_PER_SECOND = 100;

function readMachineTicks(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** Every process's own CPU ticks (reaped children excluded: pid 1 inherits every orphan's) and command, by pid. */
function allProcessTicks(): Map<number, { comm: string; ppid: number; ticks: number }> {
  const out = new Map<number, { comm: string; ppid: number; ticks: number }>();
  try {
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const raw = readFileSync(`/proc/${name}/stat`, 'utf8');
        const comm = raw.slice(raw.indexOf('(') + 1, raw.lastIndexOf(')'));
        const rest = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
        out.set(Number(name), { comm, ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) });
      } catch {
        // exited meanwhile
      }
    }
  } catch {
    // not Linux
  }
  return out;
}

function procStat(pid: number): { ppid: number; ticks: number; reapedTicks: number } | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    // rest[i] is field i + 3 of proc(5): utime 14, stime 15, cutime 16, cstime 17.
    const rest = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]), reapedTicks: Number(rest[13]) + Number(rest[14]) };
  } catch {
    return undefined;
  }
}

/**
 * CPU ticks of a postmaster, its live children, and its exited children (the kernel adds a reaped
 * child's time to the parent's cutime/cstime): the PostgreSQL cluster's own CPU, short-lived
 * login backends included.
 */
function clusterTicks(postmasterPid: number | undefined): number | undefined {
  if (postmasterPid === undefined) return undefined;
  const self = procStat(postmasterPid);
  if (!self) return undefined;
  let ticks = self.ticks + self.reapedTicks;
  try {
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const s = procStat(Number(name));
      if (s && s.ppid === postmasterPid) ticks += s.ticks;
    }
  } catch {
    return undefined;
  }
  return ticks;
}

/** The postmaster's pid: the first line of postmaster.pid in the data directory. */
export function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export interface CpuFigures {
  wallMs: number;
  /** This Node process (broker + dynalite ledger + load generator), in cores used on average. */
  nodeCores: number;
  /** Share of wall time this process's event loop was busy (1 = the main thread never waited). */
  nodeEventLoopUtilization: number;
  /** The embedded PostgreSQL's processes (exited backends included), in cores. */
  postgresCores?: number;
  /** The whole machine, in cores (includes anything else running on it). */
  machineCores?: number;
  /** machineCores − this process − PostgreSQL: anything else running (noise on a shared machine). */
  otherCores?: number;
  /** This process's child processes (e.g. an out-of-process dynalite in a what-if), in cores. */
  childProcessCores?: number;
  /** The busiest other processes during the run (alive at start and end), in cores. */
  topOtherProcesses?: Array<{ pid: number; comm: string; cores: number }>;
  /** Whole-machine busy cores in the 2 s before the run started (set by the parent process). */
  busyBeforeStartCores?: number;
  machineCoreCount: number;
}

/** CPU use over an interval: this process, the PostgreSQL cluster, the machine. */
export class CpuMeter {
  private readonly t0 = performance.now();
  private readonly cpu0 = process.cpuUsage();
  private readonly elu0: EventLoopUtilization = performance.eventLoopUtilization();
  private readonly machine0 = readMachineTicks();
  private readonly pg0: number | undefined;
  private readonly procs0 = allProcessTicks();

  constructor(
    private readonly pgPid: number | undefined,
    private readonly coreCount: number,
  ) {
    this.pg0 = clusterTicks(pgPid);
  }

  stop(): CpuFigures {
    const wallMs = performance.now() - this.t0;
    const cpu = process.cpuUsage(this.cpu0);
    const elu = performance.eventLoopUtilization(this.elu0);
    const machine1 = readMachineTicks();
    const pg1 = clusterTicks(this.pgPid);
    const seconds = wallMs / 1000;
    const round = (n: number) => Math.round(n * 100) / 100;
    const figures: CpuFigures = {
      wallMs: Math.round(wallMs),
      nodeCores: round((cpu.user + cpu.system) / 1e6 / seconds),
      nodeEventLoopUtilization: round(elu.utilization),
      machineCoreCount: this.coreCount,
    };
    if (this.pg0 !== undefined && pg1 !== undefined) figures.postgresCores = round((pg1 - this.pg0) / TICKS_PER_SECOND / seconds);
    if (this.machine0 && machine1) {
      const busy = machine1.busy - this.machine0.busy;
      const total = machine1.total - this.machine0.total;
      if (total > 0) figures.machineCores = round((busy / total) * this.coreCount);
    }
    const procs1 = allProcessTicks();
    let childTicks = 0;
    for (const [pid, p] of procs1)
      if (p.ppid === process.pid && this.procs0.has(pid)) childTicks += p.ticks - (this.procs0.get(pid)?.ticks ?? 0);
    if (childTicks > 0) figures.childProcessCores = round(childTicks / TICKS_PER_SECOND / seconds);
    const skip = new Set([process.pid, this.pgPid]);
    figures.topOtherProcesses = [...procs1.entries()]
      .filter(([pid, p]) => !skip.has(pid) && !skip.has(p.ppid) && this.procs0.has(pid))
      .map(([pid, p]) => ({ pid, comm: p.comm, cores: round((p.ticks - (this.procs0.get(pid)?.ticks ?? 0)) / TICKS_PER_SECOND / seconds) }))
      .filter((p) => p.cores >= 0.02)
      .sort((a, b) => b.cores - a.cores)
      .slice(0, 5);
    if (figures.machineCores !== undefined && figures.postgresCores !== undefined) {
      figures.otherCores = round(
        Math.max(0, figures.machineCores - figures.nodeCores - figures.postgresCores - (figures.childProcessCores ?? 0)),
      );
    }
    return figures;
  }
}

/** Cores busy on the whole machine over `ms` (Linux /proc/stat); undefined elsewhere. */
export async function machineBusyCores(ms: number, coreCount: number): Promise<number | undefined> {
  const a = readMachineTicks();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const b = readMachineTicks();
  if (!a || !b || b.total === a.total) return undefined;
  return Math.round(((b.busy - a.busy) / (b.total - a.total)) * coreCount * 100) / 100;
}

/**
 * On a shared machine, waits (up to `maxWaitMs`) until other work leaves it nearly idle, so a
 * run does not measure someone else's test suite. Returns the busy cores seen last.
 */
export async function waitForQuietMachine(
  maxWaitMs: number,
  coreCount: number,
  log: (line: string) => void,
  threshold = 0.3,
): Promise<number | undefined> {
  const deadline = Date.now() + maxWaitMs;
  for (let announced = false; ;) {
    const busy = await machineBusyCores(2_000, coreCount);
    if (busy === undefined || busy <= threshold || Date.now() >= deadline) return busy;
    if (!announced)
      log(`  machine busy (${busy} cores in use by other processes); waiting up to ${Math.round(maxWaitMs / 1000)} s for it to quieten…`);
    announced = true;
  }
}
