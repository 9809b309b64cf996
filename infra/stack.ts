import { App, Stack, Validations } from 'aws-cdk-lib';
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

/** The deployable unit: one TaskLease construct. */
export class TaskLeaseStack extends Stack {
  readonly taskLease: TaskLease;

  constructor(scope: Construct, id: string, props: TaskLeaseStackProps) {
    super(scope, id, { description: 'tasklease: task-scoped credentials with proven revocation', ...props });
    const alarmTopic = props.alarmTopicArn ? sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn) : props.taskLease?.alarmTopic;
    this.taskLease = new TaskLease(this, 'TaskLease', { ...props.taskLease, ...(alarmTopic ? { alarmTopic } : {}), config: props.config });
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
