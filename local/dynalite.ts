import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createTableInput } from '../shared/ledger/table.ts';

interface DynaliteOptions {
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
  path?: string;
}
// dynalite is CommonJS without type declarations.
const dynalite = createRequire(import.meta.url)('dynalite') as (options: DynaliteOptions) => Server;

export const LOCAL_REGION = 'local';
/** dynalite checks that requests are signed, not by whom: a fixed, meaningless identity. */
const LOCAL_CREDENTIALS = { accessKeyId: 'tasklease-local', secretAccessKey: 'tasklease-local' };

export interface DynaliteHandle {
  endpoint: string;
  client: DynamoDBClient;
  tableName: string;
  close(): Promise<void>;
}

export function localDynamoClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS, maxAttempts: 3 });
}

/** Creates the ledger table (./shared/ledger/table.ts) and waits until it and its indexes are ACTIVE. */
export async function createLedgerTable(client: DynamoDBClient, tableName: string): Promise<void> {
  await client.send(new CreateTableCommand(createTableInput(tableName)));
  for (let i = 0; i < 500; i++) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    const indexesActive = (Table?.GlobalSecondaryIndexes ?? []).every((g) => g.IndexStatus === 'ACTIVE');
    if (Table?.TableStatus === 'ACTIVE' && indexesActive) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`table ${tableName} did not become ACTIVE`);
}

/** dynalite in-process on 127.0.0.1 and a free port, in memory, with the ledger table created. */
export async function startDynalite(options: { tableName?: string } = {}): Promise<DynaliteHandle> {
  const tableName = options.tableName ?? 'tasklease-ledger';
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;
  const client = localDynamoClient(endpoint);

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      client.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    })());

  try {
    await createLedgerTable(client, tableName);
  } catch (err) {
    await close();
    throw err;
  }
  return { endpoint, client, tableName, close };
}
