/**
 * The deployed stack driven as an engine and a workload would drive it: the real bundles run by
 * the emulated Lambda service (lambda-service.ts) on the deployed queues; engines put events on
 * the deployed bus, whose rules (moto) deliver them to the queues; the workload reads its secret
 * with its own role's session; IAM decisions moto cannot make (conditions, session policies,
 * resource and bus policies) are made by iam-simulate in the authorizer (authorizer.ts).
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient, PutEventsCommand, PutRuleCommand, PutTargetsCommand } from '@aws-sdk/client-eventbridge';
import { CreateRoleCommand, GetRoleCommand, GetRolePolicyCommand, IAMClient, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { CreateSecretCommand, DescribeSecretCommand, GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { CreateQueueCommand, DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startSpiffeIssuer } from '../../local/spiffe-issuer.ts';
import type { LocalSpiffeIssuer } from '../../local/spiffe-issuer.ts';
import { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import { Authorizer } from './authorizer.ts';
import {
  ACCOUNT,
  ADMIN_SECRET_NAME,
  AUDIENCE,
  AWS_ROLE_TARGET,
  ENGINE_ROLE_NAME,
  REGION,
  STARTER_ENGINE_ROLE_NAME,
  STRANGER_ROLE_NAME,
  TARGET_ROLE_NAME,
  TRUST_DOMAIN,
  WORKLOAD_ROLE_NAME,
  roleArn,
} from './config.ts';
import { deployedFunctions, LambdaService } from './lambda-service.ts';
import { clientOptions } from './sdk.ts';
import type { SessionCredentials } from './sdk.ts';

const motoEndpoint = inject('motoEndpoint');
const deployment = inject('deployment');
const ports = inject('ports');
const assembly = join(inject('workDir'), 'cdk.out');
const template = JSON.parse(readFileSync(join(assembly, 'TaskLease.template.json'), 'utf8')) as {
  Resources: Record<string, { Type: string; Properties: Record<string, unknown>; Metadata?: Record<string, string> }>;
};
const physical = (logicalId: string) => deployment.resources.find((r) => r.logicalId === logicalId)!.physicalId;
const BUS = deployment.outputs.BusName!;
const TABLE = deployment.outputs.LedgerTableName!;
const WORKLOAD = `spiffe://${TRUST_DOMAIN}/etl/nightly`;
const GRANT = { target: AWS_ROLE_TARGET, access: 'read' };
/** How long a role policy change takes to reach IAM's decisions here (AWS: seconds). */
const PROPAGATION_MS = 3_000;

const admin = {
  iam: new IAMClient(clientOptions(motoEndpoint)),
  sm: new SecretsManagerClient(clientOptions(motoEndpoint)),
  sqs: new SQSClient(clientOptions(motoEndpoint)),
  events: new EventBridgeClient(clientOptions(motoEndpoint)),
};
let issuer: LocalSpiffeIssuer;
let forger: LocalSpiffeIssuer;
let bundleServer: Server;
let authorizer: Authorizer;
let service: LambdaService;
let ledger: DynamoDbLedger;
let observerUrl: string;
const seen: { 'detail-type': string; detail: Record<string, unknown> }[] = [];
const secretValues: string[] = [];

const allowAll = (actions: string[], resource = '*', condition?: unknown) =>
  JSON.stringify({
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Action: actions, Resource: resource, ...(condition ? { Condition: condition } : {}) }],
  });

async function createRole(name: string, trusted: string, policy: string, tags: Record<string, string> = {}) {
  await admin.iam.send(
    new CreateRoleCommand({
      RoleName: name,
      AssumeRolePolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          { Effect: 'Allow', Principal: { AWS: trusted }, Action: ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity'] },
        ],
      }),
      Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })),
    }),
  );
  await admin.iam.send(new PutRolePolicyCommand({ RoleName: name, PolicyName: `${name}-access`, PolicyDocument: policy }));
}

