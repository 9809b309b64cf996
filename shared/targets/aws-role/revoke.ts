import { GetRolePolicyCommand, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { isAwsError } from '../../aws/errors.ts';
import { TargetError } from '../../lease/errors.ts';
import type { RevokeContext } from '../../lease/ports.ts';
import type { DriverServices } from '../driver.ts';
import { REVOCATION_POLICY_NAME } from './names.ts';
import { addSessionDeny, parsePolicyDocument } from './revocation-policy.ts';
import { iamError, managedRole, sessionExpiry } from './role.ts';
import type { AwsRoleTarget } from './role.ts';

/** How long one revocation-policy edit may hold the shared lock (a Get and a Put). */
const POLICY_LOCK_TTL_MS = 15_000;

/**
 * Runs policy edits one after another in this process and, given the runtime's shared lock,
 * one at a time across every broker process; a failed edit does not block the next.
 */
export class PolicyEditQueue {
  private edits: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly roleArn: string,
    private readonly lock: DriverServices['lock'],
  ) {}

  run(edit: () => Promise<void>): Promise<void> {
    const lock = this.lock;
    const locked = lock ? () => lock(`aws-role-policy:${this.roleArn}`, POLICY_LOCK_TTL_MS, edit) : edit;
    const run = this.edits.then(locked, locked);
    this.edits = run.catch(() => undefined);
    return run;
  }
}

/** Adds a deny for the session to the role's revocation policy (revocation-policy.ts), unless nothing can be live. */
export async function revokeSession(t: AwsRoleTarget, edits: PolicyEditQueue, ctx: RevokeContext): Promise<void> {
  if (t.refused.has(ctx.externalId)) return; // STS issued nothing
  const now = t.now();
  const expiresAt = sessionExpiry(ctx);
  // An expired session is rejected by STS itself; nothing to add.
  if (expiresAt !== undefined && expiresAt <= now) return;
  const role = await managedRole(t, 'revoke');
  if (!role) return; // a deleted role's sessions stop working; a re-created role has a new id
  const roleId = role.RoleId ?? ctx.metadata?.roleId;
  if (!roleId) throw new TargetError(`role ${t.settings.roleArn} has no RoleId`);
  const maxSessionMs = Math.max(role.MaxSessionDuration ?? 3600, t.settings.maxSessionSeconds) * 1000;

  // The revocation policy is one document edited read-modify-write: two revocations interleaving
  // would each write a copy without the other's deny. The queue runs them one at a time,
  // across containers too when the runtime supplies its shared lock.
  await edits.run(async () => {
    let current: string | undefined;
    try {
      current = (await t.clients.iam.send(new GetRolePolicyCommand({ RoleName: t.roleName, PolicyName: REVOCATION_POLICY_NAME })))
        .PolicyDocument;
    } catch (err) {
      if (!isAwsError(err, 'NoSuchEntityException', 'NoSuchEntity')) throw iamError(t, 'GetRolePolicy', err);
    }
    const change = addSessionDeny(
      parsePolicyDocument(current),
      // Without a recorded expiry (a crash before it was recorded) assume the longest possible session.
      { userId: `${roleId}:${ctx.externalId}`, expiresAt: expiresAt ?? now + maxSessionMs },
      { now, maxChars: t.settings.revocationPolicyMaxChars, maxSessionMs },
    );
    if (!change.changed) return;
    try {
      await t.clients.iam.send(
        new PutRolePolicyCommand({
          RoleName: t.roleName,
          PolicyName: REVOCATION_POLICY_NAME,
          PolicyDocument: JSON.stringify(change.document),
        }),
      );
    } catch (err) {
      throw iamError(t, 'PutRolePolicy', err);
    }
  });
}
