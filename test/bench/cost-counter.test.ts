/**
 * The bench's cost counter (bench/cost/counter.ts) against a known sequence of SDK calls: real
 * DynamoDB commands against dynalite (plain and document client) and mocked EventBridge / SQS.
 * Expected units follow DynamoDB's published rules for the items written here.
 */
import { DeleteItemCommand, GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SdkCallCounter, itemSize, tally, writeUnits } from '../../bench/cost/counter.ts';
import { localDynamoClient, startDynalite } from '../../local/dynalite.ts';
import type { DynaliteHandle } from '../../local/dynalite.ts';

let dyn: DynaliteHandle;
let counter: SdkCallCounter;

beforeAll(async () => {
  dyn = await startDynalite();
  counter = new SdkCallCounter(dyn.endpoint).installDynamoDb();
});

afterAll(async () => {
  counter?.restore();
  await dyn?.close();
});

// 1,500 bytes of padding: the item is between 1 and 2 KB (2 write units, 1 read unit).
const pad = { S: 'x'.repeat(1500) };
const key = { pk: { S: 'LEASE#t1' }, sk: { S: 'LEASE' } };
const leaseItem = {
  ...key,
  openPk: { S: 'OPEN' },
  openSk: { S: '000000000000001#t1' },
  workloadPk: { S: 'WORKLOAD#spiffe://x/etl' },
  dayPk: { S: 'DAY#2026-12-02' },
  requestedAt: { N: '1' },
  pad,
};

describe('SdkCallCounter', () => {
  it('counts DynamoDB commands with table and index write units and read units', async () => {
    expect(itemSize(leaseItem)).toBeGreaterThan(1024);
    expect(itemSize(leaseItem)).toBeLessThan(2048);
    const client = localDynamoClient(dyn.endpoint);
    const doc = DynamoDBDocumentClient.from(client);
    const start = await counter.mark();
    const TableName = dyn.tableName;

    await client.send(new PutItemCommand({ TableName, Item: leaseItem }));
    await client.send(
      new UpdateItemCommand({
        TableName,
        Key: key,
        UpdateExpression: 'SET openSk = :s',
        ExpressionAttributeValues: { ':s': { S: '000000000000002#t1' } },
      }),
    );
    await client.send(new UpdateItemCommand({ TableName, Key: key, UpdateExpression: 'REMOVE openPk, openSk' }));
    await expect(
      client.send(new PutItemCommand({ TableName, Item: leaseItem, ConditionExpression: 'attribute_not_exists(pk)' })),
    ).rejects.toThrow();
    const got = await client.send(new GetItemCommand({ TableName, Key: key, ConsistentRead: true }));
    expect(got.Item?.pad?.S).toBe(pad.S);
    await client.send(new DeleteItemCommand({ TableName, Key: key }));
    await doc.send(new PutCommand({ TableName, Item: { pk: 'LOCK#a', sk: 'LOCK', owner: 'me' } }));

    const calls = await counter.since(start);
    expect(calls.map((c) => c.operation)).toEqual(['PutItem', 'UpdateItem', 'UpdateItem', 'PutItem', 'GetItem', 'DeleteItem', 'PutItem']);
    // Table: 2 units per write of the 1–2 KB item (the failed put pays for the item it checked), 1 for the small lock.
    expect(calls.map((c) => c.writeUnitsTable)).toEqual([2, 2, 2, 2, undefined, 2, 1]);
    // Indexes: put lands in open (ALL, 2) + byWorkload and byTime (keys only, 1 each); moving openSk
    // deletes and re-puts the open entry (2 + 2); removing it deletes it (2); the failed put moves
    // nothing; the delete removes the two keys-only entries; the lock is in no index.
    expect(calls.map((c) => c.writeUnitsIndex)).toEqual([4, 4, 2, 0, undefined, 2, 0]);
    expect(calls[3]?.failed).toBe('ConditionalCheckFailedException');
    expect(calls[4]?.readUnits).toBe(1);
    const t = tally(calls).dynamodb!;
    expect(t).toMatchObject({ requests: 7, failed: 1, readUnits: 1, writeUnitsTable: 11, writeUnitsIndex: 12, writeUnitMismatches: 0 });
    expect(t.byOperation).toEqual({ PutItem: 3, UpdateItem: 2, GetItem: 1, DeleteItem: 1 });
    client.destroy();
  });

  it('counts mocked services from their call history, entries and failures included', async () => {
    const eb = mockClient(EventBridgeClient);
    const sqs = mockClient(SQSClient);
    try {
      eb.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [] });
      sqs.on(SendMessageCommand).rejects(Object.assign(new Error('throttled'), { name: 'ThrottlingException' }));
      counter.watchMock('eventbridge', eb).watchMock('sqs', sqs);
      const start = await counter.mark();
      const events = new EventBridgeClient({ region: 'us-east-1' });
      const queue = new SQSClient({ region: 'us-east-1' });
      const entry = { Source: 's', DetailType: 'd', Detail: '{}' };
      await events.send(new PutEventsCommand({ Entries: [entry, entry] }));
      await events.send(new PutEventsCommand({ Entries: [entry] }));
      await expect(queue.send(new SendMessageCommand({ QueueUrl: 'https://q', MessageBody: 'm' }))).rejects.toThrow('throttled');
      const t = tally(await counter.since(start));
      expect(t.eventbridge).toMatchObject({ requests: 2, entries: 3, failed: 0, byOperation: { PutEvents: 2 } });
      expect(t.sqs).toMatchObject({ requests: 1, failed: 1, byOperation: { SendMessage: 1 } });
    } finally {
      eb.restore();
      sqs.restore();
    }
  });

  it('sizes keys-only index entries by their keys, not the whole item', () => {
    const small = { ...leaseItem, pad: { S: '' } };
    const w = writeUnits(undefined, leaseItem);
    expect(w.byIndex).toEqual({ open: 2, byWorkload: 1, byTime: 1 });
    expect(writeUnits(leaseItem, small).byIndex).toEqual({ open: 1 });
    expect(writeUnits(leaseItem, leaseItem)).toEqual({ table: 2, index: 0, byIndex: {} });
  });
});
