/**
 * Counts what each AWS service would bill, at the SDK boundary of the real handlers.
 *
 * - DynamoDB runs for real (dynalite): a middleware on every DynamoDB client's stack (installed the
 *   first time the client sends, so the handlers' own clients are counted without touching
 *   functions/) records each command, its HTTP attempts, and its capacity. Reads take dynalite's
 *   `ReturnConsumedCapacity: 'INDEXES'` answer. Writes are computed from the item before and after
 *   the write (read on a side client that is not counted) with dynalite's own DynamoDB item-size
 *   function, because dynalite reports table units only, never the GSI writes: one write unit per
 *   started 1 KB of the larger image on the table, and per GSI the entry put, removed, or (when its
 *   key moved) both, sized by the index's projection. Transactional writes count double.
 * - Services that cannot run here are answered by aws-sdk-client-mock (test/aws/fake-aws.ts), whose
 *   stub replaces `send` itself, so the middleware stack never runs: those are counted from the
 *   mock's own call history, which is the same boundary (`client.send(command)`).
 */
import { createRequire } from 'node:module';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { GSIS, TABLE_KEYS } from '../../shared/ledger/table.ts';
import type { GsiDefinition } from '../../shared/ledger/table.ts';

type Item = Record<string, AttributeValue>;
/** What the counter reads of an aws-sdk-client-mock stub: its sinon call history. */
export interface MockHistory {
  calls(): ReadonlyArray<{ args: readonly unknown[]; returnValue: unknown }>;
}
// dynalite's implementation of DynamoDB's item-size rule (attribute names + values, in bytes).
const dynaliteDb = createRequire(import.meta.url)('dynalite/db/index.js') as { itemSize(item: Item): number };
export const itemSize = (item: Item): number => dynaliteDb.itemSize(item);

export interface SdkCall {
  service: string;
  operation: string;
  /** HTTP attempts the SDK made (retries are billed). */
  attempts: number;
  failed?: string;
  /** DynamoDB read request units (dynalite's ConsumedCapacity). */
  readUnits?: number;
  /** DynamoDB write request units on the table (computed from the images). */
  writeUnitsTable?: number;
  /** DynamoDB write request units on the global secondary indexes (computed from the images). */
  writeUnitsIndex?: number;
  /** Table write units as dynalite reported them, for a cross-check of the computed figure. */
  dynaliteWriteUnits?: number;
  /** EventBridge PutEvents entries, or SQS messages of a batch call. */
  entries?: number;
  /** KMS requests Secrets Manager makes for this call with a customer managed key (not an SDK call of ours). */
  kmsRequests?: number;
}

/**
 * Secrets Manager encrypts each new secret value under the secret's KMS key (GenerateDataKey) and
 * decrypts on each read (Decrypt): one KMS request per value written or read.
 */
function kmsRequestsOf(operation: string, input: Record<string, unknown>): number {
  if (operation === 'PutSecretValue') return 1;
  if (operation === 'CreateSecret') return input.SecretString !== undefined || input.SecretBinary !== undefined ? 1 : 0;
  if (operation === 'GetSecretValue') return 1;
  return 0;
}

export const WRITE_UNIT_BYTES = 1024;
export const READ_UNIT_BYTES = 4096;
const units = (bytes: number, per: number) => Math.max(1, Math.ceil(bytes / per));

const keysOf = (g: GsiDefinition) => [g.partitionKey.name, g.sortKey.name];
const TABLE_KEY_NAMES = [TABLE_KEYS.partitionKey.name, TABLE_KEYS.sortKey.name];
const same = (a: AttributeValue | undefined, b: AttributeValue | undefined) => JSON.stringify(a) === JSON.stringify(b);
function pick(item: Item, names: readonly string[]): Item {
  const out: Item = {};
  for (const n of names) if (item[n] !== undefined) out[n] = item[n];
  return out;
}
function sameItem(a: Item, b: Item): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same(a[k], b[k]));
}

