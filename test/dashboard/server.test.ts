import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { LocalBus } from '../../local/bus.ts';
import { startDashboard } from '../../report/dashboard/server.ts';
import type { DashboardData, DashboardHandle } from '../../report/dashboard/server.ts';
import { startDynalite } from '../../local/dynalite.ts';
import type { DynaliteHandle } from '../../local/dynalite.ts';
import { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import { buildReport } from '../../report/report.ts';
import { A, NOW, T0, fixtureLeases } from '../report/fixtures.ts';

const ROOT = join(import.meta.dirname, '..', '..');

let dyn: DynaliteHandle;
let ledger: DynamoDbLedger;
const handles: DashboardHandle[] = [];

beforeAll(async () => {
  dyn = await startDynalite({ tableName: `dash-${randomUUID()}` });
  ledger = new DynamoDbLedger(DynamoDBDocumentClient.from(dyn.client), dyn.tableName);
  for (const { lease, credentials } of fixtureLeases()) {
    await ledger.createLease(lease);
    for (const c of credentials) await ledger.createCredential(c);
  }
});

afterAll(async () => {
  for (const h of handles) await h.close();
  await dyn?.close();
});

async function dashboard(options: Partial<Parameters<typeof startDashboard>[0]> = {}): Promise<DashboardHandle> {
  const h = await startDashboard({ ledger, now: () => NOW, ...options });
  handles.push(h);
  return h;
}

/** A raw request, so the Host header can be anything. */
function get(
  url: string,
  init: { method?: string; host?: string } = {},
): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname, method: init.method ?? 'GET', headers: init.host ? { host: init.host } : {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Reads Server-Sent Events until `until` says stop; returns every event seen. */
function readEvents(
  url: string,
  until: (events: Array<{ event: string; data: string }>) => boolean,
  timeoutMs = 10_000,
): Promise<Array<{ event: string; data: string }>> {
  return new Promise((resolve, reject) => {
    const events: Array<{ event: string; data: string }> = [];
    const req = request(url, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data !== undefined) events.push({ event, data });
        }
        if (until(events)) {
          clearTimeout(timer);
          req.destroy();
          resolve(events);
        }
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`timed out; saw ${events.map((e) => e.event).join(', ')}`));
    }, timeoutMs);
    req.on('error', (err) => {
      if (!until(events)) reject(err);
    });
    req.end();
  });
}

