/** Explicit bounds of the event contract. Engines can rely on them; changing one is a contract change. */
export const LIMITS = {
  taskIdMaxLength: 128,
  grantsMax: 16,
  nameMaxLength: 63,
  accessMaxLength: 32,
  svidMaxLength: 8192,
  initiatorMaxLength: 256,
  runIdMaxLength: 256,
  taskTokenMaxLength: 1024,
  minDurationSeconds: 60,
  maxDurationSeconds: 43_200,
  /** Serialised `detail` of an input event. EventBridge allows 256 KB per entry; ours are small. */
  detailMaxBytes: 10_240,
} as const;

/** Task ids become ledger keys and secret-name segments, so they get a conservative charset. */
export const TASK_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]*$/;
/** Target and access names appear in role names, secret names and metric dimensions. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]*$/;
/** Printable text without control characters or lone surrogates. */
export const PRINTABLE_PATTERN = /^[^\p{Cc}\p{Cs}]*$/u;
export const JWT_PATTERN = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
