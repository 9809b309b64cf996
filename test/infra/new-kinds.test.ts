import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleNeeds } from '../../infra/bundling.ts';
import { configFrom, identityStatements, list, synth } from './helpers.ts';
import type { Synthesized } from './helpers.ts';

/*
 * The construct takes a config that uses the mysql, redis and rabbitmq kinds (issue 16): synth
 * passes cdk-nag, each kind's admin secret is readable by the functions and nothing else of
 * Secrets Manager is, and their bundles keep those kinds (the example config's leave them out).
 */
const SECRET = (name: string) => `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${name}-AbCdEf`;
const CONFIG = `
audience: tasklease
trustDomains:
  prod.example.org: { bundle: { url: https://spire.example.org/bundle } }
targets:
  orders-mysql:
    kind: mysql
    settings: { host: orders.cluster-abc.eu-west-1.rds.amazonaws.com, user: tasklease_admin, passwordSecret: '${SECRET('orders-mysql/admin')}' }
    access:
      read: { grants: [{ privileges: [SELECT], on: 'orders.*' }] }
  cache:
    kind: redis
    settings: { host: cache.abc.euw1.cache.amazonaws.com, tls: true, user: tasklease, passwordSecret: '${SECRET('cache/admin')}' }
    access:
      read: { keys: ['%R~orders:*'], commands: ['+@read'] }
  events-mq:
    kind: rabbitmq
    settings:
      managementUrl: https://mq.internal:15671
      amqpUrl: amqps://mq.internal:5671
      adminUser: tasklease
      adminPasswordSecret: '${SECRET('events-mq/admin')}'
    access:
      send: { vhosts: { '/': { configure: '^$', write: '^orders$', read: '^$' } } }
rules:
  - id: etl
    spiffeId: spiffe://prod.example.org/etl/*
    grants: [orders-mysql.read, cache.read, events-mq.send]
    maxLeaseSeconds: 900
    awsPrincipal: arn:aws:iam::123456789012:role/etl-workers
`;

let s: Synthesized;
beforeAll(() => {
  s = synth({ config: configFrom(CONFIG), bundle: false });
}, 120_000);
afterAll(() => s?.cleanup());

describe('a stack whose targets are mysql, redis and rabbitmq', () => {
  it('synthesizes with cdk-nag passing', () => {
    expect(s.report.pluginReports.filter((p) => p.conclusion !== 'success')).toEqual([]);
    expect(Object.keys(s.template.findResources('AWS::Lambda::Function'))).toHaveLength(5);
  });

  it('lets the functions read exactly the three admin secrets, no other secret by that action', () => {
    const reads = identityStatements(s.template)
      .map((x) => x.statement)
      .filter((st) => list(st.Action).includes('secretsmanager:GetSecretValue') && st.Effect === 'Allow');
    const resources = new Set(reads.flatMap((st) => list(st.Resource as string | string[])).map((r) => JSON.stringify(r)));
    for (const name of ['orders-mysql/admin', 'cache/admin', 'events-mq/admin']) {
      expect(
        [...resources].some((r) => r.includes(`${name}-AbCdEf`)),
        name,
      ).toBe(true);
    }
    // Besides the admin secrets, only the delivered secrets (tasklease/*) are readable.
    for (const r of resources) expect(r, r).toMatch(/(orders-mysql|cache|events-mq)\/admin|tasklease\//);
  });

  it('bundles the kinds the config uses', () => {
    const config = configFrom(CONFIG);
    const { unusedKinds } = bundleNeeds('taskStarted', config, true);
    for (const kind of ['mysql', 'redis', 'rabbitmq']) expect(unusedKinds).not.toContain(kind);
    expect([...unusedKinds].sort()).toEqual(['aws-role', 'postgres']);
  });
});