/** A session of `role` created through the authorizer (which then knows and decides for it). */
async function sessionOf(role: string): Promise<SessionCredentials> {
  const sts = new STSClient(clientOptions(authorizer.endpoint));
  const { Credentials: c } = await sts.send(new AssumeRoleCommand({ RoleArn: roleArn(role), RoleSessionName: `${role}-test` }));
  sts.destroy();
  return { accessKeyId: c!.AccessKeyId!, secretAccessKey: c!.SecretAccessKey!, sessionToken: c!.SessionToken! };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${diagnostics()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** What to look at when something never arrives (no parameters: they may hold secrets). */
function diagnostics(): string {
  const pollers = service.pollers.map((p) => `${p.queueArn.split(':').pop()}: ${JSON.stringify(p.stats)}`);
  const refused = authorizer.calls
    .filter((c) => c.status !== 200 && c.status !== 0)
    .map((c) => `${c.status} ${c.service}:${c.operation} by ${c.session?.roleName ?? c.accessKeyId}`);
  return ['pollers:', ...pollers, 'non-200 calls:', ...refused.slice(-20), 'function output:', ...service.logs().slice(-40)].join('\n');
}

/** Drains the observer queue (a rule of ours on the deployed bus: every event tasklease puts). */
async function drainObserver(): Promise<void> {
  const got = await admin.sqs.send(new ReceiveMessageCommand({ QueueUrl: observerUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
  for (const m of got.Messages ?? []) {
    seen.push(JSON.parse(m.Body!) as (typeof seen)[number]);
    await admin.sqs.send(new DeleteMessageCommand({ QueueUrl: observerUrl, ReceiptHandle: m.ReceiptHandle! }));
  }
}
const busEvent = (type: string, taskId: string) =>
  until(`${type} for ${taskId} on the bus`, async () => {
    await drainObserver();
    return seen.find((e) => e['detail-type'] === type && e.detail.taskId === taskId);
  });

async function put(engine: SessionCredentials, detailType: string, detail: unknown) {
  const events = new EventBridgeClient(clientOptions(authorizer.endpoint, engine));
  try {
    return await events.send(
      new PutEventsCommand({
        Entries: [{ EventBusName: BUS, Source: 'com.example.workflows', DetailType: detailType, Detail: JSON.stringify(detail) }],
      }),
    );
  } finally {
    events.destroy();
  }
}

beforeAll(async () => {
  issuer = await startSpiffeIssuer({ trustDomain: TRUST_DOMAIN });
  // Same trust domain, its own key, never in the served bundle: its SVIDs are forgeries.
  forger = await startSpiffeIssuer({ trustDomain: TRUST_DOMAIN });
  // The deployed functions fetch the bundle from the URL synth wrote into their config.
  bundleServer = createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(issuer.bundle())),
  );
  await new Promise<void>((resolve) => bundleServer.listen(ports.bundle, '127.0.0.1', resolve));

  const taskStartedRole = deployment.outputs.TaskStartedRoleArn!;
  // What the README asks of an aws-role target: tagged managed, trusting the TaskStartedRoleArn output, allowed its probe.
  await createRole(TARGET_ROLE_NAME, taskStartedRole, allowAll(['iam:GetRole', 's3:GetObject']), { 'tasklease:managed': 'true' });
  const readSecrets = allowAll(['secretsmanager:GetSecretValue'], `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:tasklease/*`);
  await createRole(WORKLOAD_ROLE_NAME, `arn:aws:iam::${ACCOUNT}:root`, readSecrets);
  // The stranger's own policy allows the read: only the secret's resource policy stands in its way.
  await createRole(STRANGER_ROLE_NAME, `arn:aws:iam::${ACCOUNT}:root`, readSecrets);
  await createRole(ENGINE_ROLE_NAME, `arn:aws:iam::${ACCOUNT}:root`, allowAll(['events:PutEvents'], deployment.outputs.BusArn));
  await createRole(
    STARTER_ENGINE_ROLE_NAME,
    `arn:aws:iam::${ACCOUNT}:root`,
    allowAll(['events:PutEvents'], deployment.outputs.BusArn, { StringEquals: { 'events:detail-type': ['Task Started'] } }),
  );
  // The postgres target's admin secret must exist (this file grants only aws-role access).
  await admin.sm.send(
    new CreateSecretCommand({ Name: ADMIN_SECRET_NAME, SecretString: JSON.stringify({ username: 'postgres', password: 'unused' }) }),
  );

  observerUrl = (await admin.sqs.send(new CreateQueueCommand({ QueueName: 'test-bus-observer' }))).QueueUrl!;
  const observerArn = (await admin.sqs.send(new GetQueueAttributesCommand({ QueueUrl: observerUrl, AttributeNames: ['QueueArn'] })))
    .Attributes!.QueueArn!;
  await admin.events.send(
    new PutRuleCommand({ Name: 'test-observer', EventBusName: BUS, EventPattern: JSON.stringify({ source: ['tasklease'] }) }),
  );
  await admin.events.send(
    new PutTargetsCommand({ Rule: 'test-observer', EventBusName: BUS, Targets: [{ Id: 'observer', Arn: observerArn }] }),
  );

  authorizer = await Authorizer.start(motoEndpoint, {
    decidedRoles: [TARGET_ROLE_NAME, WORKLOAD_ROLE_NAME, STRANGER_ROLE_NAME, ENGINE_ROLE_NAME, STARTER_ENGINE_ROLE_NAME],
    propagationDelayMs: PROPAGATION_MS,
  });
  const functions = await deployedFunctions(motoEndpoint, template, assembly, physical);
  service = await LambdaService.start(motoEndpoint, authorizer.endpoint, functions);
  ledger = new DynamoDbLedger(new DynamoDBClient(clientOptions(motoEndpoint)), TABLE);
});

afterAll(async () => {
  await service?.stop();
  await authorizer?.close();
  await Promise.all([issuer?.close(), forger?.close()]);
  await new Promise((r) => (bundleServer ? bundleServer.close(r) : r(undefined)));
  for (const c of Object.values(admin)) c.destroy();
});

describe('a task through the deployed bus, queues and bundles', () => {
  // An Airflow-like run id: ':' and '@' are not Secrets Manager name characters (issue 14).
  const taskId = 'etl_nightly:scheduled__2026-12-02T00:00:00@try-1';
  let engine: SessionCredentials;
  let workload: SessionCredentials;
  let delivered: { accessKeyId: string; secretAccessKey: string; sessionToken: string };
  let secretName: string;

  it('Task Started: an aws-role session from STS AssumeRole, delivered as a Secrets Manager secret only the workload can read', async () => {
    engine = await sessionOf(ENGINE_ROLE_NAME);
    const res = await put(engine, 'Task Started', {
      taskId,
      svid: await issuer.mint({ spiffeId: WORKLOAD, audience: AUDIENCE, jti: null }),
      grants: [GRANT],
      maxDurationSeconds: 600,
    });
    expect(res.FailedEntryCount).toBe(0);

    const issued = await busEvent('Lease Issued', taskId);
    const credentials = issued.detail.credentials as { grant: unknown; kind: string; secretName: string }[];
    expect(credentials).toEqual([expect.objectContaining({ grant: GRANT, kind: 'aws-role' })]);
    secretName = credentials[0]!.secretName;

    const lease = await ledger.getLease(taskId);
    expect(lease?.lease.state).toBe('active');
    const cred = lease!.credentials[0]!;
    expect(cred).toMatchObject({ state: 'issued', kind: 'aws-role', secretName });
    // The session the task-started function created, as the authorizer saw it pass to moto's STS.
    const session = [...authorizer.sessions.values()].find((s) => s.roleName === TARGET_ROLE_NAME);
    expect(session).toMatchObject({ sessionName: cred.externalId, tags: expect.objectContaining({ 'tasklease:task': taskId }) });
    expect(session?.sourceIdentity).toBeTruthy();
    expect(JSON.stringify(session?.sessionPolicy)).toContain('iam:GetRole');

    workload = await sessionOf(WORKLOAD_ROLE_NAME);
    const sm = new SecretsManagerClient(clientOptions(authorizer.endpoint, workload));
    const value = await sm.send(new GetSecretValueCommand({ SecretId: secretName }));
    sm.destroy();
    const secret = JSON.parse(value.SecretString!) as typeof delivered;
    delivered = { accessKeyId: secret.accessKeyId, secretAccessKey: secret.secretAccessKey, sessionToken: secret.sessionToken };
    secretValues.push(delivered.secretAccessKey, delivered.sessionToken);
    expect(delivered.accessKeyId).toBe(session!.accessKeyId);

    // The workload uses the session: its probe action, allowed by role, session policy and no deny.
    const asTask = new IAMClient(clientOptions(authorizer.endpoint, delivered));
    await expect(asTask.send(new GetRoleCommand({ RoleName: TARGET_ROLE_NAME }))).resolves.toBeDefined();
    asTask.destroy();
  });

  it("a stranger's GetSecretValue is denied by the secret's resource policy (iam-simulate; moto would return it)", async () => {
    const stranger = await sessionOf(STRANGER_ROLE_NAME);
    const sm = new SecretsManagerClient(clientOptions(authorizer.endpoint, stranger));
    await expect(sm.send(new GetSecretValueCommand({ SecretId: secretName }))).rejects.toMatchObject({ name: 'AccessDeniedException' });
    sm.destroy();
    const denied = authorizer.decisions.filter((d) => d.principal.includes(`/${STRANGER_ROLE_NAME}/`));
    expect(denied.map((d) => [d.action, d.result])).toEqual([['secretsmanager:GetSecretValue', 'ExplicitlyDenied']]);
  });

  it('a forged Task Ended is refused: by the bus policy for an engine that may only start tasks, by the broker for a forged SVID', async () => {
    const starterOnly = await sessionOf(STARTER_ENGINE_ROLE_NAME);
    await expect(put(starterOnly, 'Task Ended', { taskId, outcome: 'succeeded', svid: 'x.y.z' })).rejects.toMatchObject({
      name: 'AccessDeniedException',
    });

    const res = await put(engine, 'Task Ended', {
      taskId,
      outcome: 'succeeded',
      svid: await forger.mint({ spiffeId: WORKLOAD, audience: AUDIENCE, jti: null }),
    });
    expect(res.FailedEntryCount).toBe(0);
    const refused = await busEvent('Lease Denied', taskId);
    expect(refused.detail).toMatchObject({ reason: { code: 'end-unauthenticated' } });
    expect((await ledger.getLease(taskId))?.lease.state).toBe('active');
    const asTask = new IAMClient(clientOptions(authorizer.endpoint, delivered));
    await expect(asTask.send(new GetRoleCommand({ RoleName: TARGET_ROLE_NAME }))).resolves.toBeDefined();
    asTask.destroy();
  });

  it("Task Ended: the role's deny policy in moto's IAM, the probe denied only after propagation, trust debt in the ledger, the secret gone", async () => {
    const res = await put(engine, 'Task Ended', {
      taskId,
      outcome: 'succeeded',
      svid: await issuer.mint({ spiffeId: WORKLOAD, audience: AUDIENCE, jti: null }),
    });
    expect(res.FailedEntryCount).toBe(0);
    const revoked = await busEvent('Lease Revoked', taskId);
    const [proof] = revoked.detail.credentials as { grant: unknown; verified: boolean; state: string; trustDebtMs: number }[];
    expect(proof).toMatchObject({ grant: GRANT, verified: true, state: 'verified' });

    const closed = await ledger.getLease(taskId);
    expect(closed?.lease.state).toBe('closed');
    const cred = closed!.credentials[0]!;
    expect(cred.state).toBe('verified');
    // The debt includes IAM's propagation: the broker could not prove the deny before it applied.
    expect(cred.trustDebtMs).toBeGreaterThanOrEqual(PROPAGATION_MS);
    expect(proof!.trustDebtMs).toBe(cred.trustDebtMs);

    // moto's IAM holds the revocation: a deny of everything for exactly this session.
    const { roleId } = await authorizer.policies(TARGET_ROLE_NAME);
    const doc = await admin.iam.send(new GetRolePolicyCommand({ RoleName: TARGET_ROLE_NAME, PolicyName: 'tasklease-revocations' }));
    const deny = (JSON.parse(decodeURIComponent(doc.PolicyDocument!)) as { Statement: unknown[] }).Statement[0];
    expect(deny).toMatchObject({
      Effect: 'Deny',
      Action: '*',
      Condition: { StringLike: { 'aws:userid': [`${roleId}:${cred.externalId}`] } },
    });

    // The probe was allowed after the change until it propagated, and denied only from then on.
    const change = authorizer.policyChanges.find((c) => c.roleName === TARGET_ROLE_NAME && c.operation === 'PutRolePolicy')!;
    const probes = authorizer.decisions.filter((d) => d.principal.endsWith(`/${cred.externalId}`) && d.at >= change.at);
    const firstDenied = probes.find((d) => d.result !== 'Allowed')!;
    expect(firstDenied.result).toBe('ExplicitlyDenied');
    expect(firstDenied.at).toBeGreaterThanOrEqual(change.effectiveAt);
    expect(probes.some((d) => d.result === 'Allowed')).toBe(true);

    const asTask = new IAMClient(clientOptions(authorizer.endpoint, delivered));
    await expect(asTask.send(new GetRoleCommand({ RoleName: TARGET_ROLE_NAME }))).rejects.toMatchObject({ name: 'AccessDenied' });
    asTask.destroy();
    await expect(admin.sm.send(new DescribeSecretCommand({ SecretId: secretName }))).rejects.toMatchObject({
      name: 'ResourceNotFoundException',
    });
  });

  it('no function printed a secret value; every message was consumed', () => {
    const logs = service.logs().join('\n');
    expect(logs.length).toBeGreaterThan(0);
    for (const v of secretValues) expect(logs).not.toContain(v);
    expect(service.pollers.reduce((n, p) => n + p.stats.failed, 0)).toBe(0);
  });
});
