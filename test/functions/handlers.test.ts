/**
 * The real Lambda handlers, driven with EventBridge-in-SQS messages, against dynalite (the real
 * DynamoDB SDK), an embedded PostgreSQL and a local SPIFFE issuer. Only STS, IAM, Secrets
 * Manager, EventBridge, SQS and Step Functions are stand-ins (test/aws/fake-aws.ts).
 */
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { GetRoleCommand, IAMClient, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { CreateSecretCommand, DeleteSecretCommand, GetSecretValueCommand, PutResourcePolicyCommand } from '@aws-sdk/client-secrets-manager';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { AssumeRoleCommand } from '@aws-sdk/client-sts';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { startDynalite } from '../../local/dynalite.ts';
import type { DynaliteHandle } from '../../local/dynalite.ts';
import { startSpiffeIssuer } from '../../local/spiffe-issuer.ts';
import type { LocalSpiffeIssuer } from '../../local/spiffe-issuer.ts';
import type { LeaseRevoked } from '../../shared/events/schemas.ts';
import { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import { parseConfig } from '../../shared/policy/config.ts';
import { ENV } from '../../shared/runtime/env.ts';
import { PROBE_STATEMENT_SID, sessionNameFor, sourceIdentityFor } from '../../shared/targets/aws-role/driver.ts';
import { handler as operatorHandler } from '../../functions/operator.ts';
import { handler as reaperHandler } from '../../functions/reaper.ts';
import { handler as reverifyHandler } from '../../functions/reverify.ts';
import { handler as taskEndedHandler } from '../../functions/task-ended.ts';
import { handler as taskStartedHandler } from '../../functions/task-started.ts';
import { BROKER_PRINCIPALS_ENV, resetRuntime } from '../../functions/lib/runtime.ts';
import { ACCOUNT, awsError, FakeAws, REGION } from '../aws/fake-aws.ts';
import { connectWith, roleExists, useEmbeddedPostgres } from '../support/postgres.ts';
import { busEvent, busRecord, lambdaContext, sqsEvent, sqsRecord } from './helpers.ts';

const aws = new FakeAws();
const db = useEmbeddedPostgres();

const TD = 'test.tasklease.local';
const ETL = `spiffe://${TD}/etl/nightly`;
const READER = `arn:aws:iam::${ACCOUNT}:role/etl-workload`;
const BROKERS = [`arn:aws:iam::${ACCOUNT}:role/TaskLease-TaskStarted`, `arn:aws:iam::${ACCOUNT}:role/TaskLease-TaskEnded`];
const KMS_KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/0000aaaa-1111-2222-3333-444455556666`;
const BUS = 'tasklease-bus';
const REVERIFY_QUEUE = `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/tasklease-reverify`;
const ROLE = 'tasklease-deploy';
const ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/${ROLE}`;
const DEPLOY_POLICY = {
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Action: ['ecs:UpdateService'], Resource: `arn:aws:ecs:${REGION}:${ACCOUNT}:service/prod/*` }],
};
const PG_GRANT = { target: 'orders-db', access: 'read' };
const AWS_GRANT = { target: 'deploy-role', access: 'deploy' };

let dyn: DynaliteHandle;
let issuer: LocalSpiffeIssuer;
let ledger: DynamoDbLedger;
let adminSecretArn: string;
const svids: string[] = [];
const captured: string[] = [];
const savedEnv = { ...process.env };

const mint = async (spiffeId = ETL) => {
  const svid = await issuer.mint({ spiffeId, audience: 'tasklease' });
  svids.push(svid);
  return svid;
};
const ctx = lambdaContext();
const started = (detail: unknown) => taskStartedHandler(sqsEvent(busRecord('Task Started', detail)), ctx);
const ENGINE = `spiffe://${TD}/engines/step-functions`;
const ATTACKER = `spiffe://${TD}/etl/attacker`;
/** An authenticated Task Ended: a fresh SVID of the workload (or of `by`, e.g. the engine). */
const ended = async (taskId: string, outcome = 'succeeded', by = ETL) =>
  taskEndedHandler(sqsEvent(busRecord('Task Ended', { taskId, outcome, svid: await mint(by) })), ctx);
const eventsOf = (detailType: string) =>
  aws.events.filter((e) => e.DetailType === detailType).map((e) => JSON.parse(e.Detail!) as Record<string, unknown>);
const secretOf = (name: string) => JSON.parse(aws.secrets.get(name)!.value!) as Record<string, string>;
const logLines = () =>
  captured
    .join('')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

