/**
 * The Lambda service of the emulated account, as far as tasklease needs it: moto keeps the
 * function configurations and event source mappings (it does not run Node functions without
 * Docker), and this runs them. Each deployed function gets one execution environment
 * (lambda-host.ts, a child process) with the bundle `cdk deploy` uploaded, the configuration's
 * environment, its memory as the V8 heap limit, its timeout, and credentials of an STS session of
 * its own role; every SDK call goes through the authorizer to moto. Each SQS event source mapping
 * gets a poller: batches of the mapping's size, partial batch responses (only the records not
 * reported failed are deleted), the rest left to the queue's visibility timeout and redrive policy.
 * Each Scheduler schedule with a function target invokes it at its rate, asynchronously.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  GetFunctionConfigurationCommand,
  GetFunctionEventInvokeConfigCommand,
  LambdaClient,
  ListEventSourceMappingsCommand,
} from '@aws-sdk/client-lambda';
import { DeleteMessageBatchCommand, GetQueueUrlCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { REGION } from './config.ts';
import { clientOptions } from './sdk.ts';
import type { SessionCredentials } from './sdk.ts';

export interface DeployedFunction {
  logicalId: string;
  name: string;
  arn: string;
  roleArn: string;
  memoryMb: number;
  timeoutSeconds: number;
  environment: Record<string, string>;
  bundleDir: string;
}

interface Template {
  Resources: Record<string, { Type: string; Metadata?: Record<string, string> }>;
}

/** The deployed functions: configuration as moto reads it back, bundle from the cloud assembly. */
export async function deployedFunctions(
  motoEndpoint: string,
  template: Template,
  assemblyDir: string,
  physical: (logicalId: string) => string,
): Promise<DeployedFunction[]> {
  const lambda = new LambdaClient(clientOptions(motoEndpoint));
  const out: DeployedFunction[] = [];
  for (const [logicalId, r] of Object.entries(template.Resources)) {
    if (r.Type !== 'AWS::Lambda::Function') continue;
    const cfg = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: physical(logicalId) }));
    out.push({
      logicalId,
      name: cfg.FunctionName!,
      arn: cfg.FunctionArn!,
      roleArn: cfg.Role!,
      memoryMb: cfg.MemorySize!,
      timeoutSeconds: cfg.Timeout!,
      environment: cfg.Environment?.Variables ?? {},
      bundleDir: join(assemblyDir, r.Metadata!['aws:asset:path']!),
    });
  }
  lambda.destroy();
  return out;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** One function's execution environment. */
export class FunctionHost {
  private child!: ChildProcess;
  private next = 1;
  private readonly pending = new Map<number, Pending>();
  /** Everything the function printed (Powertools' JSON log lines and EMF metrics), for assertions. */
  readonly logs: string[] = [];
  invocations = 0;

  constructor(
    readonly fn: DeployedFunction,
    private readonly endpoint: string,
    private readonly credentials: SessionCredentials,
  ) {
    this.spawn();
  }

