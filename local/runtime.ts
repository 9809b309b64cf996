import { join } from 'node:path';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { createBroker } from '../shared/broker/create.ts';
import type { Broker } from '../shared/broker/create.ts';
import type { LeaseLifecycle, LifecycleLogger, LifecycleObserver, LifecycleOptions } from '../shared/lease/lifecycle.ts';
import type { ReaperOptions, ReaperReport } from '../shared/lease/reaper.ts';
import type { TaskCallback } from '../shared/lease/ports.ts';
import type { Clock } from '../shared/lease/ports.ts';
import { systemClock } from '../shared/lease/ports.ts';
import { DynamoDbLedger } from '../shared/ledger/dynamodb-ledger.ts';
import { DynamoDbWorkloadLocks } from '../shared/ledger/dynamodb-locks.ts';
import { DynamoDbLock } from '../shared/ledger/lock.ts';
import { loadConfig } from '../shared/policy/config.ts';
import type { TaskLeaseConfig } from '../shared/policy/config.ts';
import { ConfigPolicy } from '../shared/policy/evaluate.ts';
import { buildTargetRegistry } from '../shared/policy/registry.ts';
import type { ClosableTargetRegistry } from '../shared/policy/registry.ts';
import { buildSvidVerifier } from '../shared/runtime/identity.ts';
import { httpBundleSource } from '../shared/identity/bundle.ts';
import { GaugeRecorder } from '../shared/metrics/gauges.ts';
import { MemorySecretStore } from '../shared/secrets/memory-store.ts';
import type { LocalProvision } from '../shared/targets/kind.ts';
import { TARGET_KINDS } from '../shared/targets/index.ts';
import { LocalBus } from './bus.ts';
import { startDynalite } from './dynalite.ts';
import type { DynaliteHandle } from './dynalite.ts';
import { startSpiffeIssuer } from './spiffe-issuer.ts';
import { provideLocalTargets } from './targets.ts';
import { LocalReverifyQueue } from './reverify-queue.ts';
import type { ReverifyQueueOptions } from './reverify-queue.ts';
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
  /**
   * The re-verify delay queue (a failed verification is retried after the core's backoff);
   * `false` leaves unproven revocations to the reaper alone (tests that move the clock by hand).
   */
  reverify?: Partial<ReverifyQueueOptions> | false;
  /** Answers a task token (a recorder in tests); locally there is no Step Functions. */
  callback?: TaskCallback;
}

/** The whole broker in one process: the embedded runtime (docs/architecture.md, "The two runtimes"). */
export interface LocalRuntime {
  config: TaskLeaseConfig;
  bus: LocalBus;
  ledger: DynamoDbLedger;
  secrets: MemorySecretStore;
  /** The broker every route, the delay queue and the reaper call. */
  broker: Broker;
  lifecycle: LeaseLifecycle;
  /** The re-verify delay queue, unless disabled. */
  reverify?: LocalReverifyQueue;
  /** The reaper's gauges (open debt, blast radius), as CloudWatch gets them in AWS. */
  metrics: GaugeRecorder;
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
    stops.push(
      () => dynamo.close(),
      () => provided.stop(),
      () => issuer.close(),
    );
    const config = provided.config;
    const targets = buildTargetRegistry(config, TARGET_KINDS, {
      lock: new DynamoDbLock(DynamoDBDocumentClient.from(dynamo.client), dynamo.tableName).withLock,
      resolveSecret: (ref) => provided.resolveSecret(ref),
    });
    stops.push(() => targets.close());

    const { verifier, bundles } = buildSvidVerifier(config, {
      localBundle: () => httpBundleSource(issuer.bundleUrl),
      clock,
      onBundleError: (td, err) =>
        options.log?.warn('trust bundle failed to load; keeping the last good one', { trustDomain: td, error: err.message }),
    });
    // Warm the bundles so the first task does not pay for the fetch (failures are kept and retried).
    await bundles.loadAll();
    const ledger = new DynamoDbLedger(DynamoDBDocumentClient.from(dynamo.client), dynamo.tableName, { now: () => clock.now() });
    const secrets = new MemorySecretStore();
    const bus = new LocalBus({ concurrency: busConcurrency, now: () => clock.now() });
    const queue = options.reverify === false ? undefined : new LocalReverifyQueue({ log: options.log, ...options.reverify });
    if (queue) stops.push(() => queue.close());
    const metrics = new GaugeRecorder(() => clock.now());
    const broker = createBroker(
      {
        ledger,
        targets,
        secrets,
        events: bus,
        identity: verifier,
        policy: new ConfigPolicy(config),
        clock,
        callback: options.callback,
        locks: new DynamoDbWorkloadLocks(DynamoDBDocumentClient.from(dynamo.client), dynamo.tableName),
        reverify: queue,
        observer: withRecorder(options.observer, metrics),
        metrics,
        log: options.log,
      },
      { config, lifecycle: options.lifecycle, reaper: options.reaper },
    );
    bus.on('task-started', (e) => broker.taskStarted(e.detail));
    // The put time is the end an engine's Task Ended without endedAt is measured from (as SQS SentTimestamp in AWS).
    bus.on('task-ended', (e, delivery) => broker.taskEnded(e.detail, { queuedAt: delivery.putAt }));
    queue?.on((message) => broker.reverifyDue(message));

    const reap = (o?: Partial<ReaperOptions>) => broker.reap(o);
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
      broker,
      lifecycle: broker.lifecycle,
      reverify: queue,
      metrics,
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

/** The caller's observer, with the metrics recorder seeing every proof (trust debt and its split) too. */
function withRecorder(observer: LifecycleObserver | undefined, recorder: GaugeRecorder): LifecycleObserver {
  return {
    issued: (lease, credentials, latencyMs) => observer?.issued?.(lease, credentials, latencyMs),
    denied: (code, lease) => observer?.denied?.(code, lease),
    verified: (credential) => {
      recorder.verified(credential);
      observer?.verified?.(credential);
    },
    stillValid: (credential) => observer?.stillValid?.(credential),
    revocationFailed: (credential, error) => observer?.revocationFailed?.(credential, error),
    ended: (lease) => observer?.ended?.(lease),
  };
}
