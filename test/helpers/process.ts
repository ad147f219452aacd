/**
 * Child processes for tests: started with a known PID, their output captured to a file, stopped by
 * PID (never by name) with SIGTERM then SIGKILL. Every process started here is also killed when the
 * test process exits, so a failing test never leaves a daemon behind.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Managed {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logFile: string;
  /** The process's captured stdout+stderr so far. */
  log(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
  /** Resolves with the exit code (or signal name) when the process exits. */
  readonly exited: Promise<number | string>;
}

const live = new Set<ChildProcess>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const c of live) {
      try {
        // Kill the whole process group when we made one (detached), else the child.
        if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
      } catch {
        try {
          c.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
  });
}

export function startProcess(
  name: string,
  cmd: string,
  args: readonly string[],
  opts: SpawnOptions & { logFile: string },
): Managed {
  hookExit();
  const out = createWriteStream(opts.logFile, { flags: 'a' });
  const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${cmd}`);
  const pid = child.pid;
  live.add(child);
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => {
      live.delete(child);
      resolve(code ?? signal ?? -1);
    });
  });
  const m: Managed = {
    name,
    child,
    pid,
    logFile: opts.logFile,
    exited,
    log: () => {
      try {
        return readFileSync(opts.logFile, 'utf8');
      } catch {
        return '';
      }
    },
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-pid, 'SIGTERM');
      } catch {
        child.kill('SIGTERM');
      }
      const t = setTimeout(() => {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }, graceMs);
      await exited;
      clearTimeout(t);
      out.end();
    },
  };
  return m;
}

/**
 * Resolves once something accepts TCP connections on host:port; rejects after `timeoutMs`, or as
 * soon as `gone` (the process that should listen there exited) resolves.
 */
export async function waitForPort(
  port: number,
  host = '127.0.0.1',
  timeoutMs = 20_000,
  gone?: Promise<unknown>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const exit: { code?: unknown } = {};
  void gone?.then((code) => {
    exit.code = code;
  });
  for (;;) {
    if ('code' in exit) throw new Error(`the process meant to listen on ${host}:${port} exited (${String(exit.code)})`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ port, host }, () => {
        s.end();
        resolve(true);
      });
      s.on('error', () => {
        resolve(false);
      });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Polls `check` until it returns true; rejects with `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      if (a === null || typeof a === 'string') {
        reject(new Error('no port'));
        return;
      }
      s.close(() => {
        resolve(a.port);
      });
    });
  });
}
