import { defineConfig } from 'vitest/config';

// The emulated AWS account (bash test/aws-account/run.sh): one global setup deploys the stack into
// moto; lifecycle.test.ts runs the Lambda side (lambda-service.ts) and acts as engines and workloads.
export default defineConfig({
  test: {
    include: ['test/aws-account/**/*.test.ts'],
    globalSetup: ['test/aws-account/global-setup.ts'],
    // One deployed account, shared: files run one after another against it.
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 180_000,
    hookTimeout: 300_000,
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
});
