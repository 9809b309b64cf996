import type { WorkloadLock, WorkloadLocks } from '../lease/ports.ts';

type Item = WorkloadLock & { unlockedAt?: number; unlockedBy?: string; unlockReason?: string };

/** Workload locks in memory (tests, and the local runtime when its ledger is in memory). */
export class MemoryWorkloadLocks implements WorkloadLocks {
  private readonly items = new Map<string, Item>();

  async get(workload: string): Promise<WorkloadLock | undefined> {
    const item = this.items.get(workload);
    return item && item.unlockedAt === undefined ? pick(item) : undefined;
  }

  async lock(lock: WorkloadLock): Promise<void> {
    this.items.set(lock.workload, { ...lock });
  }

  async unlock(workload: string, by: string, reason: string, at: number): Promise<WorkloadLock | undefined> {
    const item = this.items.get(workload);
    if (!item || item.unlockedAt !== undefined) return undefined;
    this.items.set(workload, { ...item, unlockedAt: at, unlockedBy: by, unlockReason: reason });
    return pick(item);
  }

  /** The stored item, unlock included (tests). */
  item(workload: string): Readonly<Item> | undefined {
    return this.items.get(workload);
  }
}

const pick = ({ workload, by, reason, lockedAt }: WorkloadLock): WorkloadLock => ({ workload, by, reason, lockedAt });
