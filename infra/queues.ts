import { Duration, Validations } from 'aws-cdk-lib';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import type { RouteName } from '../shared/events/routing.ts';

export type WorkQueueName = RouteName | 'reverify';
/** `delivery`: events the bus could not deliver; `reaper`: reaper runs that failed or were never invoked. */
export type DeadLetterQueueName = WorkQueueName | 'delivery' | 'reaper';

export interface QueuesBuilderProps {
  readonly key: kms.IKey;
  /** Of the work queues: long enough for a function to finish a batch. */
  readonly visibilityTimeout: Duration;
  readonly maxReceiveCount: number;
  readonly deadLetterRetention: Duration;
  readonly reverifyDelay: Duration;
}

export interface Queues {
  /** Work queues, keyed by route (`task-started`, `task-ended`) plus `reverify`. */
  queues: Record<WorkQueueName, sqs.Queue>;
  /** One dead-letter queue per work queue, plus `delivery` (events the bus could not deliver) and `reaper` (failed reaper runs). */
  deadLetterQueues: Record<DeadLetterQueueName, sqs.Queue>;
}

/** KMS-encrypted, TLS-only work queues, each redriving to its own dead-letter queue. */
export function buildQueues(scope: Construct, props: QueuesBuilderProps): Queues {
  const defaults = { encryption: sqs.QueueEncryption.KMS, encryptionMasterKey: props.key, enforceSSL: true } as const;
  const dlq = (name: string) => new sqs.Queue(scope, `${name}Dlq`, { ...defaults, retentionPeriod: props.deadLetterRetention });
  const deadLetterQueues = {
    'task-started': dlq('TaskStarted'),
    'task-ended': dlq('TaskEnded'),
    reverify: dlq('Reverify'),
    delivery: dlq('Delivery'),
    reaper: dlq('ReaperFailures'),
  };
  const workQueue = (name: string, deadLetterQueue: sqs.IQueue, extra: Partial<sqs.QueueProps> = {}) =>
    new sqs.Queue(scope, `${name}Queue`, {
      ...defaults,
      visibilityTimeout: props.visibilityTimeout,
      deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: props.maxReceiveCount },
      ...extra,
    });
  const queues = {
    'task-started': workQueue('TaskStarted', deadLetterQueues['task-started']),
    'task-ended': workQueue('TaskEnded', deadLetterQueues['task-ended']),
    reverify: workQueue('Reverify', deadLetterQueues.reverify, { deliveryDelay: props.reverifyDelay }),
  };
  Validations.of(deadLetterQueues.delivery).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason:
      'This queue is itself a dead-letter queue: the EventBridge rule targets send events they fail to deliver here (RuleTarget DeadLetterConfig), which AwsSolutions-SQS3 cannot see.',
  });
  Validations.of(deadLetterQueues.reaper).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason:
      "This queue is itself a dead-letter queue: the reaper's asynchronous-invocation failure destination (Lambda onFailure), which AwsSolutions-SQS3 cannot see.",
  });
  return { queues, deadLetterQueues };
}

/** SQS allows a visibility timeout of at most 12 hours. */
export function visibilityTimeoutFor(functionTimeout: Duration): Duration {
  return Duration.seconds(Math.min(43_200, functionTimeout.toSeconds() * 6));
}
