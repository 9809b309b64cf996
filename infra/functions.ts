import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Annotations, Aws, Duration, Fn, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { METRICS_NAMESPACE } from '../shared/metrics/names.ts';
import { ENV, FUNCTION_ENTRIES } from '../shared/runtime/env.ts';
import { esbuildOptions } from './bundling.ts';
import type { BundleNeeds } from './bundling.ts';
import type { TaskLeaseVpcSettings } from './config-view.ts';
import { pascal } from './names.ts';
import { attachFunctionPolicy } from './permissions.ts';
import type { FunctionPolicyResources, TaskLeaseFunctionName } from './permissions.ts';
import type { WorkQueueName } from './queues.ts';

/** The newest Node.js runtime of this aws-cdk-lib. */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;

export { BUNDLE_MAX_BYTES, bundleNeeds, esbuildOptions, ESM_REQUIRE_BANNER, SVID_VERIFIERS } from './bundling.ts';

/** Lambda's limit on the combined size of a function's environment variables. */
const LAMBDA_ENV_MAX_BYTES = 4096;

const FUNCTION_DESCRIPTIONS: Record<TaskLeaseFunctionName, string> = {
  taskStarted: 'tasklease: Task Started -> verify SVID, apply policy, issue credentials',
  taskEnded: 'tasklease: Task Ended -> revoke credentials and prove them rejected',
  reverify: 'tasklease: delayed re-verification of revoked credentials',
  reaper: 'tasklease: expired leases, lost Task Ended, stale intents, unverified revocations',
  operator: 'tasklease: break-glass revoke of a task or a workload (and its lock), invoked by operators only',
};

/** The queue each queue-driven function consumes. */
const FUNCTION_QUEUES: Partial<Record<TaskLeaseFunctionName, WorkQueueName>> = {
  taskStarted: 'task-started',
  taskEnded: 'task-ended',
  reverify: 'reverify',
};

/**
 * An SQS failure destination that grants only what Lambda needs to send there with the function's
 * role: sqs:SendMessage, and the key's GenerateDataKey/Decrypt through SQS. (aws-lambda-destinations'
 * SqsDestination grants kms:Encrypt, ReEncrypt* and GenerateDataKey* directly on the key.)
 */
class FailureQueue implements lambda.IDestination {
  constructor(private readonly queue: sqs.IQueue) {}

  bind(_scope: Construct, fn: lambda.IFunction): lambda.DestinationConfig {
    fn.addToRolePolicy(
      new iam.PolicyStatement({ sid: 'ReportFailedRuns', actions: ['sqs:SendMessage'], resources: [this.queue.queueArn] }),
    );
    return { destination: this.queue.queueArn };
  }
}

export const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface FunctionsBuilderProps {
  /** Resources the functions' policies name, and the targets' needs. */
  readonly permissions: FunctionPolicyResources;
  readonly queues: Record<WorkQueueName, sqs.IQueue>;
  /** The environment contract of shared/runtime/env.ts (without the broker principals, added here). */
  readonly environment: Record<string, string>;
  readonly functionTimeout: Duration;
  readonly reaperTimeout: Duration;
  readonly memorySize: number;
  readonly logRetention: logs.RetentionDays;
  readonly reservedConcurrency: Partial<Record<TaskLeaseFunctionName, number>>;
  /** What each function's bundle carries (infra/bundling.ts). */
  readonly bundleNeeds: (name: TaskLeaseFunctionName) => BundleNeeds;
  /** X-Ray active tracing (the bundles carry the tracer only when on). */
  readonly tracing: boolean;
  /** Where the reaper's failed asynchronous invocations go (the schedule invokes it asynchronously). */
  readonly reaperFailures: sqs.IQueue;
  readonly vpc?: TaskLeaseVpcSettings;
  readonly batchSize: number;
  readonly maxConcurrency: number;
}

export interface Functions {
  functions: Record<TaskLeaseFunctionName, NodejsFunction>;
  roles: Record<TaskLeaseFunctionName, iam.Role>;
}

