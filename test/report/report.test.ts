import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { startDynalite } from '../../local/dynalite.ts';
import type { DynaliteHandle } from '../../local/dynalite.ts';
import { resultFromLedger } from '../../demo/main.ts';
import { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import { reportToCsv, reportToJson, reportToText } from '../../report/format.ts';
import { buildReport, loadReport } from '../../report/report.ts';
import type { Report } from '../../report/report.ts';
import { formatDuration, parseTimeArg } from '../../report/time.ts';
import { A, B, DAY, MINUTE, NOW, T0, fixtureLeases } from './fixtures.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'cli', 'tasklease.ts');

let dyn: DynaliteHandle;
let ledger: DynamoDbLedger;

beforeAll(async () => {
  dyn = await startDynalite({ tableName: `report-${randomUUID()}` });
  ledger = new DynamoDbLedger(DynamoDBDocumentClient.from(dyn.client), dyn.tableName);
  for (const { lease, credentials } of fixtureLeases()) {
    expect(await ledger.createLease(lease)).toBe(true);
    for (const c of credentials) expect(await ledger.createCredential(c)).toBe(true);
  }
});

afterAll(async () => {
  await dyn?.close();
});

/** RFC 4180, enough for our own output: quoted cells, doubled quotes, CRLF rows. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      i++;
    } else cell += ch;
  }
  return rows;
}

const records = (csv: string) => {
  const [header, ...rows] = parseCsv(csv);
  return rows.map((r) => Object.fromEntries((header as string[]).map((h, i) => [h, r[i]])));
};

async function cli(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

describe('report figures from ledger items with known timestamps', () => {
  let r: Report;
  beforeAll(async () => {
    r = await loadReport(ledger, {}, NOW);
  });

  it('counts leases by state and credentials', () => {
    expect(r.leases).toBe(9);
    expect(r.leasesByState).toEqual({ closed: 3, ending: 2, denied: 3, active: 1 });
    expect(r.summary.credentials).toBe(7);
    expect(r.summary.verifiedRejected).toBe(4);
    expect(r.summary.open).toBe(3);
  });

  it('gives the nearest-rank percentiles of the verified debts 100, 250, 400, 900', () => {
    expect(r.summary.trustDebtMs).toEqual({ p50: 250, p90: 900, p99: 900, max: 900 });
    // avoided = naturalExpiry − verifiedAt: 898 850, 898 720, 898 500, 894 150
    expect(r.summary.avoidedDebtMs).toEqual({ p50: 898_500, min: 894_150 });
    // naturalExpiry − endedAt for every ended credential: 899 100 ×2, 899 120, 898 600, 895 050, 897 100
    expect(r.summary.ttlOnlyDebtMs).toEqual({ p50: 898_600, p99: 899_120 });
    expect(r.totals).toEqual({
      trustDebtMs: 1650,
      avoidedDebtMs: 3_590_220,
      openDebtMs: 86_999_000 + 477_000,
      verifyAttempts: 8,
      stillValid: 1,
    });
  });

  it('splits the proven debt: pipeline + revoke + proof = trust debt per credential; exposure = end → target refuses', () => {
    const verified = r.credentials.filter((c) => c.state === 'verified');
    expect(verified.map((c) => [c.taskId, c.grant, c.pipelineMs, c.revokeMs, c.proofMs, c.exposureMs])).toEqual([
      ['t3', 'orders-db.read', 300, 100, 500, 400],
      ['t1', 'billing-db.read', 100, 200, 100, 300],
      ['t1', 'orders-db.read', 100, 50, 100, 150],
      ['t2', 'orders-db.write', 20, 30, 50, 50],
    ]);
    for (const c of verified) {
      expect((c.pipelineMs as number) + (c.revokeMs as number) + (c.proofMs as number)).toBe(c.trustDebtMs);
      expect(c.exposureMs).toBe((c.pipelineMs as number) + (c.revokeMs as number));
    }
    // Nearest rank over 4 values: p50 is the 2nd smallest, p99 the largest.
    expect(r.summary.split).toEqual({
      pipelineMs: { p50: 100, p99: 300, max: 300 },
      revokeMs: { p50: 50, p99: 200, max: 200 },
      proofMs: { p50: 100, p99: 500, max: 500 },
      exposureMs: { p50: 150, p99: 400, max: 400 },
    });
    expect(r.credentials.find((c) => c.taskId === 't3')).toMatchObject({ endedAtSource: 'engine', endedAtClamped: true });
    expect(r.credentials.find((c) => c.taskId === 't2')).toMatchObject({ endedAtSource: 'queue' });
    // Still open: no proof, so no split beyond what is known.
    expect(r.credentials.find((c) => c.taskId === 't4')).toMatchObject({ pipelineMs: undefined, proofMs: undefined });
  });

  it('prints the same percentiles the demo prints from the same ledger', async () => {
    const demo = resultFromLedger(await ledger.listLeases({}), 0);
    expect(demo.trustDebtMs).toEqual({ p50: r.summary.trustDebtMs.p50, p99: r.summary.trustDebtMs.p99, max: r.summary.trustDebtMs.max });
    expect(demo.credentials).toBe(r.summary.credentials);
  });

  it('lists worst debts first: open debts by age, then proven debts, then credentials still in use', () => {
    expect(r.credentials.map((c) => `${c.taskId} ${c.grant}`)).toEqual([
      't0 orders-db.read',
      't4 orders-db.read',
      't3 orders-db.read',
      't1 billing-db.read',
      't1 orders-db.read',
      't2 orders-db.write',
      't8 orders-db.read',
    ]);
    expect(r.credentials.map((c) => c.trustDebtMs ?? c.openDebtMs ?? null)).toEqual([86_999_000, 477_000, 900, 400, 250, 100, null]);
  });

  it('gives open debt with ages: now − endedAt', () => {
    expect(r.openDebt.count).toBe(2);
    expect(r.openDebt.oldestMs).toBe(NOW - (T0 - DAY + 1000));
    expect(r.openDebt.items.map((c) => [c.taskId, c.state, c.openDebtMs, c.verifyAttempts, c.lastError])).toEqual([
      ['t0', 'revoking', 86_999_000, 0, undefined],
      ['t4', 'still-valid', 477_000, 3, 'old password still accepted'],
    ]);
  });

  it('groups denials by reason', () => {
    expect(r.denials.total).toBe(3);
    expect(r.denials.byReason).toEqual([
      { code: 'policy-grant-not-allowed', count: 2 },
      { code: 'svid-invalid', count: 1 },
    ]);
    expect(r.denials.items.map((d) => [d.taskId, d.workload, d.code])).toEqual([
      ['t5', A, 'policy-grant-not-allowed'],
      ['t6', undefined, 'svid-invalid'],
      ['t7', B, 'policy-grant-not-allowed'],
    ]);
  });

  it('gives the blast radius per workload, worked out by hand', () => {
    // A: orders [+100,+1250) billing [+120,+1400) orders.write [+600,+2100) orders [+6m+100, open)
    // B: t0 [−1d+100, open) t3 [+1m+50, +1m+5900) t4 [+2m+100, open) — all orders-db
    expect(r.blastRadius).toEqual([
      {
        workload: A,
        peakCredentials: 3,
        peakCredentialsAt: T0 + 600,
        peakTargets: 2,
        peakTargetsAt: T0 + 120,
        now: { credentials: 1, targets: 1 },
        targetsNow: ['orders-db'],
      },
      {
        workload: B,
        peakCredentials: 2,
        peakCredentialsAt: T0 + MINUTE + 50,
        peakTargets: 1,
        peakTargetsAt: T0 - DAY + 100,
        now: { credentials: 2, targets: 1 },
        targetsNow: ['orders-db'],
      },
    ]);
  });

  it('holds no task token, secret name or driver metadata', () => {
    const json = reportToJson(r);
    for (const s of ['TASK-TOKEN-MUST-NOT-LEAK', 'taskToken', 'secretName', 'tasklease/t1', 'metadata', 'externalId'])
      expect(json).not.toContain(s);
  });

  it('reads as a table for people', () => {
    const text = reportToText(r);
    expect(text).toContain('leases 9 (active 1, closed 3, denied 3, ending 2); credentials 7, verified rejected 4, not yet verified 3');
    expect(text).toContain('p50 250 ms   p90 900 ms   p99 900 ms   max 900 ms   total 1.65 s');
    expect(text).toContain(
      'split p50/p99: pipeline (end → revoke starts) 100 ms/300 ms, revoke (→ target refuses) 50 ms/200 ms, proof (→ proven) 100 ms/500 ms',
    );
    expect(text).toContain('exposure (end → target refuses: really usable) p50 150 ms, p99 400 ms, max 400 ms');
    expect(text).toContain('end measured from: engine 2, engine (clamped) 1, queue 1');
    expect(text).toContain('Open debt: 2 credential(s), oldest 1d 00h');
    expect(text).toContain('Denials: 3 — policy-grant-not-allowed 2, svid-invalid 1');
    const rows = text.split('\n');
    const worst = rows.findIndex((l) => l.startsWith('Credentials, worst debt first'));
    expect(rows[worst]).toContain('(7 of 7; times UTC)');
    expect(rows[worst + 3]).toMatch(/^ {2}t0 +orders-db\.read .* open 1d 00h/);
    expect(rows[worst + 5]).toMatch(/^ {2}t3 +orders-db\.read .* engine \(clamped\) .*900 ms +300 ms +100 ms +500 ms +400 ms +14m 54s$/);
    expect(reportToText(r, { limit: 2 })).toContain('… 5 more (--limit 0 shows all)');
  });
});

describe('report filters', () => {
  it('--since: leases requested in the window, yet open debt and blast radius "now" still see older unverified credentials', async () => {
    const r = await loadReport(ledger, { since: T0 }, NOW);
    expect(r.leases).toBe(8);
    expect(r.summary.credentials).toBe(6);
    expect(r.summary.trustDebtMs).toEqual({ p50: 250, p90: 900, p99: 900, max: 900 });
    expect(r.openDebt.items.map((c) => c.taskId)).toEqual(['t0', 't4']);
    const b = r.blastRadius.find((w) => w.workload === B);
    // t0 is live when the window opens: the peak of targets is reached right at `since`.
    expect(b).toMatchObject({
      peakCredentials: 2,
      peakCredentialsAt: T0 + MINUTE + 50,
      peakTargets: 1,
      peakTargetsAt: T0,
      now: { credentials: 2 },
    });
  });

  it('--since/--until: only leases requested in between', async () => {
    const r = await loadReport(ledger, { since: T0, until: T0 + 90_000 }, NOW);
    expect(r.leases).toBe(3);
    expect(r.credentials.map((c) => c.taskId).sort()).toEqual(['t1', 't1', 't2', 't3']);
    expect(r.summary.trustDebtMs).toEqual({ p50: 250, p90: 900, p99: 900, max: 900 });
    expect(r.denials.total).toBe(0);
  });

  it('--workload: one workload only', async () => {
    const r = await loadReport(ledger, { workload: A }, NOW);
    expect(r.leases).toBe(4);
    expect(r.summary).toMatchObject({ credentials: 4, verifiedRejected: 3, trustDebtMs: { p50: 250, p90: 400, p99: 400, max: 400 } });
    expect(r.denials.items.map((d) => d.taskId)).toEqual(['t5']);
    expect(r.openDebt.count).toBe(0);
    expect(r.blastRadius.map((w) => w.workload)).toEqual([A]);
  });

  it('--target: credentials for that target, and the leases and denials that asked for it', async () => {
    const r = await loadReport(ledger, { target: 'billing-db' }, NOW);
    expect(r.leases).toBe(2);
    expect(r.credentials.map((c) => `${c.taskId} ${c.grant}`)).toEqual(['t1 billing-db.read']);
    expect(r.summary.trustDebtMs).toEqual({ p50: 400, p90: 400, p99: 400, max: 400 });
    expect(r.denials.items.map((d) => d.taskId)).toEqual(['t7']);
    expect(r.blastRadius).toEqual([
      {
        workload: A,
        peakCredentials: 1,
        peakCredentialsAt: T0 + 120,
        peakTargets: 1,
        peakTargetsAt: T0 + 120,
        now: { credentials: 0, targets: 0 },
        targetsNow: [],
      },
    ]);
  });
});

describe('report output for tools', () => {
  it('CSV: RFC 4180 quoting, ISO instants, and spreadsheet formulas kept as text', () => {
    const leases = fixtureLeases();
    const r = buildReport(leases, { now: NOW });
    const denials = records(reportToCsv(r, 'denials'));
    expect(denials.find((d) => d.taskId === 't7')?.message).toBe('grant billing-db.read not allowed, ask "ops"');
    const t6 = leases.find((l) => l.lease.taskId === 't6');
    if (t6?.lease.denial) t6.lease.denial.message = '=HYPERLINK("http://x")';
    const guarded = records(reportToCsv(buildReport(leases, { now: NOW }), 'denials'));
    expect(guarded.find((d) => d.taskId === 't6')?.message).toBe('\'=HYPERLINK("http://x")');
  });
});

describe('tasklease report (CLI in a child process, against dynalite)', () => {
  const conn = () => ['--endpoint', dyn.endpoint, '--table', dyn.tableName];

  it('--json: the same figures, instants as ISO 8601, open debt aged at the time it ran', async () => {
    const before = Date.now();
    const { stdout, code } = await cli('report', ...conn(), '--json');
    const after = Date.now();
    expect(code).toBe(0);
    const j = JSON.parse(stdout);
    expect(j.summary.trustDebtMs).toEqual({ p50: 250, p90: 900, p99: 900, max: 900 });
    expect(j.summary.avoidedDebtMs).toEqual({ p50: 898_500, min: 894_150 });
    expect(j.totals.trustDebtMs).toBe(1650);
    expect(j.denials.byReason).toEqual([
      { code: 'policy-grant-not-allowed', count: 2 },
      { code: 'svid-invalid', count: 1 },
    ]);
    const t1b = j.credentials.find((c: { taskId: string; grant: string }) => c.taskId === 't1' && c.grant === 'billing-db.read');
    expect(t1b).toMatchObject({
      issuedAt: iso(T0 + 120),
      endedAt: iso(T0 + 1000),
      verifiedAt: iso(T0 + 1400),
      trustDebtMs: 400,
      avoidedDebtMs: 898_720,
    });
    const t4 = j.openDebt.items.find((c: { taskId: string }) => c.taskId === 't4');
    const ended = T0 + 2 * MINUTE + 3000;
    expect(t4.openDebtMs).toBeGreaterThanOrEqual(before - ended);
    expect(t4.openDebtMs).toBeLessThanOrEqual(after - ended);
    expect(
      j.blastRadius.map((b: { workload: string; peakCredentials: number; peakTargets: number; peakCredentialsAt: string }) => [
        b.workload,
        b.peakCredentials,
        b.peakTargets,
        b.peakCredentialsAt,
      ]),
    ).toEqual([
      [A, 3, 2, iso(T0 + 600)],
      [B, 2, 1, iso(T0 + MINUTE + 50)],
    ]);
    expect(stdout).not.toContain('TASK-TOKEN-MUST-NOT-LEAK');
  });

  it('--csv: one row per credential, worst debt first', async () => {
    const { stdout, code } = await cli('report', ...conn(), '--csv');
    expect(code).toBe(0);
    expect(stdout.split('\r\n')[0]).toBe(
      'taskId,grant,target,kind,workload,state,issuedAt,endedAt,endedAtSource,endedAtClamped,revokeStartedAt,revokedAt,verifiedAt,naturalExpiry,trustDebtMs,pipelineMs,revokeMs,proofMs,exposureMs,avoidedDebtMs,openDebtMs,verifyAttempts,lastError',
    );
    const rows = records(stdout);
    // t8's lease expired (T0 + 21 min) without a Task Ended long before the CLI's wall-clock now:
    // open debt since its expiry, counted as the reaper counts it (trust-debt.ts openDebt).
    expect(rows.map((r) => r.taskId)).toEqual(['t0', 't4', 't8', 't3', 't1', 't1', 't2']);
    expect(rows[2]).toMatchObject({ taskId: 't8', state: 'issued', trustDebtMs: '' });
    expect(Number(rows[2]?.openDebtMs)).toBeGreaterThan(0);
    expect(rows[3]).toMatchObject({
      grant: 'orders-db.read',
      workload: B,
      state: 'verified',
      trustDebtMs: '900',
      pipelineMs: '300',
      revokeMs: '100',
      proofMs: '500',
      exposureMs: '400',
      endedAtSource: 'engine',
      endedAtClamped: 'true',
      revokedAt: iso(T0 + MINUTE + 5400),
      avoidedDebtMs: '894150',
      issuedAt: iso(T0 + MINUTE + 50),
      openDebtMs: '',
    });
    expect(rows[1]).toMatchObject({ state: 'still-valid', verifyAttempts: '3', lastError: 'old password still accepted', trustDebtMs: '' });
  });

  it('--csv --rows summary|denials|blast-radius with filters', async () => {
    const summary = await cli('report', ...conn(), '--csv', '--rows', 'summary', '--workload', A, '--since', iso(T0));
    expect(summary.code).toBe(0);
    expect(records(summary.stdout)).toEqual([
      expect.objectContaining({
        leases: '4',
        credentials: '4',
        verifiedRejected: '3',
        trustDebtP50Ms: '250',
        trustDebtP90Ms: '400',
        trustDebtP99Ms: '400',
        trustDebtMaxMs: '400',
        openDebtCount: '1',
        denials: '1',
      }), // t8: a lost Task Ended
    ]);
    const denials = records((await cli('report', ...conn(), '--csv', '--rows', 'denials')).stdout);
    expect(denials.map((d) => [d.taskId, d.code, d.message])).toEqual([
      ['t5', 'policy-grant-not-allowed', 'grant orders-db.write not allowed'],
      ['t6', 'svid-invalid', 'signature does not verify'],
      ['t7', 'policy-grant-not-allowed', 'grant billing-db.read not allowed, ask "ops"'],
    ]);
    const blast = records((await cli('report', ...conn(), '--csv', '--rows', 'blast-radius', '--target', 'orders-db')).stdout);
    expect(blast.map((b) => [b.workload, b.peakCredentials, b.peakTargets, b.nowCredentials])).toEqual([
      [A, '2', '1', '1'], // orders-db only: t1 [+100,+1250) and t2 [+600,+2100) overlap
      [B, '2', '1', '2'],
    ]);
  });

  it('the default table, through `npm run report --` as documented', async () => {
    const { stdout } = await run('npm', ['run', '-s', 'report', '--', ...conn(), '--limit', '3'], { cwd: ROOT, encoding: 'utf8' });
    expect(stdout).toContain('p50 250 ms   p90 900 ms   p99 900 ms   max 900 ms');
    expect(stdout).toContain('Credentials, worst debt first (3 of 7; times UTC)');
    expect(stdout).toContain(`${A}`);
  });

  it('rejects bad flags with a usage message and exit code 2', async () => {
    const bad = await cli('report', ...conn(), '--since', 'yesterday');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('"yesterday" is neither an ISO 8601 time');
    const noTable = await cli('report');
    expect(noTable.code).toBe(2);
    expect(noTable.stderr).toContain('which ledger? give --table NAME');
    const both = await cli('report', ...conn(), '--json', '--csv');
    expect(both.code).toBe(2);
  });
});

describe('time arguments and durations', () => {
  const now = Date.UTC(2030, 0, 15, 12);
  it('parses ISO times and durations ago', () => {
    expect(parseTimeArg('2030-01-15T11:00:00Z', now)).toBe(now - 3_600_000);
    expect(parseTimeArg('2030-01-14', now)).toBe(Date.UTC(2030, 0, 14));
    expect(parseTimeArg('1h', now)).toBe(now - 3_600_000);
    expect(parseTimeArg('1h30m', now)).toBe(now - 5_400_000);
    expect(parseTimeArg('90s', now)).toBe(now - 90_000);
    expect(parseTimeArg('2d', now)).toBe(now - 2 * DAY);
    expect(parseTimeArg('1w', now)).toBe(now - 7 * DAY);
    expect(() => parseTimeArg('soon', now)).toThrow(RangeError);
    expect(() => parseTimeArg('1y', now)).toThrow(RangeError);
  });

  it('formats durations for people', () => {
    expect([183, 4200, 899_500, 7_500_000, 2 * DAY + 3_600_000].map(formatDuration)).toEqual([
      '183 ms',
      '4.20 s',
      '14m 59s',
      '2h 05m',
      '2d 01h',
    ]);
    expect(formatDuration(undefined)).toBe('—');
  });
});