describe('dashboard server', () => {
  it('serves the page and its assets from loopback, with a strict content security policy', async () => {
    const d = await dashboard();
    expect(d.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await get(d.url);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.body).toContain('<script type="module" src="/app.js">');
    expect(page.body).not.toMatch(/https?:\/\/(?!127\.0\.0\.1)/); // no CDN
    expect((await get(`${d.url}app.js`)).headers['content-type']).toContain('text/javascript');
    expect((await get(`${d.url}style.css`)).headers['content-type']).toContain('text/css');
    expect((await get(`${d.url}nope`)).status).toBe(404);
    expect((await get(`${d.url}api/ledger`, { method: 'POST' })).status).toBe(405);
  });

  it('answers only under a loopback host name (no DNS rebinding)', async () => {
    const d = await dashboard();
    expect((await get(`${d.url}api/ledger`, { host: `evil.example:${d.port}` })).status).toBe(421);
    expect((await get(`${d.url}api/ledger`, { host: `localhost:${d.port}` })).status).toBe(200);
  });

  it('/api/ledger: the report’s figures and the recent leases, with whitelisted fields only', async () => {
    const d = await dashboard({ maxLeases: 3 });
    const res = await get(`${d.url}api/ledger`);
    const data = JSON.parse(res.body) as DashboardData;
    const report = buildReport(fixtureLeases(), { now: NOW });
    expect(data.totalLeases).toBe(9);
    expect(data.summary).toEqual(report.summary);
    expect(data.blastRadius).toEqual(report.blastRadius);
    expect(data.denials).toEqual(JSON.parse(JSON.stringify(report.denials)));
    expect(data.openDebt).toEqual({ count: 2, oldestMs: report.openDebt.oldestMs });
    expect(data.leases.map((l) => l.taskId)).toEqual(['t6', 't7', 't8']);
    for (const s of ['TASK-TOKEN-MUST-NOT-LEAK', '"taskToken"', '"secretName"', '"metadata"', '"externalId"', '"lockedUntil"'])
      expect(res.body).not.toContain(s);
  });

  it('/api/ledger: the trust-debt split and where each end came from (issue 13)', async () => {
    const d = await dashboard({ maxLeases: 9 });
    const data = JSON.parse((await get(`${d.url}api/ledger`)).body) as DashboardData;
    expect(data.summary.split.pipelineMs).toEqual({ p50: 100, p99: 300, max: 300 });
    expect(data.summary.split.exposureMs).toEqual({ p50: 150, p99: 400, max: 400 });
    const t3 = data.leases.find((l) => l.taskId === 't3');
    expect(t3).toMatchObject({ endedAtSource: 'engine', endedAtClamped: true });
    expect(t3?.credentials[0]).toMatchObject({ pipelineMs: 300, revokeMs: 100, proofMs: 500, exposureMs: 400, trustDebtMs: 900 });
    expect(data.leases.find((l) => l.taskId === 't2')).toMatchObject({ endedAtSource: 'queue' });
  });

  it('pushes a new snapshot over Server-Sent Events when the ledger changes (polling without a bus)', async () => {
    const d = await dashboard({ pollMs: 100 });
    const id = `late-${randomUUID().slice(0, 8)}`;
    let wrote = false;
    const events = await readEvents(`${d.url}api/events`, (evs) => {
      const ledgers = evs.filter((e) => e.event === 'ledger');
      if (ledgers.length === 1 && !wrote) {
        wrote = true;
        void ledger.createLease({
          taskId: id,
          state: 'issuing',
          workload: A,
          grants: [{ target: 'orders-db', access: 'read' }],
          requestedAt: T0 + 9 * 60_000,
        });
      }
      return ledgers.some((e) => (JSON.parse(e.data) as DashboardData).leases.some((l) => l.taskId === id));
    });
    const ledgers = events.filter((e) => e.event === 'ledger').map((e) => JSON.parse(e.data) as DashboardData);
    expect(ledgers[0]?.totalLeases).toBe(9);
    expect(ledgers[ledgers.length - 1]?.totalLeases).toBe(10);
  });

  it('tells when a page is watching, so a demo can wait for one', async () => {
    const d = await dashboard();
    expect(d.viewers()).toBe(0);
    expect(await d.waitForViewer(50)).toBe(false);
    const waiting = d.waitForViewer(10_000);
    await readEvents(`${d.url}api/events`, (evs) => evs.some((e) => e.event === 'ledger'));
    expect(await waiting).toBe(true);
  });

  it('relays bus activity as type and task only: never an event’s other fields', async () => {
    const bus = new LocalBus();
    const d = await dashboard({ bus });
    let put = false;
    const events = await readEvents(`${d.url}api/events`, (evs) => {
      if (!put && evs.some((e) => e.event === 'ledger')) {
        put = true;
        bus.put('Lease Issued', { taskId: 't9', secretName: 'tasklease/t9/orders-db.read', taskToken: 'TOKEN-FROM-BUS' }, 'tasklease');
      }
      return evs.some((e) => e.event === 'activity');
    });
    const activity = events.find((e) => e.event === 'activity');
    expect(JSON.parse(activity?.data ?? '{}')).toMatchObject({ type: 'Lease Issued', taskId: 't9' });
    expect(activity?.data).not.toContain('TOKEN-FROM-BUS');
    expect(activity?.data).not.toContain('tasklease/t9');
  });
});

describe('tasklease dashboard (CLI) over an existing ledger', () => {
  it('prints its address, serves the ledger, and stops on Ctrl-C', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'cli/tasklease.ts'), 'dashboard', '--endpoint', dyn.endpoint, '--table', dyn.tableName],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let err = '';
        child.stderr.setEncoding('utf8');
        child.stderr.on('data', (c: string) => {
          err += c;
          const m = /tasklease dashboard on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(err);
          if (m) resolve(m[1] as string);
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
      });
      const data = JSON.parse((await get(`${url}api/ledger`)).body) as DashboardData;
      expect(data.totalLeases).toBeGreaterThanOrEqual(9);
      expect(data.summary.trustDebtMs.p50).toBe(250);
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
