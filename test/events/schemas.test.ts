import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { renderJsonSchemas } from '../../shared/events/json-schema.ts';
import { parseDetail } from '../../shared/events/parse.ts';
import { LIMITS } from '../../shared/events/limits.ts';
import { TaskEndedSchema, TaskStartedSchema } from '../../shared/events/schemas.ts';
import { InvalidEventError } from '../../shared/lease/errors.ts';

const SVID = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
const valid = {
  taskId: 'run-42:extract@1',
  svid: SVID,
  grants: [{ target: 'orders-db', access: 'read' }],
  maxDurationSeconds: 900,
  initiator: 'alice@example.org',
  workflow: { engine: 'step-functions', runId: 'arn:aws:states:eu-west-1:1:execution:x:y' },
};

const reject = (detail: unknown) => {
  try {
    parseDetail(TaskStartedSchema, detail, 'Task Started');
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidEventError);
    return (err as Error).message;
  }
  throw new Error('expected a rejection');
};

describe('event contract', () => {
  it('accepts a well-formed Task Started and Task Ended', () => {
    expect(parseDetail(TaskStartedSchema, valid, 'Task Started').taskId).toBe('run-42:extract@1');
    expect(parseDetail(TaskEndedSchema, { taskId: 't1', outcome: 'timed-out', svid: valid.svid }, 'Task Ended').outcome).toBe('timed-out');
  });

  it('refuses a Task Ended without an SVID, or with one that is not a compact JWS', () => {
    expect(() => parseDetail(TaskEndedSchema, { taskId: 't1', outcome: 'succeeded' }, 'Task Ended')).toThrow(/svid/);
    expect(() => parseDetail(TaskEndedSchema, { taskId: 't1', outcome: 'succeeded', svid: 'not a jwt' }, 'Task Ended')).toThrow(
      /compact JWS/,
    );
  });

  it.each([
    ['control character', 't1\u0000'],
    ['newline', 't1\nt2'],
    ['line separator', 't1\u2028t2'],
    ['bidi override', 'run-\u202e1'],
    ['zero-width space', 'run\u200b1'],
    ['lone surrogate', 'run\ud8001'],
    ['leading space', ' run-1'],
    ['trailing tab', 'run-1\t'],
    ['10 KB string', 'a'.repeat(10_240)],
    ['129 characters', 'a'.repeat(LIMITS.taskIdMaxLength + 1)],
    ['empty', ''],
  ])('rejects a taskId that is not printable text within the limit (%s), naming the field', (_name, taskId) => {
    expect(reject({ ...valid, taskId })).toMatch(/^Task Started: taskId: /);
  });

  it.each([
    ['Airflow run id', 'scheduled__2024-01-01T00:00:00+00:00'],
    ['Jenkins build', 'job/deploy/42'],
    ['Argo node', 'wf-8h2kd[0].step(1:x)'],
    ['quote and semicolon', "t1'; DROP ROLE postgres; --"],
    ['unicode', 'tâche-1'],
    ['inner spaces', 'nightly export 7'],
    ['path traversal', '../../etc/passwd'],
    ['128 characters', 'a'.repeat(LIMITS.taskIdMaxLength)],
  ])("accepts a real engine's task id (%s): names derived from it are encoded where they go", (_name, taskId) => {
    expect(parseDetail(TaskStartedSchema, { ...valid, taskId }, 'Task Started').taskId).toBe(taskId);
  });

  it.each([
    ['quote in target', { target: "orders'db", access: 'read' }, /grants\[0\]\.target/],
    ['semicolon in access', { target: 'orders-db', access: 'read;drop' }, /grants\[0\]\.access/],
    ['upper case', { target: 'Orders', access: 'read' }, /grants\[0\]\.target/],
    ['unicode', { target: 'ordérs', access: 'read' }, /grants\[0\]\.target/],
    ['oversize', { target: 'a'.repeat(10_240), access: 'read' }, /grants\[0\]\.target/],
    ['extra key', { target: 'orders-db', access: 'read', role: 'postgres' }, /grants\[0\]/],
  ])('rejects a hostile grant (%s) naming the field', (_name, grant, field) => {
    expect(reject({ ...valid, grants: [grant] })).toMatch(field);
  });

  it('rejects repeated grants, too many grants, bad durations, unknown keys and oversize details', () => {
    expect(reject({ ...valid, grants: [valid.grants[0], valid.grants[0]] })).toMatch(/grants: grants must not repeat/);
    const many = Array.from({ length: LIMITS.grantsMax + 1 }, (_, i) => ({ target: `t${i}`, access: 'read' }));
    expect(reject({ ...valid, grants: many })).toMatch(/grants: /);
    expect(reject({ ...valid, maxDurationSeconds: '900' })).toMatch(/maxDurationSeconds/);
    expect(reject({ ...valid, maxDurationSeconds: 10 })).toMatch(/maxDurationSeconds/);
    expect(reject({ ...valid, maxDurationSeconds: 1e9 })).toMatch(/maxDurationSeconds/);
    expect(reject({ ...valid, __proto__: { admin: true }, isAdmin: true })).toMatch(/isAdmin/);
    const bigGrants = Array.from({ length: LIMITS.grantsMax }, (_, i) => ({
      target: `t${i}`.padEnd(LIMITS.nameMaxLength, 'x'),
      access: 'a'.repeat(LIMITS.accessMaxLength),
    }));
    expect(
      reject({
        ...valid,
        grants: bigGrants,
        initiator: 'x'.repeat(256),
        workflow: { engine: 'e', runId: 'r'.repeat(256) },
        taskToken: 'k'.repeat(1024),
        svid: `${'a'.repeat(8180)}.b.c`,
      }),
    ).toMatch(/detail must serialise/);
    expect(reject({ ...valid, svid: 'not a jwt' })).toMatch(/svid: must be a compact JWS/);
    expect(reject({ ...valid, initiator: 'eve\u202e\ud800' })).toMatch(/initiator/);
  });

  it('never leaks the SVID into a rejection message', () => {
    expect(reject({ ...valid, taskId: 'bad\nid' })).not.toContain(SVID);
    expect(reject({ ...valid, svid: `${SVID}!` })).not.toContain(SVID);
  });

  it('random input only ever fails with InvalidEventError', () => {
    fc.assert(
      fc.property(fc.anything({ withObjectString: true, withNullPrototype: true }), (value) => {
        try {
          parseDetail(TaskStartedSchema, value, 'Task Started');
        } catch (err) {
          return err instanceof InvalidEventError;
        }
        return false;
      }),
      { numRuns: 500 },
    );
  });

  it('checked-in JSON Schemas match the zod schemas (run `npm run schemas` when this fails)', () => {
    for (const [name, text] of Object.entries(renderJsonSchemas())) {
      const file = join(import.meta.dirname, '../../shared/events/json-schema', `${name}.schema.json`);
      expect(readFileSync(file, 'utf8'), `${name}.schema.json is stale`).toBe(text);
    }
  });
});
