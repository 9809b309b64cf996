/**
 * Cost per task, counted: the real Lambda handlers (functions/task-started.ts, task-ended.ts,
 * reaper.ts, through functions/lib/runtime.ts) run in this process, driven the way the deployed
 * shape drives them (EventBridge → SQS → event source mapping → handler), against dynalite in its
 * own process through the real DynamoDB SDK, an embedded PostgreSQL and a local SPIFFE issuer.
 * STS, IAM, Secrets Manager, EventBridge, SQS and Step Functions are answered by the fakes of
 * test/aws/fake-aws.ts (aws-sdk-client-mock). Every SDK call is counted by bench/cost/counter.ts;
 * what no handler calls (the event source mapping's receives and deletes, EventBridge's delivery
 * to the queues, KMS calls Secrets Manager makes, secret storage time) is modelled from the counted
 * figures and marked as such (bench/cost/model.ts).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Context, SQSEvent, SQSRecord } from 'aws-lambda';
import { startDynalite } from '../../local/dynalite.ts';
import { startSpiffeIssuer } from '../../local/spiffe-issuer.ts';
import { DETAIL_TYPES } from '../../shared/events/schemas.ts';
import { ENV } from '../../shared/runtime/env.ts';
import { startEmbeddedPostgres } from '../../shared/targets/postgres/embedded.ts';
import { ACCOUNT, FakeAws, REGION } from '../../test/aws/fake-aws.ts';
import { SdkCallCounter, tally } from './counter.ts';
import type { SdkCall, ServiceTally } from './counter.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const TD = 'demo.tasklease.local';
const BUS = 'tasklease-bus';
const KMS_KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/0000aaaa-1111-2222-3333-444455556666`;
const REVERIFY_QUEUE = `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/tasklease-reverify`;
const BROKERS = ['TaskStarted', 'TaskEnded', 'Reverify', 'Reaper'].map((f) => `arn:aws:iam::${ACCOUNT}:role/TaskLease-${f}`);
// The role each workload reads its delivered secret with (a Secrets Manager resource policy names it).
const READER = `arn:aws:iam::${ACCOUNT}:role/bench-workload`;
const ROLE = 'tasklease-deploy';
export const LEASE_SECONDS = 900;

/** The deployed shape's defaults, read from the construct so a change there shows up here. */
export interface DeployedShape {
  memoryMb: number;
  batchSize: number;
  architecture: 'arm64' | 'x86_64';
  reaperIntervalSeconds: number;
}

export function readDeployedShape(): DeployedShape {
  const construct = readFileSync(join(ROOT, 'infra', 'task-lease.ts'), 'utf8');
  const functions = readFileSync(join(ROOT, 'infra', 'functions.ts'), 'utf8');
  const config = readFileSync(join(ROOT, 'tasklease.config.yaml'), 'utf8');
  const num = (text: string, re: RegExp, what: string) => {
    const m = re.exec(text);
    if (!m) throw new Error(`cannot read ${what} (${re}) from the infra sources`);
    return Number(m[1]);
  };
  return {
    memoryMb: num(construct, /memorySize:\s*props\.memorySize\s*\?\?\s*(\d+)/, 'the default memorySize'),
    batchSize: num(construct, /batchSize:\s*props\.batchSize\s*\?\?\s*(\d+)/, 'the default batchSize'),
    architecture: /Architecture\.ARM_64/.test(functions) ? 'arm64' : 'x86_64',
    reaperIntervalSeconds: num(config, /reaperIntervalSeconds:\s*(\d+)/, 'reaperIntervalSeconds'),
  };
}

