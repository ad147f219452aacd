/**
 * A private Docker daemon (Debian's docker.io 20.10) for pulling through a mirror, plus the docker
 * CLI pointed at it.
 *
 * Isolation:
 * - dockerd gets its own --data-root, --exec-root, --pidfile, unix socket and an empty
 *   --config-file (so a host /etc/docker/daemon.json can never add mirrors or a storage driver).
 *   `vfs` storage needs no kernel mounts; `--iptables=false --ip6tables=false --bridge=none
 *   --ip-forward=false` keep it away from the host's firewall, bridges and sysctls.
 * - Its managed containerd is isolated by construction: dockerd generates
 *   `<exec-root>/containerd/containerd.toml` with root `<data-root>/containerd/daemon`, state
 *   `<exec-root>/containerd/daemon` and socket `<exec-root>/containerd/containerd.sock` (checked by
 *   the smoke test). dockerd only starts its own containerd when /run/containerd/containerd.sock is
 *   absent — otherwise it silently uses the system one — so the sandbox's empty tmpfs on
 *   /run/containerd matters. dockerd starts containerd in a session of its own (so the SIGTERM to
 *   dockerd's process group does not reach it) with a parent-death signal (a SIGKILLed dockerd
 *   takes it along — checked), and stops it during its own shutdown; `stop()` still checks
 *   containerd's pidfile and kills a survivor by PID.
 * - dockerd 20.10 has no flag for its trust key (/etc/docker/key.json, created on first start),
 *   and its managed containerd's `opt` plugin creates /opt/containerd. The sandbox (see common.ts)
 *   catches both in throw-away overlays; `leaks()` shows them.
 * - The CLI runs with a private DOCKER_CONFIG and HOME, so `docker login` writes its credentials to
 *   the temp dir and never to ~/.docker.
 * - HTTP(S)_PROXY point at a dead local port: a mirror miss cannot fall back to the real Hub.
 *
 * CLI: /usr/bin/docker (20.10.24, the daemon's own version). /usr/local/bin/docker, first in PATH,
 * is a 28.2 client that also works (it downgrades to API 1.41), but the matching client avoids
 * version skew in error messages and flags.
 *
 * Timings here: start-up 0.14–0.35 s (dockerd plus its containerd, until /_ping answers); stop
 * about 1.1 s (dockerd shuts its containerd down gracefully).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';

import { startProcess, waitFor, type Managed } from '../process.ts';
import { makeTmpDir } from '../tmp.ts';
import {
  Sandbox,
  alive,
  baseEnv,
  cmdline,
  deadProxyEnv,
  readPid,
  runCommand,
  type CmdResult,
} from './common.ts';

export const DOCKER_CLI = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

export interface DockerdOptions {
  /** `--registry-mirror` values; each must be a bare `scheme://host[:port]`. */
  mirrors?: string[];
  /** `--insecure-registry` values (`host:port`), for plain-HTTP registries. */
  insecureRegistries?: string[];
  /** More dockerd flags, e.g. `['--debug']`. */
  extraArgs?: string[];
  /**
   * A directory bind-mounted over /etc/docker/certs.d inside the daemon's sandbox: dockerd 20.10
   * has no flag for it and reads `<host:port>/ca.crt` (and client certs) from there on every pull,
   * so files added to this directory later are seen by the running daemon.
   */
  certsDir?: string;
  /**
   * The daemon's /etc/hosts (bind-mounted in its sandbox). dockerd treats every registry whose
   * host resolves into 127.0.0.0/8 as insecure (TLS unverified, certs.d ignored); `::1 localhost`
   * makes `localhost:PORT` a secure registry on the IPv6 loopback that Go's proxy logic still
   * never sends to the (dead) proxy.
   */
  hosts?: string;
  startTimeoutMs?: number;
}

