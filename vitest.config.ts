import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The emulated AWS account has its own runner and config (npm run test:aws).
    exclude: ['test/aws-account/**', 'node_modules/**'],
    reporters: ['default', './test/support/summary-reporter.ts'],
    // Integration suites each boot their own embedded PostgreSQL/dynalite on free ports;
    // two cores, so keep parallelism modest.
    maxWorkers: 2,
    testTimeout: 60_000,
    // Local Node is 20 (Lambda runs 24); the SDK's upgrade notice would only clutter test output.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    hookTimeout: 120_000,
  },
});