/** Write units of one item changing from `before` to `after` (undefined: absent), table and GSIs. */
export function writeUnits(
  before: Item | undefined,
  after: Item | undefined,
  gsis: readonly GsiDefinition[] = GSIS,
): { table: number; index: number; byIndex: Record<string, number> } {
  // The table: the larger image; a write that changed nothing (failed condition) still costs the item it read.
  const table = units(Math.max(before ? itemSize(before) : 0, after ? itemSize(after) : 0), WRITE_UNIT_BYTES);
  const byIndex: Record<string, number> = {};
  let index = 0;
  for (const g of gsis) {
    const inIndex = (item: Item | undefined): item is Item => item !== undefined && keysOf(g).every((k) => item[k] !== undefined);
    const entry = (item: Item) => (g.projection === 'ALL' ? item : pick(item, [...TABLE_KEY_NAMES, ...keysOf(g)]));
    const size = (item: Item) => units(itemSize(entry(item)), WRITE_UNIT_BYTES);
    let n = 0;
    if (inIndex(before) && inIndex(after)) {
      const moved = keysOf(g).some((k) => !same(before[k], after[k]));
      if (moved) n = size(before) + size(after);
      else if (!sameItem(entry(before), entry(after))) n = size(after);
    } else if (inIndex(after)) n = size(after);
    else if (inIndex(before)) n = size(before);
    if (n) byIndex[g.indexName] = n;
    index += n;
  }
  return { table, index, byIndex };
}

interface WriteTarget {
  table: string;
  key: Item;
  transactional: boolean;
}

/** The items a write command touches, with their table keys. */
function writeTargets(operation: string, input: Record<string, unknown>): WriteTarget[] {
  const key = (item: Item) => pick(item, TABLE_KEY_NAMES);
  switch (operation) {
    case 'PutItem':
      return [{ table: input.TableName as string, key: key(input.Item as Item), transactional: false }];
    case 'UpdateItem':
    case 'DeleteItem':
      return [{ table: input.TableName as string, key: input.Key as Item, transactional: false }];
    case 'BatchWriteItem':
      return Object.entries(
        input.RequestItems as Record<string, Array<{ PutRequest?: { Item: Item }; DeleteRequest?: { Key: Item } }>>,
      ).flatMap(([table, reqs]) =>
        reqs.map((r) => ({ table, key: r.PutRequest ? key(r.PutRequest.Item) : (r.DeleteRequest?.Key as Item), transactional: false })),
      );
    case 'TransactWriteItems':
      return (input.TransactItems as Array<Record<string, { TableName: string; Item?: Item; Key?: Item }>>).flatMap((t) =>
        Object.entries(t)
          .filter(([kind]) => kind !== 'ConditionCheck')
          .map(([, op]) => ({ table: op.TableName, key: op.Item ? key(op.Item) : (op.Key as Item), transactional: true })),
      );
    default:
      return [];
  }
}

const READS = new Set(['GetItem', 'Query', 'Scan', 'BatchGetItem', 'TransactGetItems']);
const WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'TransactWriteItems']);

interface ConsumedCapacity {
  CapacityUnits?: number;
}
function consumed(output: unknown): number | undefined {
  const c = (output as { ConsumedCapacity?: ConsumedCapacity | ConsumedCapacity[] } | undefined)?.ConsumedCapacity;
  if (c === undefined) return undefined;
  return (Array.isArray(c) ? c : [c]).reduce((sum, x) => sum + (x.CapacityUnits ?? 0), 0);
}

const askForCapacity: Middleware = (next, context) => async (args) => {
  const operation = (context.commandName ?? '').replace(/Command$/, '');
  const input = args.input as Record<string, unknown>;
  if ((READS.has(operation) || WRITES.has(operation)) && input.ReturnConsumedCapacity === undefined)
    return next({ ...args, input: { ...input, ReturnConsumedCapacity: 'INDEXES' } });
  return next(args);
};

