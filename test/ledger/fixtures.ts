import { randomUUID } from 'node:crypto';
import type { CredentialRecord, LeaseRecord } from '../../shared/lease/records.ts';

/** A fixed instant (2030-01-15T12:00:00Z) so day partitions and due times are predictable. */
export const T0 = Date.UTC(2030, 0, 15, 12);
export const MINUTE = 60_000;
export const DAY = 86_400_000;

export const WORKLOAD_A = 'spiffe://example.org/ns/etl/sa/loader';
export const WORKLOAD_B = 'spiffe://example.org/ns/web/sa/api';

export const taskId = (prefix = 'task'): string => `${prefix}-${randomUUID()}`;

export function minimalLease(id: string, overrides: Partial<LeaseRecord> = {}): LeaseRecord {
  return { taskId: id, state: 'issuing', grants: [{ target: 'orders-db', access: 'read' }], requestedAt: T0, ...overrides };
}

/** Every optional field set, so a round trip shows none is lost or renamed. */
export function fullLease(id: string): LeaseRecord {
  return {
    taskId: id,
    state: 'ending',
    workload: WORKLOAD_A,
    initiator: 'alice@example.org',
    workflow: { engine: 'step-functions', runId: 'run-42' },
    rule: 'etl-loader-read',
    grants: [
      { target: 'orders-db', access: 'read' },
      { target: 'orders-db', access: 'write' },
    ],
    requestedAt: T0,
    issuedAt: T0 + 1_000,
    expiresAt: T0 + 15 * MINUTE,
    endedAt: T0 + 5 * MINUTE,
    outcome: 'succeeded',
    tombstone: false,
    endRequested: true,
    denial: { code: 'policy-no-rule', message: 'no rule matched' },
    lockedUntil: T0 + 6 * MINUTE,
    nextCheckAt: T0 + 6 * MINUTE,
    taskToken: 'AQB8AAAAKgAAAAMAAAAAAAAAAe-sfn-callback-handle',
    closedAt: T0 + 7 * MINUTE,
  };
}

export function minimalCredential(id: string, overrides: Partial<CredentialRecord> = {}): CredentialRecord {
  return {
    taskId: id,
    grant: { target: 'orders-db', access: 'read' },
    target: 'orders-db',
    kind: 'postgres',
    externalId: 'tl_0123456789abcdef',
    state: 'intent',
    workload: WORKLOAD_A,
    intentAt: T0,
    verifyAttempts: 0,
    ...overrides,
  };
}

export function fullCredential(id: string): CredentialRecord {
  return {
    taskId: id,
    grant: { target: 'orders-db', access: 'write' },
    target: 'orders-db',
    kind: 'postgres',
    externalId: 'tl_fedcba9876543210',
    state: 'still-valid',
    workload: WORKLOAD_A,
    initiator: 'alice@example.org',
    workflow: { engine: 'step-functions', runId: 'run-42' },
    rule: 'etl-loader-read',
    intentAt: T0,
    issuedAt: T0 + 500,
    naturalExpiry: T0 + 15 * MINUTE,
    metadata: { roleOid: '16384', group: 'orders_write' },
    secretName: `tasklease/${id}/orders-db.write`,
    secretArn: `arn:aws:secretsmanager:eu-west-1:123456789012:secret:tasklease/${id}/orders-db.write-AbCdEf`,
    endedAt: T0 + 5 * MINUTE,
    revokeStartedAt: T0 + 5 * MINUTE + 10,
    revokedAt: T0 + 5 * MINUTE + 200,
    verifyAttempts: 3,
    trustDebtMs: 200,
    avoidedDebtMs: 10 * MINUTE - 200,
    lastError: 'TargetError: login still accepted',
    nextCheckAt: T0 + 6 * MINUTE,
  };
}
