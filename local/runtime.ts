import { join } from 'node:path';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { LeaseLifecycle } from '../shared/lease/lifecycle.ts';
import type { LifecycleLogger, LifecycleObserver, LifecycleOptions } from '../shared/lease/lifecycle.ts';
import { createReaperState, runReaper } from '../shared/lease/reaper.ts';
import type { ReaperOptions, ReaperReport } from '../shared/lease/reaper.ts';
import type { Clock } from '../shared/lease/ports.ts';
import { systemClock } from '../shared/lease/ports.ts';
import { DynamoDbLedger } from '../shared/ledger/dynamodb-ledger.ts';
import { DynamoDbLock } from '../shared/ledger/lock.ts';
import { loadConfig } from '../shared/policy/config.ts';
import type { TaskLeaseConfig } from '../shared/policy/config.ts';
import { ConfigPolicy } from '../shared/policy/evaluate.ts';
import { buildTargetRegistry } from '../shared/policy/registry.ts';
import type { ClosableTargetRegistry } from '../shared/policy/registry.ts';
import { buildSvidVerifier } from '../shared/runtime/identity.ts';
import { httpBundleSource } from '../shared/identity/bundle.ts';
import { MemorySecretStore } from '../shared/secrets/memory-store.ts';
import type { LocalProvision } from '../shared/targets/kind.ts';
import { TARGET_KINDS } from '../shared/targets/index.ts';
import { LocalBus } from './bus.ts';
import { startDynalite } from './dynalite.ts';
import type { DynaliteHandle } from './dynalite.ts';
import { startSpiffeIssuer } from './spiffe-issuer.ts';
import { provideLocalTargets } from './targets.ts';
import type { LocalSpiffeIssuer } from './spiffe-issuer.ts';

export const DEFAULT_CONFIG_PATH = join(import.meta.dirname, '..', 'tasklease.config.yaml');

export interface LocalRuntimeOptions {
  configPath?: string;
  log?: LifecycleLogger;
  observer?: LifecycleObserver;
  lifecycle?: Partial<LifecycleOptions>;
  /** Messages in flight per route (the deployed queues' maximum concurrency). */
  busConcurrency?: number;
  /** Admin connections per postgres target. Default: as wide as the bus, at least 4. */
  adminPoolMax?: number;
  /** How often the reaper runs; `false` to run it only by hand. Default: the config's interval. */
  reaperIntervalMs?: number | false;
  reaper?: Partial<ReaperOptions>;
  clock?: Clock;
}

/** The whole broker in one process: the embedded default of DESIGN §2. */
export interface LocalRuntime {
  config: TaskLeaseConfig;
  bus: LocalBus;
  ledger: DynamoDbLedger;
  secrets: MemorySecretStore;
  lifecycle: LeaseLifecycle;
  targets: ClosableTargetRegistry;
  issuer: LocalSpiffeIssuer;
  /** What the runtime started for each target, by target name (an embedded database). */
  provisions: Record<string, LocalProvision>;
  dynamo: DynaliteHandle;
  /** A JWT-SVID for a workload of the local trust domain, for the broker's audience. */
  mintSvid(spiffeId: string, ttlSeconds?: number): Promise<string>;
  runReaper(options?: Partial<ReaperOptions>): Promise<ReaperReport>;
  /** Stops everything it started and removes its data. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startLocalRuntime(options: LocalRuntimeOptions = {}): Promise<LocalRuntime> {
  const clock = options.clock ?? systemClock;
  const configured = await loadConfig(options.configPath ?? DEFAULT_CONFIG_PATH);
  const trustDomain = Object.entries(configured.trustDomains).find(([, td]) => 'local' in td.bundle)?.[0];
  if (!trustDomain) throw new Error('the local runtime needs a trust domain with `bundle: { local: true }` in the config');

  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    stops.length = 0;
  };
  try {
    const busConcurrency = options.busConcurrency ?? 8;
    const [dynamo, provided, issuer] = await Promise.all([
      startDynalite({ childProcess: true }),
      provideLocalTargets(configured, TARGET_KINDS, { busConcurrency, adminPoolMax: options.adminPoolMax }),
      startSpiffeIssuer({ trustDomain, clock }),
    ]);
    stops.push(() => dynamo.close(), () => provided.stop(), () => issuer.close());
    const config = provided.config;
    const targets = buildTargetRegistry(config, TARGET_KINDS, {
      lock: new DynamoDbLock(DynamoDBDocumentClient.from(dynamo.client), dynamo.tableName).withLock,
      resolveSecret: (ref) => provided.resolveSecret(ref),
    });
    stops.push(() => targets.close());

    const { verifier, bundles } = buildSvidVerifier(config, {
      localBundle: () => httpBundleSource(issuer.bundleUrl),
      clock,
      onBundleError: (td, err) => options.log?.warn('trust bundle failed to load; keeping the last good one', { trustDomain: td, error: err.message }),
    });
    // Warm the bundles so the first task does not pay for the fetch (failures are kept and retried).
    await bundles.loadAll();
    const ledger = new DynamoDbLedger(DynamoDBDocumentClient.from(dynamo.client), dynamo.tableName, { now: () => clock.now() });
    const secrets = new MemorySecretStore();
    const bus = new LocalBus({ concurrency: busConcurrency });
    const lifecycle = new LeaseLifecycle({
      ledger,
      targets,
      secrets,
      events: bus,
      identity: verifier,
      policy: new ConfigPolicy(config),
      clock,
      log: options.log,
      observer: options.observer,
      options: { verifyDeadlineMs: config.settings.verifyDeadlineSeconds * 1000, ...options.lifecycle },
    });
    bus.on('task-started', (e) => lifecycle.taskStarted(e.detail));
    bus.on('task-ended', (e) => lifecycle.taskEnded(e.detail));

    // One state per runtime: the per-target rate limit and the reconciliation cadence span runs.
    const reaperState = createReaperState();
    const reap = (o?: Partial<ReaperOptions>) =>
      runReaper(lifecycle, { ledger, clock, log: options.log, targets, state: reaperState }, { ...options.reaper, ...o });
    const interval = options.reaperIntervalMs ?? config.settings.reaperIntervalSeconds * 1000;
    if (interval !== false) {
      let running = false;
      const timer = setInterval(() => {
        if (running) return;
        running = true;
        reap()
          .catch((err: unknown) => options.log?.error('reaper run failed', { error: String(err) }))
          .finally(() => (running = false));
      }, interval);
      timer.unref();
      stops.push(async () => clearInterval(timer));
    }

    let stopped: Promise<void> | undefined;
    return {
      config,
      bus,
      ledger,
      secrets,
      lifecycle,
      targets,
      issuer,
      provisions: provided.provisions,
      dynamo,
      mintSvid: (spiffeId, ttlSeconds = 300) => issuer.mint({ spiffeId, audience: config.audience, ttlSeconds }),
      runReaper: reap,
      stop: () => (stopped ??= bus.close().then(stopAll)),
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