  private spawn(): void {
    this.child = fork(new URL('./lambda-host.ts', import.meta.url).pathname, [this.fn.bundleDir], {
      execArgv: ['--import', 'tsx', `--max-old-space-size=${this.fn.memoryMb}`, '--enable-source-maps'],
      env: {
        PATH: process.env.PATH,
        ...this.fn.environment,
        NODE_OPTIONS: '',
        AWS_ENDPOINT_URL: this.endpoint,
        AWS_REGION: REGION,
        AWS_DEFAULT_REGION: REGION,
        AWS_ACCESS_KEY_ID: this.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: this.credentials.secretAccessKey,
        AWS_SESSION_TOKEN: this.credentials.sessionToken ?? '',
        AWS_LAMBDA_FUNCTION_NAME: this.fn.name,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(this.fn.memoryMb),
        AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
        AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${this.fn.name}`,
        TASKLEASE_HOST_FUNCTION_ARN: this.fn.arn,
        // Tracing is Active in the template; there is no X-Ray daemon here to send segments to.
        AWS_XRAY_CONTEXT_MISSING: 'IGNORE_ERROR',
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const keep = (line: string) => {
      this.logs.push(line);
      if (this.logs.length > 5000) this.logs.shift();
    };
    createInterface({ input: this.child.stdout! }).on('line', keep);
    createInterface({ input: this.child.stderr! }).on('line', keep);
    this.child.on('message', (msg: { id: number; ok: boolean; result?: unknown; error?: { name: string; message: string } }) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(Object.assign(new Error(msg.error!.message), { name: msg.error!.name }));
    });
    this.child.on('exit', (code) => {
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(new Error(`${this.fn.name}: environment exited (${code})`));
        this.pending.delete(id);
      }
    });
  }

  /** A synchronous invocation; past the configured timeout the environment is killed and replaced, as Lambda does. */
  invoke(event: unknown): Promise<unknown> {
    const id = this.next++;
    this.invocations++;
    const timeoutMs = this.fn.timeoutSeconds * 1000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.child.kill('SIGKILL');
        this.spawn();
        reject(new Error(`${this.fn.name}: Task timed out after ${this.fn.timeoutSeconds} s`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.child.send({ id, event, timeoutMs });
    });
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null) return resolve();
      this.child.once('exit', () => resolve());
      this.child.disconnect();
      setTimeout(() => this.child.kill('SIGKILL'), 3_000).unref();
    });
  }
}

export interface PollerStats {
  batches: number;
  received: number;
  deleted: number;
  failed: number;
}

/** An SQS event source mapping, run. */
class Poller {
  readonly stats: PollerStats = { batches: 0, received: 0, deleted: 0, failed: 0 };
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly sqs: SQSClient,
    readonly queueUrl: string,
    readonly queueArn: string,
    readonly batchSize: number,
    private readonly host: FunctionHost,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const got = await this.sqs
        .send(
          new ReceiveMessageCommand({
            QueueUrl: this.queueUrl,
            MaxNumberOfMessages: Math.min(10, this.batchSize),
            WaitTimeSeconds: 1,
            MessageSystemAttributeNames: ['All'],
            MessageAttributeNames: ['All'],
          }),
        )
        .catch(() => ({ Messages: [] }));
      const messages = got.Messages ?? [];
      if (this.stopped || messages.length === 0) continue;
      const records: SQSRecord[] = messages.map((m) => ({
        messageId: m.MessageId!,
        receiptHandle: m.ReceiptHandle!,
        body: m.Body ?? '',
        attributes: (m.Attributes ?? {}) as unknown as SQSRecord['attributes'],
        messageAttributes: {},
        md5OfBody: m.MD5OfBody ?? '',
        eventSource: 'aws:sqs',
        eventSourceARN: this.queueArn,
        awsRegion: REGION,
      }));
      this.stats.batches++;
      this.stats.received += records.length;
      let failedIds: Set<string>;
      try {
        const res = (await this.host.invoke({ Records: records } satisfies SQSEvent)) as {
          batchItemFailures?: { itemIdentifier: string }[];
        };
        failedIds = new Set((res?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
      } catch {
        // A failed invocation: the whole batch returns to the queue after its visibility timeout.
        failedIds = new Set(records.map((r) => r.messageId));
      }
      const done = records.filter((r) => !failedIds.has(r.messageId));
      this.stats.failed += records.length - done.length;
      if (done.length) {
        await this.sqs.send(
          new DeleteMessageBatchCommand({
            QueueUrl: this.queueUrl,
            Entries: done.map((r, i) => ({ Id: String(i), ReceiptHandle: r.receiptHandle })),
          }),
        );
        this.stats.deleted += done.length;
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** An EventBridge Scheduler schedule with a Lambda target, as moto holds it. */
export interface DeployedSchedule {
  name: string;
  expression: string;
  targetArn: string;
}

/** A schedule from moto's Scheduler API (REST; no Scheduler client is installed, and moto checks no signatures). */
export async function deployedSchedule(motoEndpoint: string, name: string): Promise<DeployedSchedule> {
  const res = await fetch(`${motoEndpoint}/schedules/${encodeURIComponent(name)}`, {
    headers: {
      authorization: `AWS4-HMAC-SHA256 Credential=AKIAEMULATEDADMIN000/20260101/${REGION}/scheduler/aws4_request, SignedHeaders=host, Signature=0`,
    },
  });
  if (!res.ok) throw new Error(`scheduler:GetSchedule ${name}: ${res.status}`);
  const body = (await res.json()) as { Name: string; ScheduleExpression: string; Target: { Arn: string } };
  return { name: body.Name, expression: body.ScheduleExpression, targetArn: body.Target.Arn };
}

function rateMs(expression: string): number {
  const m = /^rate\((\d+) (minute|minutes|hour|hours)\)$/.exec(expression);
  if (!m) throw new Error(`schedule expression ${expression}: only rate(N minutes|hours) is run here`);
  return Number(m[1]) * (m[2]!.startsWith('minute') ? 60_000 : 3_600_000);
}

export interface ScheduleStats {
  runs: number;
  failures: number;
  /** What the runs returned (the reaper's report). */
  results: unknown[];
}

export class LambdaService {
  readonly hosts = new Map<string, FunctionHost>();
  readonly pollers: Poller[] = [];
  readonly schedules = new Map<string, ScheduleStats>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly clients: { destroy(): void }[] = [];

  private constructor() {}

  /** Execution environments for `functions` and pollers for their event source mappings; calls go to `endpoint` (the authorizer). */
  static async start(
    motoEndpoint: string,
    endpoint: string,
    functions: DeployedFunction[],
    schedules: DeployedSchedule[] = [],
  ): Promise<LambdaService> {
    const svc = new LambdaService();
    const sts = new STSClient(clientOptions(endpoint));
    const lambda = new LambdaClient(clientOptions(motoEndpoint));
    svc.clients.push(sts, lambda);
    const credsByFunction = new Map<string, SessionCredentials>();
    for (const fn of functions) {
      // What Lambda gives a function: a session of its execution role (through the authorizer, so it knows the session).
      const { Credentials: c } = await sts.send(new AssumeRoleCommand({ RoleArn: fn.roleArn, RoleSessionName: fn.name.slice(0, 64) }));
      const creds = { accessKeyId: c!.AccessKeyId!, secretAccessKey: c!.SecretAccessKey!, sessionToken: c!.SessionToken! };
      credsByFunction.set(fn.arn, creds);
      svc.hosts.set(fn.logicalId, new FunctionHost(fn, endpoint, creds));
    }
    const mappings = (await lambda.send(new ListEventSourceMappingsCommand({}))).EventSourceMappings ?? [];
    for (const m of mappings) {
      const fn = functions.find((f) => f.arn === m.FunctionArn || f.name === m.FunctionArn?.split(':').pop());
      if (!fn || m.State === 'Disabled') continue;
      // The Lambda service polls with the function's execution role.
      const sqs = new SQSClient(clientOptions(endpoint, credsByFunction.get(fn.arn)));
      svc.clients.push(sqs);
      const queueName = m.EventSourceArn!.split(':').pop()!;
      const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: queueName }));
      const poller = new Poller(sqs, QueueUrl!, m.EventSourceArn!, m.BatchSize ?? 10, svc.hosts.get(fn.logicalId)!);
      svc.pollers.push(poller);
      poller.start();
    }
    for (const schedule of schedules) {
      const fn = functions.find((f) => f.arn === schedule.targetArn);
      if (!fn) throw new Error(`schedule ${schedule.name} targets ${schedule.targetArn}, not a deployed function`);
      // Scheduler invokes asynchronously: a failed run goes to the function's OnFailure destination
      // (its event invoke configuration), after the configured retries (the template says 0).
      const invokeConfig = await lambda.send(new GetFunctionEventInvokeConfigCommand({ FunctionName: fn.name })).catch(() => undefined);
      const onFailure = invokeConfig?.DestinationConfig?.OnFailure?.Destination;
      const stats: ScheduleStats = { runs: 0, failures: 0, results: [] };
      svc.schedules.set(schedule.name, stats);
      const host = svc.hosts.get(fn.logicalId)!;
      const admin = new SQSClient(clientOptions(motoEndpoint));
      svc.clients.push(admin);
      const run = () => {
        stats.runs++;
        host.invoke({}).then(
          (result) => stats.results.push(result),
          async (err: unknown) => {
            stats.failures++;
            if (!onFailure) return;
            const { QueueUrl } = await admin.send(new GetQueueUrlCommand({ QueueName: onFailure.split(':').pop()! }));
            const body = {
              version: '1.0',
              requestContext: { functionArn: fn.arn, condition: 'RetriesExhausted' },
              responsePayload: { errorMessage: (err as Error).message },
            };
            await admin.send(new SendMessageCommand({ QueueUrl, MessageBody: JSON.stringify(body) }));
          },
        );
      };
      svc.timers.push(setInterval(run, rateMs(schedule.expression)));
    }
    return svc;
  }

  host(logicalIdPrefix: string): FunctionHost {
    const found = [...this.hosts.values()].find((h) => h.fn.logicalId.startsWith(logicalIdPrefix));
    if (!found) throw new Error(`no deployed function ${logicalIdPrefix}*`);
    return found;
  }

  /** Every line every function printed. */
  logs(): string[] {
    return [...this.hosts.values()].flatMap((h) => h.logs);
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await Promise.all(this.pollers.map((p) => p.stop()));
    await Promise.all([...this.hosts.values()].map((h) => h.stop()));
    for (const c of this.clients) c.destroy();
  }
}
