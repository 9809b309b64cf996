import type { ChildProcess } from 'node:child_process';
import net from 'node:net';

/*
 * What the kinds' embedded servers (shared/targets/<kind>/embedded.ts, the local runtime and the
 * tests only) share: a free loopback port, stopping a child server, and retrying a start whose
 * port was taken between probing and binding.
 */

/** A port nothing listens on right now (the OS picks it); another process may still take it first. */
export async function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

/** SIGTERM, then SIGKILL if it has not exited within `timeoutMs`; resolves once it has exited. */
export async function stopProcess(proc: ChildProcess, timeoutMs: number): Promise<void> {
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/**
 * Runs `start`; when it fails and the port was picked (not configured), picks another with
 * `repick` and tries again, three times in all: parallel test files can take a probed port.
 */
export async function startRetryingPort(start: () => Promise<void>, portConfigured: boolean, repick: () => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await start();
      return;
    } catch (err) {
      if (portConfigured || attempt >= 3) throw err;
      await repick();
    }
  }
}
