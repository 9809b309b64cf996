/** CloudWatch namespace and metric names: one list for the emitters (EMF) and the dashboard/alarms. */
export const METRICS_NAMESPACE = 'TaskLease';

export const METRIC = {
  /** verifiedAt − endedAt per credential (ms). Dimensions: TargetKind, Target. */
  trustDebt: 'TrustDebtMs',
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
