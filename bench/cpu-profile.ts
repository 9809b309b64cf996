/**
 * An in-process V8 CPU profile (node:inspector, the same sampler `node --cpu-prof` uses, without
 * needing node flags under tsx), plus a summary of where the main thread's time went: by package
 * or project directory, and the hottest functions by self time.
 */
import { Session } from 'node:inspector/promises';
import type { Profiler } from 'node:inspector';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CpuProfileSummary {
  sampledMs: number;
  /** Self time by area: an npm package, a project directory, or a V8 pseudo-node (GC, idle, program). */
  byArea: Array<{ area: string; selfMs: number; share: number }>;
  /**
   * Self time charged to the nearest caller that is a package or project file (native code,
   * node core and V8 builtins are charged to whoever called them): which component costs CPU.
   */
  byOwner: Array<{ owner: string; ms: number; share: number }>;
  /** byOwner grouped into the broker's components. */
  byComponent: Array<{ component: string; ms: number; share: number }>;
  /** Hottest functions by self time. */
  topFunctions: Array<{ fn: string; where: string; selfMs: number; share: number }>;
}

export async function startCpuProfile(samplingIntervalUs = 500): Promise<{ stop(): Promise<Profiler.Profile> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: samplingIntervalUs });
  await session.post('Profiler.start');
  return {
    async stop() {
      const { profile } = await session.post('Profiler.stop');
      await session.post('Profiler.disable');
      session.disconnect();
      return profile;
    },
  };
}

const DYNALITE_PACKAGES = new Set([
  'dynalite',
  'async',
  'big.js',
  'buffer-crc32',
  'lazy',
  'level',
  'lock',
  'memory-level',
  'once',
  'abstract-level',
  'level-supports',
  'level-transcoder',
  'module-error',
  'functional-red-black-tree',
  'queue-microtask',
  'maybe-combine-errors',
]);

/** Which part of the broker an owner belongs to. */
export function componentOf(owner: string): string {
  if (DYNALITE_PACKAGES.has(owner)) return 'ledger server: dynalite (in-process stand-in for DynamoDB)';
  if (
    owner.startsWith('@smithy/') ||
    owner.startsWith('@aws-sdk/') ||
    owner.startsWith('@aws-crypto/') ||
    owner === 'fast-xml-parser' ||
    owner === 'tslib'
  ) {
    return 'ledger client: AWS SDK v3 (serialise, sign, HTTP)';
  }
  if (/^(pg|pg-protocol|pg-pool|pg-types|pg-connection-string|pgpass|postgres-.*|pg-cloudflare)$/.test(owner))
    return 'PostgreSQL client: pg';
  if (owner === 'jose') return 'identity: jose (JWT-SVID sign + verify)';
  if (owner === 'zod') return 'validation: zod';
  if (owner.startsWith('shared/') || owner.startsWith('local/') || owner === 'shared' || owner === 'local')
    return `tasklease code (${owner})`;
  if (owner === 'bench') return 'bench harness';
  return owner;
}

function areaOf(url: string, fn: string, root: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native/v8)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1] as string;
  if (url.startsWith('node:')) return 'node: (core modules)';
  let path = url;
  try {
    if (url.startsWith('file:')) path = fileURLToPath(url);
  } catch {
    // keep the URL as is
  }
  const rel = relative(root, path);
  if (rel.startsWith('..')) return path;
  // The project's own code, by directory: shared/lease, shared/targets, local, bench…
  const parts = rel.split('/');
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : (parts[0] ?? rel);
}

