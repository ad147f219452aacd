/**
 * Server processes of the benchmark (contestants, the link's relays): started with a known PID in
 * their own process group, stdout and stderr straight to a file, stopped by that PID; a last-resort
 * exit hook kills, by PID, whatever is still running when the benchmark dies.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { waitFor } from '../test/helpers/process.ts';

async function answers(url: string, ok: (status: number) => boolean): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.body?.cancel();
    return ok(res.status);
  } catch {
    return false;
  }
}

/**
 * A server process whose stdout and stderr go straight to a file. (test/helpers/process.ts pipes
 * them through this process, which here is also the load generator: Docxy's one log line per
 * request at 20k req/s would cost the client CPU, and a full pipe would throttle the server.)
 */
export interface ServerProcess {
  /** The process's PID (its process group's too). */
  readonly pid: number;
  running(): boolean;
  log(): string;
  /** SIGTERM to its process group, SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  // Last resort when the benchmark dies without running its finally blocks: kill, by PID, what it started.
  for (const c of live) {
    try {
      if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

export function spawnServer(
  cmd: string,
  args: readonly string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv; logFile: string },
): ServerProcess {
  const fd = openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', fd, fd],
      detached: true,
    });
  } finally {
    closeSync(fd);
  }
  child.on('error', () => {
    /* a spawn failure shows as pid === undefined, or as an early exit */
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${cmd}`);
  live.add(child);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      live.delete(child);
      resolve();
    });
  });
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    pid,
    running,
    log: () => readTail(opts.logFile),
    async stop(graceMs = 10_000) {
      if (!running()) return;
      const send = (sig: NodeJS.Signals): void => {
        try {
          process.kill(-pid, sig);
        } catch {
          child.kill(sig);
        }
      };
      send('SIGTERM');
      const timer = setTimeout(() => {
        send('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Waits for the server to answer; stops it and throws (with its log) if it does not. */
export async function ready(
  proc: ServerProcess,
  what: string,
  url: string,
  ok: (status: number) => boolean,
): Promise<void> {
  try {
    await waitFor(
      `${what} to answer ${url}`,
      async () => {
        if (!proc.running()) throw new Error(`${what} exited early:\n${proc.log()}`);
        return answers(url, ok);
      },
      30_000,
    );
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** A contestant's stop: its process, then its temporary directory (also when stopping fails). */
export function stopAndRemove(proc: ServerProcess, dir: { remove: () => void }): () => Promise<void> {
  return async () => {
    try {
      await proc.stop();
    } finally {
      dir.remove();
    }
  };
}

/** The last 4000 characters of a log file ('' when it does not exist). */
export function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-4000);
  } catch {
    return '';
  }
}
