import { GetRoleCommand, IAMClient, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import fc from 'fast-check';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, TargetError } from '../../shared/lease/errors.ts';
import type { IssueContext } from '../../shared/lease/ports.ts';
import { validateTargets } from '../../shared/policy/config.ts';
import { buildTargetRegistry } from '../../shared/policy/registry.ts';
import { AwsRoleDriver } from '../../shared/targets/aws-role/driver.ts';
import { PROBE_STATEMENT_SID, REVOCATION_POLICY_NAME, sessionNameFor, sourceIdentityFor } from '../../shared/targets/aws-role/names.ts';
import { addSessionDeny, parsePolicyDocument } from '../../shared/targets/aws-role/revocation-policy.ts';
import type { PolicyDocument } from '../../shared/targets/aws-role/revocation-policy.ts';
import { AwsRoleAccessSchema, AwsRoleSettingsSchema } from '../../shared/targets/aws-role/settings.ts';
import type { AwsRoleSettingsInput } from '../../shared/targets/aws-role/settings.ts';
import type { DriverServices } from '../../shared/targets/driver.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import { ACCOUNT, awsError, FakeAws, REGION } from '../aws/fake-aws.ts';
import { configWith } from './config-with.ts';

const aws = new FakeAws();
afterAll(() => aws.restore());

const ROLE = 'tasklease-deploy';
const ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/${ROLE}`;
const WORKLOAD = 'spiffe://prod.example.org/ci/deployer';
const READ_POLICY = {
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Action: ['s3:GetObject'], Resource: 'arn:aws:s3:::artifacts/*' }],
};

let clock = Date.now();
const brokerCreds = { accessKeyId: 'AKIABROKER', secretAccessKey: 'broker-secret-key' };

function driver(
  settings: Partial<AwsRoleSettingsInput> = {},
  access: Record<string, unknown> = { read: { sessionPolicy: READ_POLICY } },
  lock?: DriverServices['lock'],
): AwsRoleDriver {
  return new AwsRoleDriver(
    'deploy-role',
    AwsRoleSettingsSchema.parse({ roleArn: ROLE_ARN, region: REGION, ...settings }),
    Object.fromEntries(Object.entries(access).map(([k, v]) => [k, AwsRoleAccessSchema.parse(v)])),
    { sts: new STSClient({ region: REGION, credentials: brokerCreds }), iam: new IAMClient({ region: REGION, credentials: brokerCreds }) },
    // The driver's clock follows the test's, so expiry and pruning are deterministic.
    { now: () => clock, lock },
  );
}

function issueCtx(taskId = 'run-42:step.deploy', durationSeconds = 600, access = 'read'): IssueContext {
  const grant = { target: 'deploy-role', access };
  return {
    lease: { taskId, workload: WORKLOAD, expiresAt: clock + durationSeconds * 1000, durationSeconds },
    grant,
    externalId: sessionNameFor(taskId, grant),
  };
}

beforeEach(() => {
  aws.reset();
  clock = Date.now();
  aws.now = () => clock;
  aws.addRole(ROLE);
});

describe('names within STS limits', () => {
  it('session names are ≤ 64 chars of [\\w+=,.@-], readable, and distinct per task and grant', () => {
    expect(sessionNameFor('run-42:step.deploy', { target: 'deploy-role', access: 'read' })).toMatch(
      /^tl\.run-42-step\.deploy\.[0-9a-f]{16}$/,
    );
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/), fc.constantFrom('read', 'write'), (taskId, access) => {
        const name = sessionNameFor(taskId, { target: 't', access });
        expect(name.length).toBeLessThanOrEqual(64);
        expect(name).toMatch(/^[\w+=,.@-]{2,64}$/);
        expect(name).not.toBe(sessionNameFor(taskId, { target: 't', access: access === 'read' ? 'write' : 'read' }));
      }),
    );
    // Long task ids that share a 44-character prefix still get distinct names.
    const long = 'x'.repeat(100);
    expect(sessionNameFor(`${long}a`, { target: 't', access: 'r' })).not.toBe(sessionNameFor(`${long}b`, { target: 't', access: 'r' }));
  });

  it('SourceIdentity keeps the workload readable, is unique, and never starts with aws:', () => {
    expect(sourceIdentityFor(WORKLOAD)).toMatch(/^deployer@prod\.example\.org\+[0-9a-f]{12}$/);
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z0-9.-]{1,60}$/),
        fc.array(fc.stringMatching(/^[A-Za-z0-9._-]{1,80}$/), { maxLength: 6 }),
        (td, segments) => {
          const id = `spiffe://${td}${segments.map((s) => `/${s}`).join('')}`;
          const si = sourceIdentityFor(id);
          expect(si).toMatch(/^[\w+=,.@-]{2,64}$/);
          expect(si.toLowerCase().startsWith('aws:')).toBe(false);
          expect(sourceIdentityFor(`${id}/other`)).not.toBe(si);
        },
      ),
    );
  });
});

