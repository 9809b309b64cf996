import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Annotations, Aws, Duration, Fn, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as cxapi from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import { ROUTES } from '../shared/events/routing.ts';
import type { RouteName } from '../shared/events/routing.ts';
import { GSIS, KEY_PREFIX, TABLE_KEYS, TTL_ATTRIBUTE } from '../shared/ledger/table.ts';
import { MANAGED_TAG } from '../shared/targets/aws-role.ts';
import { METRICS_NAMESPACE } from '../shared/metrics/names.ts';
import type { TaskLeaseConfig } from '../shared/policy/config.ts';
import { ENV, FUNCTION_ENTRIES } from '../shared/runtime/env.ts';
import { viewConfig } from './config-view.ts';
import type { InfraConfigView, TaskLeaseVpcSettings } from './config-view.ts';
import { TaskLeaseMonitoring } from './monitoring.ts';

export type { TaskLeaseVpcSettings } from './config-view.ts';

/** The Lambda functions of the construct, keyed like `FUNCTION_ENTRIES`. */
export type TaskLeaseFunctionName = keyof typeof FUNCTION_ENTRIES;

/** Tag (key and value) a role must carry before tasklease assumes it or edits its policy. */
/** The tag the aws-role driver requires before it assumes or edits a role; IAM conditions match the same. */
export const MANAGED_ROLE_TAG = MANAGED_TAG;
/** Secrets tasklease creates for delivered credentials live under this name prefix. */
export const SECRET_NAME_PREFIX = 'tasklease/';
/** The newest Node.js runtime of this aws-cdk-lib. */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;

/** Lambda's limit on the combined size of a function's environment variables. */
const LAMBDA_ENV_MAX_BYTES = 4096;
/** SQS event source maximum concurrency bounds (AWS limits). */
const ESM_CONCURRENCY_MIN = 2;
const ESM_CONCURRENCY_MAX = 1000;

export interface TaskLeaseProps {
  /**
   * The parsed tasklease config (`loadConfig` of `shared/policy/config.ts`). Every function gets it
   * as JSON in `TASKLEASE_CONFIG`; the construct also derives IAM resources (aws-role role ARNs,
   * postgres admin secrets, SSM trust bundles), concurrency, the reaper schedule and the open-debt
   * objective from it. Must not contain a plaintext `password` (use `passwordSecret`).
   */
  readonly config: TaskLeaseConfig;

  /**
   * Name of the custom EventBridge bus workflow engines put `Task Started` / `Task Ended` on.
   * @default 'tasklease'
   */
  readonly busName?: string;

  /**
   * AWS accounts allowed to `events:PutEvents` on the bus (bus resource policy).
   * @default - the stack's own account
   */
  readonly eventProducerAccounts?: string[];

  /**
   * IAM principal ARNs (roles, users) allowed to `events:PutEvents` on the bus, in addition to
   * `eventProducerAccounts`. Principals in other accounts also need the permission in their own
   * identity policy.
   * @default - none
   */
  readonly eventProducerPrincipalArns?: string[];

  /**
   * What happens to the ledger table and the KMS key when they leave the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * DynamoDB deletion protection on the ledger table.
   * @default true
   */
  readonly deletionProtection?: boolean;

  /**
   * Retention of the functions' log groups.
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * How long dead-letter queues keep messages (SQS allows up to 14 days).
   * @default Duration.days(14)
   */
  readonly deadLetterRetention?: Duration;

  /**
   * Open trust debt older than this raises the open-debt alarm.
   * @default - `config.settings.openDebtObjectiveSeconds`
   */
  readonly openDebtObjective?: Duration;

  /**
   * VPC attachment for the functions (they all revoke database credentials, so all of them
   * attach). The subnets need a route to the AWS APIs the functions call (NAT gateway or VPC
   * endpoints for STS, IAM, Secrets Manager, DynamoDB, EventBridge, SQS, SSM, X-Ray, Step Functions).
   * @default - the `settings.vpc` of the config's postgres targets (they must agree); no VPC when none has one
   */
  readonly vpc?: TaskLeaseVpcSettings;

  /**
   * Reserved concurrency per function.
   * @default - 1 for the reaper (one run at a time: its per-target rate limit is per process);
   *   no reservation for the others (the account's unreserved pool)
   */
  readonly reservedConcurrency?: Partial<Record<TaskLeaseFunctionName, number>>;

