import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbLock } from '../../shared/ledger/lock.ts';
import { TargetError } from '../../shared/lease/errors.ts';
import { startDynalite } from '../../local/dynalite.ts';
import type { DynaliteHandle } from '../../local/dynalite.ts';

let dyn: DynaliteHandle;
let doc: DynamoDBDocumentClient;
beforeAll(async () => {
  dyn = await startDynalite({ tableName: 'lock-test' });
  doc = DynamoDBDocumentClient.from(dyn.client);
});
afterAll(async () => dyn?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('DynamoDbLock (the shared mutex in the ledger table)', () => {
  it('two holders of one name never overlap, even from separate lock instances (separate containers)', async () => {
    const a = new DynamoDbLock(doc, dyn.tableName);
    const b = new DynamoDbLock(doc, dyn.tableName);
    let inside = 0;
    let maxInside = 0;
    const critical = async () => {
      inside++;
      maxInside = Math.max(maxInside, inside);
      await sleep(15);
      inside--;
    };
    await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).withLock('role-x', 5_000, critical)));
    expect(maxInside).toBe(1);
    // Different names do not wait for each other.
    const order: string[] = [];
    await Promise.all([
      a.withLock('n1', 5_000, async () => {
        await sleep(40);
        order.push('n1');
      }),
      b.withLock('n2', 5_000, async () => {
        order.push('n2');
      }),
    ]);
    expect(order).toEqual(['n2', 'n1']);
  });

  it('a holder that died is overtaken once its ttl runs out; a busy lock fails retryably', async () => {
    let now = Date.now();
    const dead = new DynamoDbLock(doc, dyn.tableName, { now: () => now });
    // Take the lock and "die" inside: never release (the promise never settles).
    void dead.withLock('role-y', 1_000, () => new Promise<never>(() => undefined));
    await sleep(50);
    const impatient = new DynamoDbLock(doc, dyn.tableName, { now: () => now, waitMs: 100 });
    await expect(impatient.withLock('role-y', 1_000, async () => 'never')).rejects.toBeInstanceOf(TargetError);
    now += 1_500;
    const next = new DynamoDbLock(doc, dyn.tableName, { now: () => now });
    expect(await next.withLock('role-y', 1_000, async () => 'taken over')).toBe('taken over');
  });
});