type Middleware = (
  next: (args: { input: object }) => Promise<{ output: unknown }>,
  context: { commandName?: string },
) => (args: { input: object }) => Promise<{ output: unknown }>;
interface Stack {
  add(mw: Middleware, options: { step: 'initialize' | 'build'; priority: 'high'; name: string }): void;
}

export class SdkCallCounter {
  readonly calls: SdkCall[] = [];
  /** While paused, DynamoDB commands pass straight through (no images, not recorded): timing passes. */
  paused = false;
  private readonly instrumented = new WeakSet<object>();
  private readonly images: DynamoDBClient;
  private restoreSend?: () => void;
  private readonly mocks: Array<{ service: string; stub: MockHistory; seen: number }> = [];

  /** `endpoint`: where the counted DynamoDB clients go (dynalite), read for the before/after images. */
  constructor(private readonly endpoint: string) {
    this.images = new DynamoDBClient({
      endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'tasklease-local', secretAccessKey: 'tasklease-local' },
    });
    this.instrumented.add(this.images.middlewareStack);
  }

  /**
   * Every DynamoDB client (and document client: they share the stack) gets the counting middleware
   * the first time it sends. The SDK's clients all inherit `send` from one base class.
   */
  installDynamoDb(): this {
    const base = Object.getPrototypeOf(DynamoDBClient.prototype) as { send: (...args: unknown[]) => unknown };
    const original = base.send;
    // An arrow function keeps `this` as the counter; the client arrives as `client`.
    const instrument = (client: { config?: { serviceId?: string }; middlewareStack: Stack }) => {
      if (client.config?.serviceId !== 'DynamoDB' || this.instrumented.has(client.middlewareStack)) return;
      this.instrumented.add(client.middlewareStack);
      // Ask for capacity before serialising; count after the document client has marshalled the input.
      client.middlewareStack.add(askForCapacity, { step: 'initialize', priority: 'high', name: 'taskleaseCostCapacity' });
      client.middlewareStack.add(this.dynamoMiddleware(), { step: 'build', priority: 'high', name: 'taskleaseCostCounter' });
    };
    base.send = function (this: { config?: { serviceId?: string }; middlewareStack: Stack }, ...args: unknown[]) {
      instrument(this);
      return original.apply(this, args);
    };
    this.restoreSend = () => (base.send = original);
    return this;
  }

  /** Counts a mocked service from its aws-sdk-client-mock history (calls made from now on). */
  watchMock(service: string, stub: MockHistory): this {
    this.mocks.push({ service, stub, seen: stub.calls().length });
    return this;
  }

  /** Moves new mock calls into `calls`; call before reading `calls`. */
  async collect(): Promise<SdkCall[]> {
    for (const m of this.mocks) {
      const all = m.stub.calls();
      if (all.length < m.seen) m.seen = 0; // the stub's history was reset
      for (const call of all.slice(m.seen)) {
        const command = call.args[0] as { constructor: { name: string }; input: Record<string, unknown> };
        const operation = command.constructor.name.replace(/Command$/, '');
        const entries = Array.isArray(command.input.Entries) ? command.input.Entries.length : undefined;
        // The stub returns a promise; a rejected one is a failed call.
        const failed = await Promise.resolve(call.returnValue).then(
          () => undefined,
          (err: unknown) => (err instanceof Error ? err.name : 'Error'),
        );
        const kms = m.service === 'secretsmanager' && !failed ? kmsRequestsOf(operation, command.input) : 0;
        this.calls.push({
          service: m.service,
          operation,
          attempts: 1,
          ...(entries !== undefined ? { entries } : {}),
          ...(failed ? { failed } : {}),
          ...(kms ? { kmsRequests: kms } : {}),
        });
      }
      m.seen = all.length;
    }
    return this.calls;
  }

  /** Index into `calls` (after collecting), to slice one phase's calls. */
  async mark(): Promise<number> {
    return (await this.collect()).length;
  }

  async since(mark: number): Promise<SdkCall[]> {
    return (await this.collect()).slice(mark);
  }

  restore(): void {
    this.restoreSend?.();
    this.restoreSend = undefined;
    this.images.destroy();
  }

  private async image(target: WriteTarget): Promise<Item | undefined> {
    const out = await this.images.send(new GetItemCommand({ TableName: target.table, Key: target.key, ConsistentRead: true }));
    return out.Item;
  }

  private dynamoMiddleware(): Middleware {
    return (next, context) => async (args) => {
      if (this.paused) return next(args);
      const operation = (context.commandName ?? 'Unknown').replace(/Command$/, '');
      const input = args.input as Record<string, unknown>;
      const isRead = READS.has(operation);
      const isWrite = WRITES.has(operation);
      const targets = isWrite ? writeTargets(operation, input) : [];
      const before = await Promise.all(targets.map((t) => this.image(t)));
      let result: { output: unknown } | undefined;
      let error: unknown;
      try {
        result = await next(args);
      } catch (err) {
        error = err;
      }
      const after = await Promise.all(targets.map((t) => this.image(t)));
      const call: SdkCall = {
        service: 'dynamodb',
        operation,
        attempts:
          (result?.output as { $metadata?: { attempts?: number } } | undefined)?.$metadata?.attempts ??
          (error as { $metadata?: { attempts?: number } } | undefined)?.$metadata?.attempts ??
          1,
      };
      if (error) call.failed = (error as Error).name;
      if (isRead) call.readUnits = error ? 0 : (consumed(result?.output) ?? 0);
      if (isWrite) {
        let table = 0;
        let index = 0;
        targets.forEach((t, i) => {
          const w = writeUnits(before[i], error ? before[i] : after[i]);
          const factor = t.transactional ? 2 : 1;
          table += w.table * factor;
          // A write that did not happen (failed condition) moved no index entry.
          if (!error) index += w.index * factor;
        });
        call.writeUnitsTable = table;
        call.writeUnitsIndex = index;
        const reported = consumed(result?.output);
        if (reported !== undefined) call.dynaliteWriteUnits = reported;
      }
      this.calls.push(call);
      if (error) throw error;
      return result as { output: unknown };
    };
  }
}

