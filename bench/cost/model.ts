/**
 * From counted calls to dollars: each line says whether its quantity was counted at the SDK
 * boundary, measured (Lambda duration, log bytes), or modelled from counted figures (what no
 * handler calls: EventBridge's delivery to SQS, the event source mapping's receive and delete per
 * batch, the KMS requests Secrets Manager makes, how long a secret is stored).
 */
import type { ServiceTally } from './counter.ts';
import type { CostMeasurement, DeployedShape, Invocation, MeasuredWorkload, Phase } from './lifecycles.ts';
import { HOURS_PER_MONTH, PRICES } from './prices.ts';
import type { PriceName } from './prices.ts';

export type Basis = 'counted' | 'measured' | 'modelled';

export interface CostLine {
  service: string;
  item: string;
  /** Per lifecycle. */
  quantity: number;
  price: PriceName;
  /** USD per lifecycle. */
  usd: number;
  basis: Basis;
}

export interface CostEstimate {
  workload: string;
  batchSize: number;
  credentialsPerTask: number;
  lines: CostLine[];
  usdPerTask: number;
  usdPerMillionTasks: number;
}

export interface CostAssumptions {
  /** How long a task holds its credential: a secret is stored this long under proof. */
  taskSeconds: number;
  /** Lease length: under TTL-only expiry the secret is stored until the lease runs out. */
  leaseSeconds: number;
  /** Share of invocations X-Ray records (the default rule: all of them below ~1/s, ≈ 5 % at high rates). */
  xraySampled: number;
}

export const DEFAULT_ASSUMPTIONS: CostAssumptions = { taskSeconds: 300, leaseSeconds: 900, xraySampled: 1 };

const sum = (tallies: Array<Record<string, ServiceTally>>, service: string, f: (t: ServiceTally) => number) =>
  tallies.reduce((n, t) => n + (t[service] ? f(t[service]) : 0), 0);

function linesFor(
  m: MeasuredWorkload,
  phases: readonly Phase[],
  invocations: readonly Invocation[],
  shape: DeployedShape,
  a: CostAssumptions,
  ttlOnly: boolean,
): CostLine[] {
  const n = m.tasks;
  const t = phases.map((p) => m.calls[p]);
  const line = (service: string, item: string, total: number, price: PriceName, basis: Basis): CostLine => ({
    service,
    item,
    quantity: total / n,
    price,
    usd: (total / n) * PRICES[price].usd,
    basis,
  });
  const engine = t.filter((_, i) => phases[i] === 'engineStart' || phases[i] === 'engineEnd');
  const broker = t.filter((_, i) => phases[i] === 'taskStarted' || phases[i] === 'taskEnded');
  const inputEvents = sum(engine, 'eventbridge', (x) => x.entries);
  const gbSeconds = invocations.reduce((s, i) => s + (Math.ceil(i.durationMs) / 1000) * (shape.memoryMb / 1024), 0);
  const secretsCreated = sum(broker, 'secretsmanager', (x) => x.byOperation.CreateSecret ?? 0);
  const storedSeconds = ttlOnly ? a.leaseSeconds : a.taskSeconds;
  const callsOf = (service: string) => sum(t, service, (x) => x.requests);
  const lines: CostLine[] = [
    line(
      'DynamoDB',
      'write request units, table',
      sum(t, 'dynamodb', (x) => x.writeUnitsTable),
      'dynamoWriteUnit',
      'counted',
    ),
    line(
      'DynamoDB',
      'write request units, global secondary indexes',
      sum(t, 'dynamodb', (x) => x.writeUnitsIndex),
      'dynamoWriteUnit',
      'counted',
    ),
    line(
      'DynamoDB',
      'read request units',
      sum(t, 'dynamodb', (x) => x.readUnits),
      'dynamoReadUnit',
      'counted',
    ),
    line('EventBridge', 'events in (the engine’s PutEvents entries)', inputEvents, 'eventBridgeEvent', 'counted'),
    line(
      'EventBridge',
      'events out (the broker’s PutEvents entries)',
      sum(broker, 'eventbridge', (x) => x.entries),
      'eventBridgeEvent',
      'counted',
    ),
    line('SQS', 'SendMessage by EventBridge to the work queue (one per input event)', inputEvents, 'sqsRequest', 'modelled'),
    line(
      'SQS',
      'ReceiveMessage + DeleteMessageBatch by the event source mapping (per batch)',
      2 * invocations.length,
      'sqsRequest',
      'modelled',
    ),
    line('SQS', 'requests from the handlers (re-verify messages)', callsOf('sqs'), 'sqsRequest', 'counted'),
    line('Lambda', 'invocations', invocations.length, 'lambdaRequest', 'counted'),
    line(
      'Lambda',
      `GB-seconds at ${shape.memoryMb} MB (${shape.architecture}, local handler time, 1 ms rounding)`,
      gbSeconds,
      shape.architecture === 'arm64' ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86',
      'measured',
    ),
    line('Secrets Manager', 'API calls (broker and workload)', callsOf('secretsmanager'), 'secretsApiCall', 'counted'),
    ...(ttlOnly ? [line('Secrets Manager', 'DeleteSecret once the lease has run out', secretsCreated, 'secretsApiCall', 'modelled')] : []),
    line(
      'Secrets Manager',
      `secret-months (each secret stored ${storedSeconds} s)`,
      (secretsCreated * storedSeconds) / 3600 / HOURS_PER_MONTH,
      'secretMonth',
      'modelled',
    ),
    line(
      'KMS',
      'requests Secrets Manager makes (one per value written or read)',
      sum(t, 'secretsmanager', (x) => x.kmsRequests),
      'kmsRequest',
      'modelled',
    ),
    line('STS / IAM', 'AssumeRole, GetRole, Get/PutRolePolicy calls', callsOf('sts') + callsOf('iam'), 'stsIamCall', 'counted'),
    line(
      'CloudWatch Logs',
      'GB ingested (the handlers’ log lines and EMF metrics)',
      invocations.reduce((s, i) => s + i.logBytes, 0) / 1e9,
      'logsIngestedGb',
      'measured',
    ),
    line('X-Ray', `traces (${a.xraySampled * 100} % of invocations sampled)`, invocations.length * a.xraySampled, 'xrayTrace', 'modelled'),
  ];
  return lines;
}

