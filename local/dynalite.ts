import { spawn } from 'node:child_process';
import type { Server } from 'node:http';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateTableCommand, DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { localDynamoClient } from '../shared/ledger/client.ts';
import { createTableInput } from '../shared/ledger/table.ts';

interface DynaliteOptions {
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
  path?: string;
}
// dynalite is CommonJS without type declarations.
const dynalite = createRequire(import.meta.url)('dynalite') as (options: DynaliteOptions) => Server;

export { LOCAL_REGION, localDynamoClient } from '../shared/ledger/client.ts';

export interface DynaliteHandle {
  endpoint: string;
  client: DynamoDBClient;
  tableName: string;
  close(): Promise<void>;
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
export async function startDynalite(options: { tableName?: string; childProcess?: boolean } = {}): Promise<DynaliteHandle> {
  const tableName = options.tableName ?? 'tasklease-ledger';
  if (options.childProcess) return startDynaliteChild(tableName);
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return withLedgerTable(port, tableName, async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
  });
}

/** A client on the local endpoint, the ledger table created, and an idempotent close. */
async function withLedgerTable(port: number, tableName: string, stopServer: () => Promise<void>): Promise<DynaliteHandle> {
  const endpoint = `http://127.0.0.1:${port}`;
  const client = localDynamoClient(endpoint);
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      client.destroy();
      await stopServer();
    })());
  try {
    await createLedgerTable(client, tableName);
  } catch (err) {
    await close();
    throw err;
  }
  return { endpoint, client, tableName, close };
}

/**
 * dynalite in a child process (local/dynalite-child.mjs): the broker's event loop and heap then
 * hold only the broker, as they would in AWS (the bench measured the in-process ledger taking a
 * fifth of the broker's CPU and all of its memory growth).
 */
async function startDynaliteChild(tableName: string): Promise<DynaliteHandle> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'dynalite-child.mjs')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0] as string;
      if (out.includes('\n')) {
        child.stdout.off('data', onData);
        const n = Number(line);
        if (Number.isInteger(n) && n > 0) resolve(n);
        else reject(new Error('dynalite child did not report its port'));
      }
    };
    child.stdout.on('data', onData);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`dynalite child exited (${code}) before listening`)));
  });
  return withLedgerTable(port, tableName, async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.stdin.end();
    child.kill('SIGTERM');
    await exited;
  });
}
