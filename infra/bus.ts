import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { INPUT_DETAIL_TYPES, OUTPUT_DETAIL_TYPES, ROUTES } from '../shared/events/routing.ts';
import type { RouteName } from '../shared/events/routing.ts';
import { DETAIL_TYPES, EVENT_SOURCE } from '../shared/events/schemas.ts';
import { pascal } from './names.ts';

export { INPUT_DETAIL_TYPES, OUTPUT_DETAIL_TYPES } from '../shared/events/routing.ts';

export interface BusBuilderProps {
  /** Undefined: CDK derives a name unique to the stack and path, so two stacks never collide. */
  readonly busName?: string;
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
    ...(props.busName ? { eventBusName: props.busName } : {}),
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
        // Producers put the input events only; output events are the broker's (restrictBusToBroker).
        conditions: { 'ForAllValues:StringEquals': { 'events:detail-type': INPUT_DETAIL_TYPES } },
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

/**
 * The bus policy's half that needs the broker's roles (they exist only after the functions): only
 * they may put the output detail-types, only with source `tasklease`, and nobody may put a
 * detail-type outside the contract. The denies are explicit so that no identity policy in this
 * account (an admin's `events:*`) can override them: an explicit Deny in a resource policy wins
 * over any Allow. EventBridge authorizes each entry of a PutEvents call on its own
 * (`events:source`, `events:detail-type` are per entry); a refused entry comes back failed with
 * its error code, the others of the batch go through. The IAM catalogue types both keys as
 * multivalued (ArrayOfString), and a plain StringEquals never matches a multivalued key in a
 * policy evaluator that follows it (iam-simulate, test/aws-account): allows use ForAllValues,
 * denies ForAnyValue, which mean the same for one value and the right thing for several.
 */
export function restrictBusToBroker(bus: events.EventBus, brokerRoles: readonly iam.IRole[]): void {
  const notBroker = { ArnNotEquals: { 'aws:PrincipalArn': brokerRoles.map((r) => r.roleArn) } };
  const everyone = [new iam.StarPrincipal()];
  const statements = [
    new iam.PolicyStatement({
      sid: 'BrokerOutputEvents',
      principals: brokerRoles.map((r) => new iam.ArnPrincipal(r.roleArn)),
      actions: ['events:PutEvents'],
      resources: [bus.eventBusArn],
      conditions: { 'ForAllValues:StringEquals': { 'events:source': [EVENT_SOURCE], 'events:detail-type': OUTPUT_DETAIL_TYPES } },
    }),
    new iam.PolicyStatement({
      sid: 'OnlyBrokerPutsOutputEvents',
      effect: iam.Effect.DENY,
      principals: everyone,
      actions: ['events:PutEvents'],
      resources: [bus.eventBusArn],
      conditions: { 'ForAnyValue:StringEquals': { 'events:detail-type': OUTPUT_DETAIL_TYPES }, ...notBroker },
    }),
    // A consumer that trusts source `tasklease` (a rule on it) must not see it from anyone else.
    new iam.PolicyStatement({
      sid: 'OnlyBrokerUsesBrokerSource',
      effect: iam.Effect.DENY,
      principals: everyone,
      actions: ['events:PutEvents'],
      resources: [bus.eventBusArn],
      conditions: { 'ForAnyValue:StringEquals': { 'events:source': [EVENT_SOURCE] }, ...notBroker },
    }),
    // An unknown detail-type would match no rule and vanish: refuse it at PutEvents, with a reason.
    new iam.PolicyStatement({
      sid: 'OnlyContractDetailTypes',
      effect: iam.Effect.DENY,
      principals: everyone,
      actions: ['events:PutEvents'],
      resources: [bus.eventBusArn],
      conditions: { 'ForAnyValue:StringNotEquals': { 'events:detail-type': Object.values(DETAIL_TYPES) } },
    }),
  ];
  // The bus has one policy document that CloudFormation edits statement by statement: one at a time.
  let previous: Construct | undefined = bus.node.children.filter((c) => c instanceof events.EventBusPolicy).at(-1);
  for (const statement of statements) {
    const current = bus.addToResourcePolicy(statement).policyDependable;
    if (!(current instanceof Construct)) continue;
    if (previous) current.node.addDependency(previous);
    previous = current;
  }
}