beforeAll(async () => {
  // Capture everything the handlers print (Powertools logs and EMF) for the assertions below.
  for (const stream of [process.stdout, process.stderr]) {
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      captured.push(String(chunk));
      return true;
    });
  }
  [issuer, dyn] = await Promise.all([startSpiffeIssuer({ trustDomain: TD }), startDynalite()]);
  ledger = new DynamoDbLedger(dyn.client, dyn.tableName);
  aws.addRole(ROLE);
  const pg = db();
  adminSecretArn = aws.addSecret('orders-db-admin', JSON.stringify({ username: pg.adminUser, password: pg.adminPassword })).arn;

  const config = {
    audience: 'tasklease',
    trustDomains: { [TD]: { bundle: { url: issuer.bundleUrl } } },
    targets: {
      'orders-db': {
        kind: 'postgres',
        settings: { host: pg.host, port: pg.port, database: pg.database, user: pg.adminUser, passwordSecret: adminSecretArn },
        access: { read: { groupRole: 'orders_read' } },
      },
      'deploy-role': {
        kind: 'aws-role',
        settings: { roleArn: ROLE_ARN, region: REGION },
        access: { deploy: { sessionPolicy: DEPLOY_POLICY } },
      },
    },
    rules: [
      {
        id: 'etl',
        spiffeId: `spiffe://${TD}/etl/*`,
        grants: ['orders-db.read', 'deploy-role.deploy'],
        maxLeaseSeconds: 3600,
        awsPrincipal: READER,
        endedBy: [ENGINE],
      },
    ],
    settings: { verifyDeadlineSeconds: 30 },
  };
  Object.assign(process.env, {
    [ENV.tableName]: dyn.tableName,
    [ENV.eventBusName]: BUS,
    // As the construct writes it: the validated config, defaults applied.
    [ENV.config]: JSON.stringify(parseConfig(JSON.stringify(config), 'handlers.test')),
    [ENV.secretsKmsKeyId]: KMS_KEY,
    [ENV.reverifyQueueUrl]: REVERIFY_QUEUE,
    [ENV.verifyDeadlineMs]: '1500',
    // dynalite has no TransactWriteItems: the handlers write one by one here (the emulated-AWS
    // suite runs the bundles against moto with transactions on, as deployed).
    [ENV.ledgerTransactions]: 'off',
    [BROKER_PRINCIPALS_ENV]: BROKERS.join(','),
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: 'tasklease-local',
    AWS_SECRET_ACCESS_KEY: 'tasklease-local',
    // The real DynamoDB client of the handlers talks to dynalite.
    AWS_ENDPOINT_URL_DYNAMODB: dyn.endpoint,
  });
});

afterAll(async () => {
  await resetRuntime();
  await Promise.all([dyn?.close(), issuer?.close()]);
  aws.restore();
  process.env = savedEnv;
  vi.restoreAllMocks();
});

beforeEach(() => aws.clearHistory());