  /**
   * Maximum concurrent invocations each SQS event source (task-started, task-ended, reverify) may
   * drive (2..1000, an SQS event source limit). One queue serves all targets, so the tightest
   * target bound applies to every queue. It bounds invocations per queue, not connections: the
   * three queues and the reaper run side by side, and each invocation opens at most the driver's
   * admin pool (postgres `adminPoolMax`) per database.
   * @default - the smallest `maxConcurrency` among the config's targets (clamped to 2..1000), or 10
   */
  readonly maxConcurrency?: number;

  /**
   * SNS topic notified when an alarm fires or recovers.
   * @default - alarms without actions
   */
  readonly alarmTopic?: sns.ITopic;

  /**
   * Timeout of the queue-driven functions. Must leave room after the verify deadline; the queues'
   * visibility timeout is 6 times this.
   * @default - `config.settings.verifyDeadlineSeconds` + 30 s, at least 60 s
   */
  readonly functionTimeout?: Duration;

  /**
   * Timeout of the reaper.
   * @default Duration.minutes(5)
   */
  readonly reaperTimeout?: Duration;

  /**
   * Memory of every function (MB).
   * @default 512
   */
  readonly memorySize?: number;

  /**
   * Messages per invocation from each queue.
   * @default 10
   */
  readonly batchSize?: number;

  /**
   * Receives before a message moves to its dead-letter queue.
   * @default 5
   */
  readonly maxReceiveCount?: number;

  /**
   * Default delay of the re-verify queue (a message's own `DelaySeconds` overrides it).
   * @default Duration.seconds(30)
   */
  readonly reverifyDelay?: Duration;

  /**
   * Name of the CloudWatch dashboard (unique per account and region).
   * @default - 'TaskLease-<stack name>'
   */
  readonly dashboardName?: string;

  /**
   * `POWERTOOLS_SERVICE_NAME` of the functions (logs, traces, the `service` metric dimension).
   * @default 'tasklease'
   */
  readonly serviceName?: string;

}

/** Everything a function may be allowed to do; each function gets a subset. */
type Capability = 'issue' | 'revoke' | 'answerTaskTokens';

const FUNCTION_CAPABILITIES: Record<TaskLeaseFunctionName, readonly Capability[]> = {
  // Issues credentials, and revokes them again when issuing fails halfway.
  taskStarted: ['issue', 'revoke', 'answerTaskTokens'],
  taskEnded: ['revoke'],
  reverify: ['revoke'],
  // Ends expired leases and rolls back interrupted issuing (which answers the task token with a failure).
  reaper: ['revoke', 'answerTaskTokens'],
};

const FUNCTION_DESCRIPTIONS: Record<TaskLeaseFunctionName, string> = {
  taskStarted: 'tasklease: Task Started -> verify SVID, apply policy, issue credentials',
  taskEnded: 'tasklease: Task Ended -> revoke credentials and prove them rejected',
  reverify: 'tasklease: delayed re-verification of revoked credentials',
  reaper: 'tasklease: expired leases, lost Task Ended, stale intents, unverified revocations',
};

const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** ESM bundles need `require` for the CommonJS dependencies esbuild inlines (pg, Powertools). */
export const ESM_REQUIRE_BANNER = "import { createRequire as __taskleaseCreateRequire } from 'node:module';const require = __taskleaseCreateRequire(import.meta.url);";

/**
 * A Secrets Manager secret ARN or name → the resource IAM needs, and how cdk-nag prints it.
 * A complete ARN ends with -XXXXXX; a name or partial ARN needs a wildcard for that suffix.
 */
function secretResource(ref: string): { arn: string; nagForm: string } {
  if (ref.startsWith('arn:')) {
    const arn = /-[A-Za-z0-9]{6}$/.test(ref) ? ref : `${ref}-??????`;
    return { arn, nagForm: arn };
  }
  const suffix = `secret:${ref}-??????`;
  return {
    arn: `arn:${Aws.PARTITION}:secretsmanager:${Aws.REGION}:${Aws.ACCOUNT_ID}:${suffix}`,
    nagForm: `arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:${suffix}`,
  };
}

function ssmParameterArn(name: string): string {
  return `arn:${Aws.PARTITION}:ssm:${Aws.REGION}:${Aws.ACCOUNT_ID}:parameter/${name.replace(/^\//, '')}`;
}

/**
 * tasklease on AWS: a custom EventBridge bus, rules routing `Task Started` / `Task Ended` to
 * KMS-encrypted SQS queues with dead-letter queues, Lambda functions (Node 24, ARM64, esbuild)
 * running the lifecycle core, a DynamoDB ledger, the reaper's schedule, least-privilege IAM, and a
 * CloudWatch dashboard with alarms.
 */