describe('config', () => {
  // Validation moved from the factory to validateTargets (create takes the parsed settings); the
  // runtime's clients now arrive through the typed awsClient service.
  it("the registry validates and builds an aws-role driver with the runtime's clients", () => {
    const made: Array<{ client: string; region: string | undefined }> = [];
    const awsClient: NonNullable<DriverServices['awsClient']> = (Client, region) => {
      made.push({ client: Client.name, region });
      return new Client({ region });
    };
    const registry = buildTargetRegistry(
      configWith({
        r: { kind: 'aws-role', settings: { roleArn: ROLE_ARN, region: REGION }, access: { read: { sessionPolicy: READ_POLICY } } },
      }),
      TARGET_KINDS,
      { awsClient },
    );
    const d = registry.get('r')!;
    expect(d.kind).toBe('aws-role');
    expect(d.externalId('t-1', { target: 'r', access: 'read' })).toBe(sessionNameFor('t-1', { target: 'r', access: 'read' }));
    expect(made).toEqual([
      { client: 'STSClient', region: REGION },
      { client: 'IAMClient', region: REGION },
    ]);
    expect(() =>
      validateTargets(
        configWith({
          r: { kind: 'aws-role', settings: { roleArn: 'arn:aws:iam::1:user/x' }, access: { read: { sessionPolicy: READ_POLICY } } },
        }),
        TARGET_KINDS,
      ),
    ).toThrow(ConfigError);
    expect(() =>
      validateTargets(
        configWith({
          r: { kind: 'aws-role', settings: { roleArn: 'arn:aws:iam::1:user/x' }, access: { read: { sessionPolicy: READ_POLICY } } },
        }),
        TARGET_KINDS,
      ),
    ).toThrow(/targets\.r\.settings\.roleArn: /);
  });

  it('refuses sts:GetCallerIdentity as a probe: IAM cannot deny it', () => {
    const r = AwsRoleSettingsSchema.safeParse({ roleArn: ROLE_ARN, probe: { action: 'sts:GetCallerIdentity' } });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain('can never be denied');
  });

  it('needs a parameter name for the ssm probe, and defaults to iam:GetRole, 3600 s sessions', () => {
    expect(AwsRoleSettingsSchema.safeParse({ roleArn: ROLE_ARN, probe: { action: 'ssm:GetParameter' } }).success).toBe(false);
    const s = AwsRoleSettingsSchema.parse({ roleArn: ROLE_ARN });
    expect(s.probe).toEqual({ action: 'iam:GetRole', checkAtIssue: true });
    expect(s.maxSessionSeconds).toBe(3600);
  });

  it('refuses a session policy that would exceed STS 2048 characters with the probe statement', () => {
    const big = {
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Allow', Action: 's3:GetObject', Resource: Array.from({ length: 100 }, (_, i) => `arn:aws:s3:::bucket-${i}/*`) },
      ],
    };
    expect(() => driver({}, { huge: { sessionPolicy: big } })).toThrow(ConfigError);
    expect(() => driver({}, { huge: { sessionPolicy: big } })).toThrow(/huge\.sessionPolicy: \d+ characters/);
    const reserved = {
      Version: '2012-10-17',
      Statement: [{ Sid: PROBE_STATEMENT_SID, Effect: 'Allow', Action: 'iam:GetRole', Resource: '*' }],
    };
    expect(() => driver({}, { read: { sessionPolicy: reserved } })).toThrow(/reserved/);
  });
});

