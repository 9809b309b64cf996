/**
 * Break-glass in the local runtime (issue 12), with a real PostgreSQL: `tasklease revoke
 * --workload` through the local operator endpoint locks the workload, revokes its live leases and
 * proves the old passwords refused; its new starts are denied workload-locked until `tasklease
 * unlock`. No password or operator token appears in any output.
 */
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/tasklease.ts';
import { startOperatorEndpoint } from '../../local/operator-http.ts';
import type { OperatorEndpoint } from '../../local/operator-http.ts';
import { startLocalRuntime } from '../../local/runtime.ts';
import type { LocalRuntime } from '../../local/runtime.ts';

const TD = 'spiffe://demo.tasklease.local';
const READER = `${TD}/etl/test`;

let rt: LocalRuntime;
let endpoint: OperatorEndpoint;
let file: string;
const logLines: string[] = [];
const record = (m: string, a?: Record<string, unknown>) => logLines.push(JSON.stringify({ m, ...a }));
const log = { info: record, warn: record, error: record };
const passwords: string[] = [];

async function start(taskId: string) {
  return rt.broker.taskStarted({
    taskId,
    svid: await rt.mintSvid(READER),
    grants: [{ target: 'orders-db', access: 'read' }],
    maxDurationSeconds: 600,
  });
}

async function secretOf(taskId: string): Promise<Record<string, string>> {
  const found = await rt.ledger.getLease(taskId);
  const name = found?.credentials[0]?.secretName;
  const s = name ? await rt.secrets.get(name) : undefined;
  if (!s) throw new Error(`no secret delivered for ${taskId}`);
  passwords.push(String(s.password));
  return s as Record<string, string>;
}

async function loginError(s: Record<string, string>): Promise<string | undefined> {
  const c = new pg.Client({ host: s.host, port: Number(s.port), database: s.database, user: s.username, password: s.password });
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.end();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

async function cli(...argv: string[]) {
  let out = '';
  let err = '';
  const code = await main([...argv, '--operator-file', file], { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

beforeAll(async () => {
  rt = await startLocalRuntime({ log, reaperIntervalMs: false, lifecycle: { verifyDeadlineMs: 5_000 } });
  const dir = mkdtempSync(join(tmpdir(), 'tl-operator-'));
  file = join(dir, 'operator.json');
  endpoint = await startOperatorEndpoint(rt.broker, { file });
});

afterAll(async () => {
  await endpoint?.close();
  await rt?.stop();
});

describe('tasklease revoke --workload / unlock against the local runtime', () => {
  it('writes the endpoint and its token to a file only its owner can read', () => {
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ url: endpoint.url, token: endpoint.token });
  });

  it('locks the workload, revokes its live leases and proves the passwords refused; unlock lets it start again', async () => {
    expect((await start('op-1')).status).toBe('issued');
    expect((await start('op-2')).status).toBe('issued');
    const one = await secretOf('op-1');
    const two = await secretOf('op-2');
    expect(await loginError(one)).toBeUndefined();
    // A session held across the revoke must be ended by it.
    const held = new pg.Client({
      host: one.host,
      port: Number(one.port),
      database: one.database,
      user: one.username,
      password: one.password,
    });
    held.on('error', () => undefined);
    await held.connect();

    const revoked = await cli('revoke', '--workload', READER, '--reason', 'suspected exfiltration', '--by', 'oncall-alice');
    expect(revoked.err).toBe('');
    expect(revoked.code).toBe(0);
    expect(revoked.out).toContain(`locked ${READER}`);
    expect(revoked.out).toMatch(/op-1: closed \(orders-db\.read proven rejected\)/);
    expect(revoked.out).toMatch(/op-2: closed \(orders-db\.read proven rejected\)/);
    expect(await loginError(one)).toBe('28P01');
    expect(await loginError(two)).toBe('28P01');
    await expect(held.query('select 1')).rejects.toThrow();
    expect((await rt.ledger.getLease('op-1'))?.lease).toMatchObject({
      state: 'closed',
      endedBy: 'operator:oncall-alice',
      endReason: 'suspected exfiltration',
    });

    const locked = await start('op-3');
    expect(locked).toMatchObject({ status: 'denied', code: 'workload-locked' });
    expect(locked.status === 'denied' && locked.message).toContain('oncall-alice');

    const unlocked = await cli('unlock', '--workload', READER, '--reason', 'keys rotated', '--by', 'oncall-bob');
    expect(unlocked).toMatchObject({ code: 0, err: '' });
    expect(unlocked.out).toContain(`unlocked ${READER} (locked by oncall-alice`);
    expect((await start('op-3')).status).toBe('issued');
    await rt.broker.taskEnded({ taskId: 'op-3', outcome: 'succeeded', svid: await rt.mintSvid(READER) });

    for (const text of [revoked.out, unlocked.out, logLines.join('\n')]) {
      for (const p of passwords) expect(text).not.toContain(p);
      expect(text).not.toContain(endpoint.token);
    }
  });

  it('revoke --task revokes one task only', async () => {
    expect((await start('op-4')).status).toBe('issued');
    expect((await start('op-5')).status).toBe('issued');
    const [four, five] = [await secretOf('op-4'), await secretOf('op-5')];
    const r = await cli('revoke', '--task', 'op-4', '--reason', 'one bad task', '--by', 'oncall-alice');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/op-4: closed/);
    expect(await loginError(four)).toBe('28P01');
    expect(await loginError(five)).toBeUndefined();
    expect((await start('op-6')).status).toBe('issued');
  });

  it('a request without the token, or a malformed one, is refused with a reason and changes nothing', async () => {
    const noToken = await fetch(endpoint.url, { method: 'POST', body: '{"action":"unlock"}' });
    expect(noToken.status).toBe(401);
    const bad = await cli('revoke', '--workload', 'not-a-spiffe-id', '--reason', 'x');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('workload');
    const usage = await cli('revoke', '--task', 'op-5');
    expect(usage.code).toBe(2);
    expect(usage.err).toContain('--reason');
    expect((await rt.ledger.getLease('op-5'))?.lease.state).toBe('active');
  });
});