export class TaskLease extends Construct {
  /** Customer-managed key for the queues, the ledger table, the bus and delivered secrets. */
  readonly key: kms.Key;
  readonly bus: events.EventBus;
  readonly table: dynamodb.Table;
  /** Work queues, keyed by route (`task-started`, `task-ended`) plus `reverify`. */
  readonly queues: Record<RouteName | 'reverify', sqs.Queue>;
  /** Dead-letter queues: one per work queue, plus `delivery` for events the bus could not deliver. */
  readonly deadLetterQueues: Record<RouteName | 'reverify' | 'delivery', sqs.Queue>;
  readonly rules: Record<RouteName, events.Rule>;
  readonly functions: Record<TaskLeaseFunctionName, NodejsFunction>;
  readonly roles: Record<TaskLeaseFunctionName, iam.Role>;
  readonly reaperSchedule: scheduler.Schedule;
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarms: cloudwatch.Alarm[];
  readonly monitoring: TaskLeaseMonitoring;
  /** The event-source concurrency applied to every queue. */
  readonly maxConcurrency: number;

  constructor(scope: Construct, id: string, props: TaskLeaseProps) {
    super(scope, id);
    // The rules' SQS targets then grant EventBridge send/encrypt only for this account's rules
    // (aws:SourceAccount) instead of for any caller (a flag of new CDK apps; set here so the
    // construct is safe in older apps too). Must precede the children.
    this.node.setContext(cxapi.EVENTS_TARGET_QUEUE_SAME_ACCOUNT, true);
    const stack = Stack.of(this);
    const view = viewConfig(props.config);
    this.checkConfig(view);

    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const verifyDeadline = Duration.seconds(view.settings.verifyDeadlineSeconds);
    const functionTimeout = props.functionTimeout ?? Duration.seconds(Math.max(60, view.settings.verifyDeadlineSeconds + 30));
    if (functionTimeout.toSeconds() <= verifyDeadline.toSeconds()) {
      throw new Error(`functionTimeout (${functionTimeout.toSeconds()} s) must exceed settings.verifyDeadlineSeconds (${verifyDeadline.toSeconds()} s)`);
    }
    const reaperTimeout = props.reaperTimeout ?? Duration.minutes(5);
    const maxReceiveCount = props.maxReceiveCount ?? 5;
    const deadLetterRetention = props.deadLetterRetention ?? Duration.days(14);
    this.maxConcurrency = props.maxConcurrency ?? defaultMaxConcurrency(view);
    const tightest = Math.min(...view.targets.map((t) => t.maxConcurrency ?? Infinity));
    if (props.maxConcurrency === undefined && tightest < ESM_CONCURRENCY_MIN) {
      Annotations.of(this).addWarningV2(
        'tasklease:maxConcurrencyBelowEventSourceMinimum',
        `a target allows maxConcurrency ${tightest}, but an SQS event source runs at least ${ESM_CONCURRENCY_MIN} invocations; use reservedConcurrency to go lower`,
      );
    }
    if (this.maxConcurrency < ESM_CONCURRENCY_MIN || this.maxConcurrency > ESM_CONCURRENCY_MAX) {
      throw new Error(`maxConcurrency must be between ${ESM_CONCURRENCY_MIN} and ${ESM_CONCURRENCY_MAX} (SQS event source limit), got ${this.maxConcurrency}`);
    }

    // ── Key ────────────────────────────────────────────────────────────────────────────────
    this.key = new kms.Key(this, 'Key', {
      description: 'tasklease: queues, ledger table, event bus and delivered secrets',
      enableKeyRotation: true,
      removalPolicy,
    });
    // Workloads read their delivered secret; Secrets Manager decrypts with this key on their behalf.
    if (view.readerPrincipals.length > 0) {
      this.key.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'WorkloadsDecryptDeliveredSecrets',
          principals: view.readerPrincipals.map((arn) => new iam.ArnPrincipal(arn)),
          actions: ['kms:Decrypt'],
          resources: ['*'], // in a key policy, "*" is this key
          conditions: {
            StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` },
            StringLike: { 'kms:EncryptionContext:SecretARN': `arn:${Aws.PARTITION}:secretsmanager:${Aws.REGION}:${Aws.ACCOUNT_ID}:secret:${SECRET_NAME_PREFIX}*` },
          },
        }),
      );
    }

    // ── Queues ─────────────────────────────────────────────────────────────────────────────
    const queueDefaults = { encryption: sqs.QueueEncryption.KMS, encryptionMasterKey: this.key, enforceSSL: true } as const;
    const visibilityTimeout = Duration.seconds(Math.min(43_200, functionTimeout.toSeconds() * 6));
    const dlq = (name: string) => new sqs.Queue(this, `${name}Dlq`, { ...queueDefaults, retentionPeriod: deadLetterRetention });
    const deadLetterQueues = {
      'task-started': dlq('TaskStarted'),
      'task-ended': dlq('TaskEnded'),
      reverify: dlq('Reverify'),
      delivery: dlq('Delivery'),
    };
    this.deadLetterQueues = deadLetterQueues;
    const workQueue = (name: string, deadLetterQueue: sqs.IQueue, extra: Partial<sqs.QueueProps> = {}) =>
      new sqs.Queue(this, `${name}Queue`, { ...queueDefaults, visibilityTimeout, deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount }, ...extra });
    this.queues = {
      'task-started': workQueue('TaskStarted', deadLetterQueues['task-started']),
      'task-ended': workQueue('TaskEnded', deadLetterQueues['task-ended']),
      reverify: workQueue('Reverify', deadLetterQueues.reverify, { deliveryDelay: props.reverifyDelay ?? Duration.seconds(30) }),
    };
    Validations.of(deadLetterQueues.delivery).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'This queue is itself a dead-letter queue: the EventBridge rule targets send events they fail to deliver here (RuleTarget DeadLetterConfig), which AwsSolutions-SQS3 cannot see.',
    });

    // ── Bus and rules ──────────────────────────────────────────────────────────────────────
    this.bus = new events.EventBus(this, 'Bus', {
      eventBusName: props.busName ?? 'tasklease',
      description: 'tasklease: Task Started / Task Ended in, Lease Issued / Denied / Revoked out',
      kmsKey: this.key,
      deadLetterQueue: deadLetterQueues.delivery,
    });
    // The bus's own dead-letter target (events it cannot encrypt or decrypt with the key).
    deadLetterQueues.delivery.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'BusDeadLetters',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['sqs:SendMessage'],
        resources: [deadLetterQueues.delivery.queueArn],
        conditions: { ArnEquals: { 'aws:SourceArn': this.bus.eventBusArn } },
      }),
    );
    const producerPrincipals: iam.IPrincipal[] = [
      ...(props.eventProducerAccounts ?? (props.eventProducerPrincipalArns?.length ? [] : [stack.account])).map((a) => new iam.AccountPrincipal(a)),
      ...(props.eventProducerPrincipalArns ?? []).map((arn) => new iam.ArnPrincipal(arn)),
    ];
    if (producerPrincipals.length > 0) {
      this.bus.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'TaskEventProducers',
          principals: producerPrincipals,
          actions: ['events:PutEvents'],
          resources: [this.bus.eventBusArn],
        }),
      );
    }
    const rules = {} as Record<RouteName, events.Rule>;
    for (const route of ROUTES) {
      rules[route.name] = new events.Rule(this, `${pascal(route.name)}Rule`, {
        eventBus: this.bus,
        description: `tasklease: ${route.detailType} -> ${route.name} queue`,
        eventPattern: { detailType: [route.detailType] },
        targets: [new eventsTargets.SqsQueue(this.queues[route.name], { deadLetterQueue: deadLetterQueues.delivery, retryAttempts: 185, maxEventAge: Duration.hours(24) })],
      });
    }
    this.rules = rules;

    // ── Ledger table ───────────────────────────────────────────────────────────────────────
    const attr = (k: { name: string; type: 'S' | 'N' }): dynamodb.Attribute => ({
      name: k.name,
      type: k.type === 'S' ? dynamodb.AttributeType.STRING : dynamodb.AttributeType.NUMBER,
    });
    this.table = new dynamodb.Table(this, 'Ledger', {
      partitionKey: attr(TABLE_KEYS.partitionKey),
      sortKey: attr(TABLE_KEYS.sortKey),
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: props.deletionProtection ?? true,
      timeToLiveAttribute: TTL_ATTRIBUTE,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.key,
      removalPolicy,
    });
    for (const gsi of GSIS) {
      this.table.addGlobalSecondaryIndex({
        indexName: gsi.indexName,
        partitionKey: attr(gsi.partitionKey),
        sortKey: attr(gsi.sortKey),
        projectionType: gsi.projection === 'ALL' ? dynamodb.ProjectionType.ALL : dynamodb.ProjectionType.KEYS_ONLY,
      });
    }

    // ── Functions ──────────────────────────────────────────────────────────────────────────
    const vpcSettings = props.vpc ?? vpcFromTargets(view);
    const vpcAttachment = vpcSettings ? this.vpcAttachment(vpcSettings) : undefined;
    const environment: Record<string, string> = {
      [ENV.tableName]: this.table.tableName,
      [ENV.eventBusName]: this.bus.eventBusName,
      [ENV.config]: JSON.stringify(props.config),
      [ENV.secretsKmsKeyId]: this.key.keyArn,
      [ENV.reverifyQueueUrl]: this.queues.reverify.queueUrl,
      [ENV.verifyDeadlineMs]: String(verifyDeadline.toMilliseconds()),
      POWERTOOLS_SERVICE_NAME: props.serviceName ?? 'tasklease',
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      NODE_OPTIONS: '--enable-source-maps',
    };
    checkEnvironmentSize(environment);

    const functions = {} as Record<TaskLeaseFunctionName, NodejsFunction>;
    const roles = {} as Record<TaskLeaseFunctionName, iam.Role>;
    for (const name of Object.keys(FUNCTION_ENTRIES) as TaskLeaseFunctionName[]) {
      const id = pascal(name);
      const role = new iam.Role(this, `${id}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `tasklease ${name} function`,
      });
      const logGroup = new logs.LogGroup(this, `${id}Logs`, {
        retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      logGroup.grantWrite(role);
      if (vpcAttachment) {
        role.addManagedPolicy(iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWSLambdaVPCAccessExecutionRole'));
        Validations.of(role).acknowledge({
          id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]',
          reason:
            'Lambda needs ec2:CreateNetworkInterface/DescribeNetworkInterfaces/DeleteNetworkInterface/AssignPrivateIpAddresses/UnassignPrivateIpAddresses to attach to the VPC; the Describe action has no resource scoping and AWS maintains this policy for exactly that purpose.',
        });
      }
      const fn = new NodejsFunction(this, id, {
        entry: join(PROJECT_ROOT, FUNCTION_ENTRIES[name]),
        handler: 'handler',
        projectRoot: PROJECT_ROOT,
        depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
        description: FUNCTION_DESCRIPTIONS[name],
        runtime: LAMBDA_RUNTIME,
        architecture: lambda.Architecture.ARM_64,
        memorySize: props.memorySize ?? 512,
        timeout: name === 'reaper' ? reaperTimeout : functionTimeout,
        tracing: lambda.Tracing.ACTIVE,
        role,
        logGroup,
        environment,
        // One reaper at a time: its per-target rate limit is per process, and overlapping runs only race.
        reservedConcurrentExecutions: props.reservedConcurrency?.[name] ?? (name === 'reaper' ? 1 : undefined),
        ...(vpcAttachment ?? {}),
        bundling: {
          // Never Docker: the local esbuild from package.json bundles, offline.
          forceDockerBundling: false,
          minify: true,
          sourceMap: true,
          sourcesContent: false,
          format: OutputFormat.ESM,
          target: 'node24',
          mainFields: ['module', 'main'],
          banner: ESM_REQUIRE_BANNER,
          // The AWS SDK v3 is bundled, not taken from the runtime: the deployed code then runs the
          // exact SDK versions the handler tests ran against (package-lock), and esbuild keeps only
          // the clients in use. pg-native is pg's optional native binding, never installed.
          externalModules: ['pg-native'],
        },
      });
      // CDK adds the X-Ray grant of `tracing: ACTIVE` to the role's default policy.
      Validations.of(role).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'xray:PutTraceSegments and xray:PutTelemetryRecords (active tracing) support no resource-level permissions.',
      });
      functions[name] = fn;
      roles[name] = role;
      this.grantCapabilities(role, name, view);
    }
    // Any function may be the one that verifies a revocation and must read the old secret.
    const brokerPrincipals = Fn.join(',', Object.values(roles).map((r) => r.roleArn));
    for (const fn of Object.values(functions)) fn.addEnvironment(ENV.brokerPrincipalArns, brokerPrincipals);
    this.functions = functions;
    this.roles = roles;