export function summarizeCpuProfile(profile: Profiler.Profile, root: string, top = 20): CpuProfileSummary {
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // A sample's time is the delta to the next one (the last sample has none; use the mean).
  const mean = deltas.length ? deltas.reduce((a, b) => a + b, 0) / deltas.length : 0;
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i] as number;
    const dt = i + 1 < deltas.length ? (deltas[i + 1] as number) : mean;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0) || 1;
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const ownerCache = new Map<number, string>();
  const ownerOf = (id: number): string => {
    const cached = ownerCache.get(id);
    if (cached) return cached;
    const node = byId.get(id);
    let owner: string;
    if (!node) owner = '(unknown)';
    else {
      const { url, functionName } = node.callFrame;
      const area = areaOf(url, functionName, root);
      const attributable = url !== '' && !url.startsWith('node:');
      if (attributable) owner = area;
      else if (!url && functionName.startsWith('('))
        owner = functionName; // (garbage collector), (idle), (program), (root)
      else {
        const up = parent.get(id);
        owner = up === undefined ? area : ownerOf(up);
        if (owner === '(root)') owner = area;
      }
    }
    ownerCache.set(id, owner);
    return owner;
  };
  const owners = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const o = ownerOf(id);
    owners.set(o, (owners.get(o) ?? 0) + us);
  }
  const areas = new Map<string, number>();
  const fns = new Map<string, { fn: string; where: string; us: number }>();
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (!us) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const fn = functionName || '(anonymous)';
    const area = areaOf(url, fn, root);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const where = url ? `${whereOf(url, root)}:${lineNumber + 1}` : area;
    const key = `${fn}@${where}`;
    const entry = fns.get(key) ?? { fn, where, us: 0 };
    entry.us += us;
    fns.set(key, entry);
  }
  const ms = (us: number) => Math.round(us / 100) / 10;
  const share = (us: number) => Math.round((us / total) * 1000) / 1000;
  return {
    sampledMs: ms(total),
    byComponent: group(owners),
    byOwner: [...owners.entries()].sort((a, b) => b[1] - a[1]).map(([owner, us]) => ({ owner, ms: ms(us), share: share(us) })),
    byArea: [...areas.entries()].sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, selfMs: ms(us), share: share(us) })),
    topFunctions: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ fn: f.fn, where: f.where, selfMs: ms(f.us), share: share(f.us) })),
  };
}

function group(owners: Map<string, number>): CpuProfileSummary['byComponent'] {
  const total = [...owners.values()].reduce((a, b) => a + b, 0) || 1;
  const out = new Map<string, number>();
  for (const [owner, us] of owners) {
    const c = componentOf(owner);
    out.set(c, (out.get(c) ?? 0) + us);
  }
  return [...out.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([component, us]) => ({ component, ms: Math.round(us / 100) / 10, share: Math.round((us / total) * 1000) / 1000 }));
}

function whereOf(url: string, root: string): string {
  const inPackage = url.lastIndexOf('node_modules/');
  if (inPackage >= 0) return url.slice(inPackage + 'node_modules/'.length);
  if (!url.startsWith('file:')) return url;
  try {
    return relative(root, fileURLToPath(url));
  } catch {
    return url;
  }
}

export interface HeapRetainedSummary {
  /** Sampled bytes still live at the end of the run (after a full GC), by component of the allocating code. */
  byComponent: Array<{ component: string; bytes: number; share: number }>;
  totalBytes: number;
}

/**
 * V8's sampling heap profiler: it follows sampled allocations until they are collected, so what it
 * reports after a full GC is memory the run *retained*, charged to the code that allocated it.
 */
export async function startHeapSampling(
  samplingIntervalBytes = 16_384,
): Promise<{ stop(beforeRead: () => void): Promise<Record<string, unknown>> }> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', { samplingInterval: samplingIntervalBytes });
  return {
    async stop(beforeRead) {
      beforeRead();
      const { profile } = await session.post('HeapProfiler.getSamplingProfile');
      await session.post('HeapProfiler.stopSampling');
      await session.post('HeapProfiler.disable');
      session.disconnect();
      return profile as unknown as Record<string, unknown>;
    },
  };
}

interface HeapNode {
  callFrame: { functionName: string; url: string };
  selfSize: number;
  children: HeapNode[];
}

export function summarizeHeapProfile(profile: Record<string, unknown>, root: string): HeapRetainedSummary {
  const out = new Map<string, number>();
  let total = 0;
  const walk = (node: HeapNode, owner: string | undefined) => {
    const { url, functionName } = node.callFrame;
    const attributable = url !== '' && !url.startsWith('node:');
    const here = attributable
      ? componentOf(areaOf(url, functionName, root))
      : (owner ?? (url.startsWith('node:') ? 'node: (core modules)' : functionName || '(native/v8)'));
    if (node.selfSize) {
      out.set(here, (out.get(here) ?? 0) + node.selfSize);
      total += node.selfSize;
    }
    // Allocations below a project/package frame are charged to the *innermost* attributable frame.
    for (const child of node.children ?? []) walk(child, here);
  };
  walk(profile.head as HeapNode, undefined);
  return {
    totalBytes: total,
    byComponent: [...out.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([component, bytes]) => ({ component, bytes, share: Math.round((bytes / (total || 1)) * 1000) / 1000 })),
  };
}
