import { Aws } from 'aws-cdk-lib';
import type { CfnResource } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DETAIL_TYPES, EVENT_SOURCE } from '../../shared/events/schemas.ts';
import type { TaskLease, TaskLeaseFunctionName } from '../../infra/task-lease.ts';
import type { TaskLeaseStack } from '../../infra/stack.ts';
import { identityStatements, list, loadFixtureConfig, synth } from './helpers.ts';
import type { Json, Statement, Synthesized } from './helpers.ts';

// The bus's resource policy (issue 12): engines put only the input detail-types, only the broker's
// roles put output detail-types with source `tasklease`, and explicit denies keep a broad identity
// policy in the account (an admin's events:*) from overriding either. Each statement is asserted
// as it appears in the template, then the whole policy is evaluated for the attacks it stops.

let s: Synthesized;
let stack: TaskLeaseStack;
let tl: TaskLease;
let engine: iam.Role;
const PARTNER_ACCOUNT = '444455556666';
// The broker's roles: every function's, the break-glass operator's included (it publishes Lease Revoked).
const FUNCTIONS: TaskLeaseFunctionName[] = ['taskStarted', 'taskEnded', 'reverify', 'reaper', 'operator'];
const INPUT = [DETAIL_TYPES.taskStarted, DETAIL_TYPES.taskEnded];
const OUTPUT = [DETAIL_TYPES.leaseIssued, DETAIL_TYPES.leaseDenied, DETAIL_TYPES.leaseRevoked, DETAIL_TYPES.revocationFailed];

const r = (v: unknown): unknown => stack.resolve(v);
const logicalId = (c: { node: { defaultChild?: unknown } }): string => stack.getLogicalId(c.node.defaultChild as CfnResource);

