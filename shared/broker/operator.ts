import * as z from 'zod';
import { TaskIdSchema } from '../events/schemas.ts';
import { LIMITS, PRINTABLE_PATTERN } from '../events/limits.ts';
import { describeIssues } from '../events/parse.ts';
import type { EndResult, LeaseLifecycle, LifecycleLogger } from '../lease/lifecycle.ts';
import type { Clock, Ledger, WorkloadLocks } from '../lease/ports.ts';
import type { LeaseState } from '../lease/records.ts';
import { parseSpiffeId } from '../identity/spiffe-id.ts';

/*
 * Break-glass (anchor: Teleport locks): an operator revokes one task's credentials, or every live
 * lease of a workload and locks it, so new Task Started for it are denied `workload-locked` until
 * unlocked. Revoking here is the same revoke-and-prove as a Task Ended, at once. Who did it and why
 * are recorded on each lease (`endedBy: operator:<by>`, `endReason`) and on the lock.
 */

const text = (what: string) =>
  z
    .string()
    .trim()
    .min(1, { message: `${what} must not be empty` })
    .max(LIMITS.initiatorMaxLength)
    .regex(PRINTABLE_PATTERN, { message: `${what} must not contain control characters` });

const WorkloadSchema = z.string().refine(
  (s) => {
    try {
      parseSpiffeId(s);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'must be a SPIFFE ID (spiffe://trust-domain/path)' },
);

/** What an operator asks for (the CLI, the AWS operator function's payload). */
export const OperatorRequestSchema = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('revoke-task'), taskId: TaskIdSchema, reason: text('reason'), by: text('by') }),
  z.strictObject({ action: z.literal('revoke-workload'), workload: WorkloadSchema, reason: text('reason'), by: text('by') }),
  z.strictObject({ action: z.literal('unlock'), workload: WorkloadSchema, reason: text('reason'), by: text('by') }),
]);
export type OperatorRequest = z.infer<typeof OperatorRequestSchema>;
/** A request before the transport says who sends it. */
export type UnsignedOperatorRequest = OperatorRequest extends infer R ? (R extends unknown ? Omit<R, 'by'> : never) : never;

/** A request that does not parse: its reason names the field, never echoes a value. */
export class OperatorRequestError extends Error {
  readonly code = 'invalid-operator-request';
}

export function parseOperatorRequest(raw: unknown): OperatorRequest {
  const parsed = OperatorRequestSchema.safeParse(raw);
  if (!parsed.success) throw new OperatorRequestError(`invalid operator request: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

export interface RevokedTask {
  taskId: string;
  /** The end's result: `closed` (every credential proven rejected), `open-debt` (still being proven), `deferred` (issuing: the issuer ends it), `duplicate` (already ended)… */
  status: EndResult['status'];
  credentials: Array<{ grant: string; state: string; verified: boolean; trustDebtMs?: number }>;
}

export type OperatorResult =
  | { action: 'revoke-task'; taskId: string; found: boolean; revoked: RevokedTask[] }
  | { action: 'revoke-workload'; workload: string; locked: true; revoked: RevokedTask[] }
  | { action: 'unlock'; workload: string; unlocked: boolean; lock?: { by: string; reason: string; lockedAt: string } };

export interface OperatorDeps {
  lifecycle: LeaseLifecycle;
  ledger: Ledger;
  clock: Clock;
  locks?: WorkloadLocks;
  log?: LifecycleLogger;
}

const LIVE: ReadonlySet<LeaseState> = new Set<LeaseState>(['issuing', 'active', 'ending']);

/** Runs one operator request; throws OperatorRequestError for a malformed one. */
export async function runOperator(deps: OperatorDeps, raw: unknown): Promise<OperatorResult> {
  const request = parseOperatorRequest(raw);
  const operator = `operator:${request.by}`;
  switch (request.action) {
    case 'revoke-task': {
      const found = await deps.ledger.getLease(request.taskId);
      deps.log?.warn('break-glass revoke of a task', { taskId: request.taskId, by: request.by, reason: request.reason });
      const revoked = found ? [await revoke(deps, request.taskId, operator, request.reason)] : [];
      return { action: 'revoke-task', taskId: request.taskId, found: found !== undefined, revoked };
    }
    case 'revoke-workload': {
      const locks = requireLocks(deps);
      // Lock first, so no new lease can start while the live ones are revoked.
      await locks.lock({ workload: request.workload, by: request.by, reason: request.reason, lockedAt: deps.clock.now() });
      deps.log?.warn('break-glass lock and revoke of a workload', { workload: request.workload, by: request.by, reason: request.reason });
      const revoked: RevokedTask[] = [];
      const done = new Set<string>();
      // Twice: a start that passed the lock check just before the lock landed opens its lease
      // within one lock period, and the second pass catches a lease the first listing missed.
      for (let pass = 0; pass < 2; pass++) {
        for (const { lease } of await deps.ledger.listLeases({ workload: request.workload, since: 0 })) {
          if (done.has(lease.taskId) || !LIVE.has(lease.state)) continue;
          done.add(lease.taskId);
          revoked.push(await revoke(deps, lease.taskId, operator, request.reason));
        }
      }
      return { action: 'revoke-workload', workload: request.workload, locked: true, revoked };
    }
    case 'unlock': {
      const lifted = await requireLocks(deps).unlock(request.workload, request.by, request.reason, deps.clock.now());
      deps.log?.warn('break-glass unlock of a workload', {
        workload: request.workload,
        by: request.by,
        reason: request.reason,
        wasLocked: lifted !== undefined,
      });
      return {
        action: 'unlock',
        workload: request.workload,
        unlocked: lifted !== undefined,
        ...(lifted ? { lock: { by: lifted.by, reason: lifted.reason, lockedAt: new Date(lifted.lockedAt).toISOString() } } : {}),
      };
    }
  }
}

function requireLocks(deps: OperatorDeps): WorkloadLocks {
  if (!deps.locks) throw new OperatorRequestError('this runtime has no workload locks configured; cannot lock or unlock a workload');
  return deps.locks;
}

async function revoke(deps: OperatorDeps, taskId: string, operator: string, reason: string): Promise<RevokedTask> {
  const result = await deps.lifecycle.endLease(taskId, 'cancelled', deps.clock.now(), operator, { operator: { reason } });
  const credentials = 'credentials' in result ? result.credentials : [];
  return {
    taskId,
    status: result.status,
    credentials: credentials.map((c) => ({
      grant: `${c.grant.target}.${c.grant.access}`,
      state: c.state,
      verified: c.state === 'verified',
      ...(c.trustDebtMs !== undefined ? { trustDebtMs: c.trustDebtMs } : {}),
    })),
  };
}