function estimateOf(m: MeasuredWorkload, lines: CostLine[]): CostEstimate {
  const usd = lines.reduce((s, l) => s + l.usd, 0);
  return {
    workload: m.workload,
    batchSize: m.batchSize,
    credentialsPerTask: m.credentialsPerTask,
    lines,
    usdPerTask: usd,
    usdPerMillionTasks: usd * 1e6,
  };
}

/** Proven revocation: the whole lifecycle. */
export function proofCost(m: MeasuredWorkload, shape: DeployedShape, a: CostAssumptions = DEFAULT_ASSUMPTIONS): CostEstimate {
  return estimateOf(m, linesFor(m, ['engineStart', 'taskStarted', 'workload', 'engineEnd', 'taskEnded'], m.invocations, shape, a, false));
}

/**
 * TTL-only expiry: the same issuance (the Task Started path, counted), then nothing: no Task Ended,
 * no revoke, no proof. The secret stays stored until the lease runs out and is then deleted; the
 * ledger's items go by DynamoDB TTL, which costs nothing.
 */
export function ttlOnlyCost(m: MeasuredWorkload, shape: DeployedShape, a: CostAssumptions = DEFAULT_ASSUMPTIONS): CostEstimate {
  const started = m.invocations.filter((i) => i.fn === 'taskStarted');
  return estimateOf(m, linesFor(m, ['engineStart', 'taskStarted', 'workload'], started, shape, a, true));
}

/** The average of several workloads' estimates, line by line (the demo's round-robin mix). */
export function mixOf(name: string, estimates: CostEstimate[]): CostEstimate {
  const first = estimates[0];
  if (!first) throw new Error('empty mix');
  const lines = first.lines.map((l, i) => {
    const all = estimates.map((e) => e.lines[i] as CostLine);
    return { ...l, quantity: all.reduce((s, x) => s + x.quantity, 0) / all.length, usd: all.reduce((s, x) => s + x.usd, 0) / all.length };
  });
  const usd = lines.reduce((s, l) => s + l.usd, 0);
  return {
    workload: name,
    batchSize: first.batchSize,
    credentialsPerTask: estimates.reduce((s, e) => s + e.credentialsPerTask, 0) / estimates.length,
    lines,
    usdPerTask: usd,
    usdPerMillionTasks: usd * 1e6,
  };
}

