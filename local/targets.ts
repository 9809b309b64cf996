import { validateTargets } from '../shared/policy/config.ts';
import type { TaskLeaseConfig } from '../shared/policy/config.ts';
import type { LocalContext, LocalDeclaration, LocalProvision, TargetKind } from '../shared/targets/kind.ts';

/** What the local runtime started for its targets, by target name, and how to undo it. */
export interface LocalTargets {
  /** The config with every provided target's settings pointing at what was started for it. */
  config: TaskLeaseConfig;
  provisions: Record<string, LocalProvision>;
  /** Resolves a secret reference of a provided target's settings; throws for one nobody knows. */
  resolveSecret(ref: string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Asks each configured target's kind how the local runtime provides it (its `localModule`), in
 * parallel. A kind without one keeps its configured settings. Knows no kind by name.
 */
export async function provideLocalTargets(config: TaskLeaseConfig, kinds: readonly TargetKind[], ctx: LocalContext): Promise<LocalTargets> {
  const provisions: Record<string, LocalProvision> = {};
  const started: LocalProvision[] = [];
  const stop = async () => {
    await Promise.allSettled(started.splice(0).map((p) => p.stop()));
  };
  const targets = { ...config.targets };
  try {
    await Promise.all(
      validateTargets(config, kinds).map(async (target) => {
        const kind = target.factory as TargetKind;
        if (!kind.localModule) return;
        const { local } = (await import(kind.localModule)) as { local: LocalDeclaration };
        const provision = await local.provide(target, ctx);
        started.push(provision);
        provisions[target.name] = provision;
        targets[target.name] = { ...config.targets[target.name]!, settings: provision.settings };
      }),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    config: { ...config, targets },
    provisions,
    async resolveSecret(ref) {
      for (const p of Object.values(provisions)) {
        const value = await p.resolveSecret?.(ref);
        if (value !== undefined) return value;
      }
      throw new Error(`unknown local secret reference ${ref}`);
    },
    stop,
  };
}
