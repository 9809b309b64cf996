import pg from 'pg';
import { DETAIL_TYPES, EVENT_SOURCE, grantKey } from '../shared/events/schemas.ts';
import type { Grant, LeaseDenied, LeaseIssued, TaskStarted } from '../shared/events/schemas.ts';
import type { BusEvent } from '../shared/events/routing.ts';
import type { LocalBus } from '../local/bus.ts';
import type { SecretStore } from '../shared/lease/ports.ts';

/** A demo workload: who it is and what it asks for. */
export interface DemoWorkload {
  spiffeId: string;
  grants: Grant[];
}

export const DEMO_TRUST_DOMAIN = 'spiffe://demo.tasklease.local';

/** The demo's workloads (tasklease.config.yaml allows each), taken round-robin by the demo and the bench. */
export const DEMO_WORKLOADS: readonly DemoWorkload[] = [
  { spiffeId: `${DEMO_TRUST_DOMAIN}/etl/nightly`, grants: [{ target: 'orders-db', access: 'read' }] },
  { spiffeId: `${DEMO_TRUST_DOMAIN}/etl/hourly`, grants: [{ target: 'orders-db', access: 'read' }] },
  {
    spiffeId: `${DEMO_TRUST_DOMAIN}/billing/writer`,
    grants: [
      { target: 'orders-db', access: 'read' },
      { target: 'orders-db', access: 'write' },
    ],
  },
];

/** Connects as the workload would, with a delivered PostgreSQL secret. */
export async function connectWithSecret(secret: Record<string, string>, applicationName = 'tasklease-demo-workload'): Promise<pg.Client> {
  const client = new pg.Client({
    host: secret.host,
    port: Number(secret.port),
    database: secret.database,
    user: secret.username,
    password: secret.password,
    application_name: applicationName,
    connectionTimeoutMillis: 5_000,
  });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

export interface DemoTaskOutcome {
  taskId: string;
  workload: string;
  status: 'revoked' | 'denied' | 'error';
  denial?: { code: string; message: string };
  /** What the workload did with its credential: each check that ran and what it found. */
  checks: string[];
  error?: string;
}

export interface DemoDeps {
  bus: LocalBus;
  secrets: SecretStore;
  mintSvid(spiffeId: string): Promise<string>;
}

/** Resolves with the first bus event matching `match`, or rejects after `timeoutMs`. */
export function waitForEvent(
  bus: LocalBus,
  match: (e: BusEvent) => boolean,
  timeoutMs = 60_000,
): { promise: Promise<BusEvent>; cancel(): void } {
  let stop = () => {};
  const promise = new Promise<BusEvent>((resolve, reject) => {
    const timer = setTimeout(() => {
      unwatch();
      reject(new Error('timed out waiting for an event'));
    }, timeoutMs);
    const unwatch = bus.watch((e) => {
      if (match(e)) {
        clearTimeout(timer);
        unwatch();
        resolve(e);
      }
    });
    stop = () => {
      clearTimeout(timer);
      unwatch();
    };
  });
  return { promise, cancel: stop };
}

/**
 * Matches the named output events of one task, published by the broker: anyone who may put
 * events could put a `Lease Revoked` or `Lease Issued` of their own, so the source is checked.
 */
export const forTask =
  (taskId: string, ...types: string[]) =>
  (e: BusEvent) =>
    e.source === EVENT_SOURCE && types.includes(e['detail-type']) && (e.detail as { taskId?: string }).taskId === taskId;

/**
 * Matches the broker's answer to a task's start: `Lease Issued`, or a `Lease Denied` of the start
 * (a refused `Task Ended` for the same task id, `request: 'end'`, is not the start's answer).
 */
export const forStartAnswer = (taskId: string) => {
  const ofTask = forTask(taskId, DETAIL_TYPES.leaseIssued, DETAIL_TYPES.leaseDenied);
  return (e: BusEvent) => ofTask(e) && (e.detail as { request?: string }).request !== 'end';
};

/**
 * One task as a workflow engine and its workload would run it: Task Started, wait for the lease,
 * really use each credential against its target, Task Ended, wait for proof of revocation.
 */
export async function runDemoTask(deps: DemoDeps, taskId: string, workload: DemoWorkload, durationSeconds = 900): Promise<DemoTaskOutcome> {
  const outcome: DemoTaskOutcome = { taskId, workload: workload.spiffeId, status: 'error', checks: [] };
  const answer = waitForEvent(deps.bus, forStartAnswer(taskId));
  const detail: TaskStarted = {
    taskId,
    svid: await deps.mintSvid(workload.spiffeId),
    grants: workload.grants,
    maxDurationSeconds: durationSeconds,
    initiator: 'demo@tasklease.local',
    workflow: { engine: 'local-demo', runId: 'demo-run' },
  };
  deps.bus.put(DETAIL_TYPES.taskStarted, detail);
  const first = await answer.promise;
  if (first['detail-type'] === DETAIL_TYPES.leaseDenied) {
    const denied = first.detail as LeaseDenied;
    return { ...outcome, status: 'denied', denial: denied.reason };
  }

  const issued = first.detail as LeaseIssued;
  try {
    for (const cred of issued.credentials) outcome.checks.push(...(await useCredential(deps.secrets, cred.secretName, cred.grant)));
  } catch (err) {
    outcome.error = err instanceof Error ? err.message : String(err);
  }

  // Ends are authenticated: the workload signs its own Task Ended with a fresh SVID.
  const endSvid = await deps.mintSvid(workload.spiffeId);
  const revoked = waitForEvent(deps.bus, forTask(taskId, DETAIL_TYPES.leaseRevoked));
  deps.bus.put(DETAIL_TYPES.taskEnded, { taskId, outcome: outcome.error ? 'failed' : 'succeeded', svid: endSvid });
  await revoked.promise;
  return { ...outcome, status: outcome.error ? 'error' : 'revoked' };
}

/** The workload's side: read the delivered secret, connect with it and exercise the grant. */
async function useCredential(secrets: SecretStore, secretName: string, grant: Grant): Promise<string[]> {
  const secret = await secrets.get(secretName);
  if (!secret) throw new Error(`secret ${secretName} was not delivered`);
  const client = await connectWithSecret(secret);
  const checks: string[] = [];
  try {
    const { rows } = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM orders');
    checks.push(`${grantKey(grant)}: read ${rows[0]?.n} orders`);
    if (grant.access === 'write') {
      await client.query('INSERT INTO orders (item, qty) VALUES ($1, $2)', ['demo-widget', 1]);
      checks.push(`${grantKey(grant)}: inserted an order`);
    } else {
      try {
        await client.query('INSERT INTO orders (item, qty) VALUES ($1, $2)', ['should-fail', 1]);
        throw new Error(`${grantKey(grant)} could write: the read grant is too broad`);
      } catch (err) {
        if ((err as { code?: string }).code !== '42501') throw err;
        checks.push(`${grantKey(grant)}: write refused (42501)`);
      }
    }
  } finally {
    await client.end();
  }
  return checks;
}
