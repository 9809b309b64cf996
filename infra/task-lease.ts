import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Annotations, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import type { CfnResource } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as events from 'aws-cdk-lib/aws-events';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as scheduler from 'aws-cdk-lib/aws-scheduler';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import * as cxapi from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import type { IConstruct } from 'constructs';
import type { RouteName } from '../shared/events/routing.ts';
import type { TaskLeaseConfig } from '../shared/policy/config.ts';
import { FUNCTION_ENTRIES } from '../shared/runtime/env.ts';
import { TARGET_KINDS } from '../shared/targets/index.ts';
import { buildBus, producerPrincipals, restrictBusToBroker } from './bus.ts';
import { viewConfig } from './config-view.ts';
import type { InfraConfigView, TaskLeaseVpcSettings } from './config-view.ts';
import { bundleNeeds } from './bundling.ts';
import { buildFunctions, functionEnvironment, PROJECT_ROOT, reaperIntervalOf, scheduleReaper } from './functions.ts';
import { buildKey } from './key.ts';
import { buildLedgerTable } from './ledger.ts';
import { TaskLeaseMonitoring } from './monitoring.ts';
import { grantPutTaskEvents, grantReadDeliveredSecrets, grantReadLedger } from './permissions.ts';
import type { TaskLeaseFunctionName } from './permissions.ts';
import { buildQueues, visibilityTimeoutFor } from './queues.ts';
import type { DeadLetterQueueName } from './queues.ts';
import { assertDeployable } from './deployability.ts';
import { agreeingVpc, awsEnvironment, targetNeeds } from './target-needs.ts';

export type { TaskLeaseVpcSettings } from './config-view.ts';
export type { TaskLeaseFunctionName } from './permissions.ts';
export { FUNCTION_CAPABILITIES, SECRET_NAME_PREFIX } from './permissions.ts';
export { BUNDLE_MAX_BYTES, ESM_REQUIRE_BANNER, LAMBDA_RUNTIME } from './functions.ts';

/** SQS event source maximum concurrency bounds (AWS limits). */
const ESM_CONCURRENCY_MIN = 2;
const ESM_CONCURRENCY_MAX = 1000;

export interface TaskLeaseProps {
  /**
   * The parsed tasklease config (`loadConfig` of `shared/policy/config.ts`). Every function gets it
   * as JSON in `TASKLEASE_CONFIG`; the construct also derives IAM resources (what each target's
   * kind declares it needs in AWS, SSM trust bundles), the VPC, concurrency, the reaper schedule
   * and the open-debt objective from it. A target kind refuses settings that would leak into the
   * template (a plaintext database password): synth fails with its message.
   */
  readonly config: TaskLeaseConfig;

  /**
   * Name of the custom EventBridge bus workflow engines put `Task Started` / `Task Ended` on. Bus
   * names are unique per account and region: a fixed name would make a second stack collide.
   * @default - a name CDK derives from the stack and construct path (the stack output `BusName`)
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
   * Principals allowed to invoke the break-glass operator function (`tasklease revoke --function`,
   * `tasklease unlock --function`): lambda:InvokeFunction on it and nothing else. Anyone else with
   * lambda:InvokeFunction in the account (an administrator) can invoke it too; CloudTrail records
   * every invoke with its caller.
   * @default - none (grant later with `grantOperate`)
   */
  readonly operators?: iam.IGrantable[];

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
   * VPC attachment for the functions (every function may revoke, so all of them attach). The
   * subnets need a route to the AWS APIs the functions call (NAT gateway or VPC endpoints for STS,
   * IAM, Secrets Manager, DynamoDB, EventBridge, SQS, SSM, X-Ray, Step Functions).
   * @default - the VPC the config's targets declare (their `settings.vpc`; they must agree); no VPC when none declares one
   */
  readonly vpc?: TaskLeaseVpcSettings;

  /**
   * Reserved concurrency per function. Each reservation takes from the account's concurrency quota
   * and fails the deploy where that quota is low (new accounts); the reaper needs none, it runs one
   * at a time by holding the ledger's lock.
   * @default - no reservation (the account's unreserved pool)
   */
  readonly reservedConcurrency?: Partial<Record<TaskLeaseFunctionName, number>>;

  /**
   * Maximum concurrent invocations each SQS event source (task-started, task-ended, reverify) may
   * drive (2..1000, an SQS event source limit). One queue serves all targets, so the tightest
   * target bound applies to every queue. It bounds invocations per queue, not connections: the
   * three queues and the reaper run side by side, and each invocation opens at most the driver's
   * admin pool (a driver setting such as `adminPoolMax`) per target.
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
   * Timeout of the reaper and of the break-glass operator function (both may prove many leases in one run).
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
   * X-Ray active tracing of the functions and their AWS SDK calls. Off, the bundles carry no tracer
   * (~120 kB less, a faster cold start).
   * @default true
   */
  readonly tracing?: boolean;

