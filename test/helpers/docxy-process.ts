/**
 * Docxy as a separate process (from source, through tsx), for what an in-process instance cannot
 * show: SIGKILL mid-fill and restart, memory, the CLI itself. Stopped by PID.
 */
import { join } from 'node:path';
import { startProcess, waitForPort, freePort, type Managed } from './process.ts';

export interface DocxyProcess {
  readonly proc: Managed;
  readonly url: string;
  readonly port: number;
  /** The JSON log lines so far. */
  logs(): Record<string, unknown>[];
  stop(): Promise<void>;
  kill9(): Promise<void>;
}

/** The JSON lines of a Docxy process's captured output (pino writes one object per line). */
export function jsonLogLines(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export async function spawnDocxy(opts: {
  configFile: string;
  logFile: string;
  port?: number;
  env?: Record<string, string>;
}): Promise<DocxyProcess> {
  const port = opts.port ?? (await freePort());
  const proc = startProcess(
    'docxy',
    process.execPath,
    [
      '--import',
      'tsx',
      join(import.meta.dirname, 'docxy-entry.ts'),
      'serve',
      '--config',
      opts.configFile,
      '--listen',
      `127.0.0.1:${port}`,
    ],
    {
      logFile: opts.logFile,
      env: { ...process.env, ...opts.env },
      cwd: join(import.meta.dirname, '..', '..'),
    },
  );
  // A Docxy that exits at start (a bad configuration) fails the test at once, with its output.
  try {
    await waitForPort(port, '127.0.0.1', 30_000, proc.exited);
  } catch (err) {
    await proc.stop();
    throw new Error(`${(err as Error).message}; docxy's output:\n${proc.log().slice(-2000)}`);
  }
  return {
    proc,
    url: `http://127.0.0.1:${port}`,
    port,
    logs: () => jsonLogLines(proc.log()),
    stop: () => proc.stop(),
    async kill9() {
      process.kill(proc.pid, 'SIGKILL');
      await proc.exited;
    },
  };
}
