import { App, CfnOutput, Stack, Validations } from 'aws-cdk-lib';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { AppProps, StackProps } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { Construct } from 'constructs';
import type { TaskLeaseConfig } from '../shared/policy/config.ts';
import { TaskLease } from './task-lease.ts';
import type { TaskLeaseProps } from './task-lease.ts';

export interface TaskLeaseStackProps extends StackProps {
  /** The parsed tasklease config. */
  readonly config: TaskLeaseConfig;
  /** Further construct props (bus name, VPC, concurrency, …). @default - the construct's defaults */
  readonly taskLease?: Omit<TaskLeaseProps, 'config'>;
  /**
   * ARN of an existing SNS topic the alarms notify (imported into the stack).
   * @default - `taskLease.alarmTopic`, else alarms without actions
   */
  readonly alarmTopicArn?: string;
}

/** The deployable unit: one TaskLease construct, and outputs for what a user wires to it (not exported: read them with `aws cloudformation describe-stacks`). */
export class TaskLeaseStack extends Stack {
  readonly taskLease: TaskLease;

  constructor(scope: Construct, id: string, props: TaskLeaseStackProps) {
    super(scope, id, { description: 'tasklease: task-scoped credentials with proven revocation', ...props });
    const alarmTopic = props.alarmTopicArn ? sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn) : props.taskLease?.alarmTopic;
    this.taskLease = new TaskLease(this, 'TaskLease', { ...props.taskLease, ...(alarmTopic ? { alarmTopic } : {}), config: props.config });
    const tl = this.taskLease;
    const outputs: Record<string, [string, string]> = {
      BusName: [tl.bus.eventBusName, 'EventBridge bus workflow engines put Task Started / Task Ended on'],
      BusArn: [tl.bus.eventBusArn, 'ARN of that bus (engine roles need events:PutEvents on it)'],
      TaskStartedRoleArn: [
        tl.roles.taskStarted.roleArn,
        'Role of the task-started function: it issues, so a target role tasklease assumes must trust this role',
      ],
      LedgerTableName: [tl.table.tableName, 'DynamoDB ledger table (tasklease report --table)'],
      OperatorFunctionName: [
        tl.functions.operator.functionName,
        'Break-glass function: tasklease revoke --function <this> (callers need lambda:InvokeFunction on it)',
      ],
      KeyArn: [tl.key.keyArn, 'KMS key of the queues, the ledger, the bus and delivered secrets'],
    };
    for (const [id, [value, description]] of Object.entries(outputs)) new CfnOutput(this, id, { value, description });
  }
}

export interface BuildAppOptions {
  config: TaskLeaseConfig;
  appProps?: AppProps;
  stackId?: string;
  stackProps?: Omit<TaskLeaseStackProps, 'config'>;
}

/** The app as `cdk synth` builds it: the stack plus cdk-nag's AwsSolutions checks as a validation plugin. */
export function buildApp(options: BuildAppOptions): { app: App; stack: TaskLeaseStack } {
  const app = new App(options.appProps);
  const stack = new TaskLeaseStack(app, options.stackId ?? 'TaskLease', { ...options.stackProps, config: options.config });
  // cdk-nag 3 runs as a policy validation plugin: synth fails on any unacknowledged error.
  // Acknowledgements are also written into the template metadata (cdk_nag), an audit trail next to the resources.
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { writeSuppressionsToCloudFormation: true }));
  return { app, stack };
}
