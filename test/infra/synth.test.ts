import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repoRoot = new URL('../..', import.meta.url).pathname;
const outdir = mkdtempSync(join(tmpdir(), 'tasklease-cdk-synth-'));
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

describe('npx cdk synth', () => {
  it('succeeds offline from the repository root on the example AWS config, cdk-nag included', async () => {
    // Offline: no credentials, no instance metadata, no notices, no telemetry. The output goes to a
    // temp dir so a developer's cdk.out is left alone.
    // The example AWS config, as `npm run synth` and the README's deploy line use: the default
    // config's local trust bundle is refused at synth (test/infra/deployability.test.ts).
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      AWS_EC2_METADATA_DISABLED: 'true',
      CDK_DISABLE_CLI_TELEMETRY: 'true',
      TASKLEASE_CONFIG_FILE: 'examples/aws/tasklease.config.yaml',
    };
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE']) delete env[name];
    const { stderr } = await run('npx', ['cdk', 'synth', '--no-notices', '-q', '-o', outdir], {
      cwd: repoRoot,
      env,
      timeout: 180_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    expect(stderr).not.toMatch(/Synthesis finished with errors|ValidationFailed/);
    const templateFile = join(outdir, 'TaskLease.template.json');
    expect(existsSync(templateFile)).toBe(true);
    const template = JSON.parse(readFileSync(templateFile, 'utf8')) as { Resources: Record<string, { Type: string }> };
    const types = Object.values(template.Resources).map((r) => r.Type);
    // task-started, task-ended, reverify, reaper and the break-glass operator.
    expect(types.filter((t) => t === 'AWS::Lambda::Function')).toHaveLength(5);
    const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as { pluginReports: { conclusion: string }[] };
    expect(report.pluginReports.filter((p) => p.conclusion !== 'success')).toEqual([]);
  }, 180_000);
});
