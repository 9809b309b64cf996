/** The tasklease config deployed into the emulated account, and the names the tests share with it. */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

export const ACCOUNT = '123456789012';
export const REGION = 'us-east-1';
export const STACK_NAME = 'TaskLease';
export const TRUST_DOMAIN = 'emulated.tasklease.test';
export const AUDIENCE = 'tasklease';
/** The postgres target's admin password lives here (the test creates it in the emulator). */
export const ADMIN_SECRET_NAME = 'tasklease-test/orders-db-admin';
/** The aws-role target (the example's): a role in the emulated account that the task-started role may assume. */
export const TARGET_ROLE_NAME = 'tasklease-exports';
export const AWS_ROLE_TARGET = 'exports-bucket';
export const POSTGRES_TARGET = 'orders-db';
/** Workloads' own principal (rule awsPrincipal): the only one a delivered secret admits. */
export const WORKLOAD_ROLE_NAME = 'etl-workers';
/** An engine role that may put only `Task Started` (not `Task Ended`) on the bus. */
export const STARTER_ENGINE_ROLE_NAME = 'engine-starter-only';
/** An engine role that puts both `Task Started` and `Task Ended` (the workflows' engine). */
export const ENGINE_ROLE_NAME = 'engine-workflows';
/** A role of the same account with no business reading anyone's secret. */
export const STRANGER_ROLE_NAME = 'stranger';

export const roleArn = (name: string) => `arn:aws:iam::${ACCOUNT}:role/${name}`;

export interface HarnessPorts {
  postgres: number;
  bundle: number;
}

/** The example config the README's deploy section starts from. */
export const EXAMPLE_CONFIG = new URL('../../examples/aws/tasklease.config.yaml', import.meta.url).pathname;
const EXAMPLE_TRUST_DOMAIN = 'example.org';

interface ExampleConfig {
  trustDomains: Record<string, { bundle: unknown; requireJti?: boolean }>;
  targets: Record<string, { kind: string; settings: Record<string, unknown> }>;
  rules: { spiffeId: string }[];
}

/**
 * examples/aws/tasklease.config.yaml with only its EDIT values replaced by this account's: the
 * trust domain and its bundle URL (served on loopback: the config accepts http:// only there),
 * the PostgreSQL target (an embedded PostgreSQL standing in for RDS, reached without a VPC and
 * without TLS), the admin secret. Everything else (the `url` bundle kind, requireJti off as for
 * SPIRE, the aws-role target's role, rules, lease limits, awsPrincipal roles) is the example's.
 */
export function emulatedConfig(ports: HarnessPorts): ExampleConfig {
  const config = parse(readFileSync(EXAMPLE_CONFIG, 'utf8')) as ExampleConfig;
  const domain = config.trustDomains[EXAMPLE_TRUST_DOMAIN];
  if (!domain) throw new Error(`${EXAMPLE_CONFIG}: no trust domain ${EXAMPLE_TRUST_DOMAIN}`);
  config.trustDomains = { [TRUST_DOMAIN]: { ...domain, bundle: { url: `http://127.0.0.1:${ports.bundle}/` } } };
  for (const rule of config.rules) rule.spiffeId = rule.spiffeId.replace(`spiffe://${EXAMPLE_TRUST_DOMAIN}/`, `spiffe://${TRUST_DOMAIN}/`);
  const pg = config.targets[POSTGRES_TARGET]!.settings;
  delete pg.vpc;
  delete pg.ssl;
  Object.assign(pg, { host: '127.0.0.1', port: ports.postgres, user: 'postgres', passwordSecret: ADMIN_SECRET_NAME });
  const role = config.targets[AWS_ROLE_TARGET]!.settings;
  if (role.roleArn !== roleArn(TARGET_ROLE_NAME))
    throw new Error(`${EXAMPLE_CONFIG}: ${AWS_ROLE_TARGET} is no longer ${roleArn(TARGET_ROLE_NAME)}`);
  return config;
}