describe('Task Started → Task Ended through the handlers', () => {
  it('aws-role grant: an STS session delivered through Secrets Manager, denied and proven rejected at the end', async () => {
    const taskId = 'run-1.deploy';
    const svid = await mint();
    const res = await started({
      taskId,
      svid,
      grants: [AWS_GRANT],
      maxDurationSeconds: 600,
      workflow: { engine: 'step-functions', runId: 'exec-1' },
      taskToken: 'sfn-token-1',
    });
    expect(res).toEqual({ batchItemFailures: [] });

    const sessionName = sessionNameFor(taskId, AWS_GRANT);
    expect(aws.sts.commandCalls(AssumeRoleCommand).map((c) => c.args[0].input)).toEqual([
      {
        RoleArn: ROLE_ARN,
        RoleSessionName: sessionName,
        Policy: JSON.stringify({
          ...DEPLOY_POLICY,
          Statement: [...DEPLOY_POLICY.Statement, { Sid: PROBE_STATEMENT_SID, Effect: 'Allow', Action: 'iam:GetRole', Resource: ROLE_ARN }],
        }),
        DurationSeconds: 900,
        SourceIdentity: sourceIdentityFor(ETL),
        Tags: [
          { Key: 'tasklease:task', Value: taskId },
          { Key: 'tasklease:workload', Value: ETL },
          { Key: 'tasklease:grant', Value: 'deploy-role.deploy' },
        ],
      },
    ]);

    const secretName = `tasklease/${taskId}/deploy-role.deploy`;
    expect(aws.sm.commandCalls(CreateSecretCommand)[0]!.args[0].input).toMatchObject({ Name: secretName, KmsKeyId: KMS_KEY });
    const restrict = aws.sm.commandCalls(PutResourcePolicyCommand)[0]!.args[0].input;
    expect(restrict.BlockPublicPolicy).toBe(true);
    expect(JSON.parse(restrict.ResourcePolicy!).Statement).toEqual([
      expect.objectContaining({ Effect: 'Allow', Principal: { AWS: READER } }),
      expect.objectContaining({ Effect: 'Deny', Condition: { ArnNotLike: { 'aws:PrincipalArn': [READER, ...BROKERS] } } }),
      expect.objectContaining({
        Sid: 'TaskleaseOnlyBrokerChanges',
        Effect: 'Deny',
        Condition: { ArnNotLike: { 'aws:PrincipalArn': BROKERS } },
      }),
    ]);

    // Lease Issued on the bus, and the Step Functions task answered with names, never values.
    expect(aws.events).toHaveLength(1);
    expect(aws.events[0]).toMatchObject({ EventBusName: BUS, Source: 'tasklease', DetailType: 'Lease Issued' });
    const issued = eventsOf('Lease Issued')[0]!;
    expect(issued).toMatchObject({ taskId, workload: ETL, rule: 'etl', credentials: [{ grant: AWS_GRANT, kind: 'aws-role', secretName }] });
    expect(aws.taskAnswers).toHaveLength(1);
    expect(aws.taskAnswers[0]!.kind).toBe('success');
    expect(aws.taskAnswers[0]!.input.taskToken).toBe('sfn-token-1');
    const output = JSON.parse(aws.taskAnswers[0]!.input.output as string);
    expect(output).toMatchObject({ taskId, expiresAt: expect.any(String), secrets: [{ grant: 'deploy-role.deploy', secretName }] });

    const active = await ledger.getLease(taskId);
    expect(active?.lease.state).toBe('active');
    expect(active?.credentials[0]).toMatchObject({
      state: 'issued',
      kind: 'aws-role',
      externalId: sessionName,
      metadata: { roleId: aws.roles.get(ROLE)!.roleId, sessionName },
    });

    // The workload reads its secret and uses the session.
    const creds = secretOf(secretName);
    const asWorkload = new IAMClient({
      region: REGION,
      credentials: { accessKeyId: creds.accessKeyId!, secretAccessKey: creds.secretAccessKey!, sessionToken: creds.sessionToken! },
    });
    await expect(asWorkload.send(new GetRoleCommand({ RoleName: ROLE }))).resolves.toBeDefined();

    expect(await ended(taskId)).toEqual({ batchItemFailures: [] });
    const put = aws.iam.commandCalls(PutRolePolicyCommand);
    expect(put).toHaveLength(1);
    expect(put[0]!.args[0].input).toMatchObject({ RoleName: ROLE, PolicyName: 'tasklease-revocations' });
    expect(JSON.parse(put[0]!.args[0].input.PolicyDocument!).Statement[0]).toMatchObject({
      Effect: 'Deny',
      Action: '*',
      Resource: '*',
      Condition: { StringLike: { 'aws:userid': [`${aws.roles.get(ROLE)!.roleId}:${sessionName}`] } },
    });
    expect(aws.sm.commandCalls(DeleteSecretCommand)[0]!.args[0].input).toEqual({ SecretId: secretName, ForceDeleteWithoutRecovery: true });
    expect(aws.secrets.has(secretName)).toBe(false);

    const revoked = eventsOf('Lease Revoked')[0] as unknown as LeaseRevoked;
    expect(revoked).toMatchObject({ taskId, outcome: 'succeeded', credentials: [{ grant: AWS_GRANT, verified: true, state: 'verified' }] });
    expect(revoked.credentials[0]!.trustDebtMs).toBeGreaterThanOrEqual(0);
    const closed = await ledger.getLease(taskId);
    expect(closed?.lease.state).toBe('closed');
    expect(closed?.credentials[0]).toMatchObject({ state: 'verified' });
    expect(closed?.credentials[0]!.avoidedDebtMs).toBeGreaterThan(800_000); // a 900 s session, dead in well under a minute

    await expect(asWorkload.send(new GetRoleCommand({ RoleName: ROLE }))).rejects.toMatchObject({ name: 'AccessDenied' });
  });

  it('postgres grant: a login role usable by the workload, refused after Task Ended; admin password from Secrets Manager', async () => {
    const taskId = 'run-2.extract';
    expect(await started({ taskId, svid: await mint(), grants: [PG_GRANT], maxDurationSeconds: 600 })).toEqual({ batchItemFailures: [] });
    expect(aws.sm.commandCalls(GetSecretValueCommand).some((c) => c.args[0].input.SecretId === adminSecretArn)).toBe(true);

    const secretName = `tasklease/${taskId}/orders-db.read`;
    const secret = secretOf(secretName);
    const client = await connectWith(secret);
    const { rows } = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM orders');
    expect(Number(rows[0]!.n)).toBeGreaterThanOrEqual(0);
    await client.end();

    expect(await ended(taskId)).toEqual({ batchItemFailures: [] });
    const revoked = eventsOf('Lease Revoked')[0] as unknown as LeaseRevoked;
    expect(revoked.credentials).toEqual([expect.objectContaining({ grant: PG_GRANT, kind: 'postgres', verified: true })]);
    await expect(connectWith(secret)).rejects.toMatchObject({ code: expect.stringMatching(/^28/) });
    expect(await roleExists(db(), secret.username!)).toBe(false);
    expect(aws.secrets.has(secretName)).toBe(false);
    expect((await ledger.getLease(taskId))?.lease.state).toBe('closed');
  });
});

