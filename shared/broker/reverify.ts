import { grantKey } from '../events/schemas.ts';
import type { LeaseLifecycle, ReverifyScheduler } from '../lease/lifecycle.ts';
import type { Clock, Ledger } from '../lease/ports.ts';
import type { ReverifyMessage } from './reverify-message.ts';

/** States a re-verify may act on: only revocations already under way, never a live credential. */
const REVOCATION_STATES = new Set(['revoking', 'still-valid']);
/** A check scheduled this much later than now means a newer attempt superseded this message. */
const SUPERSEDED_SLACK_MS = 1_000;
/** A message this early is handed back rather than acted on (the 15-minute SQS delay hop). */
const EARLY_SLACK_MS = 1_000;

export interface ReverifyOutcome {
  taskId: string;
  grant: string;
  /** `verified`, `revoking`, `still-valid` (retried later), `rescheduled`, `superseded`, `unknown-credential`, `skipped-<credential state>` or `skipped-issuing`. */
  status: string;
  verifyAttempts?: number;
  /** Set when this attempt proved the lease's last open credential: the lease's end result. */
  lease?: string;
  [key: string]: unknown;
}

export interface ReverifyDeps {
  lifecycle: LeaseLifecycle;
  ledger: Ledger;
  clock: Clock;
  reverify?: ReverifyScheduler;
}

/**
 * One more revoke-and-verify of a credential not yet proven rejected (IAM propagation, a target
 * outage). A stale message (a later attempt already scheduled the next check) is dropped, so
 * each credential keeps one chain of retries, not one per attempt. When this proves the lease's
 * last open credential, the lease is closed (`Lease Revoked`), as the reaper would.
 */
export async function reverifyDue(deps: ReverifyDeps, message: ReverifyMessage): Promise<ReverifyOutcome> {
  const { taskId, grant } = message;
  const key = grantKey(grant);
  const now = deps.clock.now();
  if (message.notBefore !== undefined && message.notBefore > now + EARLY_SLACK_MS && deps.reverify) {
    await deps.reverify.schedule(taskId, grant, message.notBefore - now);
    return { taskId, grant: key, status: 'rescheduled' };
  }
  const found = await deps.ledger.getLease(taskId);
  const cred = found?.credentials.find((c) => grantKey(c.grant) === key);
  if (!found || !cred) return { taskId, grant: key, status: 'unknown-credential' };
  const { lease } = found;
  if (!REVOCATION_STATES.has(cred.state)) return { taskId, grant: key, status: `skipped-${cred.state}` };
  // An issuing lease belongs to its issuer, or to the reaper's rollback once its lock runs out: a
  // re-verify proving a credential an issuer is re-making would leave the new one orphaned.
  if (lease.state === 'issuing') return { taskId, grant: key, status: 'skipped-issuing' };
  if (cred.nextCheckAt !== undefined && cred.nextCheckAt > now + SUPERSEDED_SLACK_MS) return { taskId, grant: key, status: 'superseded' };

  const done = await deps.lifecycle.revokeAndVerify(cred, cred.endedAt ?? lease.endedAt ?? now);
  let leaseStatus: string | undefined;
  if (done.state === 'verified' && lease.state === 'ending') {
    leaseStatus = (await deps.lifecycle.endLease(taskId, lease.outcome ?? 'expired', lease.endedAt ?? now)).status;
  }
  return { taskId, grant: key, status: done.state, verifyAttempts: done.verifyAttempts, ...(leaseStatus ? { lease: leaseStatus } : {}) };
}
