import { GetRolePolicyCommand, PutRolePolicyCommand, paginateListRolePolicies } from '@aws-sdk/client-iam';
import { describeAwsError, isAwsError } from '../../aws/errors.ts';
import { TargetError } from '../../lease/errors.ts';
import type { RevokeContext } from '../../lease/ports.ts';
import type { DriverServices } from '../driver.ts';
import { REVOCATION_POLICY_NAME, SESSION_NAME_PREFIX } from './names.ts';
import { addSessionDeny, parsePolicyDocument, policySize, RevocationBudgetError } from './revocation-policy.ts';
import type { RevocationChange } from './revocation-policy.ts';
import { iamError, managedRole, sessionExpiry } from './role.ts';
import type { AwsRoleTarget } from './role.ts';
import { INLINE_POLICY_MAX_CHARS } from './settings.ts';

/** How long one revocation-policy edit may hold the shared lock (reads of the role's inline policies, one or two Puts). */
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

  run<T>(edit: () => Promise<T>): Promise<T> {
    const lock = this.lock;
    const locked = lock ? () => lock(`aws-role-policy:${this.roleArn}`, POLICY_LOCK_TTL_MS, edit) : edit;
    const run = this.edits.then(locked, locked);
    this.edits = run.catch(() => undefined);
    return run;
  }
}

/** What the role's other inline policies use of IAM's aggregate limit, or undefined when IAM would not say. */
async function otherInlinePolicies(t: AwsRoleTarget): Promise<Array<{ name: string; chars: number }> | undefined> {
  try {
    const names: string[] = [];
    for await (const page of paginateListRolePolicies({ client: t.clients.iam }, { RoleName: t.roleName })) {
      names.push(...(page?.PolicyNames ?? []));
    }
    const others = [];
    for (const name of names.filter((n) => n !== REVOCATION_POLICY_NAME)) {
      try {
        const doc = (await t.clients.iam.send(new GetRolePolicyCommand({ RoleName: t.roleName, PolicyName: name }))).PolicyDocument;
        others.push({ name, chars: doc ? policySize(doc) : 0 });
      } catch (err) {
        // Deleted between the list and the read: it uses nothing.
        if (!isAwsError(err, 'NoSuchEntityException', 'NoSuchEntity')) throw err;
      }
    }
    return others;
  } catch {
    // The measurement only saves a round trip: without it IAM's LimitExceeded still leads to the
    // cutoff, so a missing permission or a throttled read must not block a revocation.
    return undefined;
  }
}

const describeOthers = (others: Array<{ name: string; chars: number }> | undefined): string =>
  others === undefined
    ? 'its other inline policies could not be read (iam:ListRolePolicies/GetRolePolicy)'
    : others.length === 0
      ? 'it has no other inline policies'
      : `its other inline policies use ${others.reduce((n, o) => n + o.chars, 0)} (${others.map((o) => `${o.name}: ${o.chars}`).join(', ')})`;

/**
 * Adds a deny for the session to the role's revocation policy (revocation-policy.ts), unless nothing can be live.
 *
 * The budget is IAM's 10,240 characters for all inline policies of the role minus what its other
 * inline policies use (and at most `revocationPolicyMaxChars`). When the live entries do not fit,
 * or IAM answers LimitExceeded anyway (a policy added meanwhile, a different count), the document
 * becomes the role-wide cutoff, which also revokes every other live tasklease session of the role
 * (revocation-policy.ts says what that costs). A cutoff that IAM still refuses is a
 * {@link RevocationBudgetError} naming the role and the sizes.
 */
