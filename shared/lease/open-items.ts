import type { Ledger } from './ports.ts';
import type { CredentialRecord } from './records.ts';

/** Every credential not yet proven rejected, whatever its due time: all pages of the open index. */
export async function listUnverifiedCredentials(ledger: Ledger, pageSize = 200): Promise<CredentialRecord[]> {
  const out: CredentialRecord[] = [];
  let cursor: string | undefined;
  do {
    const page = await ledger.listOpen(Number.MAX_SAFE_INTEGER, pageSize, cursor);
    out.push(...page.credentials);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return out;
}
