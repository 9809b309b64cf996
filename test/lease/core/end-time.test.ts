import { describe, expect, it } from 'vitest';
import { LeaseRevokedSchema } from '../../../shared/events/schemas.ts';
import { LeaseLifecycle } from '../../../shared/lease/lifecycle.ts';
import { runReaper } from '../../../shared/lease/reaper.ts';
import { debtSplit, endTimeOf, notBeforeIssue } from '../../../shared/lease/trust-debt.ts';
import { createFakePorts, FAKE_T0 as T0 } from '../../support/fakes.ts';

const SKEW = 30_000;
const iso = (ms: number) => new Date(ms).toISOString();

/** A lease issued at T0, the clock then moved on by `later` ms before the end arrives. */
async function issued(taskId: string, later = 5_000) {
  const f = createFakePorts();
  const core = new LeaseLifecycle(f.deps({ clockSkewMs: SKEW }));
  expect((await core.taskStarted(f.started(taskId))).status).toBe('issued');
  f.events.events.length = 0;
  f.clock.advance(later);
  return { f, core };
}

describe('endTimeOf: where a Task Ended is measured from', () => {
  const now = T0 + 10_000;
  it('the engine’s endedAt, ms precision, when no later than the arrival plus the skew', () => {
    expect(endTimeOf({ claimed: iso(now - 1_234), queuedAt: now - 100, now, skewMs: SKEW })).toEqual({
      endedAt: now - 1_234,
      source: 'engine',
      clamped: false,
    });
    // A clock a little ahead of ours is within the skew: kept as sent.
    expect(endTimeOf({ claimed: iso(now + 29_000), now, skewMs: SKEW })).toEqual({
      endedAt: now + 29_000,
      source: 'engine',
      clamped: false,
    });
  });

  it('an engine time past the arrival plus the skew is clamped to it and flagged', () => {
    expect(endTimeOf({ claimed: iso(now + 60_000), now, skewMs: SKEW })).toEqual({ endedAt: now + SKEW, source: 'engine', clamped: true });
    // An end cannot follow its own event into the queue: the queue time bounds it.
    expect(endTimeOf({ claimed: iso(now), queuedAt: now - 40_000, now, skewMs: SKEW })).toEqual({
      endedAt: now - 10_000,
      source: 'engine',
      clamped: true,
    });
  });

  it('without one, the queue’s arrival time; without that, the broker’s clock', () => {
    expect(endTimeOf({ queuedAt: now - 700, now, skewMs: SKEW })).toEqual({ endedAt: now - 700, source: 'queue', clamped: false });
    // A queue clock ahead of ours is taken as now: never an end in the broker's future.
    expect(endTimeOf({ queuedAt: now + 500, now, skewMs: SKEW })).toEqual({ endedAt: now, source: 'queue', clamped: false });
    expect(endTimeOf({ now, skewMs: SKEW })).toEqual({ endedAt: now, source: 'broker', clamped: false });
  });

  it('never before the lease’s issue: moved there, and an engine’s time flagged', () => {
    expect(notBeforeIssue({ endedAt: T0 - 5, source: 'engine', clamped: false }, T0)).toEqual({
      endedAt: T0,
      source: 'engine',
      clamped: true,
    });
    expect(notBeforeIssue({ endedAt: T0 - 5, source: 'queue', clamped: false }, T0)).toEqual({
      endedAt: T0,
      source: 'queue',
      clamped: false,
    });
    expect(notBeforeIssue({ endedAt: T0 + 5, source: 'engine', clamped: false }, T0)).toEqual({
      endedAt: T0 + 5,
      source: 'engine',
      clamped: false,
    });
  });
});

