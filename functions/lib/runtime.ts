import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import * as z from 'zod';
import { EventBridgePublisher } from '../../shared/aws/eventbridge-publisher.ts';
import { lifecycleLogger } from '../../shared/aws/logger.ts';
import { MetricsObserver, PowertoolsMetricsSink } from '../../shared/aws/metrics-observer.ts';
import { RedactingSecretStore } from '../../shared/aws/redaction.ts';
import { secretsManagerResolver } from '../../shared/aws/secret-resolver.ts';
import { StepFunctionsTaskCallback } from '../../shared/aws/sfn-callback.ts';
import { SqsReverifyScheduler } from '../../shared/aws/sqs-reverify.ts';
import { createBroker } from '../../shared/broker/create.ts';
import type { Broker } from '../../shared/broker/create.ts';
import { ConfigError, describeError } from '../../shared/lease/errors.ts';
import type { LifecycleLogger } from '../../shared/lease/lifecycle.ts';
import type { Clock, Ledger } from '../../shared/lease/ports.ts';
import { systemClock } from '../../shared/lease/ports.ts';
import { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import { DynamoDbWorkloadLocks } from '../../shared/ledger/dynamodb-locks.ts';
import { DynamoDbLock } from '../../shared/ledger/lock.ts';
import type { WithLock } from '../../shared/ledger/lock.ts';
// Not shared/policy/index.ts: config.ts parses YAML, and the functions get validated JSON from synth.
import type { TaskLeaseConfig } from '../../shared/policy/config.ts';
import { ConfigPolicy } from '../../shared/policy/evaluate.ts';
import { buildTargetRegistry } from '../../shared/policy/registry.ts';
import type { ClosableTargetRegistry } from '../../shared/policy/registry.ts';
import { ENV } from '../../shared/runtime/env.ts';
import { buildSvidVerifier } from '../../shared/runtime/identity.ts';
import { SecretsManagerStore } from '../../shared/secrets/secrets-manager-store.ts';
import { DRIVER_FACTORIES } from '../../shared/targets/index.ts';
import { logger, metrics, redactor, tracing } from './powertools.ts';

/** ENV.brokerPrincipalArns; without it (an older stack) only the function's own role is exempt. */
export const BROKER_PRINCIPALS_ENV = ENV.brokerPrincipalArns;

const EnvSchema = z.object({
  [ENV.tableName]: z.string().min(1),
  [ENV.eventBusName]: z.string().min(1),
  [ENV.config]: z.string().min(2),
  [ENV.secretsKmsKeyId]: z.string().min(1),
  [ENV.reverifyQueueUrl]: z.url(),
  [ENV.verifyDeadlineMs]: z.coerce.number().int().min(100).max(900_000).optional(),
  [BROKER_PRINCIPALS_ENV]: z.string().optional(),
  [ENV.ledgerTransactions]: z.enum(['on', 'off']).optional(),
});

/** The container's broker and the adapters it was built from. */
export interface Runtime {
  config: TaskLeaseConfig;
  broker: Broker;
  ledger: Ledger;
  clock: Clock;
  log: LifecycleLogger;
  observer: MetricsObserver;
  reverify: SqsReverifyScheduler;
  targets: ClosableTargetRegistry;
  /** The ledger's lock (shared/ledger/lock.ts): drivers' shared edits, and one reaper run at a time. */
  lock: DynamoDbLock;
  /** The same lock, tried once instead of waited for: whoever finds it held does nothing (the reaper). */
  singleFlight: WithLock;
  verifyDeadlineMs: number;
}

/** The role ARN(s) of this function, for the secrets' resource policy. */
async function ownPrincipals(sts: STSClient): Promise<string[]> {
  const { Arn } = await sts.send(new GetCallerIdentityCommand({}));
  if (!Arn) throw new Error('sts:GetCallerIdentity returned no ARN');
  return [Arn];
}

/** Builds every adapter from the environment; called once per container (cold start). */
export function createRuntime(env: NodeJS.ProcessEnv = process.env): Runtime {
  const parsedEnv = EnvSchema.safeParse(env);
  if (!parsedEnv.success) {
    const missing = parsedEnv.error.issues.map((i) => `${String(i.path[0])}: ${i.message}`).join('; ');
    throw new ConfigError(`function environment is incomplete: ${missing}`);
  }
  const e = parsedEnv.data;
  const config = functionConfig(e[ENV.config]);
  const log = lifecycleLogger(logger);

  // SDK clients: region and credentials from the Lambda environment; traced when X-Ray is on.
  const dynamodb = tracing.captureClient(new DynamoDBClient({}));
  const eventbridge = tracing.captureClient(new EventBridgeClient({}));
  const secretsManager = tracing.captureClient(new SecretsManagerClient({}));
  const sfn = tracing.captureClient(new SFNClient({}));
  const sqs = tracing.captureClient(new SQSClient({}));
  const sts = tracing.captureClient(new STSClient({}));

  const documents = DynamoDBDocumentClient.from(dynamodb);
  const lock = new DynamoDbLock(documents, e[ENV.tableName]);
  const singleFlight = new DynamoDbLock(documents, e[ENV.tableName], { waitMs: 0 }).withLock;
  const targets = buildTargetRegistry(config, DRIVER_FACTORIES, {
    resolveSecret: secretsManagerResolver(secretsManager, { onValue: (v) => redactor.remember(v) }),
    // Drivers build their own clients (in the region they name), traced like ours.
    awsClient: (Client, region) => tracing.captureClient(new Client(region ? { region } : {})),
    lock: lock.withLock,
  });

  // `bundle: { local: true }` has no source here: buildSvidVerifier refuses it with the field's path
  // (and synth refuses such a config first). An `ssmParameter` bundle builds its own SSM client on
  // first load: the construct bundles @aws-sdk/client-ssm only into functions that verify SVIDs of
  // a config that has one (infra/functions.ts), so no client is created up front here.
  const { verifier } = buildSvidVerifier(config, {
    onBundleError: (trustDomain, error) =>
      logger.warn('trust bundle could not be loaded; the last good one stays in use', { trustDomain, error: error.message }),
  });

  const configured = e[BROKER_PRINCIPALS_ENV]?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  let principals: Promise<string[]> | undefined;
  const brokerPrincipals = (): Promise<string[]> => {
    if (configured?.length) return Promise.resolve(configured);
    principals ??= ownPrincipals(sts).catch((err: unknown) => {
      principals = undefined;
      throw err;
    });
    return principals;
  };

  const ledger = new DynamoDbLedger(dynamodb, e[ENV.tableName], { transactions: e[ENV.ledgerTransactions] !== 'off' });
  const reverify = new SqsReverifyScheduler(sqs, e[ENV.reverifyQueueUrl]);
  const observer = new MetricsObserver(new PowertoolsMetricsSink(metrics), (err) =>
    logger.warn('metric not emitted', { error: describeError(err) }),
  );
  const verifyDeadlineMs = e[ENV.verifyDeadlineMs] ?? config.settings.verifyDeadlineSeconds * 1000;

  const broker = createBroker(
    {
      ledger,
      targets,
      secrets: new RedactingSecretStore(
        new SecretsManagerStore(secretsManager, { kmsKeyId: e[ENV.secretsKmsKeyId], brokerPrincipals }),
        redactor,
      ),
      events: new EventBridgePublisher(eventbridge, e[ENV.eventBusName]),
      identity: verifier,
      policy: new ConfigPolicy(config),
      clock: systemClock,
      callback: new StepFunctionsTaskCallback(sfn, log),
      locks: new DynamoDbWorkloadLocks(documents, e[ENV.tableName]),
      reverify,
      log,
      observer,
      metrics: observer,
    },
    // In Lambda a verification never waits long: the re-verify queue takes over.
    { config, verifyDeadlineMs },
  );
  if (!configured?.length) {
    logger.warn(`${BROKER_PRINCIPALS_ENV} is not set: only this function's own role may read delivered secrets besides the workload`);
  }
  return { config, broker, ledger, clock: systemClock, log, observer, reverify, targets, lock, singleFlight, verifyDeadlineMs };
}

let current: Runtime | undefined;

/** The container's runtime, built on first use and kept for every later invocation. */
export function getRuntime(): Runtime {
  current ??= createRuntime();
  return current;
}

/** Drops the cached runtime and closes its drivers (tests; a fresh environment on next use). */
export async function resetRuntime(): Promise<void> {
  const rt = current;
  current = undefined;
  await rt?.broker.close();
}

/**
 * The config as the construct wrote it: `loadConfig`'s validated output, as JSON (infra/task-lease.ts).
 * Not parsed again here, so neither the YAML parser nor the config schema is in the bundle; the
 * targets' settings are still checked by their kinds when the registry builds the drivers.
 */
function functionConfig(json: string): TaskLeaseConfig {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new ConfigError(`$${ENV.config} is not JSON: the function environment must hold the config the construct synthesized`);
  }
  const c = value as Partial<TaskLeaseConfig> | null;
  if (!c || typeof c !== 'object' || !c.trustDomains || !c.targets || !Array.isArray(c.rules) || !c.settings) {
    throw new ConfigError(`$${ENV.config} lacks trustDomains, targets, rules or settings: it is not a synthesized tasklease config`);
  }
  return c as TaskLeaseConfig;
}
