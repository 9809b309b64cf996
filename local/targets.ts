import { markTargetsValidated, validateTargets } from '../shared/policy/config.ts';
import type { ResolvedTarget, TaskLeaseConfig } from '../shared/policy/config.ts';
import type { LocalContext, LocalDeclaration, LocalProvision, TargetKind } from '../shared/targets/kind.ts';

/** What the local runtime started for its targets, by target name, and how to undo it. */
export interface LocalTargets {
  /**
   * The config with every provided target's settings pointing at what was started for it. Its
   * targets count as validated against the same kinds: `buildTargetRegistry(config, kinds, …)`
   * hands the provided settings to the drivers without parsing them again.
   */
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
  let resolved: ResolvedTarget<TargetKind>[];
  try {
    resolved = await Promise.all(
      validateTargets(config, kinds).map(async (target) => {
        const { localModule } = target.factory;
        if (!localModule) return target;
        const { local } = (await import(localModule)) as { local: LocalDeclaration };
        const provision = await local.provide(target, ctx);
        started.push(provision);
        provisions[target.name] = provision;
        return { ...target, settings: provision.settings };
      }),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const targets = { ...config.targets };
  for (const t of resolved) if (provisions[t.name]) targets[t.name] = { ...config.targets[t.name]!, settings: t.settings };
  const provided = { ...config, targets };
  markTargetsValidated(provided, kinds, resolved);
  return {
    config: provided,
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
