/**
 * The cloud side of the emulated account, started once for all test files: moto (the account),
 * the stack deployed into it with `cdk deploy`, and what the tests need to reach it (provided
 * through vitest's `provide`/`inject`). Torn down in reverse order.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { deployStack } from './deploy.ts';
import type { Deployment } from './deploy.ts';
import { startMoto } from './moto.ts';
import type { HarnessPorts } from './config.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    motoEndpoint: string;
    deployment: Deployment;
    ports: HarnessPorts;
    workDir: string;
  }
}

function required(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the suite with bash test/aws-account/run.sh (npm run test:aws)`);
  return v;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const workDir = required('TASKLEASE_AWS_WORK');
  const venv = required('TASKLEASE_AWS_VENV');
  const ports = JSON.parse(readFileSync(join(workDir, 'ports.json'), 'utf8')) as HarnessPorts;
  const stops: (() => Promise<void>)[] = [];
  const teardown = async () => {
    for (const stop of stops.reverse()) await stop().catch((err: unknown) => console.error('teardown:', err));
  };
  try {
    const moto = await startMoto(venv);
    stops.push(() => moto.stop());
    let deployment: Deployment;
    try {
      deployment = await deployStack(workDir, moto.endpoint);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nmoto output:\n${moto.output().slice(-80).join('\n')}`);
    }
    console.log(
      `emulated account: stack deployed (bootstrap ${deployment.seconds.bootstrap.toFixed(1)} s, deploy ${deployment.seconds.deploy.toFixed(1)} s, ${deployment.resources.length} resources)`,
    );
    project.provide('motoEndpoint', moto.endpoint);
    project.provide('deployment', deployment);
    project.provide('ports', ports);
    project.provide('workDir', workDir);
    return teardown;
  } catch (err) {
    await teardown();
    throw err;
  }
}
