/**
 * The broker (shared/broker) against in-memory fakes: no PostgreSQL, no dynalite, no real time.
 * What the runtimes used to do by hand — close a lease when its re-verification proves the last
 * credential, drop stale re-verify messages, the reaper's budget and its gauges — is asserted
 * here once, for both.
 */
import { describe, expect, it } from 'vitest';
import { DETAIL_TYPES } from '../../shared/events/schemas.ts';
import { createBroker } from '../../shared/broker/create.ts';
import type { BrokerOptions } from '../../shared/broker/ports.ts';
import type { ReaperOptions } from '../../shared/lease/reaper.ts';
import { GaugeRecorder } from '../../shared/metrics/gauges.ts';
import { FAKE_TARGET, FAKE_WORKLOAD, createFakePorts } from '../support/fakes.ts';

const GRANT = { target: FAKE_TARGET, access: 'read' };
const SETTINGS = { verifyDeadlineSeconds: 12, reaperIntervalSeconds: 60, openDebtObjectiveSeconds: 300 };
const CONFIG: BrokerOptions['config'] = { settings: SETTINGS, rules: [{ maxLeaseSeconds: 3_600 }] };
// The reaper's reconciliation reads every target; these tests are about one credential.
const QUIET_REAPER: Partial<ReaperOptions> = { reconcileEveryRuns: 0, targetRatePerSecond: Number.POSITIVE_INFINITY };

function setup(options: Partial<BrokerOptions> = {}) {
  const f = createFakePorts();
  const metrics = new GaugeRecorder(() => f.clock.now());
  const broker = createBroker({ ...f, metrics }, { config: CONFIG, reaper: QUIET_REAPER, ...options });
  return { f, metrics, broker };
}

/** Scripts the fake target to keep accepting the revoked credential for `times` verifications. */
const stillValid = (f: ReturnType<typeof createFakePorts>, times: number) => {
  for (let i = 0; i < times; i++) f.driver.verifyOutcomes.push('still-valid');
};

describe('createBroker', () => {
  it('issues and revokes through the core, answering the Step Functions token', async () => {
    const { f, broker } = setup();
    expect(await broker.taskStarted(f.started('t-1', { taskToken: 'tok-1' }))).toMatchObject({ status: 'issued', taskId: 't-1' });
    expect(f.callback.successes).toEqual([expect.objectContaining({ taskToken: 'tok-1' })]);
    expect(await broker.taskEnded(f.ended('t-1'))).toMatchObject({ status: 'closed' });
    expect(f.events.types()).toEqual([DETAIL_TYPES.leaseIssued, DETAIL_TYPES.leaseRevoked]);
    expect(f.driver.live.size).toBe(0);
  });

  it('gives handlers and the reaper one verify budget, from settings.verifyDeadlineSeconds', () => {
    expect(setup().broker.verifyDeadlineMs).toBe(12_000);
    expect(setup({ verifyDeadlineMs: 1_500 }).broker.verifyDeadlineMs).toBe(1_500);
    expect(setup({ verifyDeadlineMs: 1_500, lifecycle: { verifyDeadlineMs: 900 } }).broker.verifyDeadlineMs).toBe(900);
  });
});

