import { randomUUID } from 'node:crypto';
import { DeleteCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { TargetError } from '../lease/errors.ts';
import { isConditionalCheckFailed } from './dynamodb-ledger.ts';
import { KEY_PREFIX, TTL_ATTRIBUTE } from './table.ts';

/** Runs `fn` while holding the named lock (see DriverDeps.lock). */
export type WithLock = <T>(name: string, ttlMs: number, fn: () => Promise<T>) => Promise<T>;

/**
 * A lease-style mutex in the ledger table (`pk = LOCK#<name>`): a conditional put takes it when
 * it is free or its holder's lease ran out; the holder deletes it when done. For edits of shared
 * documents on a target that offers no conditional write (an IAM inline policy), across Lambda
 * containers. The ttl lets a holder that died be overtaken; `fn` must finish well within it.
 */
export class DynamoDbLock {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly options: { now?: () => number; waitMs?: number } = {},
  ) {}

  readonly withLock: WithLock = async (name, ttlMs, fn) => {
    const now = this.options.now ?? Date.now;
    const owner = randomUUID();
    const key = { pk: `${KEY_PREFIX.lock}${name}`, sk: KEY_PREFIX.lockSk };
    // Waiting is real time (it sleeps); `now` only dates the lock item.
    const deadline = Date.now() + (this.options.waitMs ?? 2 * ttlMs);
    for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
      const at = now();
      try {
        await this.doc.send(
          new PutCommand({
            TableName: this.tableName,
            Item: { ...key, owner, heldUntil: at + ttlMs, [TTL_ATTRIBUTE]: Math.ceil((at + ttlMs) / 1000) + 3600 },
            ConditionExpression: 'attribute_not_exists(pk) OR heldUntil < :now',
            ExpressionAttributeValues: { ':now': at },
          }),
        );
        break;
      } catch (err) {
        if (!isConditionalCheckFailed(err)) throw err;
        if (Date.now() > deadline) throw new TargetError(`lock ${name} is busy; will retry`);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
    try {
      return await fn();
    } finally {
      await this.doc
        .send(
          new DeleteCommand({
            TableName: this.tableName,
            Key: key,
            // OWNER is a DynamoDB reserved word.
            ConditionExpression: '#owner = :owner',
            ExpressionAttributeNames: { '#owner': 'owner' },
            ExpressionAttributeValues: { ':owner': owner },
          }),
        )
        .catch(() => undefined); // overtaken after our ttl, or the delete failed: the ttl frees it
    }
  };
}
