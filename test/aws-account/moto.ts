import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface Moto {
  /** `http://localhost:<port>`: the CDK CLI rewrites template URLs onto the endpoint's host, and moto reads a path-style S3 URL only when that host is `localhost`. */
  endpoint: string;
  port: number;
  /** The server's recent output (tracebacks of a moto gap show up here). */
  output(): string[];
  stop(): Promise<void>;
}

/** Starts test/aws-account/moto_server.py from the virtualenv on a free port; it exits when our stdin closes. */
export async function startMoto(venv: string): Promise<Moto> {
  const child: ChildProcess = spawn(join(venv, 'bin', 'python'), [new URL('./moto_server.py', import.meta.url).pathname], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  const lines: string[] = [];
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > 400) lines.shift();
  };
  createInterface({ input: child.stderr! }).on('line', keep);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`moto did not start in 60 s:\n${lines.join('\n')}`)), 60_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^MOTO_PORT=(\d+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      } else keep(line);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`moto exited (${code}) before listening:\n${lines.join('\n')}`));
    });
  });
  return {
    endpoint: `http://localhost:${port}`,
    port,
    output: () => [...lines],
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.stdin!.end();
        child.kill('SIGTERM');
      }),
  };
}
