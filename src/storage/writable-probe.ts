/**
 * Is the data directory writable? A real probe: a small file is written, fsync'd and removed in the
 * data directory's `tmp/` area (where the filesystem driver keeps its writes in progress, and which
 * it empties at start). The answer is kept for `cacheMs` so a load balancer polling readiness does
 * not turn into disk traffic, and concurrent callers share one probe.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface ProbeResult {
  writable: boolean;
  /** Why not, when not writable: the error's code only (the answer is public; no paths in it). */
  error?: string;
  /** When the probe ran (ISO). */
  checkedAt: string;
}

export interface WritableProbe {
  check(): Promise<ProbeResult>;
}

export function createWritableProbe(opts: {
  dir: string;
  cacheMs?: number;
  now?: () => number;
}): WritableProbe {
  const cacheMs = opts.cacheMs ?? 1500;
  const now = opts.now ?? Date.now;
  const tmp = join(opts.dir, 'tmp');
  let last: { at: number; result: ProbeResult } | undefined;
  let running: Promise<ProbeResult> | undefined;

  async function probe(): Promise<ProbeResult> {
    const checkedAt = new Date(now()).toISOString();
    const file = join(tmp, `ready-${randomUUID()}`);
    try {
      await mkdir(tmp, { recursive: true });
      const handle = await open(file, 'wx');
      try {
        await handle.writeFile('ready\n');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await unlink(file);
      return { writable: true, checkedAt };
    } catch (err) {
      // A half-done probe must not leave its file behind (ignored when the disk refuses that too).
      await unlink(file).catch(() => undefined);
      return { writable: false, error: (err as NodeJS.ErrnoException).code ?? 'error', checkedAt };
    }
  }

  return {
    check() {
      if (last !== undefined && now() - last.at < cacheMs) return Promise.resolve(last.result);
      running ??= probe().then((result) => {
        last = { at: now(), result };
        running = undefined;
        return result;
      });
      return running;
    },
  };
}
