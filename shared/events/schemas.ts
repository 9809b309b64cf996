import * as z from 'zod';
import { JWT_PATTERN, LIMITS, NAME_PATTERN, PRINTABLE_PATTERN, TASK_ID_PATTERN } from './limits.ts';

export const DETAIL_TYPES = {
  taskStarted: 'Task Started',
  taskEnded: 'Task Ended',
  leaseIssued: 'Lease Issued',
  leaseDenied: 'Lease Denied',
  leaseRevoked: 'Lease Revoked',
  revocationFailed: 'Revocation Failed',
} as const;

/** The EventBridge `source` tasklease publishes with. Input events may come from any source. */
export const EVENT_SOURCE = 'tasklease';

const printable = (max: number) =>
  z.string().min(1).max(max).regex(PRINTABLE_PATTERN, { message: 'must not contain control characters or lone surrogates' });

export const TaskIdSchema = z.string().min(1).max(LIMITS.taskIdMaxLength).regex(TASK_ID_PATTERN, {
  message: 'must be printable text: no control or format characters, line breaks, U+FFFD, or white space at either end',
});

export const TargetNameSchema = z
  .string()
  .min(1)
  .max(LIMITS.nameMaxLength)
  .regex(NAME_PATTERN, { message: 'must be lower-case letters, digits and hyphens, starting with a letter' });

export const AccessNameSchema = z
  .string()
  .min(1)
  .max(LIMITS.accessMaxLength)
  .regex(NAME_PATTERN, { message: 'must be lower-case letters, digits and hyphens, starting with a letter' });

export const GrantSchema = z.strictObject({ target: TargetNameSchema, access: AccessNameSchema });
export type Grant = z.infer<typeof GrantSchema>;

/** `<target>.<access>`: the grant's name in the ledger (`CRED#…`), secrets and metrics. */
export const grantKey = (g: Grant): string => `${g.target}.${g.access}`;

export const WorkflowSchema = z.strictObject({
  engine: z.string().min(1).max(32).regex(NAME_PATTERN, { message: 'must be lower-case letters, digits and hyphens' }),
  runId: printable(LIMITS.runIdMaxLength),
});
export type Workflow = z.infer<typeof WorkflowSchema>;

export const OutcomeSchema = z.enum(['succeeded', 'failed', 'cancelled', 'timed-out']);
export type Outcome = z.infer<typeof OutcomeSchema>;

const withinDetailSize = (value: unknown) => Buffer.byteLength(JSON.stringify(value), 'utf8') <= LIMITS.detailMaxBytes;
const DETAIL_SIZE_MESSAGE = `detail must serialise to at most ${LIMITS.detailMaxBytes} bytes`;

const SvidSchema = z
  .string()
  .min(1)
  .max(LIMITS.svidMaxLength)
  .regex(JWT_PATTERN, { message: 'must be a compact JWS (JWT-SVID): three base64url parts separated by dots' });

export const TaskStartedSchema = z
  .strictObject({
    taskId: TaskIdSchema,
    svid: SvidSchema,
    grants: z
      .array(GrantSchema)
      .min(1)
      .max(LIMITS.grantsMax)
      .refine((gs) => new Set(gs.map(grantKey)).size === gs.length, { message: 'grants must not repeat' }),
    maxDurationSeconds: z.number().int().min(LIMITS.minDurationSeconds).max(LIMITS.maxDurationSeconds),
    initiator: printable(LIMITS.initiatorMaxLength).optional(),
    workflow: WorkflowSchema.optional(),
    taskToken: printable(LIMITS.taskTokenMaxLength).optional(),
  })
  .refine(withinDetailSize, { message: DETAIL_SIZE_MESSAGE });
export type TaskStarted = z.infer<typeof TaskStartedSchema>;

export const TaskEndedSchema = z
  // The SVID proves who ends the task: the lease's workload, or an engine its rule lists in endedBy.
  .strictObject({
    taskId: TaskIdSchema,
    outcome: OutcomeSchema,
    svid: SvidSchema,
    /** When the task really ended, by the engine's clock (ms precision); checked against the broker's clock skew. */
    endedAt: z.iso.datetime().optional(),
  })
  .refine(withinDetailSize, { message: DETAIL_SIZE_MESSAGE });
export type TaskEnded = z.infer<typeof TaskEndedSchema>;

const IsoTime = z.iso.datetime();

export const DenialCodeSchema = z.enum([
  'invalid-event',
  'svid-invalid',
  'svid-expired',
  'svid-untrusted',
  'svid-replayed',
  'policy-no-rule',
  'policy-grant-not-allowed',
  'policy-duration-exceeded',
  'policy-initiator-not-allowed',
  'policy-initiator-unproven',
  'unknown-target',
  'task-already-ended',
  'task-already-leased',
  'issue-failed',
  // A refused Task Ended (request: 'end'): nothing was ended or revoked.
  'end-unauthenticated',
  'end-not-allowed',
  // The end's SVID already ended another task: an end SVID is bound to one task's end.
  'end-svid-reused',
  // An operator locked the workload (break-glass): no new lease until it is unlocked.
  'workload-locked',
  // The Step Functions task token already belongs to another task: a token is bound to one task.
  'task-token-reused',
]);
export type DenialCode = z.infer<typeof DenialCodeSchema>;

