import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { COMMANDS, main, resolveCommand } from '../../cli/tasklease.ts';
import type { CommandEntry } from '../../cli/tasklease.ts';
import { dynamoClient } from '../../shared/ledger/client.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const run = promisify(execFile);

/** `tasklease …` in-process, with its output captured. */
async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { out: (s) => (stdout += s), err: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

describe('tasklease: dispatch', () => {
  it('--help, -h, help and no arguments list every command and the version', async () => {
    const help = await cli('--help');
    expect(help.code).toBe(0);
    expect(help.stderr).toBe('');
    expect(help.stdout).toContain(`tasklease ${VERSION}`);
    expect(help.stdout).toContain('Usage: tasklease <command> [options]');
    const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    for (const c of COMMANDS) expect(help.stdout).toMatch(new RegExp(`^  ${c.name} +${literal(c.summary)}$`, 'm'));
    expect(COMMANDS.map((c) => c.name)).toEqual(['report', 'dashboard', 'revoke', 'unlock']);
    for (const argv of [['-h'], ['help'], []]) expect((await cli(...argv)).stdout).toBe(help.stdout);
  });

  it('--version prints the package version', async () => {
    expect(await cli('--version')).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
    expect((await cli('-v')).stdout).toBe(`${VERSION}\n`);
  });

  it("a subcommand's --help is its own options; `help <command>` prints the same", async () => {
    const report = await cli('report', '--help');
    expect(report.code).toBe(0);
    expect(report.stdout).toMatch(/^Usage: tasklease report /);
    for (const flag of [
      '--table',
      '--endpoint',
      '--region',
      '--workload',
      '--target',
      '--since',
      '--until',
      '--json',
      '--csv',
      '--rows',
      '--limit',
    ]) {
      expect(report.stdout).toContain(flag);
    }
    expect(report.stdout).not.toContain('--poll-ms');
    expect((await cli('report', '-h')).stdout).toBe(report.stdout);
    expect((await cli('help', 'report')).stdout).toBe(report.stdout);

    const dashboard = await cli('dashboard', '--help');
    expect(dashboard.code).toBe(0);
    expect(dashboard.stdout).toMatch(/^Usage: tasklease dashboard /);
    for (const flag of ['--table', '--endpoint', '--region', '--since', '--port', '--poll-ms']) expect(dashboard.stdout).toContain(flag);
    expect(dashboard.stdout).not.toContain('--csv');
    // --help wins over everything else on the line, even flags that would fail.
    expect((await cli('dashboard', '--since', 'yesterday', '--help')).stdout).toBe(dashboard.stdout);
  });

  it('an unknown command is named, with exit code 2 and nothing on stdout', async () => {
    const r = await cli('frobnicate', '--table', 't');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('unknown command frobnicate (commands: report, dashboard, revoke, unlock, help)');
    expect((await cli('help', 'frobnicate')).code).toBe(2);
  });

  it('an unknown option is named, with exit code 2, for each command and before any command', async () => {
    for (const command of ['report', 'dashboard']) {
      const r = await cli(command, '--table', 't', '--frobnicate');
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(`tasklease ${command}: unknown option --frobnicate`);
      expect(r.stderr).toContain(`tasklease ${command} --help`);
    }
    const before = await cli('--json', 'report');
    expect(before.code).toBe(2);
    expect(before.stderr).toContain('unknown option --json (options go after the command');
  });

  it('a stray argument after a command is a usage error', async () => {
    const r = await cli('report', '--table', 't', 'extra');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('tasklease report: unexpected argument extra');
    expect((await cli('help', 'report', 'extra')).code).toBe(2);
  });

  it('report and dashboard read the connection and filter options the same way', async () => {
    for (const command of ['report', 'dashboard']) {
      const badUrl = await cli(command, '--endpoint', 'not a url', '--table', 't');
      expect(badUrl.code).toBe(2);
      expect(badUrl.stderr).toContain('--endpoint not a url is not a URL');
      const noTable = await cli(command);
      expect(noTable.code).toBe(2);
      expect(noTable.stderr).toContain('which ledger? give --table NAME');
      const window = await cli(command, '--table', 't', '--since', '1h', '--until', '2h');
      expect(window.code).toBe(2);
      expect(window.stderr).toContain('--since is after --until');
    }
  });

  it('resolves a command of several words (a group like `audit verify`) by its longest name', () => {
    const entry = (name: string): CommandEntry => ({ name, summary: name, load: () => Promise.reject(new Error('not loaded')) });
    const table = [entry('report'), entry('audit'), entry('audit verify')];
    expect(resolveCommand(['audit', 'verify', '--table', 't'], table)?.name).toBe('audit verify');
    expect(resolveCommand(['audit', '--table', 't'], table)?.name).toBe('audit');
    expect(resolveCommand(['report', 'verify'], table)?.name).toBe('report');
    expect(resolveCommand(['verify'], table)).toBeUndefined();
    expect(resolveCommand([], table)).toBeUndefined();
  });

  it('exits with the code main returns when run as a program', async () => {
    const CLI = join(ROOT, 'cli', 'tasklease.ts');
    const err = await run(process.execPath, ['--import', 'tsx', CLI, 'frobnicate'], { cwd: ROOT, encoding: 'utf8' }).catch(
      (e: unknown) => e as { code: number; stderr: string },
    );
    expect(err).toMatchObject({ code: 2 });
    expect((err as { stderr: string }).stderr).toContain('unknown command frobnicate');
    const { stdout } = await run(process.execPath, ['--import', 'tsx', CLI, 'dashboard', '--help'], { cwd: ROOT, encoding: 'utf8' });
    expect(stdout).toMatch(/^Usage: tasklease dashboard /);
  });
});

describe('tasklease: dependencies', () => {
  it('does not import the embedded runtime (local/), through any of its commands', async () => {
    const result = await build({
      entryPoints: [join(ROOT, 'cli', 'tasklease.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(result.metafile.inputs).map((p) => relative(ROOT, join(process.cwd(), p)));
    // Followed every command's lazy import, so the check covers them all.
    expect(inputs).toEqual(expect.arrayContaining(['cli/commands/report.ts', 'cli/commands/dashboard.ts', 'report/dashboard/server.ts']));
    expect(inputs.filter((p) => p.startsWith('local/'))).toEqual([]);
  });

  it('builds its DynamoDB client itself: a fixed local identity only on loopback endpoints', async () => {
    const local = dynamoClient({ endpoint: 'http://127.0.0.1:8000' });
    const aws = dynamoClient({ endpoint: 'https://dynamodb.eu-west-1.amazonaws.com', region: 'eu-west-1' });
    const named = dynamoClient({ endpoint: 'http://localhost:8000', region: 'us-east-2' });
    try {
      expect(await local.config.region()).toBe('local');
      expect((await local.config.credentials()).accessKeyId).toBe('tasklease-local');
      expect(await aws.config.region()).toBe('eu-west-1');
      expect(await named.config.region()).toBe('us-east-2');
    } finally {
      for (const c of [local, aws, named]) c.destroy();
    }
  });
});
