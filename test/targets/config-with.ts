import { TaskLeaseConfigSchema } from '../../shared/policy/config.ts';
import type { TaskLeaseConfig } from '../../shared/policy/config.ts';

/** A config in memory holding just these targets (no rules): what validateTargets and the registry read. */
export function configWith(
  targets: Record<string, { kind: string; settings: unknown; access: Record<string, unknown>; maxConcurrency?: number }>,
): TaskLeaseConfig {
  return TaskLeaseConfigSchema.parse({
    audience: 'tasklease',
    trustDomains: { 'example.org': { bundle: { local: true } } },
    targets,
    rules: [],
  });
}
