import type { CredentialRecord } from '../lease/records.ts';

/**
 * Blast radius (issue 6 item 2): for one workload, how many credentials and how many distinct
 * targets were usable at the same moment — "how far can one stolen identity reach".
 *
 * A credential is live over [issuedAt, verifiedAt): from issuance until its rejection was proven.
 * One that is not yet verified is live until now, even past its natural expiry: an open
 * PostgreSQL session outlives VALID UNTIL, and proving the credential dead is tasklease's point.
 * A write-ahead intent without `issuedAt` is not counted: nothing says when it became usable.
 */
export interface LiveInterval {
  workload: string;
  target: string;
  start: number;
  /** Exclusive; undefined while the credential is not proven rejected. */
  end?: number;
}

export interface RadiusPoint {
  credentials: number;
  targets: number;
}

export interface WorkloadBlastRadius {
  workload: string;
  /** Highest number of credentials live at once in the window, and when it was first reached. */
  peakCredentials: number;
  peakCredentialsAt?: number;
  /** Highest number of distinct targets reachable at once in the window, and when first reached. */
  peakTargets: number;
  peakTargetsAt?: number;
  /** Live at `now`. */
  now: RadiusPoint;
  /** Distinct targets any live credential of the workload could reach at `now`. */
  targetsNow: string[];
}

export interface BlastRadiusOptions {
  /** The present (epoch ms): open credentials are live until here. */
  now: number;
  /** Window over which peaks are taken; default: all time up to `now`. */
  since?: number;
  until?: number;
}

/** The live intervals of credentials; records that never got an `issuedAt` are left out. */
export function liveIntervals(creds: readonly CredentialRecord[]): LiveInterval[] {
  return creds.flatMap((c) =>
    c.issuedAt === undefined ? [] : [{ workload: c.workload, target: c.target, start: c.issuedAt, end: c.verifiedAt }],
  );
}

/** Per workload, sorted by workload: peak over the window and the value at `now`. */
export function blastRadius(creds: readonly CredentialRecord[], options: BlastRadiusOptions): WorkloadBlastRadius[] {
  return blastRadiusOfIntervals(liveIntervals(creds), options);
}

export function blastRadiusOfIntervals(intervals: readonly LiveInterval[], options: BlastRadiusOptions): WorkloadBlastRadius[] {
  const byWorkload = new Map<string, LiveInterval[]>();
  for (const iv of intervals) {
    let list = byWorkload.get(iv.workload);
    if (!list) byWorkload.set(iv.workload, (list = []));
    list.push(iv);
  }
  return [...byWorkload.keys()].sort().map((workload) => sweep(workload, byWorkload.get(workload) as LiveInterval[], options));
}

interface Edge {
  at: number;
  delta: 1 | -1;
  target: string;
}

/** Sweep-line over one workload's intervals, clipped to the window [since, min(until, now)]. */
function sweep(workload: string, intervals: readonly LiveInterval[], { now, since, until }: BlastRadiusOptions): WorkloadBlastRadius {
  const lo = since ?? Number.NEGATIVE_INFINITY;
  const hi = Math.min(until ?? now, now);
  const edges: Edge[] = [];
  const liveNow = intervals.filter((iv) => iv.start <= now && (iv.end === undefined || now < iv.end));
  for (const iv of intervals) {
    const end = iv.end ?? Number.POSITIVE_INFINITY;
    // The window is closed at both ends: live at `lo` counts, and so does a start at `hi`.
    const start = Math.max(iv.start, lo);
    if (!(iv.start < end) || start > hi || end <= lo) continue;
    edges.push({ at: start, delta: 1, target: iv.target });
    // An end past the window changes nothing inside it.
    if (end <= hi) edges.push({ at: end, delta: -1, target: iv.target });
  }
  // Half-open intervals: at equal times, ends go before starts, so back-to-back is not overlap.
  edges.sort((a, b) => a.at - b.at || a.delta - b.delta);

  let live = 0;
  const perTarget = new Map<string, number>();
  let peakCredentials = 0;
  let peakTargets = 0;
  let peakCredentialsAt: number | undefined;
  let peakTargetsAt: number | undefined;
  for (let i = 0; i < edges.length;) {
    const at = (edges[i] as Edge).at;
    // Apply every edge at this instant before reading the level, so simultaneous starts count together.
    for (; i < edges.length && (edges[i] as Edge).at === at; i++) {
      const e = edges[i] as Edge;
      live += e.delta;
      const n = (perTarget.get(e.target) ?? 0) + e.delta;
      if (n === 0) perTarget.delete(e.target);
      else perTarget.set(e.target, n);
    }
    if (live > peakCredentials) {
      peakCredentials = live;
      peakCredentialsAt = at;
    }
    if (perTarget.size > peakTargets) {
      peakTargets = perTarget.size;
      peakTargetsAt = at;
    }
  }
  const targetsNow = [...new Set(liveNow.map((iv) => iv.target))].sort();
  return {
    workload,
    peakCredentials,
    peakCredentialsAt,
    peakTargets,
    peakTargetsAt,
    now: { credentials: liveNow.length, targets: targetsNow.length },
    targetsNow,
  };
}