export interface ServiceTally {
  requests: number;
  attempts: number;
  failed: number;
  byOperation: Record<string, number>;
  readUnits: number;
  writeUnitsTable: number;
  writeUnitsIndex: number;
  entries: number;
  kmsRequests: number;
  /** Writes whose computed table units differ from dynalite's own figure. */
  writeUnitMismatches: number;
}

/** Sums calls by service and operation. */
export function tally(calls: readonly SdkCall[]): Record<string, ServiceTally> {
  const out: Record<string, ServiceTally> = {};
  for (const c of calls) {
    const t = (out[c.service] ??= {
      requests: 0,
      attempts: 0,
      failed: 0,
      byOperation: {},
      readUnits: 0,
      writeUnitsTable: 0,
      writeUnitsIndex: 0,
      entries: 0,
      kmsRequests: 0,
      writeUnitMismatches: 0,
    });
    t.requests++;
    t.attempts += c.attempts;
    if (c.failed) t.failed++;
    t.byOperation[c.operation] = (t.byOperation[c.operation] ?? 0) + 1;
    t.readUnits += c.readUnits ?? 0;
    t.writeUnitsTable += c.writeUnitsTable ?? 0;
    t.writeUnitsIndex += c.writeUnitsIndex ?? 0;
    t.entries += c.entries ?? 0;
    t.kmsRequests += c.kmsRequests ?? 0;
    if (c.dynaliteWriteUnits !== undefined && c.writeUnitsTable !== undefined && c.dynaliteWriteUnits !== c.writeUnitsTable)
      t.writeUnitMismatches++;
  }
  return out;
}