describe('reverifyDue', () => {
  it('hands an unproven revocation to the scheduler, drops the stale message, and closes the lease when the due one proves it', async () => {
    const { f, broker } = setup({ verifyDeadlineMs: 1_000 });
    await broker.taskStarted(f.started('t-2'));
    stillValid(f, 50);
    expect(await broker.taskEnded(f.ended('t-2'))).toMatchObject({ status: 'open-debt' });
    const [scheduled] = f.reverify.scheduled;
    expect(scheduled).toMatchObject({ taskId: 't-2', grant: GRANT });
    expect(scheduled!.delayMs).toBeGreaterThanOrEqual(1_000);

    // Delivered before the next check: a later attempt owns the chain.
    expect(await broker.reverifyDue({ taskId: 't-2', grant: GRANT })).toMatchObject({ status: 'superseded' });
    expect((await f.ledger.getLease('t-2'))?.credentials[0]?.state).toBe('still-valid');

    // The target catches up; the message comes due.
    f.driver.verifyOutcomes.length = 0;
    // (Delivery is never before the delay; a real attempt also takes time, past the lease's lock.)
    f.clock.advance(scheduled!.delayMs + 1);
    const due = await broker.reverifyDue({ taskId: 't-2', grant: GRANT });
    expect(due).toMatchObject({ taskId: 't-2', grant: 'orders-db.read', status: 'verified', lease: 'closed' });
    const closed = await f.ledger.getLease('t-2');
    expect(closed?.lease.state).toBe('closed');
    expect(closed?.credentials[0]).toMatchObject({ state: 'verified' });
    expect(f.events.ofType(DETAIL_TYPES.leaseRevoked)).toHaveLength(1);

    // A duplicate of the message changes nothing.
    expect(await broker.reverifyDue({ taskId: 't-2', grant: GRANT })).toMatchObject({ status: 'skipped-verified' });
    expect(f.events.ofType(DETAIL_TYPES.leaseRevoked)).toHaveLength(1);
  });

  it('sends a message that is early by more than SQS can delay back with the remaining delay', async () => {
    const { f, broker } = setup();
    const notBefore = f.clock.now() + 40 * 60_000;
    expect(await broker.reverifyDue({ taskId: 't-3', grant: GRANT, notBefore })).toMatchObject({ status: 'rescheduled' });
    expect(f.reverify.scheduled).toEqual([{ taskId: 't-3', grant: GRANT, delayMs: 40 * 60_000 }]);
    expect(f.driver.verifyCalls).toHaveLength(0);
  });

  it('never touches a live credential or one it does not know', async () => {
    const { f, broker } = setup();
    await broker.taskStarted(f.started('t-4'));
    expect(await broker.reverifyDue({ taskId: 't-4', grant: GRANT })).toMatchObject({ status: 'skipped-issued' });
    expect(await broker.reverifyDue({ taskId: 't-nope', grant: GRANT })).toMatchObject({ status: 'unknown-credential' });
    expect(f.driver.revokeCalls).toHaveLength(0);
    expect(f.driver.live.size).toBe(1);
  });

  it('leaves a credential of a lease still issuing to its issuer or the reaper', async () => {
    const { f, broker } = setup();
    const now = f.clock.now();
    await f.ledger.createLease({
      taskId: 't-9',
      state: 'issuing',
      workload: FAKE_WORKLOAD,
      grants: [GRANT],
      requestedAt: now,
      expiresAt: now + 600_000,
      lockedUntil: now + 60_000,
    });
    await f.ledger.createCredential({
      taskId: 't-9',
      grant: GRANT,
      target: FAKE_TARGET,
      kind: 'fake',
      externalId: 'fake_t-9_read',
      state: 'revoking',
      workload: FAKE_WORKLOAD,
      intentAt: now,
      verifyAttempts: 1,
      nextCheckAt: now,
    });
    expect(await broker.reverifyDue({ taskId: 't-9', grant: GRANT })).toMatchObject({ status: 'skipped-issuing' });
    expect(f.driver.revokeCalls).toHaveLength(0);
    expect((await f.ledger.getLease('t-9'))?.credentials[0]?.state).toBe('revoking');
  });
});

