/**
 * A real Redis for tests: Debian's `redis-server` (installed when missing) on a free 127.0.0.1
 * port with its own directory and no persistence. Stopped by PID, also when a test fails (the
 * process helper kills what is left at exit). `stop()` + `start()` reuse the port, for outage tests.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startProcess, waitForPort, type Managed } from './process.ts';
import { makeTmpDir } from './tmp.ts';

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** Starts it again on the same port (after `stop`). */
  start(): Promise<void>;
  /** Stops the server (SIGTERM, by PID); `start` brings it back. */
  stop(): Promise<void>;
  /** Stops it for good and removes its directory. */
  close(): Promise<void>;
}

const binary = '/usr/bin/redis-server';

function ensureInstalled(): void {
  if (existsSync(binary)) return;
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  const run = (args: string[]): void => {
    const [cmd, ...rest] = [...sudo, ...args];
    if (cmd === undefined) return;
    execFileSync(cmd, rest, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  };
  run(['apt-get', 'update', '-qq']);
  run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'redis-server']);
}

export async function startRedis(): Promise<RedisServer> {
  ensureInstalled();
  const tmp = makeTmpDir('redis');
  const port = await freePort();
  let proc: Managed | undefined;
  const start = async (): Promise<void> => {
    const p = startProcess(
      'redis',
      binary,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        tmp.path,
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
      ],
      { logFile: join(tmp.path, 'redis.log') },
    );
    proc = p;
    await waitForPort(port, '127.0.0.1', 10_000, p.exited);
  };
  const stop = async (): Promise<void> => {
    await proc?.stop(5000);
    proc = undefined;
  };
  try {
    await start();
  } catch (err) {
    await stop();
    tmp.remove();
    throw err;
  }
  return {
    url: `redis://127.0.0.1:${String(port)}/0`,
    port,
    start,
    stop,
    async close() {
      await stop();
      tmp.remove();
    },
  };
}
