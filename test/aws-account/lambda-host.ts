/**
 * One Lambda execution environment: a child process that imports one deployed bundle (the
 * esbuild output in cdk.out that `cdk deploy` uploaded) and runs invocations the parent sends over
 * IPC, one at a time, with a Lambda-style context. The environment (the function configuration's
 * variables, the role session's credentials, AWS_ENDPOINT_URL) is the process's own.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

interface Invoke {
  id: number;
  event: unknown;
  timeoutMs: number;
}

type Handler = (event: unknown, context: unknown) => Promise<unknown>;

const bundleDir = process.argv[2];
if (!bundleDir || !process.send) throw new Error('usage: forked with IPC, lambda-host.ts <bundle dir>');
let handler: Promise<Handler> | undefined;
const load = () =>
  (handler ??= import(pathToFileURL(join(bundleDir, 'index.mjs')).href).then((m: { handler?: Handler }) => {
    if (typeof m.handler !== 'function') throw new Error(`${bundleDir}/index.mjs exports no handler`);
    return m.handler;
  }));

const name = process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'function';
let queue = Promise.resolve();
process.on('message', (msg: Invoke) => {
  // One invocation at a time per environment, as in Lambda.
  queue = queue.then(async () => {
    const deadline = Date.now() + msg.timeoutMs;
    const context = {
      callbackWaitsForEmptyEventLoop: false,
      functionName: name,
      functionVersion: '$LATEST',
      invokedFunctionArn: process.env.TASKLEASE_HOST_FUNCTION_ARN ?? '',
      memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? '128',
      awsRequestId: randomUUID(),
      logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME ?? '',
      logStreamName: 'emulated',
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      done: () => undefined,
      fail: () => undefined,
      succeed: () => undefined,
    };
    try {
      const result = await (await load())(msg.event, context);
      process.send!({ id: msg.id, ok: true, result });
    } catch (err) {
      const e = err as Error;
      process.send!({ id: msg.id, ok: false, error: { name: e.name, message: e.message } });
    }
  });
});
process.on('disconnect', () => process.exit(0));
