import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { blastRadius, blastRadiusOfIntervals } from '../../shared/metrics/blast-radius.ts';
import type { LiveInterval } from '../../shared/metrics/blast-radius.ts';
import type { CredentialRecord } from '../../shared/lease/records.ts';

const A = 'spiffe://example.org/a';
const B = 'spiffe://example.org/b';

function cred(
  target: string,
  issuedAt: number | undefined,
  verifiedAt: number | undefined,
  workload = A,
  access = 'read',
): CredentialRecord {
  return {
    taskId: `t-${target}-${issuedAt}-${verifiedAt}-${Math.random()}`,
    grant: { target, access },
    target,
    kind: 'postgres',
    externalId: 'x',
    state: verifiedAt === undefined ? 'issued' : 'verified',
    workload,
    intentAt: issuedAt ?? 0,
    issuedAt,
    verifiedAt,
    verifyAttempts: verifiedAt === undefined ? 0 : 1,
  };
}

describe('blast radius (sweep-line over live intervals)', () => {
  it('counts back-to-back credentials as never live together: live is [issuedAt, verifiedAt)', () => {
    const [r] = blastRadius([cred('db1', 0, 10), cred('db1', 10, 20)], { now: 100 });
    expect(r).toMatchObject({ workload: A, peakCredentials: 1, peakCredentialsAt: 0, peakTargets: 1, now: { credentials: 0, targets: 0 } });
  });

  it('counts credentials issued at the same instant together', () => {
    const [r] = blastRadius([cred('db1', 5, 10), cred('db2', 5, 10), cred('db1', 9, 30)], { now: 100 });
    // At 5: two live (db1, db2); at 9: three live, still two targets; at 10 two end.
    expect(r).toMatchObject({ peakCredentials: 3, peakCredentialsAt: 9, peakTargets: 2, peakTargetsAt: 5 });
  });

  it('takes peak credentials and peak distinct targets separately, and the value now', () => {
    // db1 [0,100), db1 [50,150), db2 [120,200), db3 [300, open)
    const creds = [cred('db1', 0, 100), cred('db1', 50, 150), cred('db2', 120, 200), cred('db3', 300, undefined)];
    const [at175] = blastRadius(creds, { now: 175 });
    expect(at175).toMatchObject({
      peakCredentials: 2, // first reached at 50 (db1 ×2), again at 120 (db1 + db2)
      peakCredentialsAt: 50,
      peakTargets: 2, // db1 + db2 at 120
      peakTargetsAt: 120,
      now: { credentials: 1, targets: 1 },
      targetsNow: ['db2'],
    });
    const [at350] = blastRadius(creds, { now: 350 });
    expect(at350).toMatchObject({ peakCredentials: 2, peakTargets: 2, now: { credentials: 1, targets: 1 }, targetsNow: ['db3'] });
  });

  it('clips to the window: a credential live at its start counts from there, one after its end does not', () => {
    const creds = [cred('db1', 0, 100), cred('db1', 50, 150), cred('db2', 120, 200), cred('db3', 300, undefined)];
    const [r] = blastRadius(creds, { now: 1000, since: 60, until: 110 });
    expect(r).toMatchObject({
      peakCredentials: 2,
      peakCredentialsAt: 60,
      peakTargets: 1,
      peakTargetsAt: 60,
      now: { credentials: 1, targets: 1 },
    });
    const [late] = blastRadius(creds, { now: 1000, since: 250 });
    expect(late).toMatchObject({ peakCredentials: 1, peakCredentialsAt: 300, peakTargets: 1 });
  });

  it('keeps an unverified credential live until now, even with no end in sight', () => {
    const [r] = blastRadius([cred('db1', 10, undefined), cred('db2', 20, undefined), cred('db1', 30, 40)], { now: 50 });
    expect(r).toMatchObject({
      peakCredentials: 3,
      peakCredentialsAt: 30,
      peakTargets: 2,
      now: { credentials: 2, targets: 2 },
      targetsNow: ['db1', 'db2'],
    });
  });

  it('ignores intents never issued and zero-length lives, and a window entirely in the future of now', () => {
    const [r] = blastRadius([cred('db1', undefined, undefined), cred('db2', 5, 5), cred('db3', 7, 9)], { now: 100 });
    expect(r).toMatchObject({ peakCredentials: 1, peakTargets: 1, now: { credentials: 0, targets: 0 } });
    const [none] = blastRadius([cred('db1', 200, undefined)], { now: 100 });
    expect(none).toMatchObject({ peakCredentials: 0, peakCredentialsAt: undefined, now: { credentials: 0 } });
  });

  it('keeps workloads apart, sorted by workload', () => {
    const r = blastRadius([cred('db1', 0, 10, B), cred('db1', 0, 10, A), cred('db2', 5, 10, A)], { now: 100 });
    expect(r.map((w) => [w.workload, w.peakCredentials, w.peakTargets])).toEqual([
      [A, 2, 2],
      [B, 1, 1],
    ]);
  });

  it('matches brute force: the peak equals the most intervals live at any instant in the window', () => {
    const interval = fc
      .record({
        start: fc.integer({ min: 0, max: 60 }),
        len: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined }),
        target: fc.constantFrom('a', 'b', 'c'),
      })
      .map(({ start, len, target }): LiveInterval => ({ workload: A, target, start, end: len === undefined ? undefined : start + len }));
    fc.assert(
      fc.property(
        fc.array(interval, { maxLength: 25 }),
        fc.integer({ min: 0, max: 100 }),
        fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
        fc.integer({ min: 0, max: 100 }),
        (ivs, since, until, now) => {
          const liveAt = (t: number) => ivs.filter((iv) => iv.start <= t && (iv.end === undefined || t < iv.end));
          let peakCreds = 0;
          let peakTargets = 0;
          for (let t = since; t <= Math.min(until ?? now, now); t++) {
            const live = liveAt(t);
            peakCreds = Math.max(peakCreds, live.length);
            peakTargets = Math.max(peakTargets, new Set(live.map((iv) => iv.target)).size);
          }
          const [r] = blastRadiusOfIntervals(ivs, { now, since, until });
          expect(r?.peakCredentials ?? 0).toBe(peakCreds);
          expect(r?.peakTargets ?? 0).toBe(peakTargets);
          expect(r?.now.credentials ?? 0).toBe(liveAt(now).length);
          expect(r?.now.targets ?? 0).toBe(new Set(liveAt(now).map((iv) => iv.target)).size);
        },
      ),
      { numRuns: 300 },
    );
  });
});