describe('bad input', () => {
  it('reports exactly the malformed message as a batch item failure and processes the rest', async () => {
    const good = busRecord('Task Started', { taskId: 'run-3.good', svid: await mint(), grants: [PG_GRANT], maxDurationSeconds: 600 });
    const badSvid = await mint();
    const bad = busRecord('Task Started', {
      taskId: 'run-3.bad',
      svid: badSvid,
      grants: [{ target: 'Orders DB', access: 'read' }],
      maxDurationSeconds: 600,
    });
    const alsoGood = busRecord('Task Started', {
      taskId: 'run-3.denied',
      svid: await mint(`spiffe://${TD}/billing/writer`),
      grants: [PG_GRANT],
      maxDurationSeconds: 600,
    });
    const res = await taskStartedHandler(sqsEvent(good, bad, alsoGood), ctx);

    expect(res).toEqual({ batchItemFailures: [{ itemIdentifier: bad.messageId }] });
    expect((await ledger.getLease('run-3.good'))?.lease.state).toBe('active');
    // A policy denial is an answer, not a failure: processed, recorded, published.
    expect((await ledger.getLease('run-3.denied'))?.lease).toMatchObject({ state: 'denied', denial: { code: 'policy-no-rule' } });
    expect(
      eventsOf('Lease Denied')
        .map((d) => [d.taskId, (d.reason as { code: string }).code])
        .sort(),
    ).toEqual([
      ['run-3.bad', 'invalid-event'],
      ['run-3.denied', 'policy-no-rule'],
    ]);
    const rejected = logLines().find((l) => l.messageId === bad.messageId && l.level === 'WARN');
    expect(rejected).toMatchObject({
      message: expect.stringContaining('malformed message rejected'),
      reason: expect.stringContaining('grants[0].target'),
    });
    expect(captured.join('')).not.toContain(badSvid);

    await ended('run-3.good');
  });

  it('fails a body that is not an EventBridge event, or an event on the wrong queue, without quoting it', async () => {
    const svid = await mint();
    const notJson = sqsRecord(`{"svid": "${svid}", oops`);
    const wrongType = busRecord('Task Ended', { taskId: 'x', outcome: 'succeeded' });
    const noEnvelope = sqsRecord(JSON.stringify({ taskId: 'y', svid }));
    const res = await taskStartedHandler(sqsEvent(notJson, wrongType, noEnvelope), ctx);
    expect(res.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(
      [notJson.messageId, wrongType.messageId, noEnvelope.messageId].sort(),
    );
    const reasons = logLines()
      .filter((l) => [notJson.messageId, wrongType.messageId, noEnvelope.messageId].includes(l.messageId as string))
      .map((l) => l.reason);
    expect(reasons).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/not JSON/),
        expect.stringMatching(/detail-type 'Task Ended' reached the 'Task Started' queue/),
        expect.stringMatching(/not an EventBridge event/),
      ]),
    );
    expect(captured.join('')).not.toContain(svid);
  });

  it('refuses a body with a duplicate key (issue 12, attack 5): neither task id is leased, and the reason names the key', async () => {
    const svid = await mint();
    // An engine reading the first key would end d1 while a last-key-wins parser leased d2.
    const body = JSON.stringify(busEvent('Task Started', { taskId: 'dup-1', svid, grants: [PG_GRANT], maxDurationSeconds: 600 })).replace(
      '"taskId":"dup-1"',
      '"taskId":"dup-1","taskId":"dup-2"',
    );
    expect(body).toContain('"taskId":"dup-1","taskId":"dup-2"');
    const record = sqsRecord(body);
    const res = await taskStartedHandler(sqsEvent(record), ctx);
    expect(res).toEqual({ batchItemFailures: [{ itemIdentifier: record.messageId }] });
    expect(await ledger.getLease('dup-1')).toBeUndefined();
    expect(await ledger.getLease('dup-2')).toBeUndefined();
    const rejected = logLines().find((l) => l.messageId === record.messageId && l.level === 'WARN');
    expect(rejected?.reason).toMatch(/duplicate key detail\.taskId/);
    expect(captured.join('')).not.toContain(svid);
  });

  it('an STS error on one credential rolls the whole lease back and keeps every ledger record', async () => {
    const taskId = 'run-4.mixed';
    aws.assumeRoleFailures.push(awsError('Throttling', 'Rate exceeded'));
    const res = await started({
      taskId,
      svid: await mint(),
      grants: [PG_GRANT, AWS_GRANT],
      maxDurationSeconds: 600,
      taskToken: 'sfn-token-4',
    });
    expect(res).toEqual({ batchItemFailures: [] });

    const found = await ledger.getLease(taskId);
    expect(found?.lease).toMatchObject({ state: 'denied', outcome: 'issue-failed', denial: { code: 'issue-failed' } });
    expect(found?.lease.denial?.message).toMatch(/deploy-role\.deploy .*Throttling/);
    // Both credentials are on record: the database role issued then revoked, the session never issued.
    const byGrant = Object.fromEntries(found!.credentials.map((c) => [`${c.grant.target}.${c.grant.access}`, c]));
    expect(Object.keys(byGrant).sort()).toEqual(['deploy-role.deploy', 'orders-db.read']);
    expect(byGrant['orders-db.read']).toMatchObject({ state: 'verified', kind: 'postgres' });
    expect(byGrant['deploy-role.deploy']).toMatchObject({ state: 'verified', kind: 'aws-role' });
    expect(aws.secrets.has(`tasklease/${taskId}/orders-db.read`)).toBe(false);
    expect(eventsOf('Lease Denied')).toEqual([
      expect.objectContaining({ taskId, reason: expect.objectContaining({ code: 'issue-failed' }) }),
    ]);
    expect(aws.taskAnswers).toEqual([
      { kind: 'failure', input: expect.objectContaining({ taskToken: 'sfn-token-4', error: 'issue-failed' }) },
    ]);
  });

  it('after an ambiguous STS failure (5xx) the unproven session stays on record and is handed to the re-verify queue', async () => {
    const taskId = 'run-5.ambiguous';
    aws.assumeRoleFailures.push(awsError('InternalFailure', 'We encountered an internal error', 500));
    expect(await started({ taskId, svid: await mint(), grants: [AWS_GRANT], maxDurationSeconds: 600 })).toEqual({ batchItemFailures: [] });

    const found = await ledger.getLease(taskId);
    expect(found?.lease.state).toBe('ending');
    expect(found?.credentials[0]).toMatchObject({
      state: 'revoking',
      externalId: sessionNameFor(taskId, AWS_GRANT),
      lastError: expect.stringMatching(/inconclusive/),
    });
    // A deny covers any session of that name, in case STS did create one.
    expect(JSON.stringify(aws.revocationPolicy(ROLE))).toContain(`:${sessionNameFor(taskId, AWS_GRANT)}`);
    const msg = aws.sqs
      .commandCalls(SendMessageCommand)
      .map((c) => c.args[0].input)
      .find((m) => m.QueueUrl === REVERIFY_QUEUE);
    expect(JSON.parse(msg!.MessageBody!)).toEqual({ taskId, grant: AWS_GRANT });
    expect(msg!.DelaySeconds).toBeGreaterThanOrEqual(1);
  });
});

