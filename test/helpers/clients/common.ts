/**
 * Shared plumbing for the real-client harnesses (dockerd, containerd, podman, skopeo):
 *
 * - `runCommand`: run a short-lived client command, capture its output, kill it (by PID) on timeout.
 * - `deadProxyEnv`: proxy variables that point at a local port nobody listens on. Go's proxy logic
 *   never proxies loopback addresses, so the clients still reach a registry on 127.0.0.1, while any
 *   attempt to fall back to the real Docker Hub fails at once instead of leaving the machine (there
 *   is no internet here anyway; this makes the failure fast and deterministic).
 * - `Sandbox`: a private mount namespace around a client. These clients write to fixed host paths
 *   (/etc/docker/key.json, /opt/containerd, /run/docker, /var/lib/containers/cache, …) that not all
 *   of them let us move with flags. Each wrapped command runs as
 *   `unshare --mount --propagation private /bin/sh <script> cmd args…`, where the script mounts a
 *   throw-away overlayfs over /run, /etc, /var, /opt and $HOME (reads see the host files, writes
 *   land in the sandbox's upper dirs) and an empty tmpfs over /run/containerd, then `exec`s the
 *   command — so the PID that `startProcess` reports is the client's own PID. The mounts exist only
 *   in that namespace and vanish with its last process; `leaks()` lists what the client would have
 *   written to the host. (Overlaying a directory hides mounts beneath it; there are none under
 *   these paths here. Needs root and overlayfs, which these tests have.)
 */
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join, relative } from 'node:path';

import { freePort } from '../process.ts';

export interface CmdResult {
  /** Exit code; -1 when the process died from a signal (for example the timeout's SIGKILL). */
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** Written to the command's stdin, which is then closed (for `--password-stdin`). */
  input?: string;
  timeoutMs?: number;
  cwd?: string;
}

/**
 * Runs a command to completion. It gets its own process group, so a timeout kills whatever it
 * started too — by that group's PID, never by name.
 */
export function runCommand(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<CmdResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }
    }, opts.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8');
      resolve({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: timedOut ? `${stderr}\n[timed out after ${opts.timeoutMs ?? 120_000} ms]` : stderr,
      });
    });
    // EPIPE when the command exits without reading stdin is harmless: the result says what happened.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Like `runCommand`, but rejects (with the output) unless the command exits 0. */
export async function runChecked(
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<CmdResult> {
  const r = await runCommand(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r;
}

/**
 * Proxy variables aimed at a port that was just bound and released (so nothing listens there).
 * NO_PROXY is cleared so an inherited value cannot open a bypass; loopback is exempt regardless.
 */
export async function deadProxyEnv(): Promise<Record<string, string>> {
  const url = `http://127.0.0.1:${await freePort()}`;
  return {
    HTTP_PROXY: url,
    HTTPS_PROXY: url,
    http_proxy: url,
    https_proxy: url,
    NO_PROXY: '',
    no_proxy: '',
  };
}

/** The environment every client starts from: only PATH from the test process, nothing else. */
export function baseEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    LANG: 'C',
    ...extra,
  };
}

/** Quotes a string for /bin/sh. */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

export interface SandboxOptions {
  /** Host directories seen through a throw-away overlay. Default: /run, /etc, /var, /opt and $HOME. */
  overlay?: readonly string[];
  /**
   * Paths (inside an overlaid directory) replaced by an empty tmpfs. Default: /run/containerd, so
   * dockerd never finds a system containerd's socket and always starts its own.
   */
  tmpfs?: readonly string[];
  /**
   * Private directories (or files) bind-mounted over paths inside an overlaid directory, e.g. a
   * private /etc/containers so the host's registries.conf drop-ins and policy cannot leak in, or a
   * private /etc/hosts.
   */
  binds?: readonly { source: string; target: string }[];
}

/** A private mount namespace recipe; see the file comment. */
export class Sandbox {
  readonly overlay: readonly string[];
  readonly tmpfs: readonly string[];
  readonly binds: readonly { source: string; target: string }[];
  private n = 0;

  /** `dir` must not be under any overlaid path (it lives under /tmp). */
  constructor(
    readonly dir: string,
    opts: SandboxOptions = {},
  ) {
    // Parents before children, so a nested overlay is stacked on its parent's.
    this.overlay = [...(opts.overlay ?? ['/run', '/etc', '/var', '/opt', homedir()])].sort();
    this.tmpfs = opts.tmpfs ?? ['/run/containerd'];
    this.binds = opts.binds ?? [];
    const inside = (p: string): boolean => this.overlay.some((o) => p.startsWith(`${o}/`));
    // Their mount points may have to be created, which must happen inside an overlay, never on the host.
    for (const t of [...this.tmpfs, ...this.binds.map((b) => b.target)]) {
      if (!inside(t)) throw new Error(`sandbox mount point ${t} is not inside ${this.overlay.join(', ')}`);
    }
    if (inside(dir) || this.overlay.includes(dir)) throw new Error(`sandbox dir ${dir} is inside an overlay`);
    mkdirSync(join(dir, 'ovl'), { recursive: true });
  }

