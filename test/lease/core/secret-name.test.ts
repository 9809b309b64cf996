import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LIMITS, TASK_ID_PATTERN } from '../../../shared/events/limits.ts';
import { secretNameFor, secretTaskSegment } from '../../../shared/lease/secret-name.ts';

/** What Secrets Manager accepts as a secret name. */
const SECRETS_MANAGER_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const GRANT = { target: 'orders-db', access: 'read' };

const taskIds = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: LIMITS.taskIdMaxLength })
  .filter((s) => s.length <= LIMITS.taskIdMaxLength && TASK_ID_PATTERN.test(s));

describe('secretNameFor: any printable task id, a name Secrets Manager accepts', () => {
  it('keeps the ids of the old contract as they were (secrets delivered before the upgrade are found again)', () => {
    for (const id of ['run-1.deploy', 'a', 'etl@2026-12-02_1', 'X.Y-z']) {
      expect(secretNameFor(id, GRANT)).toBe(`tasklease/${id}/orders-db.read`);
    }
  });

  it("encodes the rest readably, with a hash: Airflow's run id, a Jenkins path, a colon", () => {
    expect(secretNameFor('scheduled__2024-01-01T00:00:00+00:00', GRANT)).toMatch(
      /^tasklease\/scheduled__2024-01-01T00-00-00-00-00=[0-9a-f]{20}\/orders-db\.read$/,
    );
    expect(secretTaskSegment('job/deploy/42')).toMatch(/^job-deploy-42=[0-9a-f]{20}$/);
    // Before: `tasklease/run:1/…`, which Secrets Manager refuses, after the STS session was created.
    expect(secretNameFor('run:1', GRANT)).toMatch(SECRETS_MANAGER_NAME);
  });

  it('is a valid Secrets Manager name for every valid task id', () => {
    fc.assert(
      fc.property(taskIds, (id) => {
        expect(secretNameFor(id, GRANT)).toMatch(SECRETS_MANAGER_NAME);
      }),
      { numRuns: 500 },
    );
  });

  it('never maps two task ids to one name, whichever form each takes', () => {
    // An encoded segment always holds `=`, a passed-through one never does; encoded ones differ by hash.
    fc.assert(
      fc.property(taskIds, taskIds, (a, b) => {
        fc.pre(a !== b);
        expect(secretTaskSegment(a)).not.toBe(secretTaskSegment(b));
      }),
      { numRuns: 500 },
    );
    // The obvious attempt: a raw id spelled like another id's encoding is itself encoded.
    const victim = secretTaskSegment('run:1');
    expect(secretTaskSegment(victim)).not.toBe(victim);
  });
});