    // ── Event sources ──────────────────────────────────────────────────────────────────────
    const eventSource = (queue: sqs.IQueue) =>
      new SqsEventSource(queue, { batchSize: props.batchSize ?? 10, reportBatchItemFailures: true, maxConcurrency: this.maxConcurrency });
    functions.taskStarted.addEventSource(eventSource(this.queues['task-started']));
    functions.taskEnded.addEventSource(eventSource(this.queues['task-ended']));
    functions.reverify.addEventSource(eventSource(this.queues.reverify));

    // ── Reaper schedule ────────────────────────────────────────────────────────────────────
    // EventBridge Scheduler rates are whole minutes, at least one.
    const reaperInterval = Duration.minutes(Math.max(1, Math.ceil(view.settings.reaperIntervalSeconds / 60)));
    if (reaperInterval.toSeconds() !== view.settings.reaperIntervalSeconds) {
      Annotations.of(this).addInfo(
        `settings.reaperIntervalSeconds (${view.settings.reaperIntervalSeconds}) rounded up to ${reaperInterval.toMinutes()} minute(s): EventBridge Scheduler rates are whole minutes`,
      );
    }
    const schedulerRole = new iam.Role(this, 'ReaperSchedulerRole', {
      description: 'tasklease: EventBridge Scheduler invokes the reaper',
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } } }),
    });
    this.reaperSchedule = new scheduler.Schedule(this, 'ReaperSchedule', {
      description: 'tasklease: run the reaper',
      schedule: scheduler.ScheduleExpression.rate(reaperInterval),
      // A missed run is covered by the next one; retries would only overlap with it.
      target: new schedulerTargets.LambdaInvoke(functions.reaper, { role: schedulerRole, retryAttempts: 0, maxEventAge: reaperInterval }),
    });
    Validations.of(schedulerRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${stack.getLogicalId(functions.reaper.node.defaultChild as lambda.CfnFunction)}.Arn>:*]`,
      reason:
        "CDK's grantInvoke also covers the reaper's versions and aliases (<reaper ARN>:*); the wildcard is a qualifier of this one function, nothing else.",
    });

    // ── Dashboard and alarms ───────────────────────────────────────────────────────────────
    this.monitoring = new TaskLeaseMonitoring(this, 'Monitoring', {
      dashboardName: props.dashboardName ?? `TaskLease-${stack.stackName}`,
      openDebtObjective: props.openDebtObjective ?? Duration.seconds(view.settings.openDebtObjectiveSeconds),
      reaperInterval,
      deadLetterQueues: {
        TaskStarted: deadLetterQueues['task-started'],
        TaskEnded: deadLetterQueues['task-ended'],
        Reverify: deadLetterQueues.reverify,
        Delivery: deadLetterQueues.delivery,
      },
      workQueues: { 'task-started': this.queues['task-started'], 'task-ended': this.queues['task-ended'], reverify: this.queues.reverify },
      functions,
      ...(props.alarmTopic ? { alarmTopic: props.alarmTopic } : {}),
    });
    this.dashboard = this.monitoring.dashboard;
    this.alarms = this.monitoring.alarms;
  }

  /** Refuses configs that cannot work (or would leak) in AWS; warns about ones that cannot fully work. */
  private checkConfig(view: InfraConfigView): void {
    const plaintext = view.targets.filter((t) => t.hasPlaintextPassword).map((t) => t.name);
    if (plaintext.length > 0) {
      // The config travels in a Lambda environment variable and the CloudFormation template.
      throw new Error(
        `targets ${plaintext.join(', ')}: settings.password would be written into the CloudFormation template and the functions' environment; use settings.passwordSecret (a Secrets Manager ARN) in AWS`,
      );
    }
    for (const t of view.targets) {
      if (t.kind === 'postgres' && t.passwordSecret === undefined) {
        throw new Error(`targets.${t.name}.settings.passwordSecret is required in AWS (a Secrets Manager ARN of the admin password)`);
      }
    }
    for (const b of view.nonLambdaBundles) {
      Annotations.of(this).addWarningV2(
        'tasklease:bundleSourceNotInLambda',
        `trustDomains.${b.trustDomain}.bundle.${b.source} cannot be read inside Lambda; use bundle.url or bundle.ssmParameter for an AWS deployment`,
      );
    }
  }

  private vpcAttachment(settings: TaskLeaseVpcSettings): Pick<lambda.FunctionProps, 'vpc' | 'vpcSubnets' | 'securityGroups'> {
    const vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
      vpcId: settings.vpcId,
      // Never read: the subnets are selected explicitly below. (stack.availabilityZones would need
      // an AWS lookup for environment-specific stacks, and synth must work offline.)
      availabilityZones: ['unused-subnets-are-explicit'],
    });
    return {
      vpc,
      vpcSubnets: {
        subnets: settings.subnetIds.map((id, i) => {
          const subnet = ec2.Subnet.fromSubnetId(this, `Subnet${i}`, id);
          Validations.of(subnet).acknowledge({
            id: 'Annotation::@aws-cdk/aws-ec2:noSubnetRouteTableId',
            reason: 'The subnets are only handed to Lambda; nothing reads their route table.',
          });
          return subnet;
        }),
      },
      securityGroups: settings.securityGroupIds.map((id, i) => ec2.SecurityGroup.fromSecurityGroupId(this, `SecurityGroup${i}`, id, { mutable: false })),
    };
  }

  /** One policy per function, every statement scoped to tasklease's own resources or configured targets. */
  private grantCapabilities(role: iam.Role, name: TaskLeaseFunctionName, view: InfraConfigView): void {
    const caps = new Set(FUNCTION_CAPABILITIES[name]);
    const statements: iam.PolicyStatement[] = [];
    const tableArn = this.table.tableArn;

    statements.push(
      new iam.PolicyStatement({
        sid: 'LedgerItems',
        // Exactly what shared/ledger uses; the ledger never deletes (TTL does).
        actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Query'],
        resources: [tableArn],
      }),
      new iam.PolicyStatement({
        sid: 'LedgerIndexes',
        actions: ['dynamodb:Query'],
        resources: GSIS.map((g) => `${tableArn}/index/${g.indexName}`),
      }),
      // The shared lock (shared/ledger/lock.ts) releases by deleting its item: lock items only.
      new iam.PolicyStatement({
        sid: 'LedgerLockRelease',
        actions: ['dynamodb:DeleteItem'],
        resources: [tableArn],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${KEY_PREFIX.lock}*`] } },
      }),
      new iam.PolicyStatement({ sid: 'PublishOutputEvents', actions: ['events:PutEvents'], resources: [this.bus.eventBusArn] }),
      new iam.PolicyStatement({ sid: 'QueueReverify', actions: ['sqs:SendMessage'], resources: [this.queues.reverify.queueArn] }),
      new iam.PolicyStatement({
        sid: 'UseTaskLeaseKey',
        // SQS send (GenerateDataKey) and receive (Decrypt), the CMK-encrypted table, secrets and bus.
        actions: ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey', 'kms:DescribeKey'],
        resources: [this.key.keyArn],
      }),
    );

    const roleArns = view.targets.flatMap((t) => (t.roleArn ? [t.roleArn] : []));
    const managedRole = { StringEquals: { [`aws:ResourceTag/${MANAGED_ROLE_TAG.key}`]: MANAGED_ROLE_TAG.value } };
    const postgresSecrets = view.targets.flatMap((t) => (t.passwordSecret ? [secretResource(t.passwordSecret)] : []));
    const taskSecrets = `arn:${Aws.PARTITION}:secretsmanager:${Aws.REGION}:${Aws.ACCOUNT_ID}:secret:${SECRET_NAME_PREFIX}*`;

    if (caps.has('issue')) {
      if (roleArns.length > 0) {
        statements.push(
          new iam.PolicyStatement({
            sid: 'AssumeManagedTargetRoles',
            actions: ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity'],
            resources: roleArns,
            conditions: managedRole,
          }),
        );
      }
      statements.push(
        new iam.PolicyStatement({
          sid: 'CreateTaskSecrets',
          actions: ['secretsmanager:CreateSecret'],
          resources: [taskSecrets],
          // Delivered secrets must be encrypted with the tasklease key.
          conditions: { StringEquals: { 'secretsmanager:KmsKeyArn': this.key.keyArn } },
        }),
        new iam.PolicyStatement({
          sid: 'RestrictTaskSecretReaders',
          actions: ['secretsmanager:PutResourcePolicy'],
          resources: [taskSecrets],
          conditions: { Bool: { 'secretsmanager:BlockPublicPolicy': 'true' } },
        }),
        new iam.PolicyStatement({
          sid: 'WriteTaskSecrets',
          actions: ['secretsmanager:PutSecretValue', 'secretsmanager:TagResource'],
          resources: [taskSecrets],
        }),
      );
      if (view.ssmBundleParameters.length > 0) {
        statements.push(
          new iam.PolicyStatement({
            sid: 'ReadTrustBundles',
            actions: ['ssm:GetParameter'],
            resources: view.ssmBundleParameters.map((p) => ssmParameterArn(p)),
          }),
        );
      }
    }
    if (caps.has('revoke')) {
      if (roleArns.length > 0) {
        statements.push(
          new iam.PolicyStatement({
            sid: 'DenySessionsOnManagedTargetRoles',
            actions: ['iam:GetRole', 'iam:GetRolePolicy', 'iam:PutRolePolicy', 'iam:DeleteRolePolicy'],
            resources: roleArns,
            conditions: managedRole,
          }),
        );
      }
      statements.push(
        new iam.PolicyStatement({
          sid: 'RetireTaskSecrets',
          // GetSecretValue: verification proves rejection with the old credential while it exists.
          actions: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue', 'secretsmanager:DeleteSecret'],
          resources: [taskSecrets],
        }),
      );
    }
    if (postgresSecrets.length > 0) {
      statements.push(
        new iam.PolicyStatement({ sid: 'ReadDatabaseAdminSecrets', actions: ['secretsmanager:GetSecretValue'], resources: postgresSecrets.map((s) => s.arn) }),
      );
    }
    if (caps.has('answerTaskTokens')) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'AnswerStepFunctionsTaskTokens',
          // Task tokens are not resources: these actions support no resource-level permissions.
          actions: ['states:SendTaskSuccess', 'states:SendTaskFailure'],
          resources: ['*'],
        }),
      );
    }

    const policy = new iam.Policy(this, `${pascal(name)}Policy`, { statements });
    policy.attachToRole(role);
    const wildcardFindings: Record<string, string> = {
      [`Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:${SECRET_NAME_PREFIX}*`]:
        'Delivered secrets are created per task at run time (tasklease/<taskId>/<grant>), so their names are unknown at deploy time; the statement is limited to the tasklease/ prefix in this account and region, creation requires the tasklease KMS key and resource policies must block public access.',
    };
    if (caps.has('answerTaskTokens')) {
      wildcardFindings['Resource::*'] =
        'states:SendTaskSuccess and states:SendTaskFailure act on a task token, not on a resource, and support no resource-level permissions.';
    }
    for (const secret of postgresSecrets.filter((s) => s.arn.endsWith('-??????'))) {
      wildcardFindings[`Resource::${secret.nagForm}`] =
        'The database admin secret is configured by name or partial ARN; -?????? matches only the 6-character suffix Secrets Manager appends to that one name.';
    }
    for (const [finding, reason] of Object.entries(wildcardFindings)) Validations.of(policy).acknowledge({ id: `AwsSolutions-IAM5[${finding}]`, reason });
  }
}

function pascal(name: string): string {
  return name.replace(/(^|[-_])([a-z])/g, (_, __, c: string) => c.toUpperCase()).replace(/^[a-z]/, (c) => c.toUpperCase());
}

/** The tightest per-target bound protects every database behind the shared queue. */
function defaultMaxConcurrency(view: InfraConfigView): number {
  const bounds = view.targets.flatMap((t) => (t.maxConcurrency !== undefined ? [t.maxConcurrency] : []));
  if (bounds.length === 0) return 10;
  return Math.min(ESM_CONCURRENCY_MAX, Math.max(ESM_CONCURRENCY_MIN, Math.min(...bounds)));
}

function vpcFromTargets(view: InfraConfigView): TaskLeaseVpcSettings | undefined {
  const found = view.targets.flatMap((t) => (t.vpc ? [{ name: t.name, vpc: t.vpc }] : []));
  const first = found[0];
  if (!first) return undefined;
  const key = (v: TaskLeaseVpcSettings) => JSON.stringify([v.vpcId, [...v.subnetIds].sort(), [...v.securityGroupIds].sort()]);
  const other = found.find((f) => key(f.vpc) !== key(first.vpc));
  if (other) {
    throw new Error(
      `targets ${first.name} and ${other.name} have different settings.vpc; the functions attach to one VPC: pass TaskLeaseProps.vpc with subnets and security groups that reach every database`,
    );
  }
  return first.vpc;
}

function checkEnvironmentSize(environment: Record<string, string>): void {
  // Tokens (table name, ARNs) resolve to at most a few hundred bytes; count them generously.
  const size = Object.entries(environment).reduce((n, [k, v]) => n + Buffer.byteLength(k) + (Token.isUnresolved(v) ? 256 : Buffer.byteLength(v)), 0);
  if (size > LAMBDA_ENV_MAX_BYTES) {
    throw new Error(
      `the functions' environment would be ~${size} bytes, over Lambda's ${LAMBDA_ENV_MAX_BYTES}-byte limit; the config (TASKLEASE_CONFIG) is too large: move trust bundles to bundle.url/ssmParameter and shorten the policy`,
    );
  }
}

/** Entry files exist before bundling (a clear error instead of esbuild's). */
export function missingFunctionEntries(): string[] {
  return Object.values(FUNCTION_ENTRIES).filter((entry) => !existsSync(join(PROJECT_ROOT, entry)));
}