  /**
   * Returns the command line that runs `cmd args…` inside a fresh namespace. Each call gets its
   * own overlay upper/work dirs: two live overlays must not share a workdir (the kernel refuses),
   * and wrapped podman/skopeo commands may overlap.
   */
  wrap(cmd: string, args: readonly string[]): { cmd: string; args: string[] } {
    const id = String(++this.n);
    // `-n` on every mount: util-linux otherwise records mount options in /run/mount/utab, which
    // would land on the host for the mounts made before /run's overlay.
    const lines = ['set -eu'];
    for (const o of this.overlay) {
      if (!existsSync(o)) continue;
      const base = join(this.dir, 'ovl', id, o.replaceAll('/', '_'));
      mkdirSync(join(base, 'up'), { recursive: true });
      mkdirSync(join(base, 'work'), { recursive: true });
      const opts = `lowerdir=${o},upperdir=${join(base, 'up')},workdir=${join(base, 'work')}`;
      lines.push(`mount -n -t overlay overlay -o ${shQuote(opts)} ${shQuote(o)}`);
    }
    for (const t of this.tmpfs) {
      lines.push(`mkdir -p ${shQuote(t)}`, `mount -n -t tmpfs -o mode=0755 tmpfs ${shQuote(t)}`);
    }
    for (const b of this.binds) {
      // A file is bound onto a file (created empty if missing), a directory onto a directory.
      const make = statSync(b.source).isDirectory() ? 'mkdir -p' : 'touch';
      lines.push(
        `[ -e ${shQuote(b.target)} ] || ${make} ${shQuote(b.target)}`,
        `mount -n --bind ${shQuote(b.source)} ${shQuote(b.target)}`,
      );
    }
    lines.push('exec "$@"', '');
    const script = join(this.dir, `ns-${id}.sh`);
    writeFileSync(script, lines.join('\n'));
    chmodSync(script, 0o755);
    // unshare without --fork execs /bin/sh in place, which execs the command: one PID throughout.
    return { cmd: 'unshare', args: ['--mount', '--propagation', 'private', '/bin/sh', script, cmd, ...args] };
  }

  /**
   * Host paths the wrapped commands created or changed (they landed in an overlay's upper dir
   * instead), including the mount points the sandbox itself created. Directories that only hold
   * such files are not listed separately.
   */
  leaks(): string[] {
    const found: string[] = [];
    const ovl = join(this.dir, 'ovl');
    for (const id of safeReaddir(ovl)) {
      for (const o of this.overlay) {
        const up = join(ovl, id, o.replaceAll('/', '_'), 'up');
        walk(up, (p) => found.push(join(o, relative(up, p))));
      }
    }
    // The sandbox's own mount points are not the client's doing.
    const own = new Set([...this.tmpfs, ...this.binds.map((b) => b.target)]);
    return [...new Set(found)].filter((p) => !own.has(p)).sort();
  }
}

function safeReaddir(p: string): string[] {
  try {
    return readdirSync(p);
  } catch {
    return [];
  }
}

/** Calls `visit` for every file and every empty directory under `root`. */
function walk(root: string, visit: (p: string) => void): void {
  for (const name of safeReaddir(root)) {
    const p = join(root, name);
    if (lstatSync(p).isDirectory()) {
      if (safeReaddir(p).length === 0) visit(p);
      walk(p, visit);
    } else {
      visit(p);
    }
  }
}

/**
 * A record of the host paths where these clients keep state by default: for each watched path,
 * every entry beneath it (to `depth` levels) with its type, size and mtime. Compare a snapshot from
 * before the tests with one from after to prove the tests left nothing behind.
 */
export function hostFootprint(
  paths: readonly string[] = defaultWatchedPaths(),
  depth = 4,
): Map<string, string> {
  const seen = new Map<string, string>();
  const visit = (p: string, level: number): void => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    // A directory's mtime changes whenever an entry is added or removed, so it is part of the key.
    seen.set(p, `${st.isDirectory() ? 'd' : 'f'} ${st.size} ${st.mtimeMs}`);
    if (st.isDirectory() && level < depth) for (const name of safeReaddir(p)) visit(join(p, name), level + 1);
  };
  for (const p of paths) visit(p, 0);
  return seen;
}

/** The paths `hostFootprint` watches by default. */
export function defaultWatchedPaths(): string[] {
  const home = homedir();
  return [
    // docker
    '/etc/docker',
    '/var/lib/docker',
    '/run/docker',
    '/run/docker.sock',
    join(home, '.docker'),
    // containerd (also dockerd's managed one)
    '/etc/containerd',
    '/var/lib/containerd',
    '/run/containerd',
    '/opt/containerd',
    // podman / skopeo / containers-image
    '/etc/containers',
    '/var/lib/containers',
    '/run/containers',
    '/run/libpod',
    '/var/cache/containers',
    '/etc/cni',
    join(home, '.config/containers'),
    join(home, '.local/share/containers'),
    // util-linux mount's utab, written when /run is not private
    '/run/mount',
  ];
}

/** Human-readable differences between two footprints (empty when they are equal). */
export function footprintDiff(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [p, v] of after) {
    const b = before.get(p);
    if (b === undefined) out.push(`new: ${p}`);
    else if (b !== v) out.push(`changed: ${p} (${b} -> ${v})`);
  }
  for (const p of before.keys()) if (!after.has(p)) out.push(`gone: ${p}`);
  return out;
}

/** The integer in a pidfile, or undefined. */
export function readPid(file: string): number | undefined {
  try {
    const n = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(n) && n > 1 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a process with this PID exists (signal 0 checks without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A process's command line (NULs as spaces), or '' when it is gone. */
export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}