describe('issue', () => {
  it('assumes the role with the session policy (plus the probe), tags, source identity and a clamped duration', async () => {
    const d = driver();
    const ctx = issueCtx('run-42:step.deploy', 120);
    const issued = await d.issue(ctx);

    // The managed tag is checked before anything is assumed.
    expect(aws.iam.commandCalls(GetRoleCommand)[0]?.args[0].input).toEqual({ RoleName: ROLE });
    const calls = aws.sts.commandCalls(AssumeRoleCommand);
    expect(calls).toHaveLength(1);
    const input = calls[0]!.args[0].input;
    expect(input).toEqual({
      RoleArn: ROLE_ARN,
      RoleSessionName: ctx.externalId,
      Policy: JSON.stringify({
        Version: '2012-10-17',
        Statement: [...READ_POLICY.Statement, { Sid: PROBE_STATEMENT_SID, Effect: 'Allow', Action: 'iam:GetRole', Resource: ROLE_ARN }],
      }),
      // 120 s lease → STS minimum of 900 s.
      DurationSeconds: 900,
      SourceIdentity: sourceIdentityFor(WORKLOAD),
      Tags: [
        { Key: 'tasklease:task', Value: 'run-42:step.deploy' },
        { Key: 'tasklease:workload', Value: WORKLOAD },
        { Key: 'tasklease:grant', Value: 'deploy-role.read' },
      ],
    });

    const session = [...aws.sessions.values()][0]!;
    expect(issued.secret).toEqual({
      accessKeyId: session.accessKeyId,
      secretAccessKey: session.secretAccessKey,
      sessionToken: session.sessionToken,
      expiration: new Date(session.expiresAt).toISOString(),
      roleArn: ROLE_ARN,
      region: REGION,
    });
    expect(issued.naturalExpiry).toBe(session.expiresAt);
    expect(issued.metadata).toEqual({
      roleId: aws.roles.get(ROLE)!.roleId,
      sessionName: ctx.externalId,
      assumedRoleArn: `arn:aws:sts::${ACCOUNT}:assumed-role/${ROLE}/${ctx.externalId}`,
      expiration: new Date(session.expiresAt).toISOString(),
      // STS's issue time: Expiration − DurationSeconds.
      issuedAt: new Date(session.expiresAt - 900_000).toISOString(),
    });
    // Metadata goes to the ledger: nothing secret in it.
    expect(JSON.stringify(issued.metadata)).not.toContain(session.secretAccessKey);
    expect(JSON.stringify(issued.metadata)).not.toContain(session.sessionToken);
  });

  it('clamps the duration to maxSessionSeconds and to the role maximum', async () => {
    await driver({ maxSessionSeconds: 3600 }).issue(issueCtx('t-long', 7200));
    expect(aws.sts.commandCalls(AssumeRoleCommand)[0]!.args[0].input.DurationSeconds).toBe(3600);
    aws.roles.get(ROLE)!.maxSessionDuration = 1800;
    await driver({ maxSessionSeconds: 7200 }).issue(issueCtx('t-role-max', 3000));
    expect(aws.sts.commandCalls(AssumeRoleCommand)[1]!.args[0].input.DurationSeconds).toBe(1800);
    await driver().issue(issueCtx('t-mid', 1234));
    expect(aws.sts.commandCalls(AssumeRoleCommand)[2]!.args[0].input.DurationSeconds).toBe(1234);
  });

  it('refuses a role that is not tagged tasklease:managed=true, before assuming or editing it', async () => {
    aws.roles.get(ROLE)!.tags = { team: 'ops' };
    const d = driver();
    const err = await d.issue(issueCtx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetError);
    expect((err as TargetError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/not tagged tasklease:managed=true/);
    expect(aws.sts.commandCalls(AssumeRoleCommand)).toHaveLength(0);

    await expect(
      d.revoke({ taskId: 't', grant: { target: 'deploy-role', access: 'read' }, externalId: 'tl.t.0123456789abcdef' }),
    ).rejects.toThrow(/will not edit its policies/);
    expect(aws.iam.commandCalls(PutRolePolicyCommand)).toHaveLength(0);
  });

  it('fails the issue when the role does not allow the probe, and denies the session it got', async () => {
    aws.roles.get(ROLE)!.allowsProbe = false;
    const ctx = issueCtx();
    const err = await driver()
      .issue(ctx)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetError);
    expect((err as TargetError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/probe iam:GetRole .* is denied for a fresh session/);
    const doc = aws.revocationPolicy(ROLE)!;
    expect(JSON.stringify(doc)).toContain(`${aws.roles.get(ROLE)!.roleId}:${ctx.externalId}`);
  });

  it('an STS error response means nothing was issued: no deny needed, and it verifies as rejected', async () => {
    aws.assumeRoleFailures.push(awsError('Throttling', 'Rate exceeded'));
    const d = driver();
    const ctx = issueCtx();
    await expect(d.issue(ctx)).rejects.toThrow(/sts AssumeRole .* failed: Throttling: Rate exceeded/);
    const rctx = { taskId: ctx.lease.taskId, grant: ctx.grant, externalId: ctx.externalId };
    await d.revoke(rctx);
    expect(aws.iam.commandCalls(PutRolePolicyCommand)).toHaveLength(0);
    expect(await d.verify(rctx)).toBe('rejected');

    // A 5xx may have created a session: that stays unproven without its credentials.
    aws.assumeRoleFailures.push(awsError('InternalFailure', 'oops', 500));
    const ctx2 = issueCtx('t-5xx');
    await expect(d.issue(ctx2)).rejects.toThrow(TargetError);
    expect(await d.verify({ taskId: 't-5xx', grant: ctx2.grant, externalId: ctx2.externalId })).toBe('inconclusive');
    // …until no session issued after its intent could still be alive (longest session + slack).
    const intentAt = clock;
    const unknown = { taskId: 't-5xx', grant: ctx2.grant, externalId: ctx2.externalId, intentAt };
    clock = intentAt + 3600_000;
    expect(await d.verify(unknown)).toBe('inconclusive');
    clock = intentAt + 3600_000 + 5 * 60_000;
    expect(await d.verify(unknown)).toBe('rejected');
  });
});

describe('revoke and verify', () => {
  it('drivers in different containers keep every deny when they share the runtime lock', async () => {
    // The lock the runtimes pass (shared/ledger/lock.ts on the ledger table) behaves as this one.
    const held = new Map<string, Promise<unknown>>();
    const lock: NonNullable<DriverServices['lock']> = (name, _ttl, fn) => {
      const run = (held.get(name) ?? Promise.resolve()).then(fn, fn);
      held.set(
        name,
        run.catch(() => undefined),
      );
      return run;
    };
    const containers = [driver({}, undefined, lock), driver({}, undefined, lock)];
    const sessions = await Promise.all(
      ['t-x-1', 't-x-2', 't-x-3', 't-x-4'].map(async (taskId, i) => {
        const d = containers[i % 2]!;
        const ctx = issueCtx(taskId);
        const issued = await d.issue(ctx);
        return {
          d,
          rctx: { taskId, grant: ctx.grant, externalId: ctx.externalId, metadata: issued.metadata, naturalExpiry: issued.naturalExpiry },
        };
      }),
    );
    await Promise.all(sessions.map((x) => x.d.revoke(x.rctx)));
    const doc = JSON.stringify(aws.revocationPolicy(ROLE));
    for (const x of sessions) expect(doc).toContain(`${x.rctx.metadata!.roleId}:${x.rctx.externalId}`);
  });

  it('concurrent revocations on one role keep every deny (no lost update of the shared document)', async () => {
    const d = driver();
    const sessions = await Promise.all(
      ['t-par-1', 't-par-2', 't-par-3', 't-par-4'].map(async (taskId) => {
        const ctx = issueCtx(taskId);
        const issued = await d.issue(ctx);
        return {
          rctx: { taskId, grant: ctx.grant, externalId: ctx.externalId, metadata: issued.metadata, naturalExpiry: issued.naturalExpiry },
          secret: issued.secret,
        };
      }),
    );
    await Promise.all(sessions.map((x) => d.revoke(x.rctx)));
    const doc = JSON.stringify(aws.revocationPolicy(ROLE));
    for (const x of sessions) {
      expect(doc).toContain(`${x.rctx.metadata!.roleId}:${x.rctx.externalId}`);
      expect(await d.verify({ ...x.rctx, secret: x.secret })).toBe('rejected');
    }
  });

  it('adds exactly one deny for the session, after which the old credentials are rejected', async () => {
    const d = driver();
    const ctx = issueCtx();
    const issued = await d.issue(ctx);
    const rctx = {
      taskId: ctx.lease.taskId,
      grant: ctx.grant,
      externalId: ctx.externalId,
      metadata: issued.metadata,
      naturalExpiry: issued.naturalExpiry,
    };
    expect(await d.verify({ ...rctx, secret: issued.secret })).toBe('still-valid');

    await d.revoke(rctx);
    const puts = aws.iam.commandCalls(PutRolePolicyCommand);
    expect(puts).toHaveLength(1);
    const bucket = Math.ceil(issued.naturalExpiry / 60_000) * 60;
    expect(puts[0]!.args[0].input.RoleName).toBe(ROLE);
    expect(puts[0]!.args[0].input.PolicyName).toBe(REVOCATION_POLICY_NAME);
    expect(JSON.parse(puts[0]!.args[0].input.PolicyDocument!)).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Sid: `TL${bucket}`,
          Effect: 'Deny',
          Action: '*',
          Resource: '*',
          Condition: { StringLike: { 'aws:userid': [`${issued.metadata!.roleId}:${ctx.externalId}`] } },
        },
      ],
    });
    expect(await d.verify({ ...rctx, secret: issued.secret })).toBe('rejected');

    // Idempotent: the deny is there, nothing is written again.
    await d.revoke(rctx);
    expect(aws.iam.commandCalls(PutRolePolicyCommand)).toHaveLength(1);
  });

  it('reports still-valid while IAM propagates, then rejected', async () => {
    const d = driver();
    const ctx = issueCtx();
    const issued = await d.issue(ctx);
    aws.propagationMs = 5_000;
    const vctx = {
      taskId: ctx.lease.taskId,
      grant: ctx.grant,
      externalId: ctx.externalId,
      metadata: issued.metadata,
      naturalExpiry: issued.naturalExpiry,
      secret: issued.secret,
    };
    await d.revoke(vctx);
    expect(await d.verify(vctx)).toBe('still-valid');
    clock += 5_001;
    expect(await d.verify(vctx)).toBe('rejected');
  });

  it('verifies without the secret only by expiry; a probe error that is not a denial is inconclusive', async () => {
    const d = driver();
    const ctx = issueCtx();
    const issued = await d.issue(ctx);
    const vctx = {
      taskId: ctx.lease.taskId,
      grant: ctx.grant,
      externalId: ctx.externalId,
      metadata: issued.metadata,
      naturalExpiry: issued.naturalExpiry,
    };
    expect(await d.verify(vctx)).toBe('inconclusive');
    aws.probeFailures.push(awsError('Throttling', 'Rate exceeded'));
    expect(await d.verify({ ...vctx, secret: issued.secret })).toBe('inconclusive');
    clock = issued.naturalExpiry + 1;
    expect(await d.verify(vctx)).toBe('rejected');
    // An expired session needs no deny.
    await d.revoke(vctx);
    expect(aws.iam.commandCalls(PutRolePolicyCommand)).toHaveLength(0);
  });

  it('prunes denies whose sessions have expired and keeps live ones and foreign statements', async () => {
    const roleId = aws.roles.get(ROLE)!.roleId;
    const expiredBucket = Math.ceil((clock - 3_600_000) / 60_000) * 60;
    const liveBucket = Math.ceil((clock + 600_000) / 60_000) * 60;
    const foreign = { Sid: 'OpsKeep', Effect: 'Deny', Action: 's3:DeleteBucket', Resource: '*' };
    aws.roles.get(ROLE)!.inlinePolicies.set(
      REVOCATION_POLICY_NAME,
      JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Sid: `TL${expiredBucket}`,
            Effect: 'Deny',
            Action: '*',
            Resource: '*',
            Condition: { StringLike: { 'aws:userid': [`${roleId}:tl.old.aaaaaaaaaaaaaaaa`] } },
          },
          {
            Sid: `TL${liveBucket}`,
            Effect: 'Deny',
            Action: '*',
            Resource: '*',
            Condition: { StringLike: { 'aws:userid': [`${roleId}:tl.live.bbbbbbbbbbbbbbbb`] } },
          },
          foreign,
        ],
      }),
    );
    const d = driver();
    const ctx = issueCtx();
    const issued = await d.issue(ctx);
    await d.revoke({
      taskId: ctx.lease.taskId,
      grant: ctx.grant,
      externalId: ctx.externalId,
      metadata: issued.metadata,
      naturalExpiry: issued.naturalExpiry,
    });
    const doc = JSON.parse(aws.iam.commandCalls(PutRolePolicyCommand)[0]!.args[0].input.PolicyDocument!) as PolicyDocument;
    const sids = doc.Statement.map((s) => s.Sid);
    expect(sids).not.toContain(`TL${expiredBucket}`);
    expect(sids).toContain(`TL${liveBucket}`);
    expect(doc.Statement).toContainEqual(foreign);
    expect(JSON.stringify(doc)).toContain(`${roleId}:${ctx.externalId}`);
    expect(JSON.stringify(doc)).not.toContain('tl.old.');
  });

  it('falls back to a role-wide TokenIssueTime deny when the document would not fit', async () => {
    const d = driver({ revocationPolicyMaxChars: 1024 });
    const sessions = [];
    for (let i = 0; i < 12; i++) {
      const ctx = issueCtx(`bulk-${i}`);
      const issued = await d.issue(ctx);
      sessions.push({ ctx, issued });
      clock += 61_000; // a different expiry minute each
    }
    for (const { ctx, issued } of sessions) {
      await d.revoke({
        taskId: ctx.lease.taskId,
        grant: ctx.grant,
        externalId: ctx.externalId,
        metadata: issued.metadata,
        naturalExpiry: issued.naturalExpiry,
      });
    }
    const doc = aws.revocationPolicy(ROLE)!;
    expect(JSON.stringify(doc).length).toBeLessThanOrEqual(1024);
    const cutoff = doc.Statement.find((s) => String(s.Sid).startsWith('TLCUT'));
    expect(cutoff).toMatchObject({
      Effect: 'Deny',
      Action: '*',
      Resource: '*',
      Condition: { DateLessThan: { 'aws:TokenIssueTime': expect.stringMatching(/Z$/) } },
    });
    // The cutoff is rounded up past this second, and the session that overflowed keeps its own deny.
    expect(Date.parse((cutoff!.Condition as { DateLessThan: Record<string, string> }).DateLessThan['aws:TokenIssueTime']!)).toBeGreaterThan(
      clock,
    );
    const overflowed = sessions.findIndex(({ ctx }) => JSON.stringify(doc).includes(ctx.externalId));
    expect(overflowed).toBeGreaterThan(0);
    // The sessions revoked after it were already cut off (issued before the cutoff, by their
    // recorded STS issue time): nothing more was written for them.
    expect(aws.iam.commandCalls(PutRolePolicyCommand)).toHaveLength(overflowed + 1);
    // Every revoked session is rejected, the ones denied one by one and the ones cut off.
    for (const { ctx, issued } of sessions) {
      expect(
        await d.verify({
          taskId: ctx.lease.taskId,
          grant: ctx.grant,
          externalId: ctx.externalId,
          metadata: issued.metadata,
          naturalExpiry: issued.naturalExpiry,
          secret: issued.secret,
        }),
      ).toBe('rejected');
    }
    // A session issued after the cutoff is unaffected.
    clock += 3_000;
    const fresh = await d.issue(issueCtx('after-cutoff'));
    expect(
      await d.verify({
        taskId: 'after-cutoff',
        grant: { target: 'deploy-role', access: 'read' },
        externalId: 'x',
        naturalExpiry: fresh.naturalExpiry,
        secret: fresh.secret,
      }),
    ).toBe('still-valid');
  });
});

