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

/**
 * Task ids are the engines' own (Airflow's `scheduled__2024-01-01T00:00:00+00:00`, a Jenkins
 * `job/name/42`): any printable text, without control or format characters (no bidi overrides or
 * zero-width characters to mislead a person reading the audit trail), line separators, U+FFFD
 * (bytes that were not UTF-8), or white space at either end. Every name derived from one is encoded or hashed where it goes
 * (`secretNameFor`, the target kinds' names), and SQL, URLs and tags get it as a parameter.
 */
export const TASK_ID_PATTERN = /^(?![\s])[^\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\uFFFD]*(?<![\s])$/u;
/** Target and access names appear in role names, secret names and metric dimensions. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]*$/;
/** Printable text without control characters or lone surrogates. */
export const PRINTABLE_PATTERN = /^[^\p{Cc}\p{Cs}]*$/u;
export const JWT_PATTERN = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