export const COST_WORKLOADS = [
  { name: 'etl/nightly', spiffeId: `spiffe://${TD}/etl/nightly`, grants: [{ target: 'orders-db', access: 'read' }] },
  { name: 'etl/hourly', spiffeId: `spiffe://${TD}/etl/hourly`, grants: [{ target: 'orders-db', access: 'read' }] },
  {
    name: 'billing/writer',
    spiffeId: `spiffe://${TD}/billing/writer`,
    grants: [
      { target: 'orders-db', access: 'read' },
      { target: 'orders-db', access: 'write' },
    ],
  },
  { name: 'deploy/ci (aws-role)', spiffeId: `spiffe://${TD}/deploy/ci`, grants: [{ target: 'deploy-role', access: 'deploy' }] },
] as const;
/** The demo's mix (bench/lifecycle.ts): the first three, round-robin. */
export const DEMO_MIX = ['etl/nightly', 'etl/hourly', 'billing/writer'];

export type Phase = 'engineStart' | 'taskStarted' | 'workload' | 'engineEnd' | 'taskEnded';
export const PHASES: readonly Phase[] = ['engineStart', 'taskStarted', 'workload', 'engineEnd', 'taskEnded'];

export interface Invocation {
  fn: 'taskStarted' | 'taskEnded' | 'reaper';
  records: number;
  durationMs: number;
  logBytes: number;
  failures: number;
}

export interface MeasuredWorkload {
  workload: string;
  credentialsPerTask: number;
  batchSize: number;
  tasks: number;
  /** Per phase, every counted call of the measured lifecycles. */
  calls: Record<Phase, Record<string, ServiceTally>>;
  invocations: Invocation[];
  issued: number;
  revoked: number;
  errors: string[];
}

export interface CostMeasurement {
  shape: DeployedShape;
  workloads: MeasuredWorkload[];
  reaper: { calls: Record<string, ServiceTally>; invocation: Invocation };
  /** DynamoDB writes whose computed table units disagreed with dynalite's own figure. */
  writeUnitMismatches: number;
  wallMs: number;
}

export interface CostRunOptions {
  /** Measured lifecycles per workload and batch size. */
  tasks: number;
  /** Lifecycles per workload before measuring (container start, caches). */
  warmup: number;
  /** Batch sizes to measure (records per invocation); the deployed default is added. */
  batchSizes: number[];
  progress?: (line: string) => void;
}

function sqsRecord(body: string, sentAt: number, queue: string): SQSRecord {
  return {
    messageId: randomUUID(),
    receiptHandle: `rh-${randomUUID()}`,
    body,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: String(sentAt),
      SenderId: 'AIDAEVENTBRIDGE',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: '0',
    eventSource: 'aws:sqs',
    eventSourceARN: `arn:aws:sqs:${REGION}:${ACCOUNT}:${queue}`,
    awsRegion: REGION,
  };
}

