import { randomUUID } from 'node:crypto';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { createLedgerTable, startDynalite } from '../../local/dynalite.ts';
import type { DynaliteHandle } from '../../local/dynalite.ts';
import { DynamoDbLedger } from '../../shared/ledger/dynamodb-ledger.ts';
import type { DynamoDbLedgerOptions } from '../../shared/ledger/dynamodb-ledger.ts';

export { startDynalite };
export type { DynaliteHandle };

export interface TestDynalite extends DynaliteHandle {
  /** A fresh, empty ledger table, so tests do not see each other's items. */
  newTable(): Promise<string>;
  /** A ledger on a fresh table. */
  newLedger(options?: DynamoDbLedgerOptions): Promise<{ ledger: DynamoDbLedger; tableName: string }>;
  /** Every stored item of a table, all attributes (ledger-internal ones included), all pages. */
  scanItems(tableName: string): Promise<Record<string, unknown>[]>;
}

/** Starts dynalite for one test file; call `close()` in afterAll. */
export async function startTestDynalite(): Promise<TestDynalite> {
  const handle = await startDynalite({ tableName: `ledger-${randomUUID()}` });
  const newTable = async (): Promise<string> => {
    const name = `ledger-${randomUUID()}`;
    await createLedgerTable(handle.client, name);
    return name;
  };
  return {
    ...handle,
    newTable,
    async newLedger(options) {
      const tableName = await newTable();
      return { ledger: new DynamoDbLedger(handle.client, tableName, options), tableName };
    },
    async scanItems(tableName) {
      const doc = DynamoDBDocumentClient.from(handle.client);
      const items: Record<string, unknown>[] = [];
      let start: Record<string, unknown> | undefined;
      do {
        const page = await doc.send(new ScanCommand({ TableName: tableName, ExclusiveStartKey: start }));
        items.push(...(page.Items ?? []));
        start = page.LastEvaluatedKey;
      } while (start);
      return items;
    },
  };
}
