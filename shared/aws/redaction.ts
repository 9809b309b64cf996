import type { SecretMaterial, SecretPutInput, SecretStore } from '../lease/ports.ts';

/*
 * Log redaction for the Lambda runtime. Three layers, so a secret never reaches a log line even
 * when some code passes one by mistake:
 *   1. by key: values under keys such as `password`, `secretAccessKey`, `sessionToken`, `svid`;
 *   2. by shape: anything that looks like a JWT (SVIDs) inside any string;
 *   3. by value: every secret the broker issued or read in this container is remembered (bounded)
 *      and scrubbed from every string, whatever key it hides under (error messages included).
 */

export const REDACTED = '[redacted]';

/** Keys whose values are never logged (compared lower-case). `secretName`/`secretArn` stay visible. */
const SECRET_KEYS = new Set([
  'password',
  'secret',
  'secretaccesskey',
  'sessiontoken',
  'svid',
  'token',
  'tasktoken',
  'authorization',
  'privatekey',
  'secretstring',
  'secretbinary',
  'adminpassword',
]);

/** Fields of secret material worth remembering by value: the sensitive ones, not host/port/username. */
const SENSITIVE_FIELD = /password|secret|token|key$/i;
const MIN_REMEMBERED_LENGTH = 8;
const JWT_IN_TEXT = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;

export class Redactor {
  private readonly known = new Set<string>();

  constructor(private readonly capacity = 1024) {}

  /** Remembers one secret value (ignored when too short to be a secret, to spare ports and names). */
  remember(value: string | undefined): void {
    if (!value || value.length < MIN_REMEMBERED_LENGTH || this.known.has(value)) return;
    this.known.add(value);
    // A warm container lives for hours: forget the oldest first.
    while (this.known.size > this.capacity) this.known.delete(this.known.values().next().value as string);
  }

  /** Remembers the sensitive fields of delivered secret material. */
  rememberMaterial(material: SecretMaterial | undefined): void {
    if (!material) return;
    for (const [k, v] of Object.entries(material)) if (SENSITIVE_FIELD.test(k)) this.remember(v);
  }

  /** A string with every JWT and every remembered secret replaced. */
  scrub(text: string): string {
    let out = text.replace(JWT_IN_TEXT, '[redacted-jwt]');
    for (const secret of this.known) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    return out;
  }

  /** A JSON.stringify replacer applying all three layers; Powertools Logger's `jsonReplacerFn`. */
  readonly replacer = (key: string, value: unknown): unknown => {
    if (
      key &&
      SECRET_KEYS.has(key.toLowerCase()) &&
      value !== undefined &&
      value !== null &&
      typeof value !== 'number' &&
      typeof value !== 'boolean'
    ) {
      return REDACTED;
    }
    return typeof value === 'string' ? this.scrub(value) : value;
  };

  /** How many secret values are remembered (tests). */
  get size(): number {
    return this.known.size;
  }
}

/** A SecretStore that tells the redactor about every secret passing through it. */
export class RedactingSecretStore implements SecretStore {
  constructor(
    private readonly inner: SecretStore,
    private readonly redactor: Redactor,
  ) {}

  put(input: SecretPutInput): Promise<{ name: string; arn?: string }> {
    this.redactor.rememberMaterial(input.value);
    return this.inner.put(input);
  }

  async get(name: string): Promise<SecretMaterial | undefined> {
    const value = await this.inner.get(name);
    this.redactor.rememberMaterial(value);
    return value;
  }

  delete(name: string): Promise<void> {
    return this.inner.delete(name);
  }

  exists(name: string): Promise<boolean> {
    return this.inner.exists(name);
  }
}