/** How the initiator is known: `asserted` is whatever the sender wrote, nothing verified it. */
export const InitiatorProofSchema = z.enum(['asserted']);
export type InitiatorProof = z.infer<typeof InitiatorProofSchema>;

export const IssuedCredentialRefSchema = z.strictObject({
  grant: GrantSchema,
  kind: z.string(),
  secretName: z.string(),
  secretArn: z.string().optional(),
  naturalExpiry: IsoTime,
});

export const LeaseIssuedSchema = z.strictObject({
  taskId: TaskIdSchema,
  workload: z.string(),
  initiator: z.string().optional(),
  initiatorProof: InitiatorProofSchema.optional(),
  workflow: WorkflowSchema.optional(),
  rule: z.string(),
  issuedAt: IsoTime,
  expiresAt: IsoTime,
  credentials: z.array(IssuedCredentialRefSchema),
});
export type LeaseIssued = z.infer<typeof LeaseIssuedSchema>;

export const LeaseDeniedSchema = z.strictObject({
  taskId: z.string(),
  workload: z.string().optional(),
  initiator: z.string().optional(),
  initiatorProof: InitiatorProofSchema.optional(),
  /** Absent for a refused Task Started; `end` for a refused Task Ended. */
  request: z.enum(['end']).optional(),
  grants: z.array(GrantSchema),
  reason: z.strictObject({ code: DenialCodeSchema, message: z.string() }),
  deniedAt: IsoTime,
});
export type LeaseDenied = z.infer<typeof LeaseDeniedSchema>;

export const EndedAtSourceSchema = z.enum(['engine', 'queue', 'broker', 'expiry', 'operator']);
export type EndedAtSource = z.infer<typeof EndedAtSourceSchema>;

export const RevokedCredentialSchema = z.strictObject({
  grant: GrantSchema,
  kind: z.string(),
  state: z.string(),
  verified: z.boolean(),
  verifyAttempts: z.number().int(),
  trustDebtMs: z.number().nullable(),
  avoidedDebtMs: z.number().nullable(),
  /** The split of the trust debt (ms), each null until known: end → broker starts work. */
  pipelineMs: z.number().nullable().optional(),
  /** Broker starts work → the target refuses the credential (`revokedAt`). */
  revokeMs: z.number().nullable().optional(),
  /** `revokedAt` → refusal proven (`verifiedAt`). */
  proofMs: z.number().nullable().optional(),
  /** End → `revokedAt`: the time an attacker holding the credential could really use it. */
  exposureMs: z.number().nullable().optional(),
});

export const LeaseRevokedSchema = z.strictObject({
  taskId: TaskIdSchema,
  workload: z.string(),
  outcome: z.union([OutcomeSchema, z.literal('expired')]),
  endedAt: IsoTime,
  /** Where endedAt came from: the engine's own clock, the queue's arrival time, or the broker (expiry, operator). */
  endedAtSource: EndedAtSourceSchema.optional(),
  /** The engine's endedAt was outside the allowed clock skew and was clamped to the broker's window. */
  endedAtClamped: z.boolean().optional(),
  /** Who ended it: the verified SPIFFE ID of the ender, or `operator:<principal>` for a break-glass revoke. */
  endedBy: z.string().optional(),
  credentials: z.array(RevokedCredentialSchema),
});
export type LeaseRevoked = z.infer<typeof LeaseRevokedSchema>;

export const RevocationFailedSchema = z.strictObject({
  taskId: TaskIdSchema,
  workload: z.string(),
  grant: GrantSchema,
  kind: z.string(),
  state: z.string(),
  verifyAttempts: z.number().int(),
  openDebtMs: z.number(),
  lastError: z.string().optional(),
});
export type RevocationFailed = z.infer<typeof RevocationFailedSchema>;

export type OutputEvent =
  | { detailType: typeof DETAIL_TYPES.leaseIssued; detail: LeaseIssued }
  | { detailType: typeof DETAIL_TYPES.leaseDenied; detail: LeaseDenied }
  | { detailType: typeof DETAIL_TYPES.leaseRevoked; detail: LeaseRevoked }
  | { detailType: typeof DETAIL_TYPES.revocationFailed; detail: RevocationFailed };

/** Every schema of the contract, by the file name its JSON Schema is written to. */
export const CONTRACT_SCHEMAS = {
  'task-started': TaskStartedSchema,
  'task-ended': TaskEndedSchema,
  'lease-issued': LeaseIssuedSchema,
  'lease-denied': LeaseDeniedSchema,
  'lease-revoked': LeaseRevokedSchema,
  'revocation-failed': RevocationFailedSchema,
} as const;