  /**
   * `POWERTOOLS_SERVICE_NAME` of the functions (logs, traces, the `service` metric dimension).
   * @default 'tasklease'
   */
  readonly serviceName?: string;
}

/**
 * tasklease on AWS: a custom EventBridge bus, rules routing `Task Started` / `Task Ended` to
 * KMS-encrypted SQS queues with dead-letter queues, Lambda functions (Node 24, ARM64, esbuild)
 * running the lifecycle core, a DynamoDB ledger, the reaper's schedule, least-privilege IAM, and a
 * CloudWatch dashboard with alarms. The parts are built in infra/<part>.ts; the grant methods let
 * a user's own stack wire engines, dashboards and workloads to it.
 */
export class TaskLease extends Construct {
  /** Customer-managed key for the queues, the ledger table, the bus and delivered secrets. */
  readonly key: kms.Key;
  readonly bus: events.EventBus;
  readonly table: dynamodb.Table;
  /** Work queues, keyed by route (`task-started`, `task-ended`) plus `reverify`. */
  readonly queues: Record<RouteName | 'reverify', sqs.Queue>;
  /** Dead-letter queues: one per work queue, `delivery` for events the bus could not deliver, `reaper` for failed reaper runs. */
  readonly deadLetterQueues: Record<DeadLetterQueueName, sqs.Queue>;
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
    const needs = targetNeeds(props.config, TARGET_KINDS, awsEnvironment(stack.account));
    for (const w of needs.warnings) Annotations.of(this).addWarningV2(`tasklease:target:${w.target}`, w.message);
    // A config that synthesizes but would deploy a stack that cannot work is refused here, naming each field.
    assertDeployable(props.config, needs.maxGrantSeconds);

    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const verifyDeadline = Duration.seconds(view.settings.verifyDeadlineSeconds);
    const functionTimeout = props.functionTimeout ?? Duration.seconds(Math.max(60, view.settings.verifyDeadlineSeconds + 30));
    if (functionTimeout.toSeconds() <= verifyDeadline.toSeconds()) {
      throw new Error(
        `functionTimeout (${functionTimeout.toSeconds()} s) must exceed settings.verifyDeadlineSeconds (${verifyDeadline.toSeconds()} s)`,
      );
    }
    this.maxConcurrency = this.eventSourceConcurrency(props.maxConcurrency, view);

    this.key = buildKey(this, { removalPolicy, readerPrincipals: view.readerPrincipals });
    const { queues, deadLetterQueues } = buildQueues(this, {
      key: this.key,
      visibilityTimeout: visibilityTimeoutFor(functionTimeout),
      maxReceiveCount: props.maxReceiveCount ?? 5,
      deadLetterRetention: props.deadLetterRetention ?? Duration.days(14),
      reverifyDelay: props.reverifyDelay ?? Duration.seconds(30),
    });
    this.queues = queues;
    this.deadLetterQueues = deadLetterQueues;

    const { bus, rules } = buildBus(this, {
      ...(props.busName ? { busName: props.busName } : {}),
      key: this.key,
      deliveryDeadLetterQueue: deadLetterQueues.delivery,
      routeQueues: { 'task-started': queues['task-started'], 'task-ended': queues['task-ended'] },
      producers: producerPrincipals(props.eventProducerAccounts, props.eventProducerPrincipalArns, stack.account),
    });
    this.bus = bus;
    this.rules = rules;

    this.table = buildLedgerTable(this, { key: this.key, removalPolicy, deletionProtection: props.deletionProtection ?? true });

    const { functions, roles } = buildFunctions(this, {
      permissions: {
        key: this.key,
        table: this.table,
        bus: this.bus,
        reverifyQueue: queues.reverify,
        ssmBundleParameters: view.ssmBundleParameters,
        targetStatements: needs.statements,
      },
      queues,
      environment: functionEnvironment({
        tableName: this.table.tableName,
        eventBusName: this.bus.eventBusName,
        configJson: JSON.stringify(props.config),
        keyArn: this.key.keyArn,
        reverifyQueueUrl: queues.reverify.queueUrl,
        verifyDeadline,
        serviceName: props.serviceName ?? 'tasklease',
      }),
      functionTimeout,
      reaperTimeout: props.reaperTimeout ?? Duration.minutes(5),
      memorySize: props.memorySize ?? 512,
      logRetention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      reservedConcurrency: props.reservedConcurrency ?? {},
      bundleNeeds: (name) => bundleNeeds(name, props.config, props.tracing ?? true),
      tracing: props.tracing ?? true,
      reaperFailures: deadLetterQueues.reaper,
      ...vpcProp(props.vpc ?? agreeingVpc(needs.vpcs)),
      batchSize: props.batchSize ?? 10,
      maxConcurrency: this.maxConcurrency,
    });
    this.functions = functions;
    this.roles = roles;
    restrictBusToBroker(this.bus, Object.values(roles));