describe('the real end, through the lifecycle', () => {
  it('an engine endedAt inside the skew is the end: recorded with its source, debt measured from it', async () => {
    const { f, core } = await issued('rt1');
    const endedAt = f.clock.now() - 2_345;
    const r = await core.taskEnded({ ...f.ended('rt1'), endedAt: iso(endedAt) }, { queuedAt: f.clock.now() - 1_000 });
    expect(r.status).toBe('closed');
    expect(await f.ledger.lease('rt1')).toMatchObject({ endedAt, endedAtSource: 'engine' });
    expect(await f.ledger.lease('rt1')).not.toHaveProperty('endedAtClamped');
    expect(await f.ledger.credential('rt1')).toMatchObject({ endedAt, trustDebtMs: 2_345, pipelineMs: 2_345 });
    const [revoked] = f.events.ofType('leaseRevoked');
    expect(LeaseRevokedSchema.parse(revoked)).toMatchObject({ endedAt: iso(endedAt), endedAtSource: 'engine' });
    expect(revoked).not.toHaveProperty('endedAtClamped');
  });

  it('an engine endedAt beyond the skew is clamped and flagged, in the ledger and in Lease Revoked', async () => {
    const { f, core } = await issued('rt2');
    const arrival = f.clock.now() - 100;
    await core.taskEnded({ ...f.ended('rt2'), endedAt: iso(arrival + 5 * 60_000) }, { queuedAt: arrival });
    expect(await f.ledger.lease('rt2')).toMatchObject({ endedAt: arrival + SKEW, endedAtSource: 'engine', endedAtClamped: true });
    expect(f.events.ofType('leaseRevoked')[0]).toMatchObject({ endedAt: iso(arrival + SKEW), endedAtClamped: true });
  });

  it('an engine endedAt before the lease was issued is clamped to the issue and flagged', async () => {
    const { f, core } = await issued('rt3');
    const lease = await f.ledger.lease('rt3');
    await core.taskEnded({ ...f.ended('rt3'), endedAt: iso(T0 - 3_600_000) });
    expect(await f.ledger.lease('rt3')).toMatchObject({ endedAt: lease?.issuedAt, endedAtSource: 'engine', endedAtClamped: true });
  });

  it('without the engine’s endedAt, the queue’s arrival time (SentTimestamp, the bus’s put time) is the end', async () => {
    const { f, core } = await issued('rt4');
    const queuedAt = f.clock.now() - 1_500;
    await core.taskEnded(f.ended('rt4'), { queuedAt });
    expect(await f.ledger.lease('rt4')).toMatchObject({ endedAt: queuedAt, endedAtSource: 'queue' });
    // The 1.5 s the event waited in the queue is debt: the pipeline part of it.
    expect(await f.ledger.credential('rt4')).toMatchObject({
      trustDebtMs: 1_500,
      pipelineMs: 1_500,
      revokeMs: 0,
      proofMs: 0,
      exposureMs: 1_500,
    });
    expect(f.events.ofType('leaseRevoked')[0]).toMatchObject({
      endedAtSource: 'queue',
      endedBy: expect.stringMatching(/^spiffe:\/\//),
      credentials: [expect.objectContaining({ trustDebtMs: 1_500, pipelineMs: 1_500, revokeMs: 0, proofMs: 0, exposureMs: 1_500 })],
    });
  });

  it('with neither, the broker’s clock when the event reached it', async () => {
    const { f, core } = await issued('rt5');
    const now = f.clock.now();
    await core.taskEnded(f.ended('rt5'));
    expect(await f.ledger.lease('rt5')).toMatchObject({ endedAt: now, endedAtSource: 'broker' });
  });

  it('a lost Task Ended is measured from the expiry (source expiry)', async () => {
    const { f, core } = await issued('rt6', 0);
    const lease = await f.ledger.lease('rt6');
    f.clock.set((lease?.expiresAt as number) + 1_000);
    await runReaper(core, { ledger: f.ledger, clock: f.clock, targets: f.targets });
    expect(await f.ledger.lease('rt6')).toMatchObject({ state: 'closed', endedAt: lease?.expiresAt, endedAtSource: 'expiry' });
    expect(f.events.ofType('leaseRevoked')[0]).toMatchObject({ outcome: 'expired', endedAtSource: 'expiry' });
  });

  it('an end that arrives while issuing keeps its source through to the close', async () => {
    const f = createFakePorts();
    const core = new LeaseLifecycle(f.deps({ clockSkewMs: SKEW }));
    let ended: Promise<unknown> | undefined;
    f.driver.issueOutcomes.push(async () => {
      ended = core.taskEnded(f.ended('rt7'), { queuedAt: T0 });
      await ended;
      return undefined;
    });
    await core.taskStarted(f.started('rt7'));
    expect(await f.ledger.lease('rt7')).toMatchObject({ state: 'closed', endedAtSource: 'queue', endedAt: T0 });
  });
});

describe('the split of the trust debt', () => {
  it('pipeline + revoke + proof = trust debt; exposure = end → the target refuses', async () => {
    const { f, core } = await issued('sp1');
    const queuedAt = f.clock.now() - 400;
    // The broker's own work before revoking (the lease read and end write) takes no fake time; the
    // revoke takes 7 ms, a first verification finds it still valid, proof comes 20 ms later.
    f.driver.revokeOutcomes.push(() => void f.clock.advance(7));
    f.driver.verifyOutcomes.push('still-valid');
    await core.taskEnded(f.ended('sp1'), { queuedAt });
    const cred = await f.ledger.credential('sp1');
    expect(cred).toMatchObject({ state: 'verified', verifyAttempts: 2 });
    const c = cred as NonNullable<typeof cred>;
    expect(c.revokeStartedAt).toBe(queuedAt + 400);
    expect(c.revokedAt).toBe(c.revokeStartedAt! + 7);
    expect(c.verifiedAt).toBe(c.revokedAt! + 20);
    expect(debtSplit(c)).toEqual({ trustDebtMs: 427, pipelineMs: 400, revokeMs: 7, proofMs: 20, exposureMs: 407 });
    // Stored with the proof, as computed by the one function.
    expect(c).toMatchObject({ trustDebtMs: 427, pipelineMs: 400, revokeMs: 7, proofMs: 20, exposureMs: 407 });
    expect(f.events.ofType('leaseRevoked')[0]?.credentials[0]).toMatchObject({
      pipelineMs: 400,
      revokeMs: 7,
      proofMs: 20,
      exposureMs: 407,
    });
  });

  it('an unproven credential has only the parts it has reached', () => {
    expect(debtSplit({ endedAt: 10, revokeStartedAt: 15 })).toEqual({
      trustDebtMs: undefined,
      pipelineMs: 5,
      revokeMs: undefined,
      proofMs: undefined,
      exposureMs: undefined,
    });
  });
});