beforeAll(async () => {
  s = synth({
    config: await loadFixtureConfig(),
    bundle: false,
    extend: (st) => {
      const role = (name: string) => new iam.Role(st, name, { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
      engine = role('Engine');
      st.taskLease.grantPutTaskEvents(engine);
      st.taskLease.grantPutTaskEvents(new iam.AccountPrincipal(PARTNER_ACCOUNT));
    },
  });
  stack = s.stack;
  tl = stack.taskLease;
}, 120_000);
afterAll(() => s?.cleanup());

interface BusPolicy {
  logicalId: string;
  dependsOn: string[];
  statement: Statement;
}

function busPolicies(): BusPolicy[] {
  return Object.entries(s.template.findResources('AWS::Events::EventBusPolicy')).map(([logicalId, res]) => ({
    logicalId,
    dependsOn: list(res.DependsOn as string | string[] | undefined),
    statement: (res.Properties as { Statement: Statement }).Statement,
  }));
}
const bySid = (sid: string): BusPolicy | undefined => busPolicies().find((p) => p.statement.Sid === `cdk-${sid}`);
const brokerRoleArns = (): unknown[] => FUNCTIONS.map((f) => r(tl.roles[f].roleArn));

describe('the bus resource policy, statement by statement', () => {
  it('TaskEventProducers: this account may put only Task Started / Task Ended (logical id unchanged)', () => {
    expect(bySid('TaskEventProducers')).toEqual({
      // The id the statement had before it gained its condition: CloudFormation updates it in place.
      logicalId: 'TaskLeaseBuscdkTaskEventProducers4DF581F2',
      dependsOn: [],
      statement: {
        Sid: 'cdk-TaskEventProducers',
        Effect: 'Allow',
        Action: 'events:PutEvents',
        Principal: { AWS: r(`arn:${Aws.PARTITION}:iam::${Aws.ACCOUNT_ID}:root`) },
        Resource: r(tl.bus.eventBusArn),
        Condition: { 'ForAllValues:StringEquals': { 'events:detail-type': INPUT } },
      },
    });
  });

  it('BrokerOutputEvents: the five function roles may put the output detail-types, only with source tasklease', () => {
    expect(bySid('BrokerOutputEvents')?.statement).toEqual({
      Sid: 'cdk-BrokerOutputEvents',
      Effect: 'Allow',
      Action: 'events:PutEvents',
      Principal: { AWS: brokerRoleArns() },
      Resource: r(tl.bus.eventBusArn),
      Condition: { 'ForAllValues:StringEquals': { 'events:source': [EVENT_SOURCE], 'events:detail-type': OUTPUT } },
    });
  });

  it('OnlyBrokerPutsOutputEvents: an explicit Deny of the output detail-types for every principal but the broker roles', () => {
    expect(bySid('OnlyBrokerPutsOutputEvents')?.statement).toEqual({
      Sid: 'cdk-OnlyBrokerPutsOutputEvents',
      Effect: 'Deny',
      Action: 'events:PutEvents',
      Principal: '*',
      Resource: r(tl.bus.eventBusArn),
      Condition: { 'ForAnyValue:StringEquals': { 'events:detail-type': OUTPUT }, ArnNotEquals: { 'aws:PrincipalArn': brokerRoleArns() } },
    });
  });

  it('OnlyBrokerUsesBrokerSource: an explicit Deny of source tasklease for every principal but the broker roles', () => {
    expect(bySid('OnlyBrokerUsesBrokerSource')?.statement).toEqual({
      Sid: 'cdk-OnlyBrokerUsesBrokerSource',
      Effect: 'Deny',
      Action: 'events:PutEvents',
      Principal: '*',
      Resource: r(tl.bus.eventBusArn),
      Condition: {
        'ForAnyValue:StringEquals': { 'events:source': [EVENT_SOURCE] },
        ArnNotEquals: { 'aws:PrincipalArn': brokerRoleArns() },
      },
    });
  });

  it('OnlyContractDetailTypes: an explicit Deny, for everyone, of any detail-type outside the contract', () => {
    expect(bySid('OnlyContractDetailTypes')?.statement).toEqual({
      Sid: 'cdk-OnlyContractDetailTypes',
      Effect: 'Deny',
      Action: 'events:PutEvents',
      Principal: '*',
      Resource: r(tl.bus.eventBusArn),
      Condition: { 'ForAnyValue:StringNotEquals': { 'events:detail-type': [...INPUT, ...OUTPUT] } },
    });
  });

  it('are applied one at a time after the producers statements (one policy document per bus)', () => {
    const chain = ['BrokerOutputEvents', 'OnlyBrokerPutsOutputEvents', 'OnlyBrokerUsesBrokerSource', 'OnlyContractDetailTypes'];
    const partner = bySid('TaskEventProducer1');
    expect(partner?.statement.Principal).toEqual({ AWS: r(`arn:${Aws.PARTITION}:iam::${PARTNER_ACCOUNT}:root`) });
    expect(partner?.statement.Condition).toEqual({ 'ForAllValues:StringEquals': { 'events:detail-type': INPUT } });
    // The construct's statements are added before the user's grants, so the chain starts at the producers.
    let previous = bySid('TaskEventProducers')?.logicalId;
    for (const sid of chain) {
      const p = bySid(sid);
      expect(p?.dependsOn, sid).toEqual([previous]);
      previous = p?.logicalId;
    }
    expect(busPolicies()).toHaveLength(6);
  });

  it('the broker’s own identity policy publishes only output detail-types with source tasklease', () => {
    for (const fn of FUNCTIONS) {
      const publish = identityStatements(s.template).filter(
        (x) => x.roles.includes(logicalId(tl.roles[fn])) && list(x.statement.Action).includes('events:PutEvents'),
      );
      expect(publish.map((x) => x.statement)).toEqual([
        {
          Sid: 'PublishOutputEvents',
          Effect: 'Allow',
          Action: 'events:PutEvents',
          Resource: r(tl.bus.eventBusArn),
          Condition: { 'ForAllValues:StringEquals': { 'events:source': [EVENT_SOURCE], 'events:detail-type': OUTPUT } },
        },
      ]);
    }
  });
});

// ── The policy evaluated ─────────────────────────────────────────────────────────────────────
// IAM's evaluation for one PutEvents entry (EventBridge authorizes each entry on its own): an
// explicit Deny in any applicable policy wins; otherwise a same-account principal needs an Allow
// in its identity policy or the bus policy, a principal of another account needs both. Values
// are compared as resolved template JSON, so a role's ARN is its Fn::GetAtt.

interface Caller {
  /** aws:PrincipalArn as the template would resolve it. */
  principalArn: unknown;
  account: 'own' | typeof PARTNER_ACCOUNT;
  /** The caller's identity policy statements (template form). */
  identity: Statement[];
}
interface Entry {
  source: string;
  detailType: string;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
const ROOT = (account: Caller['account']) =>
  r(account === 'own' ? `arn:${Aws.PARTITION}:iam::${Aws.ACCOUNT_ID}:root` : `arn:${Aws.PARTITION}:iam::${account}:root`);

function conditionHolds(condition: Json | undefined, ctx: Record<string, unknown>): boolean {
  for (const [qualified, keys] of Object.entries(condition ?? {})) {
    // One entry's values: ForAllValues/ForAnyValue over a single value are the operator itself,
    // except for a missing key (ForAllValues holds over the empty set, ForAnyValue does not).
    const [set, operator] = qualified.includes(':') ? (qualified.split(':') as [string, string]) : [undefined, qualified];
    for (const [key, expected] of Object.entries(keys as Json)) {
      const values = list(expected as unknown);
      const actual = ctx[key];
      if (actual === undefined && set === 'ForAllValues') continue;
      if (actual === undefined && set === 'ForAnyValue') return false;
      const matches = actual !== undefined && values.some((v) => same(v, actual));
      if (operator === 'StringEquals' || operator === 'ArnEquals') {
        if (!matches) return false;
      } else if (operator === 'StringNotEquals' || operator === 'ArnNotEquals') {
        if (matches) return false; // a missing key satisfies a negated operator
      } else {
        throw new Error(`the evaluator does not know ${qualified}`);
      }
    }
  }
  return true;
}

function applies(st: Statement, ctx: Record<string, unknown>, resource: unknown): boolean {
  const actions = list(st.Action);
  const actionOk = actions.some((a) => a === 'events:PutEvents' || a === 'events:*' || a === '*');
  const resourceOk = list(st.Resource as unknown).some((res) => res === '*' || same(res, resource));
  return actionOk && resourceOk && conditionHolds(st.Condition, ctx);
}

/**
 * How a bus statement's Principal names the caller: directly (its own ARN, or `*`), or through its
 * account's root, which delegates to the account: the caller's identity policy must then allow too.
 */
function principalMatch(principal: unknown, caller: Caller): 'direct' | 'account' | undefined {
  if (principal === '*') return 'direct';
  const aws = list((principal as { AWS?: unknown }).AWS);
  if (aws.some((p) => p === '*' || same(p, caller.principalArn))) return 'direct';
  return aws.some((p) => same(p, ROOT(caller.account))) ? 'account' : undefined;
}

function decide(caller: Caller, entry: Entry): 'allowed' | 'explicit-deny' | 'no-allow' {
  const ctx = { 'events:source': entry.source, 'events:detail-type': entry.detailType, 'aws:PrincipalArn': caller.principalArn };
  const bus = r(tl.bus.eventBusArn);
  const resourcePolicy = busPolicies().map((p) => p.statement);
  const all = [...caller.identity, ...resourcePolicy.filter((st) => principalMatch(st.Principal, caller))];
  if (all.some((st) => st.Effect === 'Deny' && applies(st, ctx, bus))) return 'explicit-deny';
  const byIdentity = caller.identity.some((st) => st.Effect === 'Allow' && applies(st, ctx, bus));
  const allowing = resourcePolicy
    .filter((st) => st.Effect === 'Allow' && applies(st, ctx, bus))
    .map((st) => principalMatch(st.Principal, caller));
  const byResource = allowing.includes('direct') || (allowing.includes('account') && byIdentity);
  const allowed = caller.account === 'own' ? byIdentity || byResource : byIdentity && byResource;
  return allowed ? 'allowed' : 'no-allow';
}

const identityOf = (role: iam.IRole): Statement[] =>
  identityStatements(s.template)
    .filter((x) => x.roles.includes(logicalId(role as iam.Role)))
    .map((x) => x.statement);
const callers = () => ({
  engine: { principalArn: r(engine.roleArn), account: 'own', identity: identityOf(engine) } as Caller,
  // Someone in the account with a broad identity policy, as an administrator has.
  admin: {
    principalArn: r(`arn:${Aws.PARTITION}:iam::${Aws.ACCOUNT_ID}:role/admin`),
    account: 'own',
    identity: [{ Effect: 'Allow', Action: 'events:*', Resource: '*' }],
  } as Caller,
  broker: { principalArn: r(tl.roles.taskEnded.roleArn), account: 'own', identity: identityOf(tl.roles.taskEnded) } as Caller,
  operator: { principalArn: r(tl.roles.operator.roleArn), account: 'own', identity: identityOf(tl.roles.operator) } as Caller,
  // The partner's own account allows it everything; the bus policy must still say yes.
  partner: {
    principalArn: `arn:aws:iam::${PARTNER_ACCOUNT}:role/engine`,
    account: PARTNER_ACCOUNT,
    identity: [{ Effect: 'Allow', Action: 'events:*', Resource: '*' }],
  } as Caller,
});

describe('the bus policy, evaluated for who may put what', () => {
  it('a spoofed Lease Revoked is refused with an explicit Deny, even for an admin whose identity policy allows events:*', () => {
    const c = callers();
    for (const caller of [c.admin, c.engine, c.partner]) {
      for (const detailType of OUTPUT) {
        expect(decide(caller, { source: EVENT_SOURCE, detailType }), `${detailType}`).toBe('explicit-deny');
        expect(decide(caller, { source: 'my.engine', detailType })).toBe('explicit-deny');
      }
    }
  });

  it('nobody but the broker may use source tasklease, not even on an input detail-type', () => {
    const c = callers();
    for (const caller of [c.admin, c.engine, c.partner]) {
      expect(decide(caller, { source: EVENT_SOURCE, detailType: DETAIL_TYPES.taskEnded })).toBe('explicit-deny');
    }
  });

  it('an unknown detail-type is refused for everyone, the broker and admins included', () => {
    const c = callers();
    for (const caller of Object.values(c)) {
      for (const detailType of ['Task Started ', 'task started', 'Lease Stolen']) {
        expect(decide(caller, { source: 'my.engine', detailType }), detailType).toBe('explicit-deny');
      }
    }
  });

  it('engines still put Task Started / Task Ended: a role with grantPutTaskEvents, and the partner account through the bus policy', () => {
    const c = callers();
    for (const detailType of INPUT) {
      expect(decide(c.engine, { source: 'my.engine', detailType })).toBe('allowed');
      expect(decide(c.partner, { source: 'my.engine', detailType })).toBe('allowed');
    }
  });

  it('the broker (the operator function included) puts its output events with source tasklease, and nothing else', () => {
    const { broker, operator } = callers();
    for (const caller of [broker, operator]) {
      for (const detailType of OUTPUT) expect(decide(caller, { source: EVENT_SOURCE, detailType })).toBe('allowed');
      expect(decide(caller, { source: 'my.engine', detailType: DETAIL_TYPES.leaseIssued })).toBe('no-allow');
      expect(decide(caller, { source: EVENT_SOURCE, detailType: DETAIL_TYPES.taskEnded })).toBe('no-allow');
    }
  });
});
