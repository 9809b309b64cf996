/** CloudWatch namespace and metric names: one list for the emitters (EMF) and the dashboard/alarms. */
export const METRICS_NAMESPACE = 'TaskLease';

export const METRIC = {
  /** verifiedAt − endedAt per credential (ms). Dimensions: TargetKind, Target. */
  trustDebt: 'TrustDebtMs',
  /** The split of TrustDebtMs per credential (ms, trust-debt.ts `debtSplit`): end → the broker starts revoking. */
  pipelineDelay: 'PipelineDelayMs',
  /** The broker starts revoking → the target refuses the credential. */
  revokeTime: 'RevokeMs',
  /** The target refuses it → the refusal is proven. */
  proofTime: 'ProofMs',
  /** End → the target refuses it: how long the credential was really usable after its task. */
  exposure: 'ExposureMs',
  /** naturalExpiry − verifiedAt per credential (ms). */
  avoidedDebt: 'AvoidedDebtMs',
  /** Credentials whose task ended and that are not yet verified (count), from the reaper. */
  openDebtCount: 'OpenDebtCount',
  /** Age of the oldest open debt (ms), from the reaper. */
  openDebtOldest: 'OpenDebtOldestMs',
  /** Task Started received → lease active (ms). */
  issuanceLatency: 'IssuanceLatencyMs',
  /** Verification attempts a credential needed. */
  verifyAttempts: 'VerifyAttempts',
  /** Leases denied. Dimension: Reason. */
  denials: 'Denials',
  /** Verifications that found a revoked credential still usable. */
  stillValid: 'StillValid',
  /** Revocations that failed and are being retried. */
  revocationFailures: 'RevocationFailures',
  /** Peak live credentials / distinct targets for one workload. Dimension: Workload. */
  blastRadiusCredentials: 'BlastRadiusCredentials',
  blastRadiusTargets: 'BlastRadiusTargets',
} as const;

export const DIMENSION = { targetKind: 'TargetKind', target: 'Target', reason: 'Reason', workload: 'Workload' } as const;

/** Which metric each field of the trust-debt split is published as (both runtimes' adapters). */
export const DEBT_SPLIT_METRIC = {
  pipelineMs: METRIC.pipelineDelay,
  revokeMs: METRIC.revokeTime,
  proofMs: METRIC.proofTime,
  exposureMs: METRIC.exposure,
} as const;