export async function revokeSession(t: AwsRoleTarget, edits: PolicyEditQueue, ctx: RevokeContext): Promise<RevocationChange | undefined> {
  if (t.refused.has(ctx.externalId)) return undefined; // STS issued nothing
  const now = t.now();
  const expiresAt = sessionExpiry(ctx);
  // An expired session is rejected by STS itself; nothing to add.
  if (expiresAt !== undefined && expiresAt <= now) return undefined;
  const role = await managedRole(t, 'revoke');
  if (!role) return undefined; // a deleted role's sessions stop working; a re-created role has a new id
  const roleId = role.RoleId ?? ctx.metadata?.roleId;
  if (!roleId) throw new TargetError(`role ${t.settings.roleArn} has no RoleId`);
  const maxSessionMs = Math.max(role.MaxSessionDuration ?? 3600, t.settings.maxSessionSeconds) * 1000;
  const issuedAt = ctx.metadata?.issuedAt ? Date.parse(ctx.metadata.issuedAt) : undefined;

  // The revocation policy is one document edited read-modify-write: two revocations interleaving
  // would each write a copy without the other's deny. The queue runs them one at a time,
  // across containers too when the runtime supplies its shared lock.
  return edits.run(async () => {
    let current: string | undefined;
    try {
      current = (await t.clients.iam.send(new GetRolePolicyCommand({ RoleName: t.roleName, PolicyName: REVOCATION_POLICY_NAME })))
        .PolicyDocument;
    } catch (err) {
      if (!isAwsError(err, 'NoSuchEntityException', 'NoSuchEntity')) throw iamError(t, 'GetRolePolicy', err);
    }
    const others = await otherInlinePolicies(t);
    const othersChars = others?.reduce((n, o) => n + o.chars, 0) ?? 0;
    const maxChars = Math.min(t.settings.revocationPolicyMaxChars, INLINE_POLICY_MAX_CHARS - othersChars);
    // What an operator needs to act on: the role, the sizes, and how much room to make.
    const budgetError = (needed: number, why: string) =>
      new RevocationBudgetError(
        `role ${t.settings.roleArn} cannot take revocation of session ${ctx.externalId}: ${why}; IAM allows ` +
          `${INLINE_POLICY_MAX_CHARS} characters for all inline policies of a role together and ${describeOthers(others)}, ` +
          `leaving ${Math.max(0, maxChars)} by the broker's count. Make room (move the role's other inline policies to managed ` +
          `policies, or shrink them)${needed > maxChars ? ` by at least ${needed - maxChars} characters` : ''}; until then the session stays usable until it expires`,
        needed,
        maxChars,
      );
    const doc = parsePolicyDocument(current);
    const session = {
      userId: `${roleId}:${ctx.externalId}`,
      // Without a recorded expiry (a crash before it was recorded) assume the longest possible session.
      expiresAt: expiresAt ?? now + maxSessionMs,
      ...(issuedAt !== undefined && Number.isFinite(issuedAt) ? { issuedAt } : {}),
    };
    const options = { now, maxChars, maxSessionMs, sessionPattern: `${roleId}:${SESSION_NAME_PREFIX}*` };
    const plan = (forceCutoff: boolean): RevocationChange => {
      try {
        return addSessionDeny(doc, session, { ...options, forceCutoff });
      } catch (err) {
        if (err instanceof RevocationBudgetError)
          throw budgetError(err.neededChars, `${REVOCATION_POLICY_NAME} needs ${err.neededChars} characters even as a role-wide cutoff`);
        throw err;
      }
    };
    const put = (change: RevocationChange) =>
      t.clients.iam.send(
        new PutRolePolicyCommand({
          RoleName: t.roleName,
          PolicyName: REVOCATION_POLICY_NAME,
          PolicyDocument: JSON.stringify(change.document),
        }),
      );

    let change = plan(false);
    if (!change.changed) return change;
    try {
      await put(change);
      return change;
    } catch (err) {
      if (!isAwsError(err, 'LimitExceededException', 'LimitExceeded')) throw iamError(t, 'PutRolePolicy', err);
      // Only compaction was left to write: the session is denied already.
      if (change.mode === 'present') return change;
      if (change.mode === 'cutoff') {
        throw budgetError(
          JSON.stringify(change.document).length,
          `IAM refused even the role-wide cutoff (PutRolePolicy: ${describeAwsError(err)})`,
        );
      }
    }
    // IAM counted more than we did: the smallest document that still revokes.
    change = plan(true);
    try {
      await put(change);
      return change;
    } catch (err) {
      if (!isAwsError(err, 'LimitExceededException', 'LimitExceeded')) throw iamError(t, 'PutRolePolicy', err);
      throw budgetError(
        JSON.stringify(change.document).length,
        `IAM refused even the role-wide cutoff (PutRolePolicy: ${describeAwsError(err)})`,
      );
    }
  });
}
