import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CloudFormationClient, DescribeStackResourcesCommand, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { ACCOUNT, REGION, STACK_NAME } from './config.ts';
import { adminCredentials } from './sdk.ts';

export interface DeployedResource {
  logicalId: string;
  type: string;
  physicalId: string;
  status: string;
}

export interface Deployment {
  outputs: Record<string, string>;
  resources: DeployedResource[];
  /** Template resources the emulator did not create (type → logical ids). */
  skipped: Record<string, string[]>;
  seconds: { bootstrap: number; deploy: number };
}

function cdk(args: string[], endpoint: string, log: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('npx', ['cdk', ...args, '--no-notices', '--ci'], {
      env: {
        ...process.env,
        AWS_ENDPOINT_URL: endpoint,
        ...adminCredentials(),
        AWS_REGION: REGION,
        AWS_DEFAULT_REGION: REGION,
        // Deploy what run.sh synthesized and linted, without a second synth.
        CDK_DISABLE_VERSION_CHECK: 'true',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (b: Buffer) => log.push(...b.toString().split('\n').filter(Boolean));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`cdk ${args[0]} failed (exit ${code}):\n${log.slice(-60).join('\n')}`));
    });
  });
}

/** `cdk bootstrap` and `cdk deploy` of the synthesized assembly into the emulator, then what it made of it. */
export async function deployStack(workDir: string, endpoint: string): Promise<Deployment> {
  const assembly = join(workDir, 'cdk.out');
  const log: string[] = [];
  const t0 = Date.now();
  await cdk(['bootstrap', `aws://${ACCOUNT}/${REGION}`, '--app', assembly], endpoint, log);
  const t1 = Date.now();
  await cdk(['deploy', STACK_NAME, '--app', assembly, '--require-approval', 'never'], endpoint, log);
  const t2 = Date.now();

  const cfn = new CloudFormationClient({ endpoint, region: REGION, credentials: adminCredentials.sdk() });
  const stack = (await cfn.send(new DescribeStacksCommand({ StackName: STACK_NAME }))).Stacks?.[0];
  if (stack?.StackStatus !== 'CREATE_COMPLETE') throw new Error(`stack ${STACK_NAME} is ${stack?.StackStatus}`);
  const outputs = Object.fromEntries((stack.Outputs ?? []).map((o) => [o.OutputKey!, o.OutputValue!]));
  const listed = (await cfn.send(new DescribeStackResourcesCommand({ StackName: STACK_NAME }))).StackResources ?? [];
  // moto lists a template resource it has no model for (AWS::CDK::Metadata) as a nameless entry.
  const resources = listed
    .filter((r) => r.LogicalResourceId)
    .map((r) => ({
      logicalId: r.LogicalResourceId!,
      type: r.ResourceType!,
      physicalId: r.PhysicalResourceId ?? '',
      status: r.ResourceStatus ?? '',
    }));
  const template = JSON.parse(readFileSync(join(assembly, `${STACK_NAME}.template.json`), 'utf8')) as {
    Resources: Record<string, { Type: string }>;
  };
  const made = new Set(resources.map((r) => r.logicalId));
  const skipped: Record<string, string[]> = {};
  for (const [id, r] of Object.entries(template.Resources)) {
    if (!made.has(id)) (skipped[r.Type] ??= []).push(id);
  }
  return { outputs, resources, skipped, seconds: { bootstrap: (t1 - t0) / 1000, deploy: (t2 - t1) / 1000 } };
}