/** One role, log group, policy and esbuild-bundled function per entry of FUNCTION_ENTRIES; queue-driven ones consume their queue. */
export function buildFunctions(scope: Construct, props: FunctionsBuilderProps): Functions {
  checkEnvironmentSize(props.environment);
  const vpcAttachment = props.vpc ? attachToVpc(scope, props.vpc) : undefined;
  const functions = {} as Record<TaskLeaseFunctionName, NodejsFunction>;
  const roles = {} as Record<TaskLeaseFunctionName, iam.Role>;
  for (const name of Object.keys(FUNCTION_ENTRIES) as TaskLeaseFunctionName[]) {
    const id = pascal(name);
    const role = new iam.Role(scope, `${id}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `tasklease ${name} function`,
    });
    const logGroup = new logs.LogGroup(scope, `${id}Logs`, { retention: props.logRetention, removalPolicy: RemovalPolicy.DESTROY });
    logGroup.grantWrite(role);
    if (vpcAttachment) {
      role.addManagedPolicy(iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWSLambdaVPCAccessExecutionRole'));
      Validations.of(role).acknowledge({
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]',
        reason:
          'Lambda needs ec2:CreateNetworkInterface/DescribeNetworkInterfaces/DeleteNetworkInterface/AssignPrivateIpAddresses/UnassignPrivateIpAddresses to attach to the VPC; the Describe action has no resource scoping and AWS maintains this policy for exactly that purpose.',
      });
    }
    const esbuild = esbuildOptions(props.bundleNeeds(name));
    const fn = new NodejsFunction(scope, id, {
      entry: join(PROJECT_ROOT, FUNCTION_ENTRIES[name]),
      handler: 'handler',
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
      description: FUNCTION_DESCRIPTIONS[name],
      runtime: LAMBDA_RUNTIME,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize,
      // A workload's break-glass revoke may prove many leases in one invocation, like a reaper run.
      timeout: name === 'reaper' || name === 'operator' ? props.reaperTimeout : props.functionTimeout,
      tracing: props.tracing ? lambda.Tracing.ACTIVE : lambda.Tracing.DISABLED,
      role,
      logGroup,
      environment: props.environment,
      // None by default: a reservation fails the deploy in accounts with the default low
      // concurrency quota. The reaper keeps itself to one run at a time with the ledger's lock.
      ...(props.reservedConcurrency[name] !== undefined ? { reservedConcurrentExecutions: props.reservedConcurrency[name] } : {}),
      ...(name === 'reaper'
        ? {
            // A failed run is covered by the next scheduled one: no retry (it would overlap), the
            // failure recorded in a queue that alarms like the dead-letter queues.
            retryAttempts: 0,
            onFailure: new FailureQueue(props.reaperFailures),
          }
        : {}),
      ...(vpcAttachment ?? {}),
      bundling: {
        // Never Docker: the local esbuild from package.json bundles, offline.
        forceDockerBundling: false,
        minify: esbuild.minify,
        sourceMap: true,
        sourcesContent: false,
        format: OutputFormat.ESM,
        target: esbuild.target,
        mainFields: esbuild.mainFields,
        banner: esbuild.banner,
        externalModules: esbuild.external,
        define: esbuild.define,
      },
    });
    if (props.tracing) {
      // CDK adds the X-Ray grant of `tracing: ACTIVE` to the role's default policy.
      Validations.of(role).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'xray:PutTraceSegments and xray:PutTelemetryRecords (active tracing) support no resource-level permissions.',
      });
    }
    functions[name] = fn;
    roles[name] = role;
    attachFunctionPolicy(scope, name, role, props.permissions);
  }
  // Any function may be the one that verifies a revocation and must read the old secret.
  const brokerPrincipals = Fn.join(
    ',',
    Object.values(roles).map((r) => r.roleArn),
  );
  for (const fn of Object.values(functions)) fn.addEnvironment(ENV.brokerPrincipalArns, brokerPrincipals);

  for (const [name, queue] of Object.entries(FUNCTION_QUEUES) as [TaskLeaseFunctionName, WorkQueueName][]) {
    functions[name].addEventSource(
      new SqsEventSource(props.queues[queue], {
        batchSize: props.batchSize,
        reportBatchItemFailures: true,
        maxConcurrency: props.maxConcurrency,
      }),
    );
  }
  return { functions, roles };
}

/** The environment every function gets (shared/runtime/env.ts); the broker principals are added once the roles exist. */
export function functionEnvironment(values: {
  tableName: string;
  eventBusName: string;
  configJson: string;
  keyArn: string;
  reverifyQueueUrl: string;
  verifyDeadline: Duration;
  serviceName: string;
}): Record<string, string> {
  return {
    [ENV.tableName]: values.tableName,
    [ENV.eventBusName]: values.eventBusName,
    [ENV.config]: values.configJson,
    [ENV.secretsKmsKeyId]: values.keyArn,
    [ENV.reverifyQueueUrl]: values.reverifyQueueUrl,
    [ENV.verifyDeadlineMs]: String(values.verifyDeadline.toMilliseconds()),
    POWERTOOLS_SERVICE_NAME: values.serviceName,
    POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    NODE_OPTIONS: '--enable-source-maps',
  };
}

function attachToVpc(
  scope: Construct,
  settings: TaskLeaseVpcSettings,
): Pick<lambda.FunctionProps, 'vpc' | 'vpcSubnets' | 'securityGroups'> {
  const vpc = ec2.Vpc.fromVpcAttributes(scope, 'Vpc', {
    vpcId: settings.vpcId,
    // Never read: the subnets are selected explicitly below. (stack.availabilityZones would need
    // an AWS lookup for environment-specific stacks, and synth must work offline.)
    availabilityZones: ['unused-subnets-are-explicit'],
  });
  return {
    vpc,
    vpcSubnets: {
      subnets: settings.subnetIds.map((id, i) => {
        const subnet = ec2.Subnet.fromSubnetId(scope, `Subnet${i}`, id);
        Validations.of(subnet).acknowledge({
          id: 'Annotation::@aws-cdk/aws-ec2:noSubnetRouteTableId',
          reason: 'The subnets are only handed to Lambda; nothing reads their route table.',
        });
        return subnet;
      }),
    },
    securityGroups: settings.securityGroupIds.map((id, i) =>
      ec2.SecurityGroup.fromSecurityGroupId(scope, `SecurityGroup${i}`, id, { mutable: false }),
    ),
  };
}

function checkEnvironmentSize(environment: Record<string, string>): void {
  // Tokens (table name, ARNs) resolve to at most a few hundred bytes; count them generously.
  const size = Object.entries(environment).reduce(
    (n, [k, v]) => n + Buffer.byteLength(k) + (Token.isUnresolved(v) ? 256 : Buffer.byteLength(v)),
    0,
  );
  if (size > LAMBDA_ENV_MAX_BYTES) {
    throw new Error(
      `the functions' environment would be ~${size} bytes, over Lambda's ${LAMBDA_ENV_MAX_BYTES}-byte limit; the config (TASKLEASE_CONFIG) is too large: move trust bundles to bundle.url/ssmParameter and shorten the policy`,
    );
  }
}

/** EventBridge Scheduler rates are whole minutes, at least one: the reaper interval rounded up. */
export function reaperIntervalOf(scope: Construct, reaperIntervalSeconds: number): Duration {
  const interval = Duration.minutes(Math.max(1, Math.ceil(reaperIntervalSeconds / 60)));
  if (interval.toSeconds() !== reaperIntervalSeconds) {
    Annotations.of(scope).addInfo(
      `settings.reaperIntervalSeconds (${reaperIntervalSeconds}) rounded up to ${interval.toMinutes()} minute(s): EventBridge Scheduler rates are whole minutes`,
    );
  }
  return interval;
}

/** The reaper's EventBridge Scheduler rate, through a role that may invoke only the reaper. */
export function scheduleReaper(scope: Construct, reaper: lambda.Function, interval: Duration): scheduler.Schedule {
  const role = new iam.Role(scope, 'ReaperSchedulerRole', {
    description: 'tasklease: EventBridge Scheduler invokes the reaper',
    assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
      conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
    }),
  });
  const schedule = new scheduler.Schedule(scope, 'ReaperSchedule', {
    description: 'tasklease: run the reaper',
    schedule: scheduler.ScheduleExpression.rate(interval),
    // A missed run is covered by the next one; retries would only overlap with it.
    // Scheduler invokes asynchronously: the function's own async config (no retry, failures to a
    // queue) applies to each run.
    target: new schedulerTargets.LambdaInvoke(reaper, { role, retryAttempts: 0, maxEventAge: interval }),
  });
  Validations.of(role).acknowledge({
    id: `AwsSolutions-IAM5[Resource::<${Stack.of(scope).getLogicalId(reaper.node.defaultChild as lambda.CfnFunction)}.Arn>:*]`,
    reason:
      "CDK's grantInvoke also covers the reaper's versions and aliases (<reaper ARN>:*); the wildcard is a qualifier of this one function, nothing else.",
  });
  return schedule;
}
