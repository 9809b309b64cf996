import type { DenialCode } from '../../shared/events/schemas.ts';
import type { CredentialRecord, LeaseRecord, LeaseWithCredentials } from '../../shared/lease/records.ts';

export const MINUTE = 60_000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;
/** Two days before the hour the test runs in: in the past, so a report run "now" sees it all. */
export const T0 = Math.floor(Date.now() / HOUR) * HOUR - 2 * DAY;
/** The "now" the in-process report is built at. */
export const NOW = T0 + 10 * MINUTE;
export const EXPIRY = 15 * MINUTE;

export const A = 'spiffe://example.org/etl/loader';
export const B = 'spiffe://example.org/web/api';

function lease(taskId: string, workload: string | undefined, requestedAt: number, extra: Partial<LeaseRecord> = {}): LeaseRecord {
  return {
    taskId,
    state: 'closed',
    workload,
    rule: 'r',
    grants: [{ target: 'orders-db', access: 'read' }],
    requestedAt,
    // A workflow's callback handle: must never reach a report or the page.
    taskToken: 'TASK-TOKEN-MUST-NOT-LEAK',
    ...extra,
  };
}

function cred(taskId: string, workload: string, target: string, access: string, t: Partial<CredentialRecord>): CredentialRecord {
  const issuedAt = t.issuedAt;
  const base: CredentialRecord = {
    taskId,
    grant: { target, access },
    target,
    kind: 'postgres',
    externalId: `tl_${taskId}_${access}`,
    state: 'verified',
    workload,
    rule: 'r',
    intentAt: (issuedAt ?? T0) - 5,
    naturalExpiry: issuedAt === undefined ? undefined : issuedAt + EXPIRY,
    secretName: `tasklease/${taskId}/${target}.${access}`,
    metadata: { role: `tl_${taskId}` },
    verifyAttempts: 1,
    ...t,
  };
  if (base.state === 'verified' && base.verifiedAt !== undefined && base.endedAt !== undefined) {
    base.trustDebtMs = base.verifiedAt - base.endedAt;
    base.avoidedDebtMs = (base.naturalExpiry as number) - base.verifiedAt;
  }
  return base;
}

/**
 * Known timestamps; every figure below is worked out by hand in report.test.ts.
 *
 * | task | workload | credential          | issued     | ended       | verified    | debt | pipeline/revoke/proof, exposure |
 * | t0   | B        | orders-db.read      | −1d+100    | −1d+1000    | (revoking)  | open |                                 |
 * | t1   | A        | orders-db.read      | +100       | +1000 eng.  | +1250       | 250  | 100/50/100, 150                 |
 * | t1   | A        | billing-db.read     | +120       | +1000 eng.  | +1400       | 400  | 100/200/100, 300                |
 * | t2   | A        | orders-db.write     | +600       | +2000 queue | +2100       | 100  | 20/30/50, 50                    |
 * | t3   | B        | orders-db.read      | +1m+50     | +1m+5000 eng. clamped | +1m+5900 | 900 | 300/100/500, 400          |
 * | t4   | B        | orders-db.read      | +2m+100    | +2m+3000    | (still-valid) | open |
 * | t5   | A        | denied policy-grant-not-allowed                                   |
 * | t6   | —        | denied svid-invalid                                               |
 * | t7   | B        | denied policy-grant-not-allowed (asked for billing-db)            |
 * | t8   | A        | orders-db.read      | +6m+100    | (running)   |             |      |
 * (times relative to T0; naturalExpiry = issuedAt + 15 min)
 */
