/** The tasklease config deployed into the emulated account, and the names the tests share with it. */

export const ACCOUNT = '123456789012';
export const REGION = 'us-east-1';
export const STACK_NAME = 'TaskLease';
export const TRUST_DOMAIN = 'emulated.tasklease.test';
export const AUDIENCE = 'tasklease';
/** The postgres target's admin password lives here (the test creates it in the emulator). */
export const ADMIN_SECRET_NAME = 'tasklease-test/orders-db-admin';
/** The aws-role target: a role in the emulated account that the task-started role may assume. */
export const TARGET_ROLE_NAME = 'tasklease-target-exports';
/** Workloads' own principal (rule awsPrincipal): the only one a delivered secret admits. */
export const WORKLOAD_ROLE_NAME = 'etl-workers';
/** An engine role that may put only `Task Started` (not `Task Ended`) on the bus. */
export const STARTER_ENGINE_ROLE_NAME = 'engine-starter-only';
/** A role of the same account with no business reading anyone's secret. */
export const STRANGER_ROLE_NAME = 'stranger';

export const roleArn = (name: string) => `arn:aws:iam::${ACCOUNT}:role/${name}`;

export interface HarnessPorts {
  postgres: number;
  bundle: number;
}

export function emulatedConfig(ports: HarnessPorts) {
  return {
    audience: AUDIENCE,
    trustDomains: {
      // Served over plain HTTP on loopback (the config accepts http:// only there).
      [TRUST_DOMAIN]: { bundle: { url: `http://127.0.0.1:${ports.bundle}/` } },
    },
    targets: {
      'orders-db': {
        kind: 'postgres',
        settings: { host: '127.0.0.1', port: ports.postgres, database: 'orders', user: 'postgres', passwordSecret: ADMIN_SECRET_NAME },
        access: { read: { groupRole: 'orders_read' }, write: { groupRole: 'orders_write' } },
        maxConcurrency: 5,
      },
      exports: {
        kind: 'aws-role',
        settings: { roleArn: roleArn(TARGET_ROLE_NAME), maxSessionSeconds: 3600, probe: { action: 'iam:GetRole' } },
        access: {
          read: {
            sessionPolicy: {
              Statement: [{ Effect: 'Allow', Action: ['iam:GetRole', 's3:GetObject'], Resource: '*' }],
            },
          },
        },
      },
    },
    rules: [
      {
        id: 'etl',
        spiffeId: `spiffe://${TRUST_DOMAIN}/etl/*`,
        grants: ['orders-db.read', 'orders-db.write', 'exports.read'],
        maxLeaseSeconds: 900,
        awsPrincipal: roleArn(WORKLOAD_ROLE_NAME),
      },
    ],
    settings: { verifyDeadlineSeconds: 30, reaperIntervalSeconds: 60, openDebtObjectiveSeconds: 300 },
  };
}
