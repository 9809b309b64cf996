import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { ROUTES } from '../shared/events/routing.ts';
import type { RouteName } from '../shared/events/routing.ts';
import { pascal } from './names.ts';

export interface BusBuilderProps {
  readonly busName: string;
  readonly key: kms.IKey;
  /** Where the bus and the rules' targets put events they cannot deliver. */
  readonly deliveryDeadLetterQueue: sqs.Queue;
  /** The queue each route's rule delivers to. */
  readonly routeQueues: Record<RouteName, sqs.IQueue>;
  /** Principals the bus's resource policy lets put events (none: no policy); `producerPrincipals` builds them. */
  readonly producers: iam.IPrincipal[];
}

/** The accounts and principal ARNs allowed to put events; only the bus's own account when neither is given. */
export function producerPrincipals(
  accounts: readonly string[] | undefined,
  principalArns: readonly string[] | undefined,
  ownAccount: string,
): iam.IPrincipal[] {
  return [
    ...(accounts ?? (principalArns?.length ? [] : [ownAccount])).map((a) => new iam.AccountPrincipal(a)),
    ...(principalArns ?? []).map((arn) => new iam.ArnPrincipal(arn)),
  ];
}

export interface Bus {
  bus: events.EventBus;
  rules: Record<RouteName, events.Rule>;
}

/** The custom bus, its producers' resource policy, and one rule per route (by detail-type) to its queue. */
export function buildBus(scope: Construct, props: BusBuilderProps): Bus {
  const dlq = props.deliveryDeadLetterQueue;
  const bus = new events.EventBus(scope, 'Bus', {
    eventBusName: props.busName,
    description: 'tasklease: Task Started / Task Ended in, Lease Issued / Denied / Revoked out',
    kmsKey: props.key,
    deadLetterQueue: dlq,
  });
  // The bus's own dead-letter target (events it cannot encrypt or decrypt with the key).
  dlq.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'BusDeadLetters',
      principals: [new iam.ServicePrincipal('events.amazonaws.com')],
      actions: ['sqs:SendMessage'],
      resources: [dlq.queueArn],
      conditions: { ArnEquals: { 'aws:SourceArn': bus.eventBusArn } },
    }),
  );
  if (props.producers.length > 0) {
    bus.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'TaskEventProducers',
        principals: props.producers,
        actions: ['events:PutEvents'],
        resources: [bus.eventBusArn],
      }),
    );
  }
  const rules = {} as Record<RouteName, events.Rule>;
  for (const route of ROUTES) {
    rules[route.name] = new events.Rule(scope, `${pascal(route.name)}Rule`, {
      eventBus: bus,
      description: `tasklease: ${route.detailType} -> ${route.name} queue`,
      eventPattern: { detailType: [route.detailType] },
      targets: [
        new eventsTargets.SqsQueue(props.routeQueues[route.name], {
          deadLetterQueue: dlq,
          retryAttempts: 185,
          maxEventAge: Duration.hours(24),
        }),
      ],
    });
  }
  return { bus, rules };
}