describe('revocation document (pure)', () => {
  const now = Date.UTC(2030, 0, 1);
  const opts = { now, maxChars: 10_240, maxSessionMs: 3_600_000 };

  it('groups sessions expiring in the same minute into one statement', () => {
    let doc = parsePolicyDocument(undefined);
    doc = addSessionDeny(doc, { userId: 'AROA1:a', expiresAt: now + 590_000 }, opts).document;
    doc = addSessionDeny(doc, { userId: 'AROA1:b', expiresAt: now + 595_500 }, opts).document;
    expect(doc.Statement).toHaveLength(1);
    expect(doc.Statement[0]!.Condition).toEqual({ StringLike: { 'aws:userid': ['AROA1:a', 'AROA1:b'] } });
    expect(addSessionDeny(doc, { userId: 'AROA1:a', expiresAt: now + 590_000 }, opts)).toMatchObject({ changed: false, mode: 'present' });
  });

  it('prunes a cutoff once every session it covered has expired', () => {
    const cutoffSec = Math.floor((now - 2 * 3_600_000) / 1000);
    const doc: PolicyDocument = {
      Version: '2012-10-17',
      Statement: [
        {
          Sid: `TLCUT${cutoffSec}`,
          Effect: 'Deny',
          Action: '*',
          Resource: '*',
          Condition: { DateLessThan: { 'aws:TokenIssueTime': 'x' } },
        },
      ],
    };
    const change = addSessionDeny(doc, { userId: 'AROA1:c', expiresAt: now + 60_000 }, opts);
    expect(change.pruned).toBe(1);
    expect(change.document.Statement.map((s) => s.Sid)).toEqual([`TL${Math.ceil((now + 60_000) / 60_000) * 60}`]);
  });

  it('reads URL-encoded documents as IAM returns them', () => {
    const text = JSON.stringify({ Version: '2012-10-17', Statement: [{ Sid: 'A', Effect: 'Deny', Action: '*', Resource: '*' }] });
    expect(parsePolicyDocument(encodeURIComponent(text)).Statement[0]!.Sid).toBe('A');
  });
});