function lambdaContext(functionName: string, memoryMb: number): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${functionName}`,
    memoryLimitInMB: String(memoryMb),
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'bench',
    getRemainingTimeInMillis: () => 60_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/**
 * Everything the handlers print (Powertools logs, EMF metrics, warnings) is what CloudWatch Logs
 * ingests: while a handler runs, count it and print none of it.
 */
class OutputMeter {
  bytes = 0;
  private readonly saved = { out: process.stdout.write, err: process.stderr.write };
  private on = 0;
  start(): void {
    if (this.on++) return;
    const count = ((chunk: string | Uint8Array) => {
      this.bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
      return true;
    }) as typeof process.stdout.write;
    process.stdout.write = count;
    process.stderr.write = count;
  }
  stop(): void {
    if (--this.on) return;
    process.stdout.write = this.saved.out;
    process.stderr.write = this.saved.err;
  }
}

export async function measureCost(opts: CostRunOptions): Promise<CostMeasurement> {
  const progress = opts.progress ?? (() => undefined);
  const t0 = performance.now();
  const shape = readDeployedShape();
  const batchSizes = [...new Set([...opts.batchSizes, shape.batchSize])].sort((a, b) => a - b);
  const aws = new FakeAws();
  const [dyn, issuer, pg] = await Promise.all([
    startDynalite({ childProcess: true }),
    startSpiffeIssuer({ trustDomain: TD }),
    startEmbeddedPostgres(),
  ]);
  const savedEnv = { ...process.env };
  const output = new OutputMeter();
  const counter = new SdkCallCounter(dyn.endpoint).installDynamoDb();
  let resetRuntime: (() => Promise<void>) | undefined;
  try {
    aws.addRole(ROLE);
    const adminSecret = aws.addSecret('orders-db-admin', JSON.stringify({ username: pg.adminUser, password: pg.adminPassword }));
    const config = {
      audience: 'tasklease',
      clockSkewSeconds: 30,
      trustDomains: { [TD]: { bundle: { url: issuer.bundleUrl } } },
      targets: {
        'orders-db': {
          kind: 'postgres',
          settings: { host: pg.host, port: pg.port, database: pg.database, user: pg.adminUser, passwordSecret: adminSecret.arn },
          access: { read: { groupRole: 'orders_read' }, write: { groupRole: 'orders_write' } },
        },
        'deploy-role': {
          kind: 'aws-role',
          settings: { roleArn: `arn:aws:iam::${ACCOUNT}:role/${ROLE}`, region: REGION },
          access: {
            deploy: {
              sessionPolicy: {
                Version: '2012-10-17',
                Statement: [
                  { Effect: 'Allow', Action: ['ecs:UpdateService'], Resource: `arn:aws:ecs:${REGION}:${ACCOUNT}:service/prod/*` },
                ],
              },
            },
          },
        },
      },
      rules: [
        {
          id: 'etl-readers',
          spiffeId: `spiffe://${TD}/etl/*`,
          grants: ['orders-db.read'],
          maxLeaseSeconds: LEASE_SECONDS,
          awsPrincipal: READER,
        },
        {
          id: 'billing-writer',
          spiffeId: `spiffe://${TD}/billing/writer`,
          grants: ['orders-db.read', 'orders-db.write'],
          maxLeaseSeconds: LEASE_SECONDS,
          awsPrincipal: READER,
        },
        {
          id: 'deployers',
          spiffeId: `spiffe://${TD}/deploy/*`,
          grants: ['deploy-role.deploy'],
          maxLeaseSeconds: LEASE_SECONDS,
          awsPrincipal: READER,
        },
      ],
      settings: { verifyDeadlineSeconds: 30, reaperIntervalSeconds: shape.reaperIntervalSeconds },
    };
    Object.assign(process.env, {
      [ENV.tableName]: dyn.tableName,
      [ENV.eventBusName]: BUS,
      [ENV.config]: JSON.stringify(config),
      [ENV.secretsKmsKeyId]: KMS_KEY,
      [ENV.reverifyQueueUrl]: REVERIFY_QUEUE,
      [ENV.brokerPrincipalArns]: BROKERS.join(','),
      // dynalite has no TransactWriteItems. One by one costs one WCU per item write; the deployed
      // transaction writes the same items in fewer requests at two WCUs each (DynamoDB pricing).
      [ENV.ledgerTransactions]: 'off',
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: 'tasklease-local',
      AWS_SECRET_ACCESS_KEY: 'tasklease-local',
      // The handlers' own DynamoDB client goes to dynalite.
      AWS_ENDPOINT_URL_DYNAMODB: dyn.endpoint,
      POWERTOOLS_METRICS_NAMESPACE: 'tasklease-bench',
    });
    // Imported after the environment is set: the handlers read it when the container starts.
    const [{ handler: taskStarted }, { handler: taskEnded }, { handler: reaper }, runtime] = await Promise.all([
      import('../../functions/task-started.ts'),
      import('../../functions/task-ended.ts'),
      import('../../functions/reaper.ts'),
      import('../../functions/lib/runtime.ts'),
    ]);
    resetRuntime = runtime.resetRuntime;
    for (const [service, stub] of [
      ['sts', aws.sts],
      ['iam', aws.iam],
      ['secretsmanager', aws.sm],
      ['eventbridge', aws.eb],
      ['sqs', aws.sqs],
      ['stepfunctions', aws.sfn],
    ] as const)
      counter.watchMock(service, stub);

    // The workflow engine's and the workload's own clients: what they send is billed too.
    const engine = new EventBridgeClient({ region: REGION });
    const workloadSecrets = new SecretsManagerClient({ region: REGION });
    let seenEvents = 0;
    const outEvents = new Map<string, { detailType: string; detail: Record<string, unknown> }[]>();
    const scanEvents = () => {
      for (const e of aws.events.slice(seenEvents)) {
        const detail = JSON.parse(e.Detail ?? '{}') as Record<string, unknown>;
        const taskId = String(detail.taskId);
        if (!outEvents.has(taskId)) outEvents.set(taskId, []);
        outEvents.get(taskId)!.push({ detailType: e.DetailType ?? '', detail });
      }
      seenEvents = aws.events.length;
    };

    const invoke = async (fn: Invocation['fn'], records: SQSRecord[] | undefined): Promise<Invocation> => {
      const handler = fn === 'taskStarted' ? taskStarted : fn === 'taskEnded' ? taskEnded : reaper;
      const before = output.bytes;
      output.start();
      const start = performance.now();
      let out: { batchItemFailures?: unknown[] } | undefined;
      try {
        out = (await (handler as (e: unknown, c: Context) => Promise<unknown>)(
          records ? ({ Records: records } satisfies SQSEvent) : { source: 'aws.scheduler' },
          lambdaContext(`tasklease-${fn}`, shape.memoryMb),
        )) as typeof out;
      } finally {
        output.stop();
      }
      const durationMs = performance.now() - start;
      return {
        fn,
        records: records?.length ?? 0,
        durationMs,
        logBytes: output.bytes - before,
        failures: out?.batchItemFailures?.length ?? 0,
      };
    };

    let mismatches = 0;
    const runBatches = async (
      workload: (typeof COST_WORKLOADS)[number],
      tasks: number,
      batchSize: number,
      label: string,
    ): Promise<MeasuredWorkload> => {
      const calls = Object.fromEntries(PHASES.map((p) => [p, [] as SdkCall[]])) as Record<Phase, SdkCall[]>;
      const invocations: Invocation[] = [];
      const errors: string[] = [];
      let issued = 0;
      let revoked = 0;
      const inPhase = async <T>(phase: Phase, fn: () => Promise<T>): Promise<T> => {
        const mark = await counter.mark();
        const result = await fn();
        calls[phase].push(...(await counter.since(mark)));
        return result;
      };
      const put = async (detailType: string, detail: unknown) => {
        const sentAt = Date.now();
        await engine.send(
          new PutEventsCommand({
            Entries: [{ EventBusName: BUS, Source: 'com.example.workflows', DetailType: detailType, Detail: JSON.stringify(detail) }],
          }),
        );
        // What the rule's SQS target delivers: the whole event as the body.
        const event = {
          version: '0',
          id: randomUUID(),
          'detail-type': detailType,
          source: 'com.example.workflows',
          account: ACCOUNT,
          time: new Date(sentAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
          region: REGION,
          resources: [],
          detail,
        };
        return sqsRecord(JSON.stringify(event), sentAt, detailType === DETAIL_TYPES.taskStarted ? 'task-started' : 'task-ended');
      };
      for (let done = 0; done < tasks; done += batchSize) {
        const ids = Array.from(
          { length: Math.min(batchSize, tasks - done) },
          (_, i) => `cost-${label}-${done + i}-${randomUUID().slice(0, 8)}`,
        );
        const svids = await Promise.all(
          ids.map(() => issuer.mint({ spiffeId: workload.spiffeId, audience: 'tasklease', ttlSeconds: 300 })),
        );
        const starts = await inPhase('engineStart', () =>
          Promise.all(
            ids.map((taskId, i) =>
              put(DETAIL_TYPES.taskStarted, {
                taskId,
                svid: svids[i],
                grants: workload.grants,
                maxDurationSeconds: LEASE_SECONDS,
                initiator: 'bench@tasklease.local',
                workflow: { engine: 'tasklease-bench', runId: label },
              }),
            ),
          ),
        );
        invocations.push(await inPhase('taskStarted', () => invoke('taskStarted', starts)));
        scanEvents();
        await inPhase('workload', async () => {
          for (const taskId of ids) {
            const ev = outEvents.get(taskId)?.find((e) => e.detailType === DETAIL_TYPES.leaseIssued);
            if (!ev) {
              errors.push(
                `${taskId}: no Lease Issued: ${JSON.stringify(outEvents.get(taskId)?.map((e) => e.detail.reason ?? e.detailType))}`,
              );
              continue;
            }
            issued++;
            // The workload reads each delivered credential once.
            for (const c of ev.detail.credentials as Array<{ secretName: string }>)
              await workloadSecrets.send(new GetSecretValueCommand({ SecretId: c.secretName }));
          }
        });
        const endSvids = await Promise.all(
          ids.map(() => issuer.mint({ spiffeId: workload.spiffeId, audience: 'tasklease', ttlSeconds: 300 })),
        );
        const ends = await inPhase('engineEnd', () =>
          Promise.all(ids.map((taskId, i) => put(DETAIL_TYPES.taskEnded, { taskId, outcome: 'succeeded', svid: endSvids[i] }))),
        );
        invocations.push(await inPhase('taskEnded', () => invoke('taskEnded', ends)));
        scanEvents();
        for (const taskId of ids) {
          if (outEvents.get(taskId)?.some((e) => e.detailType === DETAIL_TYPES.leaseRevoked)) revoked++;
          else
            errors.push(
              `${taskId}: no Lease Revoked (${
                outEvents
                  .get(taskId)
                  ?.map((e) => e.detailType)
                  .join(', ') ?? 'no event'
              })`,
            );
          outEvents.delete(taskId);
        }
      }
      const tallies = Object.fromEntries(PHASES.map((p) => [p, tally(calls[p])])) as Record<Phase, Record<string, ServiceTally>>;
      for (const p of PHASES) mismatches += tallies[p].dynamodb?.writeUnitMismatches ?? 0;
      return {
        workload: workload.name,
        credentialsPerTask: workload.grants.length,
        batchSize,
        tasks,
        calls: tallies,
        invocations,
        issued,
        revoked,
        errors: errors.slice(0, 10),
      };
    };

    // The container starts (runtime, admin secret, pools) during the warm-up, as a warm Lambda has.
    for (const w of COST_WORKLOADS) await runBatches(w, opts.warmup, 1, 'warm');
    mismatches = 0;
    const workloads: MeasuredWorkload[] = [];
    for (const batchSize of batchSizes) {
      for (const w of COST_WORKLOADS) {
        progress(`  cost: ${w.name}, ${opts.tasks} lifecycles in batches of ${batchSize}…`);
        const counted = await runBatches(w, opts.tasks, batchSize, `b${batchSize}`);
        // Counting adds two side reads per DynamoDB write: time the handlers in a pass that counts nothing.
        counter.paused = true;
        const timed = await runBatches(w, opts.tasks, batchSize, `t${batchSize}`);
        counter.paused = false;
        workloads.push({ ...counted, invocations: timed.invocations, errors: [...counted.errors, ...timed.errors].slice(0, 10) });
      }
    }
    // One scheduled reaper run with nothing left open: its fixed cost per run.
    const mark = await counter.mark();
    const reaperRun = await invoke('reaper', undefined);
    const reaperCalls = tally(await counter.since(mark));
    return {
      shape,
      workloads,
      reaper: { calls: reaperCalls, invocation: reaperRun },
      writeUnitMismatches: mismatches,
      wallMs: performance.now() - t0,
    };
  } finally {
    await resetRuntime?.().catch(() => undefined);
    counter.restore();
    aws.restore();
    process.env = savedEnv;
    await Promise.allSettled([dyn.close(), issuer.close(), pg.stop()]);
  }
}
