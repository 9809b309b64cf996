/*
 * The revocation budget of the aws-role kind (issue 14): IAM's 10,240 characters are for all inline
 * policies of a role together, so the role's other inline policies shrink what the revocation
 * policy may use, and IAM's LimitExceeded falls back to the role-wide cutoff.
 *
 * A mock at the SDK boundary (test/aws/fake-aws.ts on aws-sdk-client-mock), not the emulated
 * account: no emulator evaluates IAM policy size (moto stores any inline policy), so the fake
 * enforces the aggregate limit itself (`enforceAggregateInlineLimit`, whitespace not counted) and
 * evaluates the revocation policy's conditions (`aws:userid` globs AND `aws:TokenIssueTime`) when
 * a session's probe call arrives.
 */
import { GetRoleCommand, GetRolePolicyCommand, IAMClient, ListRolePoliciesCommand, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import fc from 'fast-check';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { TargetError } from '../../shared/lease/errors.ts';
import type { IssueContext, RevokeContext, SecretMaterial } from '../../shared/lease/ports.ts';
import { AwsRoleDriver } from '../../shared/targets/aws-role/driver.ts';
import { REVOCATION_POLICY_NAME, sessionNameFor } from '../../shared/targets/aws-role/names.ts';
import { addSessionDeny, policySize, RevocationBudgetError } from '../../shared/targets/aws-role/revocation-policy.ts';
import type { PolicyDocument } from '../../shared/targets/aws-role/revocation-policy.ts';
import { AwsRoleAccessSchema, AwsRoleSettingsSchema, INLINE_POLICY_MAX_CHARS } from '../../shared/targets/aws-role/settings.ts';
import { ACCOUNT, awsError, FakeAws, REGION } from '../aws/fake-aws.ts';

const aws = new FakeAws();
afterAll(() => aws.restore());

const ROLE = 'tasklease-deploy';
const ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/${ROLE}`;
const WORKLOAD = 'spiffe://prod.example.org/ci/deployer';
const READ_POLICY = {
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Action: ['s3:GetObject'], Resource: 'arn:aws:s3:::artifacts/*' }],
};
const brokerCreds = { accessKeyId: 'AKIABROKER', secretAccessKey: 'broker-secret-key' };
let clock = Date.now();

function driver(): AwsRoleDriver {
  return new AwsRoleDriver(
    'deploy-role',
    AwsRoleSettingsSchema.parse({ roleArn: ROLE_ARN, region: REGION }),
    { read: AwsRoleAccessSchema.parse({ sessionPolicy: READ_POLICY }) },
    { sts: new STSClient({ region: REGION, credentials: brokerCreds }), iam: new IAMClient({ region: REGION, credentials: brokerCreds }) },
    { now: () => clock },
  );
}

interface Live {
  rctx: RevokeContext;
  secret: SecretMaterial;
}

async function issue(d: AwsRoleDriver, taskId: string, durationSeconds = 1800): Promise<Live> {
  const grant = { target: 'deploy-role', access: 'read' };
  const ctx: IssueContext = {
    lease: { taskId, workload: WORKLOAD, expiresAt: clock + durationSeconds * 1000, durationSeconds },
    grant,
    externalId: sessionNameFor(taskId, grant),
  };
  const issued = await d.issue(ctx);
  return {
    rctx: { taskId, grant, externalId: ctx.externalId, metadata: issued.metadata, naturalExpiry: issued.naturalExpiry },
    secret: issued.secret,
  };
}

const verify = (d: AwsRoleDriver, s: Live) => d.verify({ ...s.rctx, secret: s.secret });

/** A policy document of exactly `chars` characters as IAM counts them, stored pretty-printed (whitespace IAM ignores). */
function otherPolicyOf(chars: number): string {
  const doc = (pad: number) => ({
    Version: '2012-10-17',
    Statement: [{ Sid: 'OpsRead', Effect: 'Allow', Action: 's3:GetObject', Resource: `arn:aws:s3:::${'x'.repeat(pad)}` }],
  });
  const base = JSON.stringify(doc(0)).length;
  const text = JSON.stringify(doc(chars - base), null, 2);
  expect(text.replace(/\s/g, '')).toHaveLength(chars);
  return text;
}

const aggregate = () => [...aws.roles.get(ROLE)!.inlinePolicies.values()].reduce((n, doc) => n + doc.replace(/\s/g, '').length, 0);
const cutoffOf = () => aws.revocationPolicy(ROLE)?.Statement.find((s) => String(s.Sid).startsWith('TLCUT'));

/** A session of the role that is not tasklease's (an operator's console session), straight from STS. */
async function operatorSession(name: string): Promise<IAMClient> {
  const out = await new STSClient({ region: REGION, credentials: brokerCreds }).send(
    new AssumeRoleCommand({ RoleArn: ROLE_ARN, RoleSessionName: name, DurationSeconds: 3600 }),
  );
  const c = out.Credentials!;
  return new IAMClient({
    region: REGION,
    credentials: { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! },
  });
}

beforeEach(() => {
  aws.reset();
  clock = Date.now();
  aws.now = () => clock;
  aws.addRole(ROLE);
  aws.enforceAggregateInlineLimit = true;
});

describe('the budget counts the role’s other inline policies', () => {
  it('a role with a 9,000-character other inline policy falls back to the cutoff in time, and the cutoff is verified', async () => {
    aws.roles.get(ROLE)!.inlinePolicies.set('ops-access', otherPolicyOf(9_000));
    const d = driver();
    // One session per expiry minute, so each revocation needs its own statement.
    const sessions: Live[] = [];
    for (let i = 0; i < 12; i++) {
      sessions.push(await issue(d, `deploy-${i}`));
      clock += 61_000;
    }
    // Live, never revoked: the cutoff's cost.
    const bystander = await issue(d, 'bystander');
    const operator = await operatorSession('alice-console');
    clock += 1_000;

    for (const s of sessions) {
      await d.revoke(s.rctx);
      // Never past IAM's aggregate limit, so IAM never had to refuse.
      expect(aggregate()).toBeLessThanOrEqual(INLINE_POLICY_MAX_CHARS);
      if (cutoffOf()) break;
    }
    // The other policy was measured (as IAM returns it: URL-encoded), not assumed absent.
    expect(aws.iam.commandCalls(ListRolePoliciesCommand).length).toBeGreaterThan(0);
    expect(aws.iam.commandCalls(GetRolePolicyCommand).some((c) => c.args[0].input.PolicyName === 'ops-access')).toBe(true);
    const cutoff = cutoffOf();
    expect(cutoff).toMatchObject({
      Effect: 'Deny',
      Action: '*',
      Resource: '*',
      Condition: {
        DateLessThan: { 'aws:TokenIssueTime': expect.stringMatching(/Z$/) },
        StringLike: { 'aws:userid': expect.stringMatching(/:tl\.\*$/) },
      },
    });
    // Well before our own document reached 10,240 characters: the old budget would have written on
    // into LimitExceeded.
    expect(JSON.stringify(aws.revocationPolicy(ROLE)).length).toBeLessThanOrEqual(INLINE_POLICY_MAX_CHARS - 9_000);
    const puts = aws.iam.commandCalls(PutRolePolicyCommand);
    expect(puts.length).toBeLessThan(sessions.length);
    // No write was refused: each one fitted beside ops-access (the budget, not LimitExceeded, chose the cutoff).
    for (const put of puts) expect(policySize(put.args[0].input.PolicyDocument!) + 9_000).toBeLessThanOrEqual(INLINE_POLICY_MAX_CHARS);

    // The rest of the sessions are already covered: revoking them writes nothing.
    for (const s of sessions) await d.revoke(s.rctx);
    expect(aws.iam.commandCalls(PutRolePolicyCommand)).toHaveLength(puts.length);

    // Evaluated by the fake's condition check: every revoked session is rejected…
    for (const s of sessions) expect(await verify(d, s)).toBe('rejected');
    // …and so is a tasklease session no one revoked (the cost of the cutoff)…
    expect(await verify(d, bystander)).toBe('rejected');
    // …but not a session of the role that is not tasklease's, nor one issued after the cutoff.
    await expect(operator.send(new GetRoleCommand({ RoleName: ROLE }))).resolves.toMatchObject({ Role: { RoleName: ROLE } });
    clock += 3_000;
    const fresh = await issue(d, 'after-cutoff');
    expect(await verify(d, fresh)).toBe('still-valid');
    // A later revocation adds its own entry again, next to the cutoff.
    await d.revoke(fresh.rctx);
    expect(await verify(d, fresh)).toBe('rejected');
    expect(cutoffOf()).toEqual(cutoff);
  });

  it('compacts expired entries before it resorts to the cutoff', async () => {
    aws.roles.get(ROLE)!.inlinePolicies.set('ops-access', otherPolicyOf(9_000));
    const roleId = aws.roles.get(ROLE)!.roleId;
    const entry = (minutesFromNow: number, names: string[]) => ({
      Sid: `TL${Math.ceil((clock + minutesFromNow * 60_000) / 60_000) * 60}`,
      Effect: 'Deny',
      Action: '*',
      Resource: '*',
      Condition: { StringLike: { 'aws:userid': names.map((n) => `${roleId}:tl.${n}.0123456789abcdef`) } },
    });
    const live = entry(20, ['live-a']);
    const before: PolicyDocument = { Version: '2012-10-17', Statement: [live] };
    // Expired entries (the prune grace passed) up to just under what ops-access leaves.
    for (let m = 90; JSON.stringify(before).length < INLINE_POLICY_MAX_CHARS - 9_000 - 120; m++) {
      before.Statement.unshift(entry(-m, [`old-${m}`]));
    }
    aws.roles.get(ROLE)!.inlinePolicies.set(REVOCATION_POLICY_NAME, JSON.stringify(before));
    expect(aggregate()).toBeLessThanOrEqual(INLINE_POLICY_MAX_CHARS);

    const d = driver();
    const s = await issue(d, 'compact-me');
    await d.revoke(s.rctx);

    const after = aws.revocationPolicy(ROLE)!;
    // Without compaction, the new statement would not have fitted what ops-access leaves.
    const added = after.Statement.find((st) => JSON.stringify(st).includes(s.rctx.externalId))!;
    expect(JSON.stringify(before).length + 1 + JSON.stringify(added).length).toBeGreaterThan(INLINE_POLICY_MAX_CHARS - 9_000);
    expect(after.Statement).toHaveLength(2);
    expect(cutoffOf()).toBeUndefined();
    const text = JSON.stringify(after);
    expect(text).not.toContain('tl.old-');
    expect(text).toContain(`${roleId}:tl.live-a.0123456789abcdef`);
    expect(text).toContain(`${roleId}:${s.rctx.externalId}`);
    expect(await verify(d, s)).toBe('rejected');
  });

  it('a measurement IAM refuses does not block a revocation', async () => {
    aws.iam.on(ListRolePoliciesCommand).rejects(awsError('AccessDenied', 'not authorized to perform: iam:ListRolePolicies', 403));
    const d = driver();
    const s = await issue(d, 'unmeasured');
    await d.revoke(s.rctx);
    expect(await verify(d, s)).toBe('rejected');
  });

  it('measures documents as IAM counts them: URL-decoded, whitespace not counted', () => {
    const doc = { Version: '2012-10-17', Statement: [{ Sid: 'A', Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::b/*' }] };
    const minimal = JSON.stringify(doc).length;
    expect(policySize(JSON.stringify(doc, null, 4))).toBe(minimal);
    expect(policySize(encodeURIComponent(JSON.stringify(doc, null, 2)))).toBe(minimal);
  });
});

describe('LimitExceeded from IAM', () => {
  it('falls back to the cutoff instead of failing the revocation', async () => {
    const d = driver();
    const s = await issue(d, 'limited');
    const bystander = await issue(d, 'bystander');
    clock += 1_000;
    // IAM counted more than the broker did (a policy added meanwhile, another count).
    aws.putRolePolicyFailures.push(awsError('LimitExceededException', 'Maximum policy size of 10240 bytes exceeded', 409));
    await d.revoke(s.rctx);

    const puts = aws.iam.commandCalls(PutRolePolicyCommand);
    expect(puts).toHaveLength(2);
    expect(puts[0]!.args[0].input.PolicyDocument).not.toContain('TLCUT');
    expect(puts[1]!.args[0].input.PolicyDocument).toContain('TLCUT');
    expect(cutoffOf()).toBeDefined();
    expect(await verify(d, s)).toBe('rejected');
    expect(await verify(d, bystander)).toBe('rejected');
    clock += 3_000;
    expect(await verify(d, await issue(d, 'after-cutoff'))).toBe('still-valid');
  });

  it('a cutoff IAM still refuses is a non-retryable error naming the role and the sizes', async () => {
    aws.roles.get(ROLE)!.inlinePolicies.set('ops-access', otherPolicyOf(9_000));
    const d = driver();
    const s = await issue(d, 'refused');
    for (let i = 0; i < 2; i++) aws.putRolePolicyFailures.push(awsError('LimitExceededException', 'Maximum policy size exceeded', 409));
    const err = await d.revoke(s.rctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RevocationBudgetError);
    expect(err).toBeInstanceOf(TargetError);
    expect((err as TargetError).retryable).toBe(false);
    const message = (err as Error).message;
    expect(message).toContain(ROLE_ARN);
    expect(message).toContain('ops-access: 9000');
    expect(message).toMatch(/LimitExceededException/);
    expect(message).toMatch(/10240 characters for all inline policies/);
    expect((err as RevocationBudgetError).budgetChars).toBe(INLINE_POLICY_MAX_CHARS - 9_000);
    expect((err as RevocationBudgetError).neededChars).toBeGreaterThan(0);
  });

  it('other inline policies that leave no room even for the cutoff: the same error, before any write', async () => {
    aws.roles.get(ROLE)!.inlinePolicies.set('ops-access', otherPolicyOf(10_200));
    const d = driver();
    const s = await issue(d, 'no-room');
    const err = await d.revoke(s.rctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RevocationBudgetError);
    expect((err as Error).message).toMatch(new RegExp(`role ${ROLE_ARN} cannot take revocation of session ${s.rctx.externalId}`));
    expect((err as Error).message).toMatch(/needs \d+ characters even as a role-wide cutoff/);
    expect((err as Error).message).toContain('ops-access: 10200');
    expect((err as RevocationBudgetError).budgetChars).toBe(40);
    expect(aws.iam.commandCalls(PutRolePolicyCommand)).toHaveLength(0);
    expect(await verify(d, s)).toBe('still-valid');
  });
});

describe('revocation document (pure): no live entry is ever lost', () => {
  it('every revoked session that has not expired stays denied, by its entry or by a later cutoff, within the budget', () => {
    const maxSessionMs = 3_600_000;
    fc.assert(
      fc.property(
        fc.integer({ min: 600, max: 4_000 }),
        fc.array(fc.record({ gapMs: fc.integer({ min: 0, max: 600_000 }), lifeMs: fc.integer({ min: 900_000, max: maxSessionMs }) }), {
          minLength: 1,
          maxLength: 60,
        }),
        (maxChars, revocations) => {
          let doc: PolicyDocument = { Version: '2012-10-17', Statement: [] };
          let now = Date.UTC(2030, 0, 1);
          const revoked: Array<{ userId: string; issuedAt: number; expiresAt: number }> = [];
          revocations.forEach(({ gapMs, lifeMs }, i) => {
            now += gapMs;
            const session = { userId: `AROA1:tl.t${i}.0123456789abcdef`, issuedAt: now - 1_000, expiresAt: now - 1_000 + lifeMs };
            doc = addSessionDeny(doc, session, { now, maxChars, maxSessionMs, sessionPattern: 'AROA1:tl.*' }).document;
            revoked.push(session);
            expect(JSON.stringify(doc).length).toBeLessThanOrEqual(maxChars);
            for (const r of revoked.filter((x) => x.expiresAt > now)) {
              const own = doc.Statement.some((s) => JSON.stringify(s.Condition?.StringLike?.['aws:userid'] ?? []).includes(r.userId));
              const cut = doc.Statement.some((s) => {
                const before = s.Condition?.DateLessThan?.['aws:TokenIssueTime'];
                return typeof before === 'string' && r.issuedAt < Date.parse(before);
              });
              expect(own || cut).toBe(true);
            }
          });
        },
      ),
      { numRuns: 200 },
    );
  });
});