export function fixtureLeases(): LeaseWithCredentials[] {
  const d = (code: DenialCode, message: string) => ({
    state: 'denied' as const,
    denial: { code, message },
    closedAt: undefined,
  });
  return [
    {
      lease: lease('t0', B, T0 - DAY, { state: 'ending', issuedAt: T0 - DAY + 100, endedAt: T0 - DAY + 1000, outcome: 'failed' }),
      credentials: [
        cred('t0', B, 'orders-db', 'read', {
          state: 'revoking',
          issuedAt: T0 - DAY + 100,
          endedAt: T0 - DAY + 1000,
          verifyAttempts: 0,
          nextCheckAt: T0,
        }),
      ],
    },
    {
      lease: lease('t1', A, T0, {
        grants: [
          { target: 'billing-db', access: 'read' },
          { target: 'orders-db', access: 'read' },
        ],
        issuedAt: T0 + 130,
        endedAt: T0 + 1000,
        endedAtSource: 'engine',
        outcome: 'succeeded',
      }),
      credentials: [
        cred('t1', A, 'billing-db', 'read', {
          issuedAt: T0 + 120,
          endedAt: T0 + 1000,
          revokeStartedAt: T0 + 1100,
          revokedAt: T0 + 1300,
          verifiedAt: T0 + 1400,
        }),
        cred('t1', A, 'orders-db', 'read', {
          issuedAt: T0 + 100,
          endedAt: T0 + 1000,
          revokeStartedAt: T0 + 1100,
          revokedAt: T0 + 1150,
          verifiedAt: T0 + 1250,
        }),
      ],
    },
    {
      lease: lease('t2', A, T0 + 500, {
        grants: [{ target: 'orders-db', access: 'write' }],
        issuedAt: T0 + 600,
        endedAt: T0 + 2000,
        endedAtSource: 'queue',
        outcome: 'succeeded',
      }),
      credentials: [
        cred('t2', A, 'orders-db', 'write', {
          issuedAt: T0 + 600,
          endedAt: T0 + 2000,
          revokeStartedAt: T0 + 2020,
          revokedAt: T0 + 2050,
          verifiedAt: T0 + 2100,
          verifyAttempts: 2,
        }),
      ],
    },
    {
      lease: lease('t3', B, T0 + MINUTE, {
        issuedAt: T0 + MINUTE + 50,
        endedAt: T0 + MINUTE + 5000,
        endedAtSource: 'engine',
        endedAtClamped: true,
        outcome: 'succeeded',
      }),
      credentials: [
        cred('t3', B, 'orders-db', 'read', {
          issuedAt: T0 + MINUTE + 50,
          endedAt: T0 + MINUTE + 5000,
          revokeStartedAt: T0 + MINUTE + 5300,
          revokedAt: T0 + MINUTE + 5400,
          verifiedAt: T0 + MINUTE + 5900,
        }),
      ],
    },
    {
      lease: lease('t4', B, T0 + 2 * MINUTE, {
        state: 'ending',
        issuedAt: T0 + 2 * MINUTE + 100,
        endedAt: T0 + 2 * MINUTE + 3000,
        outcome: 'cancelled',
      }),
      credentials: [
        cred('t4', B, 'orders-db', 'read', {
          state: 'still-valid',
          issuedAt: T0 + 2 * MINUTE + 100,
          endedAt: T0 + 2 * MINUTE + 3000,
          verifyAttempts: 3,
          lastError: 'old password still accepted',
          nextCheckAt: T0 + 11 * MINUTE,
        }),
      ],
    },
    { lease: lease('t5', A, T0 + 3 * MINUTE, d('policy-grant-not-allowed', 'grant orders-db.write not allowed')), credentials: [] },
    { lease: lease('t6', undefined, T0 + 4 * MINUTE, d('svid-invalid', 'signature does not verify')), credentials: [] },
    {
      lease: lease('t7', B, T0 + 5 * MINUTE, {
        ...d('policy-grant-not-allowed', 'grant billing-db.read not allowed, ask "ops"'),
        grants: [{ target: 'billing-db', access: 'read' }],
      }),
      credentials: [],
    },
    {
      lease: lease('t8', A, T0 + 6 * MINUTE, { state: 'active', issuedAt: T0 + 6 * MINUTE + 100, expiresAt: T0 + 21 * MINUTE }),
      credentials: [
        cred('t8', A, 'orders-db', 'read', {
          state: 'issued',
          issuedAt: T0 + 6 * MINUTE + 100,
          verifyAttempts: 0,
          nextCheckAt: T0 + 21 * MINUTE,
        }),
      ],
    },
  ];
}