describe('reap', () => {
  it('verifies within settings.verifyDeadlineSeconds, not a reaper default of its own', async () => {
    const { f, broker } = setup();
    await broker.taskStarted(f.started('t-5'));
    stillValid(f, 10_000);
    await broker.taskEnded(f.ended('t-5'));
    // A finished lease with a credential still unproven: the reaper's own verification path.
    expect(await f.ledger.updateLease('t-5', ['ending'], { state: 'closed', closedAt: f.clock.now() })).toBe(true);
    f.clock.advance(6 * 60_000);
    const before = f.clock.sleeps.length;
    const report = await broker.reap();
    expect(report.reverified).toBe(1);
    const waited = f.clock.sleeps.slice(before).reduce((a, b) => a + b, 0);
    // Well past the old 5 s local budget, within the 12 s one.
    expect(waited).toBeGreaterThan(10_000);
    expect(waited).toBeLessThanOrEqual(12_000);
  });

  it('publishes open debt and blast radius through the metrics port after each run', async () => {
    const { f, metrics, broker } = setup({ verifyDeadlineMs: 500 });
    await broker.taskStarted(f.started('t-6'));
    await broker.taskStarted(f.started('t-7'));
    stillValid(f, 10_000);
    await broker.taskEnded(f.ended('t-6'));
    const endedAt = (await f.ledger.getLease('t-6'))!.credentials[0]!.endedAt!;
    f.clock.advance(30_000);
    const report = await broker.reap();
    expect(report.openDebt.count).toBe(1);
    expect(metrics.openDebtGauge).toEqual({ count: 1, oldestMs: report.openDebt.oldestMs, at: f.clock.now() });
    expect(metrics.openDebtGauge!.oldestMs).toBeGreaterThanOrEqual(f.clock.now() - endedAt - 1);
    // Both credentials were live at once within the last interval: one workload, two credentials, one target.
    expect(metrics.blastRadiusGauges.get(FAKE_WORKLOAD)).toMatchObject({ credentials: 2, targets: 1 });
  });

  it('a run without a metrics port only reports', async () => {
    const f = createFakePorts();
    const broker = createBroker(f, { config: CONFIG, reaper: QUIET_REAPER });
    await broker.taskStarted(f.started('t-8'));
    expect(await broker.reap()).toMatchObject({ openDebt: { count: 0 } });
  });
});

describe('the real end through the broker (issue 13)', () => {
  it('taskEnded takes the queue arrival; without the engine’s endedAt it is the end the debt runs from', async () => {
    const { f, broker } = setup();
    await broker.taskStarted(f.started('t-end-q'));
    f.clock.advance(2_000);
    const queuedAt = f.clock.now() - 750;
    await broker.taskEnded(f.ended('t-end-q'), { queuedAt });
    expect(await f.ledger.lease('t-end-q')).toMatchObject({ endedAt: queuedAt, endedAtSource: 'queue' });
    expect(await f.ledger.credential('t-end-q')).toMatchObject({ trustDebtMs: 750, pipelineMs: 750 });
  });

  it('the engine’s endedAt is bounded by the config’s clockSkewSeconds', async () => {
    const { f, broker } = setup({ config: { ...CONFIG, clockSkewSeconds: 2 } });
    await broker.taskStarted(f.started('t-end-skew'));
    f.clock.advance(1_000);
    const now = f.clock.now();
    await broker.taskEnded({ ...f.ended('t-end-skew'), endedAt: new Date(now + 10_000).toISOString() });
    expect(await f.ledger.lease('t-end-skew')).toMatchObject({ endedAt: now + 2_000, endedAtSource: 'engine', endedAtClamped: true });
  });

  it('the metrics recorder holds each proof’s trust debt and split under the CloudWatch names', () => {
    const metrics = new GaugeRecorder();
    const cred = { endedAt: 1_000, revokeStartedAt: 1_040, revokedAt: 1_045, verifiedAt: 1_060 };
    metrics.verified({ ...createFakeCredential(), ...cred });
    expect(Object.fromEntries(metrics.samples)).toEqual({
      TrustDebtMs: [60],
      PipelineDelayMs: [40],
      RevokeMs: [5],
      ProofMs: [15],
      ExposureMs: [45],
    });
    expect(metrics.splitPercentiles('pipelineMs')).toEqual({ count: 1, p50: 40, p99: 40 });
  });
});

function createFakeCredential() {
  return {
    taskId: 't',
    grant: GRANT,
    target: FAKE_TARGET,
    kind: 'fake',
    externalId: 'x',
    state: 'verified' as const,
    workload: FAKE_WORKLOAD,
    intentAt: 0,
    verifyAttempts: 1,
  };
}