export interface Dockerd {
  /** Path of the API socket (use as `-H unix://<socket>`). */
  readonly socket: string;
  /** The temp dir holding everything this daemon writes. */
  readonly dir: string;
  readonly pid: number;
  /** How long start-up took, in ms. */
  readonly startMs: number;
  /** dockerd's (and its containerd's) log so far. */
  log(): string;
  /** Runs the docker CLI against this daemon. */
  docker(args: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<CmdResult>;
  pull(ref: string, opts?: { platform?: string; timeoutMs?: number }): Promise<CmdResult>;
  /** `docker image inspect` .Id (`sha256:<config digest>`); rejects when the image is absent. */
  imageId(ref: string): Promise<string>;
  /** `docker image inspect` .RepoDigests (`name@sha256:…`). */
  repoDigests(ref: string): Promise<string[]>;
  removeImage(ref: string): Promise<CmdResult>;
  login(server: string, user: string, password: string): Promise<CmdResult>;
  logout(server: string): Promise<CmdResult>;
  /** The CLI's config.json (where `docker login` stored credentials), or undefined. */
  cliConfig(): string | undefined;
  /** Host paths the daemon tried to write outside its dirs (kept in the sandbox instead). */
  leaks(): string[];
  /** Stops dockerd by PID, makes sure its containerd is gone, removes every directory. */
  stop(): Promise<void>;
}

export async function startDockerd(opts: DockerdOptions = {}): Promise<Dockerd> {
  const started = Date.now();
  const tmp = makeTmpDir('dockerd');
  const dir = tmp.path;
  const dataRoot = join(dir, 'data');
  const execRoot = join(dir, 'exec');
  const cliConfig = join(dir, 'cli-config');
  const home = join(dir, 'home');
  for (const d of [dataRoot, execRoot, cliConfig, home]) mkdirSync(d, { recursive: true });
  // An empty CLI config: no credsStore, so credentials go base64 into this file (no helper binary
  // for the platform default store exists here, so the CLI falls back to the file store).
  writeFileSync(join(cliConfig, 'config.json'), '{}\n');
  const daemonJson = join(dir, 'daemon.json');
  writeFileSync(daemonJson, '{}\n');
  // Keep the socket path short: unix socket paths are limited to 107 bytes.
  const socket = join(dir, 'docker.sock');
  const proxy = await deadProxyEnv();

  const args = [
    `--config-file=${daemonJson}`,
    `--data-root=${dataRoot}`,
    `--exec-root=${execRoot}`,
    `--pidfile=${join(dir, 'docker.pid')}`,
    `--host=unix://${socket}`,
    '--storage-driver=vfs',
    '--iptables=false',
    '--ip6tables=false',
    '--ip-forward=false',
    '--bridge=none',
    ...(opts.mirrors ?? []).map((m) => `--registry-mirror=${m}`),
    ...(opts.insecureRegistries ?? []).map((r) => `--insecure-registry=${r}`),
    ...(opts.extraArgs ?? []),
  ];
  const binds: { source: string; target: string }[] = [];
  if (opts.certsDir !== undefined) binds.push({ source: opts.certsDir, target: '/etc/docker/certs.d' });
  if (opts.hosts !== undefined) {
    writeFileSync(join(dir, 'hosts'), opts.hosts);
    binds.push({ source: join(dir, 'hosts'), target: '/etc/hosts' });
  }
  const sandbox = new Sandbox(join(dir, 'sandbox'), { binds });
  const wrapped = sandbox.wrap('dockerd', args);
  const proc: Managed = startProcess('dockerd', wrapped.cmd, wrapped.args, {
    logFile: join(dir, 'dockerd.log'),
    env: baseEnv({ ...proxy, HOME: home, TMPDIR: join(dataRoot, 'tmp') }),
  });

  const cliEnv = baseEnv({ ...proxy, DOCKER_CONFIG: cliConfig, HOME: home });
  const docker = (a: readonly string[], o: { input?: string; timeoutMs?: number } = {}): Promise<CmdResult> =>
    runCommand(DOCKER_CLI, ['-H', `unix://${socket}`, ...a], { env: cliEnv, ...o });

  const stop = async (): Promise<void> => {
    await proc.stop(20_000);
    // dockerd normally stops its containerd; make sure, by the PID containerd recorded.
    // The cmdline check guards against a recycled PID.
    const cPid = readPid(join(execRoot, 'containerd', 'containerd.pid'));
    if (cPid !== undefined && alive(cPid) && cmdline(cPid).includes(execRoot)) {
      process.kill(cPid, 'SIGTERM');
      await waitFor('managed containerd to exit', () => !alive(cPid), 10_000).catch(() => {
        if (alive(cPid)) process.kill(cPid, 'SIGKILL');
      });
    }
    // The namespace (and with it every mount dockerd made) died with its last process.
    tmp.remove();
  };

  try {
    await waitFor(
      'dockerd to answer /_ping',
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`dockerd exited early:\n${proc.log()}`);
        return (await ping(socket)) === 'OK';
      },
      opts.startTimeoutMs ?? 30_000,
    );
  } catch (e) {
    await stop();
    throw e;
  }
  const startMs = Date.now() - started;

  const inspect = async (ref: string, format: string): Promise<string> => {
    const r = await docker(['image', 'inspect', '--format', format, ref]);
    if (r.code !== 0) throw new Error(`docker image inspect ${ref}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };

  return {
    socket,
    dir,
    pid: proc.pid,
    startMs,
    log: () => proc.log(),
    docker,
    pull: (ref, o = {}) =>
      docker(['pull', ...(o.platform !== undefined ? ['--platform', o.platform] : []), ref], {
        timeoutMs: o.timeoutMs ?? 120_000,
      }),
    imageId: (ref) => inspect(ref, '{{.Id}}'),
    repoDigests: async (ref) => {
      const parsed: unknown = JSON.parse(await inspect(ref, '{{json .RepoDigests}}'));
      if (!Array.isArray(parsed)) return [];
      return parsed.filter((x): x is string => typeof x === 'string');
    },
    removeImage: (ref) => docker(['image', 'rm', '--force', ref]),
    login: (server, user, password) =>
      docker(['login', '--username', user, '--password-stdin', server], { input: password }),
    logout: (server) => docker(['logout', server]),
    cliConfig: () => {
      try {
        return readFileSync(join(cliConfig, 'config.json'), 'utf8');
      } catch {
        return undefined;
      }
    },
    leaks: () => sandbox.leaks(),
    stop,
  };
}

/** GET /_ping over the unix socket; the body ("OK") or undefined while dockerd is not up. */
function ping(socketPath: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET', timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        resolve(body);
      });
    });
    req.on('error', () => {
      resolve(undefined);
    });
    req.on('timeout', () => {
      req.destroy();
    });
    req.end();
  });
}
