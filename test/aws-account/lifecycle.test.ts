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
import {
  DescribeEventBusCommand,
  EventBridgeClient,
  PutEventsCommand,
  PutRuleCommand,
  PutTargetsCommand,
} from '@aws-sdk/client-eventbridge';
import { CreateRoleCommand, GetRoleCommand, GetRolePolicyCommand, IAMClient, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { CreateSecretCommand, DescribeSecretCommand, GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { CreateQueueCommand, DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startSpiffeIssuer } from '../../local/spiffe-issuer.ts';
import type { LocalSpiffeIssuer } from '../../local/spiffe-issuer.ts';
import { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import { startEmbeddedPostgres } from '../../shared/targets/postgres/embedded.ts';
import type { EmbeddedPostgresInstance } from '../../shared/targets/postgres/embedded.ts';
import { connectWith } from '../support/postgres.ts';
import { REVOCATION_POLICY_NAME, SESSION_NAME_PREFIX } from '../../shared/targets/aws-role/names.ts';
import { addSessionDeny } from '../../shared/targets/aws-role/revocation-policy.ts';
import { Authorizer } from './authorizer.ts';
import type { Call, Session } from './authorizer.ts';
import {
  ACCOUNT,
  ADMIN_SECRET_NAME,
  POSTGRES_TARGET,
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
import { deployedFunctions, deployedSchedule, LambdaService } from './lambda-service.ts';
import { adminCredentials, clientOptions } from './sdk.ts';
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
let pg: EmbeddedPostgresInstance;
/** The session of the first task's aws-role grant (revoked by its Task Ended). */
let revokedSession: Session;
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
const busEvent = (type: string, taskId: string, timeoutMs?: number) =>
  until(
    `${type} for ${taskId} on the bus`,
    async () => {
      await drainObserver();
      return seen.find((e) => e['detail-type'] === type && e.detail.taskId === taskId);
    },
    timeoutMs,
  );

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
    // ForAllValues: events:detail-type is multivalued (one value per entry of the PutEvents call).
    allowAll(['events:PutEvents'], deployment.outputs.BusArn, { 'ForAllValues:StringEquals': { 'events:detail-type': ['Task Started'] } }),
  );
  // The embedded PostgreSQL stands in for RDS, on the port synth wrote into the config; its admin
  // password goes where the config's passwordSecret points.
  pg = await startEmbeddedPostgres({ port: ports.postgres });
  await admin.sm.send(
    new CreateSecretCommand({
      Name: ADMIN_SECRET_NAME,
      SecretString: JSON.stringify({ username: pg.adminUser, password: pg.adminPassword }),
    }),
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
  const schedules = await Promise.all(
    Object.entries(template.Resources)
      .filter(([, r]) => r.Type === 'AWS::Scheduler::Schedule')
      .map(([id]) => deployedSchedule(motoEndpoint, physical(id))),
  );
  service = await LambdaService.start(motoEndpoint, authorizer.endpoint, functions, schedules);
  ledger = new DynamoDbLedger(new DynamoDBClient(clientOptions(motoEndpoint)), TABLE);
});

afterAll(async () => {
  await service?.stop();
  await authorizer?.close();
  await Promise.all([issuer?.close(), forger?.close(), pg?.stop()]);
  await new Promise((r) => (bundleServer ? bundleServer.close(r) : r(undefined)));
  for (const c of Object.values(admin)) c.destroy();
});

const LOST = { taskId: 'lost-end.nightly', workload: `spiffe://${TRUST_DOMAIN}/etl/lost-end` };

describe('a task whose Task Ended is lost (checked at the end of this file, after its lease ran out)', () => {
  it('starts with the shortest lease the contract allows', async () => {
    const res = await put(await sessionOf(ENGINE_ROLE_NAME), 'Task Started', {
      taskId: LOST.taskId,
      svid: await issuer.mint({ spiffeId: LOST.workload, audience: AUDIENCE, jti: null }),
      grants: [GRANT],
      maxDurationSeconds: 60,
    });
    expect(res.FailedEntryCount).toBe(0);
    await busEvent('Lease Issued', LOST.taskId);
  });
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
    const session = [...authorizer.sessions.values()].find((s) => s.roleName === TARGET_ROLE_NAME && s.sessionName === cred.externalId);
    revokedSession = session!;
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

  it('a forged Task Ended is refused: by IAM for an engine that may only start tasks, by the broker for a forged SVID', async () => {
    const starterOnly = await sessionOf(STARTER_ENGINE_ROLE_NAME);
    const starter = [...authorizer.sessions.values()].find((s) => s.roleName === STARTER_ENGINE_ROLE_NAME)!;
    const bus = await admin.events.send(new DescribeEventBusCommand({ Name: BUS }));
    const asStarter = (detailType: string) =>
      authorizer.evaluate(starter, 'events:PutEvents', bus.Arn!, {
        context: { 'events:detail-type': [detailType], 'events:source': ['com.example.workflows'] },
        resourcePolicy: JSON.parse(bus.Policy!),
      });
    // Not a role that may put nothing: it may start tasks.
    expect(await asStarter('Task Started')).toBe('Allowed');
    expect(await asStarter('Task Ended')).toBe('ImplicitlyDenied');
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

describe('a batch of tasks: 20 with postgres grants, 10 with aws-role grants', () => {
  const PG_GRANT = { target: POSTGRES_TARGET, access: 'read' };
  const tasks = [
    ...Array.from({ length: 20 }, (_, i) => ({
      taskId: `batch.pg-${i}`,
      grant: PG_GRANT,
      workload: `spiffe://${TRUST_DOMAIN}/etl/pg-${i}`,
    })),
    ...Array.from({ length: 10 }, (_, i) => ({
      taskId: `batch.role-${i}`,
      grant: GRANT,
      workload: `spiffe://${TRUST_DOMAIN}/etl/role-${i}`,
    })),
  ];
  const secrets = new Map<string, Record<string, string>>();
  let engine: SessionCredentials;
  const sessionCreds = (v: Record<string, string>) => ({
    accessKeyId: v.accessKeyId!,
    secretAccessKey: v.secretAccessKey!,
    sessionToken: v.sessionToken!,
  });

  /** Engines put up to 10 entries per call (EventBridge's limit); one workload SVID each (requireJti is off: distinct claims). */
  async function putAll(detailType: string, detail: (t: (typeof tasks)[number]) => Promise<unknown>) {
    const events = new EventBridgeClient(clientOptions(authorizer.endpoint, engine));
    for (let i = 0; i < tasks.length; i += 10) {
      const Entries = await Promise.all(
        tasks.slice(i, i + 10).map(async (t) => ({
          EventBusName: BUS,
          Source: 'com.example.workflows',
          DetailType: detailType,
          Detail: JSON.stringify(await detail(t)),
        })),
      );
      expect((await events.send(new PutEventsCommand({ Entries }))).FailedEntryCount).toBe(0);
    }
    events.destroy();
  }

  it('all issued through the deployed bus and queues; each workload uses its credential', async () => {
    engine = await sessionOf(ENGINE_ROLE_NAME);
    const workload = await sessionOf(WORKLOAD_ROLE_NAME);
    await putAll('Task Started', async (t) => ({
      taskId: t.taskId,
      svid: await issuer.mint({ spiffeId: t.workload, audience: AUDIENCE, jti: null }),
      grants: [t.grant],
      maxDurationSeconds: 600,
    }));
    const sm = new SecretsManagerClient(clientOptions(authorizer.endpoint, workload));
    for (const t of tasks) {
      const issued = await busEvent('Lease Issued', t.taskId);
      const [cred] = issued.detail.credentials as { secretName: string }[];
      const value = JSON.parse((await sm.send(new GetSecretValueCommand({ SecretId: cred!.secretName }))).SecretString!) as Record<
        string,
        string
      >;
      secrets.set(t.taskId, value);
      secretValues.push(...[value.password, value.secretAccessKey, value.sessionToken].filter((v): v is string => !!v));
      if (t.grant === PG_GRANT) {
        const client = await connectWith(value);
        const { rows } = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM orders');
        expect(Number(rows[0]!.n)).toBeGreaterThan(0);
        await client.end();
      } else {
        const asTask = new IAMClient(clientOptions(authorizer.endpoint, sessionCreds(value)));
        await expect(asTask.send(new GetRoleCommand({ RoleName: TARGET_ROLE_NAME }))).resolves.toBeDefined();
        asTask.destroy();
      }
    }
    sm.destroy();
  });

  it('all ended: every credential revoked and proven rejected, the postgres logins refused, the sessions denied', async () => {
    await putAll('Task Ended', async (t) => ({
      taskId: t.taskId,
      outcome: 'succeeded',
      svid: await issuer.mint({ spiffeId: t.workload, audience: AUDIENCE, jti: null }),
    }));
    for (const t of tasks) {
      const revoked = await busEvent('Lease Revoked', t.taskId);
      expect(revoked.detail.credentials).toEqual([expect.objectContaining({ grant: t.grant, verified: true, state: 'verified' })]);
      expect((await ledger.getLease(t.taskId))?.lease.state).toBe('closed');
      const value = secrets.get(t.taskId)!;
      if (t.grant === PG_GRANT) {
        // 28xxx: invalid authorization (the login role is gone).
        await expect(connectWith(value)).rejects.toMatchObject({ code: expect.stringMatching(/^28/) });
      } else {
        const asTask = new IAMClient(clientOptions(authorizer.endpoint, sessionCreds(value)));
        await expect(asTask.send(new GetRoleCommand({ RoleName: TARGET_ROLE_NAME }))).rejects.toMatchObject({ name: 'AccessDenied' });
        asTask.destroy();
      }
    }
    const logs = service.logs().join('\n');
    for (const v of secretValues) expect(logs).not.toContain(v);
  });
});

/** IAM actions (and resources, context) one recorded call needs; undefined: a call this map does not know. */
function iamRequestsOf(call: Call): { action: string; resource: string; context?: Record<string, string | string[]> }[] | undefined {
  const p = call.params as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const arn = (service: string, rest: string) => `arn:aws:${service}:${REGION}:${ACCOUNT}:${rest}`;
  // Secrets Manager appends a random 6-character suffix to a secret's name in its ARN.
  const secretArn = (id: string) => (id.startsWith('arn:') ? id : arn('secretsmanager', `secret:${id}-AbCdEf`));
  const queueArn = (url: string) => arn('sqs', url.split('/').pop()!);
  const viaService = (service: string) => ({ 'kms:ViaService': `${service}.${REGION}.amazonaws.com`, 'kms:CallerAccount': ACCOUNT });
  const key = deployment.outputs.KeyArn!;
  switch (call.service) {
    case 'dynamodb': {
      if (call.operation === 'TransactWriteItems') {
        const ops = { Put: 'PutItem', Update: 'UpdateItem', Delete: 'DeleteItem', ConditionCheck: 'ConditionCheckItem' } as const;
        return (p.TransactItems as Record<string, { TableName: string }>[]).flatMap((item) =>
          Object.entries(item).map(([k, v]) => ({
            action: `dynamodb:${ops[k as keyof typeof ops]}`,
            resource: arn('dynamodb', `table/${v.TableName}`),
          })),
        );
      }
      const table = arn('dynamodb', `table/${p.TableName}`);
      return [{ action: `dynamodb:${call.operation}`, resource: p.IndexName ? `${table}/index/${p.IndexName}` : table }];
    }
    case 'sts': {
      if (call.operation === 'GetCallerIdentity') return []; // needs no permission
      if (call.operation !== 'AssumeRole') return undefined;
      const tags = Object.keys(p).filter((k) => /^Tags\.member\.\d+\.Key$/.test(k));
      return [
        { action: 'sts:AssumeRole', resource: p.RoleArn },
        ...(tags.length
          ? [
              {
                action: 'sts:TagSession',
                resource: p.RoleArn,
                context: {
                  'aws:TagKeys': tags.map((k) => p[k] as string),
                  ...Object.fromEntries(tags.map((k) => [`aws:RequestTag/${p[k]}`, p[k.replace('.Key', '.Value')] as string])),
                },
              },
            ]
          : []),
        ...(p.SourceIdentity
          ? [{ action: 'sts:SetSourceIdentity', resource: p.RoleArn, context: { 'sts:SourceIdentity': p.SourceIdentity } }]
          : []),
      ];
    }
    case 'iam':
      return [{ action: `iam:${call.operation}`, resource: roleArn(p.RoleName) }];
    case 'secretsmanager': {
      const resource = secretArn(call.operation === 'CreateSecret' ? p.Name : p.SecretId);
      const out: { action: string; resource: string; context?: Record<string, string | string[]> }[] = [
        {
          action: `secretsmanager:${call.operation}`,
          resource,
          context: {
            ...(p.KmsKeyId ? { 'secretsmanager:KmsKeyArn': p.KmsKeyId } : {}),
            ...(p.BlockPublicPolicy !== undefined ? { 'secretsmanager:BlockPublicPolicy': String(p.BlockPublicPolicy) } : {}),
          },
        },
      ];
      // Tags on create need TagResource too; a customer key needs the caller's KMS use via Secrets Manager.
      if (call.operation === 'CreateSecret' && p.Tags?.length) out.push({ action: 'secretsmanager:TagResource', resource });
      if (call.operation === 'CreateSecret' && p.KmsKeyId)
        out.push({ action: 'kms:GenerateDataKey', resource: key, context: viaService('secretsmanager') });
      return out;
    }
    case 'events':
      return (p.Entries as { EventBusName: string; DetailType: string; Source: string }[]).map((e) => ({
        action: 'events:PutEvents',
        resource: e.EventBusName.startsWith('arn:') ? e.EventBusName : arn('events', `event-bus/${e.EventBusName}`),
        context: { 'events:detail-type': [e.DetailType], 'events:source': [e.Source] },
      }));
    case 'sqs': {
      const batch = {
        DeleteMessageBatch: 'DeleteMessage',
        SendMessageBatch: 'SendMessage',
        ChangeMessageVisibilityBatch: 'ChangeMessageVisibility',
      };
      const op = batch[call.operation as keyof typeof batch] ?? call.operation;
      const resource = call.operation === 'GetQueueUrl' ? arn('sqs', p.QueueName) : queueArn(p.QueueUrl);
      // The queues are encrypted with the stack's key: sending needs GenerateDataKey, receiving Decrypt (via SQS).
      const kms =
        op === 'SendMessage'
          ? [{ action: 'kms:GenerateDataKey', resource: key, context: viaService('sqs') }]
          : op === 'ReceiveMessage'
            ? [{ action: 'kms:Decrypt', resource: key, context: viaService('sqs') }]
            : [];
      return [{ action: `sqs:${op}`, resource }, ...kms];
    }
    default:
      return undefined;
  }
}

/**
 * Policies iam-simulate reads differently from the template's intent: none today. (events:source
 * and events:detail-type are multivalued keys; infra/bus.ts and infra/permissions.ts use
 * ForAllValues in allows and ForAnyValue in denies, so a plain StringEquals no longer hides them.)
 */
const KNOWN_FINDINGS: Array<{ match: RegExp }> = [];

const roleFacts = new Map<string, Promise<{ tags: Record<string, string>; trust: unknown }>>();
/** The resource's side of a request: its tags as aws:ResourceTag keys, and the policy it carries (trust policy, key policy). */
async function resourceSideOf(action: string, resource: string): Promise<{ context: Record<string, string>; resourcePolicy?: unknown }> {
  const role = /^arn:aws:iam::\d{12}:role\/(.+)$/.exec(resource)?.[1];
  if (role) {
    let facts = roleFacts.get(role);
    if (!facts) {
      facts = admin.iam.send(new GetRoleCommand({ RoleName: role })).then(({ Role: r }) => ({
        tags: Object.fromEntries((r!.Tags ?? []).map((t) => [`aws:ResourceTag/${t.Key}`, t.Value!])),
        trust: JSON.parse(decodeURIComponent(r!.AssumeRolePolicyDocument!)) as unknown,
      }));
      roleFacts.set(role, facts);
    }
    const { tags, trust } = await facts;
    // For sts:* on a role, the role's trust policy is the resource policy.
    return { context: tags, ...(action.startsWith('sts:') ? { resourcePolicy: trust } : {}) };
  }
  if (action.startsWith('kms:')) return { context: {}, resourcePolicy: await keyPolicy(resource) };
  return { context: {} };
}

/** The key policy, from moto's KMS (no KMS client is installed: one signed-looking JSON request; moto checks no signatures). */
async function keyPolicy(keyArn: string): Promise<unknown> {
  const res = await fetch(motoEndpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': 'TrentService.GetKeyPolicy',
      authorization: `AWS4-HMAC-SHA256 Credential=${adminCredentials.accessKeyId}/20260101/${REGION}/kms/aws4_request, SignedHeaders=host, Signature=0`,
    },
    body: JSON.stringify({ KeyId: keyArn, PolicyName: 'default' }),
  });
  if (!res.ok) throw new Error(`kms:GetKeyPolicy: ${res.status}`);
  // moto keeps a key policy created through CloudFormation as an object and returns it as one.
  const { Policy } = (await res.json()) as { Policy: unknown };
  return typeof Policy === 'string' ? (JSON.parse(Policy) as unknown) : Policy;
}

describe('IAM decisions moto cannot make, by iam-simulate', () => {
  const functionRoles = () => new Set([...service.hosts.values()].map((h) => h.fn.roleArn.split('/').pop()!));

  it("every call the deployed functions made (and the Lambda service's polling with their roles) is allowed by their deployed policies", async () => {
    const roles = functionRoles();
    const calls = authorizer.calls.filter((c) => c.session && roles.has(c.session.roleName));
    const unknown = [...new Set(calls.filter((c) => !iamRequestsOf(c)).map((c) => `${c.service}:${c.operation}`))];
    expect(unknown).toEqual([]);
    const verdicts = new Map<string, string>();
    for (const call of calls) {
      for (const r of iamRequestsOf(call)!) {
        const key = `${call.session!.roleName.replace(/^TaskLease-TaskLease/, '').replace(/Role.*$/, '')} ${r.action} ${r.resource}`;
        if (verdicts.has(key)) continue;
        const { context, resourcePolicy } = await resourceSideOf(r.action, r.resource);
        verdicts.set(
          key,
          await authorizer.evaluate(call.session!, r.action, r.resource, {
            context: { ...context, ...r.context },
            ...(resourcePolicy ? { resourcePolicy } : {}),
          }),
        );
      }
    }
    const notAllowed = [...verdicts].filter(([, v]) => v !== 'Allowed').map(([k, v]) => `${k}: ${v}`);
    // Findings for the infra owner, acknowledged here until fixed (and failing once they are, so the list stays true).
    const acknowledged = notAllowed.filter((n) => KNOWN_FINDINGS.some((f) => f.match.test(n)));
    for (const f of KNOWN_FINDINGS)
      expect(
        acknowledged.some((n) => f.match.test(n)),
        `${f.match}: no longer found; remove it`,
      ).toBe(true);
    expect(notAllowed.filter((n) => !acknowledged.includes(n))).toEqual([]);
    // The lifecycle's calls were among them (an empty record would prove nothing).
    const actions = new Set([...verdicts.keys()].map((k) => k.split(' ')[1]));
    for (const a of [
      'sts:AssumeRole',
      'sts:TagSession',
      'sts:SetSourceIdentity',
      'secretsmanager:CreateSecret',
      'secretsmanager:PutResourcePolicy',
      'secretsmanager:DeleteSecret',
      'iam:PutRolePolicy',
      'events:PutEvents',
      'sqs:ReceiveMessage',
      'sqs:DeleteMessage',
    ]) {
      expect(actions).toContain(a);
    }
  });

  it('and not more: the revoking function may not assume the target role, nor put an engine event', async () => {
    const ended = [...authorizer.sessions.values()].find((s) => s.roleName.includes('TaskEndedRole'))!;
    expect(await authorizer.evaluate(ended, 'sts:AssumeRole', roleArn(TARGET_ROLE_NAME))).not.toBe('Allowed');
    const bus = deployment.outputs.BusArn!;
    expect(
      await authorizer.evaluate(ended, 'events:PutEvents', bus, {
        context: { 'events:detail-type': 'Task Started', 'events:source': 'tasklease' },
      }),
    ).not.toBe('Allowed');
  });

  it("the revoked session: allowed before the revocation, denied after; the role's other sessions unaffected", async () => {
    const revoked = revokedSession;
    const target = roleArn(TARGET_ROLE_NAME);
    const now = await authorizer.policies(TARGET_ROLE_NAME);
    const before = now.identityPolicies.filter((p) => p.name !== REVOCATION_POLICY_NAME);
    expect(before.length).toBe(now.identityPolicies.length - 1);
    expect(await authorizer.evaluate(revoked, 'iam:GetRole', target, { identityPolicies: before })).toBe('Allowed');
    expect(await authorizer.evaluate(revoked, 'iam:GetRole', target)).toBe('ExplicitlyDenied');
    // The deny names this session only: a later lease's session of the same role keeps working.
    const later = { ...revoked, sessionName: `${SESSION_NAME_PREFIX}later`, issuedAt: new Date() };
    expect(await authorizer.evaluate(later, 'iam:GetRole', target)).toBe('Allowed');
  });

  it('the role-wide fallback (aws:TokenIssueTime cutoff): denies tasklease sessions issued before it, not later ones nor foreign sessions', async () => {
    const revoked = revokedSession;
    const target = roleArn(TARGET_ROLE_NAME);
    const { roleId, identityPolicies } = await authorizer.policies(TARGET_ROLE_NAME);
    const now = Date.now();
    const change = addSessionDeny(
      { Version: '2012-10-17', Statement: [] },
      { userId: `${roleId}:${revoked.sessionName}`, expiresAt: now + 3_600_000, issuedAt: revoked.issuedAt.getTime() },
      { now, maxChars: 10_240, maxSessionMs: 3_600_000, sessionPattern: `${roleId}:${SESSION_NAME_PREFIX}*`, forceCutoff: true },
    );
    expect(change.mode).toBe('cutoff');
    const withCutoff = [
      ...identityPolicies.filter((p) => p.name !== REVOCATION_POLICY_NAME),
      {
        name: REVOCATION_POLICY_NAME,
        policy: { ...change.document, Statement: change.document.Statement.filter((s) => s.Sid?.startsWith('TLCUT')) },
      },
    ];
    const other = { ...revoked, sessionName: `${SESSION_NAME_PREFIX}other-task` };
    expect(await authorizer.evaluate(other, 'iam:GetRole', target, { identityPolicies: withCutoff })).toBe('ExplicitlyDenied');
    const issuedAfter = { ...other, issuedAt: new Date(change.cutoffAt! + 1_000) };
    expect(await authorizer.evaluate(issuedAfter, 'iam:GetRole', target, { identityPolicies: withCutoff })).toBe('Allowed');
    const foreign = { ...revoked, sessionName: 'operator-console' };
    expect(await authorizer.evaluate(foreign, 'iam:GetRole', target, { identityPolicies: withCutoff })).toBe('Allowed');
  });
});

describe('the reaper on its deployed schedule', () => {
  it('closes the lease whose end was lost: revoked, proven rejected, Lease Revoked on the bus', async () => {
    const lease = await ledger.getLease(LOST.taskId);
    expect(lease?.lease.state).toBe('active');
    // The schedule's rate is 1 minute and the lease 60 s: at most two runs away.
    const revoked = await busEvent('Lease Revoked', LOST.taskId, 150_000);
    expect(revoked.detail).toMatchObject({ outcome: 'expired', credentials: [expect.objectContaining({ grant: GRANT, verified: true })] });
    expect((await ledger.getLease(LOST.taskId))?.lease.state).toBe('closed');
    const [stats] = [...service.schedules.values()];
    // The run's report comes back after the revocation it published.
    const report = await until('the reaper run that closed it', () =>
      Promise.resolve(stats!.results.find((r) => (r as { expired?: number }).expired === 1)),
    );
    expect(report).toMatchObject({ expired: 1, failed: 0 });
    expect(stats!.failures).toBe(0);
  });
});
