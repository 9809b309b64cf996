/**
 * Environment contract between the CDK construct (infra/) and the Lambda handlers (functions/).
 * Both sides import these names so a rename cannot drift.
 */
export const ENV = {
  /** DynamoDB ledger table name. */
  tableName: 'TABLE_NAME',
  /** EventBridge bus the output events go to. */
  eventBusName: 'EVENT_BUS_NAME',
  /** The tasklease config (same shape as tasklease.config), as JSON. */
  config: 'TASKLEASE_CONFIG',
  /** KMS key id/ARN used to encrypt delivered secrets. */
  secretsKmsKeyId: 'SECRETS_KMS_KEY_ID',
  /** SQS queue (URL) for delayed re-verification of revoked credentials. */
  reverifyQueueUrl: 'REVERIFY_QUEUE_URL',
  /** How long one invocation keeps verifying before handing over to the re-verify queue. */
  verifyDeadlineMs: 'VERIFY_DEADLINE_MS',
  /**
   * Every tasklease function role, comma-separated: exempt from the delivered secrets' deny, so
   * whichever function verifies a revocation can read the old credential to prove it rejected.
   */
  brokerPrincipalArns: 'BROKER_PRINCIPAL_ARNS',
  /**
   * `off` when the table's endpoint has no DynamoDB transactions (dynalite in the handler tests);
   * absent in a deployed stack, where a lease and its credential change in one TransactWriteItems.
   */
  ledgerTransactions: 'TASKLEASE_LEDGER_TRANSACTIONS',
} as const;

/** Lambda entry points, relative to the repository root, keyed by function. */
export const FUNCTION_ENTRIES = {
  taskStarted: 'functions/task-started.ts',
  taskEnded: 'functions/task-ended.ts',
  reverify: 'functions/reverify.ts',
  reaper: 'functions/reaper.ts',
  // Break-glass revoke and workload locks: invoked directly by the construct's `operators`, never from the bus.
  operator: 'functions/operator.ts',
} as const;
