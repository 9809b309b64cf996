import { Metrics } from '@aws-lambda-powertools/metrics';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger, lifecycleLogger } from '../../shared/aws/logger.ts';
import { MetricsObserver, PowertoolsMetricsSink } from '../../shared/aws/metrics-observer.ts';
import { REDACTED, RedactingSecretStore, Redactor } from '../../shared/aws/redaction.ts';
import type { CredentialRecord } from '../../shared/lease/records.ts';
import { MemorySecretStore } from '../../shared/secrets/memory-store.ts';

let out: string[] = [];
beforeEach(() => {
  out = [];
  // Powertools writes info to stdout and warn/error to stderr.
  for (const stream of [process.stdout, process.stderr]) {
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out.push(String(chunk));
      return true;
    });
  }
});
afterEach(() => vi.restoreAllMocks());

const lines = () =>
  out
    .join('')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const JWT = 'eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzcGlmZmU6Ly94L3kifQ.c2lnbmF0dXJlLWJ5dGVz';

describe('redacting Powertools logger', () => {
  it('redacts secret keys, JWTs anywhere, and every secret the store has seen, also inside errors', async () => {
    const redactor = new Redactor();
    const logger = createLogger(redactor, { serviceName: 'tasklease-test' });
    const store = new RedactingSecretStore(new MemorySecretStore(), redactor);
    const password = 'Zq9-very-secret-Passw0rd';
    await store.put({
      name: 'tasklease/t/db.read',
      value: { username: 'tl_abc', password, host: 'db.internal', port: '5432' },
      taskId: 't',
      grant: { target: 'db', access: 'read' },
      workload: 'spiffe://x/y',
    });
    const log = lifecycleLogger(logger);
    log.info('issued', { taskId: 't', secretName: 'tasklease/t/db.read', password, nested: { sessionToken: 'IQoJ-token-value-long' } });
    log.warn(`svid was ${JWT}`, { svid: JWT, detail: { note: `embedded ${JWT} here` } });
    logger.error('driver failed', new Error(`login failed for password ${password}`));

    const text = out.join('');
    expect(text).not.toContain(password);
    expect(text).not.toContain('IQoJ-token-value-long');
    expect(text).not.toContain(JWT);
    const [issued, warned, errored] = lines();
    expect(issued).toMatchObject({
      message: 'issued',
      taskId: 't',
      secretName: 'tasklease/t/db.read',
      password: REDACTED,
      nested: { sessionToken: REDACTED },
      service: 'tasklease-test',
    });
    expect(warned).toMatchObject({ message: 'svid was [redacted-jwt]', svid: REDACTED, detail: { note: 'embedded [redacted-jwt] here' } });
    expect(JSON.stringify(errored)).toContain(`login failed for password ${REDACTED}`);
    // Non-secret fields of the material are not remembered: a port or host stays readable.
    expect(redactor.size).toBe(1);
  });
});

describe('metrics observer (EMF)', () => {
  const cred = (over: Partial<CredentialRecord> = {}): CredentialRecord => ({
    taskId: 't',
    grant: { target: 'orders-db', access: 'read' },
    target: 'orders-db',
    kind: 'postgres',
    externalId: 'tl_x',
    state: 'verified',
    workload: 'spiffe://x/y',
    intentAt: 0,
    verifyAttempts: 3,
    trustDebtMs: 420,
    avoidedDebtMs: 899_000,
    ...over,
  });

  it('publishes the split of the trust debt (pipeline, revoke, proof, exposure) beside it, per target', () => {
    const main = new Metrics({ namespace: 'TaskLease', serviceName: 'tasklease' });
    const observer = new MetricsObserver(new PowertoolsMetricsSink(main, { serviceName: 'tasklease' }));
    observer.verified(cred({ endedAt: 1_000, revokeStartedAt: 1_250, revokedAt: 1_300, verifiedAt: 1_420 }));
    const debt = lines().find((l) => '_aws' in l && 'TrustDebtMs' in l)!;
    expect(debt).toMatchObject({ PipelineDelayMs: 250, RevokeMs: 50, ProofMs: 120, ExposureMs: 300, Target: 'orders-db' });
    // Unknown parts (no revokeStartedAt recorded) are left out, not published as zero.
    observer.verified(cred({ endedAt: 1_000, revokedAt: 1_300, verifiedAt: 1_420 }));
    const partial = lines().filter((l) => '_aws' in l && 'TrustDebtMs' in l)[1]!;
    expect(partial).toMatchObject({ ProofMs: 120, ExposureMs: 300 });
    expect(partial).not.toHaveProperty('PipelineDelayMs');
    expect(partial).not.toHaveProperty('RevokeMs');
  });

  it('publishes trust debt, avoided debt and attempts per target, denials per reason', () => {
    const main = new Metrics({ namespace: 'TaskLease', serviceName: 'tasklease' });
    const observer = new MetricsObserver(new PowertoolsMetricsSink(main, { serviceName: 'tasklease' }));
    observer.verified(cred());
    observer.stillValid(cred({ state: 'still-valid' }));
    observer.revocationFailed(cred({ state: 'revoking' }));
    observer.denied('policy-no-rule');
    observer.issued({ taskId: 't', state: 'active', grants: [], requestedAt: 0 }, [cred()], 87);
    observer.openDebt(2, 5_000);
    main.publishStoredMetrics();

    const emf = lines().filter((l) => '_aws' in l);
    const find = (metric: string, dims: Record<string, string>) =>
      emf.find((l) => metric in l && Object.entries(dims).every(([k, v]) => l[k] === v));
    const debt = find('TrustDebtMs', { TargetKind: 'postgres', Target: 'orders-db' })!;
    expect(debt).toMatchObject({ TrustDebtMs: 420, AvoidedDebtMs: 899_000, VerifyAttempts: 3, service: 'tasklease' });
    const directive = (debt._aws as { CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][] }> }).CloudWatchMetrics[0]!;
    expect(directive.Namespace).toBe('TaskLease');
    expect(directive.Dimensions).toEqual([['service', 'TargetKind', 'Target']]);
    expect(find('StillValid', { Target: 'orders-db' })).toMatchObject({ StillValid: 1 });
    expect(find('RevocationFailures', { Target: 'orders-db' })).toMatchObject({ RevocationFailures: 1 });
    expect(find('Denials', { Reason: 'policy-no-rule' })).toMatchObject({ Denials: 1 });
    expect(find('IssuanceLatencyMs', { Target: 'orders-db' })).toMatchObject({ IssuanceLatencyMs: 87 });
    // Lease-level points ride the handler's own flush.
    const flushed = emf.find((l) => 'OpenDebtCount' in l)!;
    expect(flushed).toMatchObject({ OpenDebtCount: 2, OpenDebtOldestMs: 5_000, IssuanceLatencyMs: 87 });
  });

  it('never throws from an observer hook', () => {
    const failing = new MetricsObserver(
      {
        emit: () => {
          throw new Error('boom');
        },
      },
      () => undefined,
    );
    expect(() => failing.verified(cred())).not.toThrow();
  });
});
