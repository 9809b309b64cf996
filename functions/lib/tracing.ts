import type middy from '@middy/core';

/**
 * X-Ray, when the construct turns it on (`TaskLeaseProps.tracing`, the default). Off, the bundle
 * carries no tracer at all: the construct defines TASKLEASE_XRAY as 'off' at bundling time, esbuild
 * folds the test in powertools.ts and drops the import of ./xray.ts (Powertools Tracer and the X-Ray
 * SDK, ~120 kB).
 */
export interface Tracing {
  readonly enabled: boolean;
  /** The client, instrumented when tracing is on. */
  captureClient<T>(client: T): T;
  /** The invocation segment's middleware, when tracing is on. */
  middleware?: () => middy.MiddlewareObj;
}

export const NO_TRACING: Tracing = { enabled: false, captureClient: (client) => client };

/** The environment name esbuild's `define` replaces at bundling time (never read at run time in a bundle). */
export const XRAY_SWITCH = 'TASKLEASE_XRAY';
