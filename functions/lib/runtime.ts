import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
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
import { DynamoDbLock } from '../../shared/ledger/lock.ts';
import { buildTargetRegistry, ConfigPolicy, parseConfig } from '../../shared/policy/index.ts';
import type { ClosableTargetRegistry, TaskLeaseConfig } from '../../shared/policy/index.ts';
import { ENV } from '../../shared/runtime/env.ts';
import { buildSvidVerifier } from '../../shared/runtime/identity.ts';
import { SecretsManagerStore } from '../../shared/secrets/secrets-manager-store.ts';
import { DRIVER_FACTORIES } from '../../shared/targets/index.ts';
import { logger, metrics, redactor, tracer } from './powertools.ts';

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
  const config = parseConfig(e[ENV.config], `$${ENV.config}`);
  const log = lifecycleLogger(logger);

  // SDK clients: region and credentials from the Lambda environment; traced when X-Ray is on.
  const dynamodb = tracer.captureAWSv3Client(new DynamoDBClient({}));
  const eventbridge = tracer.captureAWSv3Client(new EventBridgeClient({}));
  const secretsManager = tracer.captureAWSv3Client(new SecretsManagerClient({}));
  const sfn = tracer.captureAWSv3Client(new SFNClient({}));
  const sqs = tracer.captureAWSv3Client(new SQSClient({}));
  const sts = tracer.captureAWSv3Client(new STSClient({}));

  const targets = buildTargetRegistry(config, DRIVER_FACTORIES, {
    resolveSecret: secretsManagerResolver(secretsManager, { onValue: (v) => redactor.remember(v) }),
    // Drivers build their own clients (in the region they name), traced like ours.
    awsClient: (Client, region) => tracer.captureAWSv3Client(new Client(region ? { region } : {})),
    lock: new DynamoDbLock(DynamoDBDocumentClient.from(dynamodb), e[ENV.tableName]).withLock,
  });

  // `bundle: { local: true }` has no source here: buildSvidVerifier refuses it with the field's path.
  const usesSsm = Object.values(config.trustDomains).some((td) => 'ssmParameter' in td.bundle);
  const { verifier } = buildSvidVerifier(config, {
    ssmClient: usesSsm ? tracer.captureAWSv3Client(new SSMClient({})) : undefined,
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

  const ledger = new DynamoDbLedger(dynamodb, e[ENV.tableName]);
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
  return { config, broker, ledger, clock: systemClock, log, observer, reverify, targets, verifyDeadlineMs };
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
