import { GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { WorkloadLock, WorkloadLocks } from '../lease/ports.ts';
import { isConditionalCheckFailed } from './dynamodb-ledger.ts';
import { KEY_PREFIX } from './table.ts';

/**
 * Break-glass workload locks in the ledger table (`pk = WLOCK#<spiffe id>`). Never deleted and
 * never expired: an unlock is an update that records who lifted it and why.
 */
export class DynamoDbWorkloadLocks implements WorkloadLocks {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  private key(workload: string) {
    return { pk: `${KEY_PREFIX.workloadLock}${workload}`, sk: KEY_PREFIX.workloadLockSk };
  }

  async get(workload: string): Promise<WorkloadLock | undefined> {
    // Strongly consistent: a lock must hold from the moment the operator's command returns.
    const { Item } = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: this.key(workload), ConsistentRead: true }));
    if (!Item || Item.unlockedAt !== undefined) return undefined;
    return { workload, by: String(Item.by), reason: String(Item.reason), lockedAt: Number(Item.lockedAt) };
  }

  async lock(lock: WorkloadLock): Promise<void> {
    await this.doc.send(new PutCommand({ TableName: this.tableName, Item: { ...this.key(lock.workload), ...lock } }));
  }

  async unlock(workload: string, by: string, reason: string, at: number): Promise<WorkloadLock | undefined> {
    try {
      const { Attributes } = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: this.key(workload),
          UpdateExpression: 'SET unlockedAt = :at, unlockedBy = :by, unlockReason = :reason',
          ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(unlockedAt)',
          ExpressionAttributeValues: { ':at': at, ':by': by, ':reason': reason },
          ReturnValues: 'ALL_OLD',
        }),
      );
      return (
        Attributes && { workload, by: String(Attributes.by), reason: String(Attributes.reason), lockedAt: Number(Attributes.lockedAt) }
      );
    } catch (err) {
      if (isConditionalCheckFailed(err)) return undefined;
      throw err;
    }
  }
}