describe('forged events at the Lambda boundary (issue 12)', () => {
  const pgStart = async (taskId: string, taskToken?: string) =>
    started({ taskId, svid: await mint(), grants: [PG_GRANT], maxDurationSeconds: 600, ...(taskToken ? { taskToken } : {}) });

  it("a Task Started with a garbage or untrusted SVID and a victim's task token never answers the token", async () => {
    const rogue = await startSpiffeIssuer({ trustDomain: TD });
    const untrusted = await rogue.mint({ spiffeId: ETL, audience: 'tasklease' });
    svids.push(untrusted);
    await rogue.close();
    for (const [taskId, svid] of [
      ['forged-1', 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'],
      ['forged-2', untrusted],
    ] as const) {
      expect(await started({ taskId, svid, grants: [PG_GRANT], maxDurationSeconds: 600, taskToken: 'victim-token' })).toEqual({
        batchItemFailures: [],
      });
    }
    expect(eventsOf('Lease Denied').map((d) => (d.reason as { code: string }).code)).toEqual(['svid-invalid', 'svid-untrusted']);
    expect(aws.taskAnswers).toEqual([]);
  });

  it("the attacker's own valid SVID with a victim's token for the victim's task: the token is not answered with the attacker's lease", async () => {
    expect(await pgStart('victim-1', 'victim-token-1')).toEqual({ batchItemFailures: [] });
    expect(aws.taskAnswers.map((a) => [a.kind, a.input.taskToken])).toEqual([['success', 'victim-token-1']]);
    aws.clearHistory();
    const attack = {
      taskId: 'victim-1',
      svid: await mint(ATTACKER),
      grants: [PG_GRANT],
      maxDurationSeconds: 600,
      taskToken: 'victim-token-1b',
    };
    expect(await started(attack)).toEqual({ batchItemFailures: [] });
    expect(aws.taskAnswers).toEqual([]);
    expect(eventsOf('Lease Issued')).toEqual([]);
    expect(await ended('victim-1')).toEqual({ batchItemFailures: [] });
  });

  it("an end with no SVID, an untrusted one, or another workload's: nothing revoked, a reasoned Lease Denied (request end)", async () => {
    const taskId = 'forged-end-1';
    expect(await pgStart(taskId)).toEqual({ batchItemFailures: [] });
    const secret = secretOf(`tasklease/${taskId}/orders-db.read`);
    aws.clearHistory();

    const noSvid = busRecord('Task Ended', { taskId, outcome: 'succeeded' });
    expect(await taskEndedHandler(sqsEvent(noSvid), ctx)).toEqual({ batchItemFailures: [{ itemIdentifier: noSvid.messageId }] });
    const rogue = await startSpiffeIssuer({ trustDomain: TD });
    const untrusted = await rogue.mint({ spiffeId: ETL, audience: 'tasklease' });
    svids.push(untrusted);
    await rogue.close();
    expect(await taskEndedHandler(sqsEvent(busRecord('Task Ended', { taskId, outcome: 'succeeded', svid: untrusted })), ctx)).toEqual({
      batchItemFailures: [],
    });
    expect(await ended(taskId, 'succeeded', ATTACKER)).toEqual({ batchItemFailures: [] });

    expect((await ledger.getLease(taskId))?.lease.state).toBe('active');
    const still = await connectWith(secret);
    await still.end();
    expect(eventsOf('Lease Revoked')).toEqual([]);
    expect(eventsOf('Lease Denied').map((d) => [d.taskId, d.request, (d.reason as { code: string }).code])).toEqual([
      [taskId, 'end', 'invalid-event'],
      [taskId, 'end', 'end-unauthenticated'],
      [taskId, 'end', 'end-not-allowed'],
    ]);
    expect(logLines().filter((l) => l.message === 'Task Ended rejected')).toHaveLength(2);

    // The engine the rule names in endedBy may end it on the workload's behalf.
    expect(await ended(taskId, 'succeeded', ENGINE)).toEqual({ batchItemFailures: [] });
    expect((await ledger.getLease(taskId))?.lease).toMatchObject({ state: 'closed', endedBy: ENGINE });
    await expect(connectWith(secret)).rejects.toMatchObject({ code: expect.stringMatching(/^28/) });
  });

  it('a Task Ended before the start, signed by another workload, does not block the real start', async () => {
    expect(await ended('forged-tomb-1', 'cancelled', ATTACKER)).toEqual({ batchItemFailures: [] });
    expect(await pgStart('forged-tomb-1', 'real-token')).toEqual({ batchItemFailures: [] });
    expect((await ledger.getLease('forged-tomb-1'))?.lease).toMatchObject({ state: 'active', workload: ETL });
    expect(aws.taskAnswers.map((a) => [a.kind, a.input.taskToken])).toEqual([['success', 'real-token']]);
    expect(await ended('forged-tomb-1')).toEqual({ batchItemFailures: [] });
  });
});

describe('bound SVIDs and task tokens, the end measured from the queue (issues 12, 13)', () => {
  const pgStart = async (taskId: string, extra: Record<string, unknown> = {}) =>
    started({ taskId, svid: await mint(), grants: [PG_GRANT], maxDurationSeconds: 600, ...extra });
  const endWith = (taskId: string, svid: string, sentAt?: number) => {
    const record = busRecord('Task Ended', { taskId, outcome: 'succeeded', svid });
    if (sentAt !== undefined) record.attributes.SentTimestamp = String(sentAt);
    return taskEndedHandler(sqsEvent(record), ctx);
  };

  it('an end SVID copied off the bus cannot end a second task: end-svid-reused, the second lease stays live', async () => {
    expect(await pgStart('bound-end-1')).toEqual({ batchItemFailures: [] });
    expect(await pgStart('bound-end-2')).toEqual({ batchItemFailures: [] });
    const endSvid = await mint();
    expect(await endWith('bound-end-1', endSvid)).toEqual({ batchItemFailures: [] });
    aws.clearHistory();
    expect(await endWith('bound-end-2', endSvid)).toEqual({ batchItemFailures: [] });
    expect((await ledger.getLease('bound-end-2'))?.lease.state).toBe('active');
    expect(eventsOf('Lease Denied').map((d) => [d.taskId, d.request, (d.reason as { code: string }).code])).toEqual([
      ['bound-end-2', 'end', 'end-svid-reused'],
    ]);
    expect(eventsOf('Lease Revoked')).toEqual([]);
    // The same end delivered again (SQS at-least-once) is a duplicate, not a reuse.
    expect(await endWith('bound-end-1', endSvid)).toEqual({ batchItemFailures: [] });
    expect(eventsOf('Lease Denied')).toHaveLength(1);
    expect(await ended('bound-end-2')).toEqual({ batchItemFailures: [] });
  });

  it('a task token already bound to one task is never answered for another: task-token-reused', async () => {
    expect(await pgStart('token-a', { taskToken: 'shared-token-1' })).toEqual({ batchItemFailures: [] });
    aws.clearHistory();
    expect(await pgStart('token-b', { taskToken: 'shared-token-1' })).toEqual({ batchItemFailures: [] });
    expect(aws.taskAnswers).toEqual([]);
    expect(eventsOf('Lease Denied').map((d) => [d.taskId, (d.reason as { code: string }).code])).toEqual([
      ['token-b', 'task-token-reused'],
    ]);
    expect(await ledger.getLease('token-b')).toMatchObject({
      lease: { state: 'denied', denial: { code: 'task-token-reused' } },
      credentials: [],
    });
    const logs = captured.join('');
    expect(logs).not.toContain('shared-token-1');
    for (const id of ['token-a']) expect(await ended(id)).toEqual({ batchItemFailures: [] });
  });

  it("without the engine's endedAt, the end is the message's SentTimestamp: the queue wait counts as trust debt", async () => {
    expect(await pgStart('queued-end-1')).toEqual({ batchItemFailures: [] });
    // The message waited 300 ms in the queue before the function got it.
    const sentAt = Date.now();
    await new Promise((r) => setTimeout(r, 300));
    expect(await endWith('queued-end-1', await mint(), sentAt)).toEqual({ batchItemFailures: [] });
    const closed = await ledger.getLease('queued-end-1');
    expect(closed?.lease).toMatchObject({ state: 'closed', endedAt: sentAt, endedAtSource: 'queue' });
    const c = closed!.credentials[0]!;
    expect(c.trustDebtMs).toBeGreaterThanOrEqual(300);
    expect(c.pipelineMs).toBeGreaterThanOrEqual(300);
    expect(eventsOf('Lease Revoked')[0]).toMatchObject({ taskId: 'queued-end-1', endedAtSource: 'queue' });
  });
});

describe("real engines' task ids (issue 14)", () => {
  it("an Airflow run id (':' and '+') and a Jenkins path get a valid Secrets Manager name, an STS session, and are revoked", async () => {
    for (const taskId of ['scheduled__2026-12-02T00:00:00+00:00', 'job/deploy/42#LEASE']) {
      expect(await started({ taskId, svid: await mint(), grants: [AWS_GRANT], maxDurationSeconds: 600 })).toEqual({
        batchItemFailures: [],
      });
      const name = aws.sm.commandCalls(CreateSecretCommand).at(-1)!.args[0].input.Name!;
      // What Secrets Manager accepts; the task id stays readable in it.
      expect(name).toMatch(/^[A-Za-z0-9/_+=.@-]{1,512}$/);
      expect(name).toMatch(/^tasklease\/(scheduled__2026-12-02T00-00-00-00-00|job-deploy-42-LEASE)=[0-9a-f]{20}\/deploy-role\.deploy$/);
      expect(eventsOf('Lease Issued').at(-1)).toMatchObject({ taskId, credentials: [{ secretName: name }] });
      expect(await ended(taskId)).toEqual({ batchItemFailures: [] });
      expect((await ledger.getLease(taskId))?.lease.state).toBe('closed');
    }
  });
});

describe('break-glass operator function (issue 12)', () => {
  const invoke = (request: unknown) => operatorHandler(request, ctx);
  const BY = 'arn:aws:sts::123456789012:assumed-role/oncall/alice';

  it('revokes a task now and proves it; a malformed request is answered with the field, not thrown', async () => {
    expect(await started({ taskId: 'op-1', svid: await mint(), grants: [PG_GRANT], maxDurationSeconds: 600 })).toEqual({
      batchItemFailures: [],
    });
    const secret = secretOf('tasklease/op-1/orders-db.read');
    const res = await invoke({ action: 'revoke-task', taskId: 'op-1', reason: 'leaked in a build log', by: BY });
    expect(res).toMatchObject({
      ok: true,
      result: { action: 'revoke-task', taskId: 'op-1', found: true, revoked: [{ status: 'closed' }] },
    });
    expect((await ledger.getLease('op-1'))?.lease).toMatchObject({
      state: 'closed',
      endedBy: `operator:${BY}`,
      endReason: 'leaked in a build log',
    });
    await expect(connectWith(secret)).rejects.toMatchObject({ code: expect.stringMatching(/^28/) });
    expect(eventsOf('Lease Revoked').find((e) => e.taskId === 'op-1')).toMatchObject({ endedAtSource: 'operator' });

    expect(await invoke({ action: 'revoke-task', taskId: 'op-1' })).toEqual({ ok: false, error: expect.stringMatching(/reason/) });
  });

  it('revoke-workload locks it: its next Task Started is denied workload-locked until unlock', async () => {
    const workload = `spiffe://${TD}/etl/locked`;
    expect(await started({ taskId: 'op-w1', svid: await mint(workload), grants: [PG_GRANT], maxDurationSeconds: 600 })).toEqual({
      batchItemFailures: [],
    });
    const res = await invoke({ action: 'revoke-workload', workload, reason: 'compromised runner', by: BY });
    expect(res).toMatchObject({
      ok: true,
      result: { action: 'revoke-workload', locked: true, revoked: [{ taskId: 'op-w1', status: 'closed' }] },
    });
    aws.clearHistory();
    expect(await started({ taskId: 'op-w2', svid: await mint(workload), grants: [PG_GRANT], maxDurationSeconds: 600 })).toEqual({
      batchItemFailures: [],
    });
    expect(eventsOf('Lease Denied').map((d) => [d.taskId, (d.reason as { code: string }).code])).toEqual([['op-w2', 'workload-locked']]);
    expect(await invoke({ action: 'unlock', workload, reason: 'runner rebuilt', by: BY })).toMatchObject({
      ok: true,
      result: { action: 'unlock', unlocked: true, lock: { by: BY, reason: 'compromised runner' } },
    });
    // The denied task id may start once the workload is unlocked.
    expect(await started({ taskId: 'op-w2', svid: await mint(workload), grants: [PG_GRANT], maxDurationSeconds: 600 })).toEqual({
      batchItemFailures: [],
    });
    expect((await ledger.getLease('op-w2'))?.lease.state).toBe('active');
    expect(await ended('op-w2', 'succeeded', workload)).toEqual({ batchItemFailures: [] });
  });
});

describe('re-verification and the reaper', () => {
  it('a deny still propagating hands over to the SQS delay, and the re-verify message closes the lease', async () => {
    const taskId = 'run-6.slow-iam';
    expect(await started({ taskId, svid: await mint(), grants: [AWS_GRANT], maxDurationSeconds: 600 })).toEqual({ batchItemFailures: [] });
    aws.propagationMs = 60_000;
    expect(await ended(taskId)).toEqual({ batchItemFailures: [] });

    const open = await ledger.getLease(taskId);
    expect(open?.lease.state).toBe('ending');
    expect(open?.credentials[0]).toMatchObject({ state: 'still-valid' });
    expect(open!.credentials[0]!.verifyAttempts).toBeGreaterThan(1);
    expect(eventsOf('Revocation Failed')[0]).toMatchObject({ taskId, state: 'still-valid' });
    const message = aws.sqs
      .commandCalls(SendMessageCommand)
      .map((c) => c.args[0].input)
      .find((m) => m.QueueUrl === REVERIFY_QUEUE)!;
    expect(message.DelaySeconds).toBeGreaterThanOrEqual(1);
    expect(message.DelaySeconds).toBeLessThanOrEqual(900);
    // StillValid reached CloudWatch (EMF), dimensioned by target.
    expect(logLines().some((l) => l.StillValid === 1 && l.Target === 'deploy-role' && l.TargetKind === 'aws-role')).toBe(true);

    // The reaper reports the open debt.
    const report = await reaperHandler({}, ctx);
    if (!('openDebt' in report)) throw new Error(`the reaper did not run: ${report.skipped}`);
    expect(report.openDebt.count).toBeGreaterThanOrEqual(1);
    expect(
      logLines().some(
        (l) => typeof l.OpenDebtCount === 'number' && (l.OpenDebtCount as number) >= 1 && typeof l.OpenDebtOldestMs === 'number',
      ),
    ).toBe(true);
    // And the blast radius of the workload whose credential is still live, by workload.
    expect(
      logLines().some(
        (l) =>
          l.BlastRadiusCredentials === 1 &&
          l.BlastRadiusTargets === 1 &&
          typeof l.Workload === 'string' &&
          (l.Workload as string).startsWith('spiffe://'),
      ),
    ).toBe(true);

    // A message arriving before the credential's next check was superseded by a later attempt.
    const earlyRecord = sqsRecord(message.MessageBody!);
    expect(await reverifyHandler(sqsEvent(earlyRecord), ctx)).toEqual({ batchItemFailures: [] });
    expect(logLines().find((l) => l.messageId === earlyRecord.messageId)).toMatchObject({
      message: 'message processed',
      status: 'superseded',
    });
    expect((await ledger.getLease(taskId))?.credentials[0]?.state).toBe('still-valid');

    // IAM catches up; the delayed message arrives.
    aws.propagationMs = 0;
    aws.now = () => Date.now() + 61_000;
    const due = (await ledger.getLease(taskId))!.credentials[0]!.nextCheckAt!;
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now() + 50)));
    aws.clearHistory();
    const dueRecord = sqsRecord(message.MessageBody!);
    expect(await reverifyHandler(sqsEvent(dueRecord), ctx)).toEqual({ batchItemFailures: [] });
    aws.now = Date.now;
    expect(logLines().find((l) => l.messageId === dueRecord.messageId)).toMatchObject({ status: 'verified', lease: 'closed' });

    const closed = await ledger.getLease(taskId);
    expect(closed?.lease.state).toBe('closed');
    expect(closed?.credentials[0]).toMatchObject({ state: 'verified' });
    expect(eventsOf('Lease Revoked')[0]).toMatchObject({ taskId, credentials: [{ verified: true }] });
  });

  it('a malformed re-verify message is a batch item failure', async () => {
    const bad = sqsRecord(JSON.stringify({ taskId: 't', grant: { target: 'X' } }));
    expect(await reverifyHandler(sqsEvent(bad), ctx)).toEqual({ batchItemFailures: [{ itemIdentifier: bad.messageId }] });
  });
});

describe('no secret leaves the broker', () => {
  it('logs, events and ledger items never contain a password, an STS secret key or session token, or an SVID', async () => {
    const secrets = [
      ...aws.writtenSecretValues.flatMap((v) => {
        const { password, secretAccessKey, sessionToken } = JSON.parse(v) as Record<string, string | undefined>;
        return [password, secretAccessKey, sessionToken].filter((s): s is string => s !== undefined);
      }),
      ...aws.sessionSecrets(),
      db().adminPassword,
      ...svids,
    ];
    expect(aws.sessionSecrets().length).toBeGreaterThan(0);
    expect(secrets.length).toBeGreaterThan(10);
    const logs = captured.join('');
    const events = JSON.stringify(aws.events);
    const items = JSON.stringify((await dyn.client.send(new ScanCommand({ TableName: dyn.tableName }))).Items);
    for (const s of secrets) {
      expect(logs.includes(s), 'a secret reached the logs').toBe(false);
      expect(events.includes(s), 'a secret reached an event').toBe(false);
      expect(items.includes(s), 'a secret reached the ledger').toBe(false);
    }
    // And the logs were really captured.
    expect(logLines().some((l) => l.message === 'lease issued')).toBe(true);
  });
});
