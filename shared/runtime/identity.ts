import { fileBundleSource, httpBundleSource, ssmBundleSource, staticBundleSource, TrustBundleSet } from '../identity/bundle.ts';
import type { BundleSource } from '../identity/bundle.ts';
import { JwtSvidVerifier } from '../identity/jwt-svid.ts';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { ConfigError } from '../lease/errors.ts';
import type { Clock } from '../lease/ports.ts';
import type { TaskLeaseConfig } from '../policy/config.ts';

export interface IdentityRuntime {
  /** Where `bundle: { local: true }` trust domains get their bundle (the local issuer). */
  localBundle?: (trustDomain: string) => BundleSource;
  ssmClient?: SSMClient;
  clock?: Pick<Clock, 'now'>;
  onBundleError?: (trustDomain: string, error: Error) => void;
}

/** Builds the trust bundles and JWT-SVID verifier a config describes; one path for both runtimes. */
export function buildSvidVerifier(
  config: TaskLeaseConfig,
  runtime: IdentityRuntime = {},
): { verifier: JwtSvidVerifier; bundles: TrustBundleSet } {
  const domains = Object.entries(config.trustDomains).map(([trustDomain, td]) => {
    const b = td.bundle;
    let source: BundleSource;
    if ('file' in b) source = fileBundleSource(b.file);
    else if ('url' in b) source = httpBundleSource(b.url);
    else if ('ssmParameter' in b) source = ssmBundleSource(b.ssmParameter, { client: runtime.ssmClient });
    else if (runtime.localBundle) source = runtime.localBundle(trustDomain);
    else throw new ConfigError(`trustDomains.${trustDomain}.bundle: 'local' bundles exist only in the local runtime`);
    return { trustDomain, source, refreshHintSeconds: td.refreshHintSeconds };
  });
  const bundles = new TrustBundleSet({ domains, clock: runtime.clock, onError: runtime.onBundleError });
  const verifier = new JwtSvidVerifier({
    audience: config.audience,
    bundles,
    clock: runtime.clock,
    clockSkewSeconds: config.clockSkewSeconds,
    requireJti: Object.entries(config.trustDomains).flatMap(([name, td]) => (td.requireJti ? [name] : [])),
  });
  return { verifier, bundles };
}

export { staticBundleSource };