export interface ReaperCost {
  usdPerRun: number;
  runsPerMonth: number;
  usdPerMonth: number;
  calls: Record<string, string>;
}

/** The scheduled reaper: a fixed cost per month, whatever the number of tasks. */
export function reaperCost(c: CostMeasurement, a: CostAssumptions = DEFAULT_ASSUMPTIONS): ReaperCost {
  const inv = c.reaper.invocation;
  const d = c.reaper.calls.dynamodb;
  const usdPerRun =
    PRICES.lambdaRequest.usd +
    (Math.ceil(inv.durationMs) / 1000) *
      (c.shape.memoryMb / 1024) *
      PRICES[c.shape.architecture === 'arm64' ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86'].usd +
    (d ? d.readUnits * PRICES.dynamoReadUnit.usd + (d.writeUnitsTable + d.writeUnitsIndex) * PRICES.dynamoWriteUnit.usd : 0) +
    (inv.logBytes / 1e9) * PRICES.logsIngestedGb.usd +
    a.xraySampled * PRICES.xrayTrace.usd;
  const runsPerMonth = (HOURS_PER_MONTH * 3600) / c.shape.reaperIntervalSeconds;
  return {
    usdPerRun,
    runsPerMonth,
    usdPerMonth: usdPerRun * runsPerMonth,
    calls: Object.fromEntries(
      Object.entries(c.reaper.calls).map(([s, t]) => [
        s,
        `${t.requests} (${Object.entries(t.byOperation)
          .map(([op, k]) => `${op} ${k}`)
          .join(', ')})`,
      ]),
    ),
  };
}

export interface CostSummary {
  shape: DeployedShape;
  assumptions: CostAssumptions;
  /** Per workload and batch size, proof and TTL-only side by side. */
  rows: Array<{ proof: CostEstimate; ttlOnly: CostEstimate }>;
  /** The demo mix, per batch size. */
  mix: Array<{ proof: CostEstimate; ttlOnly: CostEstimate }>;
  reaper: ReaperCost;
  writeUnitMismatches: number;
  /** Requests per lifecycle by service and operation, demo mix at batch size 1. */
  callsPerLifecycle: Record<string, Record<string, number>>;
  errors: string[];
}

export function summarizeCost(c: CostMeasurement, mixNames: readonly string[], a: CostAssumptions = DEFAULT_ASSUMPTIONS): CostSummary {
  const rows = c.workloads.map((m) => ({ proof: proofCost(m, c.shape, a), ttlOnly: ttlOnlyCost(m, c.shape, a) }));
  const batchSizes = [...new Set(c.workloads.map((w) => w.batchSize))];
  const mix = batchSizes.map((b) => {
    const members = rows.filter((r) => r.proof.batchSize === b && mixNames.includes(r.proof.workload));
    return {
      proof: mixOf(
        'demo mix',
        members.map((r) => r.proof),
      ),
      ttlOnly: mixOf(
        'demo mix',
        members.map((r) => r.ttlOnly),
      ),
    };
  });
  const smallest = Math.min(...batchSizes);
  const callsPerLifecycle: Record<string, Record<string, number>> = {};
  const members = c.workloads.filter((w) => w.batchSize === smallest && mixNames.includes(w.workload));
  for (const w of members)
    for (const phase of Object.values(w.calls))
      for (const [service, t] of Object.entries(phase))
        for (const [op, count] of Object.entries(t.byOperation)) {
          const s = (callsPerLifecycle[service] ??= {});
          s[op] = (s[op] ?? 0) + count / w.tasks / members.length;
        }
  return {
    shape: c.shape,
    assumptions: a,
    rows,
    mix,
    reaper: reaperCost(c, a),
    writeUnitMismatches: c.writeUnitMismatches,
    callsPerLifecycle,
    errors: c.workloads.flatMap((w) => w.errors),
  };
}