    const reaperInterval = reaperIntervalOf(this, view.settings.reaperIntervalSeconds);
    this.reaperSchedule = scheduleReaper(this, functions.reaper, reaperInterval);

    this.monitoring = new TaskLeaseMonitoring(this, 'Monitoring', {
      dashboardName: props.dashboardName ?? `TaskLease-${stack.stackName}`,
      openDebtObjective: props.openDebtObjective ?? Duration.seconds(view.settings.openDebtObjectiveSeconds),
      reaperInterval,
      deadLetterQueues: {
        TaskStarted: deadLetterQueues['task-started'],
        TaskEnded: deadLetterQueues['task-ended'],
        Reverify: deadLetterQueues.reverify,
        Delivery: deadLetterQueues.delivery,
        ReaperFailures: deadLetterQueues.reaper,
      },
      workQueues: { 'task-started': queues['task-started'], 'task-ended': queues['task-ended'], reverify: queues.reverify },
      functions,
      ...(props.alarmTopic ? { alarmTopic: props.alarmTopic } : {}),
    });
    this.dashboard = this.monitoring.dashboard;
    this.alarms = this.monitoring.alarms;
    for (const operator of props.operators ?? []) this.grantOperate(operator);
  }

  /** Lets an operator invoke the break-glass function (revoke a task or a workload now, lock and unlock workloads). */
  grantOperate(grantee: iam.IGrantable): iam.Grant {
    const grant = this.functions.operator.grantInvoke(grantee);
    // grantInvoke also covers the function's versions and aliases (<ARN>:*): without this, a grantee
    // role in the app fails cdk-nag (AwsSolutions-IAM5), and with it the synth.
    const principal = grantee.grantPrincipal as Partial<IConstruct>;
    if (principal instanceof Construct) {
      const operatorId = Stack.of(this).getLogicalId(this.functions.operator.node.defaultChild as CfnResource);
      Validations.of(principal).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${operatorId}.Arn>:*]`,
        reason:
          "CDK's grantInvoke also covers the operator function's versions and aliases (<operator ARN>:*); the wildcard is a qualifier of this one function, nothing else.",
      });
    }
    return grant;
  }

  /**
   * Lets a workflow engine's principal put `Task Started` / `Task Ended` on the bus (events:PutEvents
   * limited by `events:detail-type`). A principal of another account is added to the bus policy
   * instead; its own account must still allow the call.
   */
  grantPutTaskEvents(grantee: iam.IGrantable): iam.Grant {
    return grantPutTaskEvents(this.bus, grantee);
  }

  /** Lets a reader of the ledger (`tasklease report`, a dashboard) get, query and scan the table and its indexes, and decrypt them. */
  grantReadLedger(grantee: iam.IGrantable): iam.Grant {
    return grantReadLedger(this.table, this.key, grantee);
  }

  /**
   * Lets a workload read the secrets tasklease delivers (GetSecretValue under `tasklease/`, and
   * kms:Decrypt through Secrets Manager only). Each secret's resource policy still admits only the
   * `awsPrincipal` of the rule it was issued under, so the grantee must be that principal.
   */
  grantReadDeliveredSecrets(grantee: iam.IGrantable): iam.Grant {
    return grantReadDeliveredSecrets(this.key, grantee);
  }

  /** The tightest per-target bound protects every target behind the shared queues. */
  private eventSourceConcurrency(prop: number | undefined, view: InfraConfigView): number {
    const tightest = Math.min(...view.targets.map((t) => t.maxConcurrency ?? Infinity));
    if (prop === undefined && tightest < ESM_CONCURRENCY_MIN) {
      Annotations.of(this).addWarningV2(
        'tasklease:maxConcurrencyBelowEventSourceMinimum',
        `a target allows maxConcurrency ${tightest}, but an SQS event source runs at least ${ESM_CONCURRENCY_MIN} invocations; use reservedConcurrency to go lower`,
      );
    }
    const value = prop ?? (Number.isFinite(tightest) ? Math.min(ESM_CONCURRENCY_MAX, Math.max(ESM_CONCURRENCY_MIN, tightest)) : 10);
    if (value < ESM_CONCURRENCY_MIN || value > ESM_CONCURRENCY_MAX) {
      throw new Error(
        `maxConcurrency must be between ${ESM_CONCURRENCY_MIN} and ${ESM_CONCURRENCY_MAX} (SQS event source limit), got ${value}`,
      );
    }
    return value;
  }
}

const vpcProp = (vpc: TaskLeaseVpcSettings | undefined): { vpc?: TaskLeaseVpcSettings } => (vpc ? { vpc } : {});

/** Entry files exist before bundling (a clear error instead of esbuild's). */
export function missingFunctionEntries(): string[] {
  return Object.values(FUNCTION_ENTRIES).filter((entry) => !existsSync(join(PROJECT_ROOT, entry)));
}
