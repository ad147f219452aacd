/**
 * A private containerd 1.6 daemon and the `ctr` client, for pulling through a mirror configured
 * with containerd's `hosts.toml` files (`ctr images pull --hosts-dir DIR`).
 *
 * Isolation: a generated config puts root, state, temp, the `opt` plugin and every socket (gRPC,
 * ttrpc, debug) under a temp dir, and disables the CRI plugin (not needed for pulls; it would look
 * for CNI config and start its own sandbox machinery). The daemon also runs inside the sandbox (see
 * common.ts): its snapshotter mounts stay in that private namespace, and anything a plugin writes
 * to a default path lands in a throw-away overlay (`leaks()`; empty in practice).
 *
 * In containerd 1.6 `ctr` itself resolves and fetches (the daemon only stores content and
 * unpacks), so the dead HTTP(S)_PROXY is set for `ctr`: a failed mirror falls back to `server`
 * (https://registry-1.docker.io), which then fails at once with "proxyconnect … refused".
 *
 * Snapshotter: overlayfs works here (ext4 /tmp), so `ctr` keeps its default; pass
 * `snapshotter: 'native'` where overlayfs is unavailable.
 *
 * Start-up takes about 0.05–0.3 s here (until `ctr version` answers); stop under 0.1 s.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { startProcess, waitFor } from '../process.ts';
import { makeTmpDir } from '../tmp.ts';
import { Sandbox, baseEnv, deadProxyEnv, runCommand, type CmdResult } from './common.ts';

export interface ContainerdOptions {
  /**
   * containerd's log level (default `info`). Registry requests are made by `ctr`, not the daemon:
   * to see them, use `httpDump` on the pull.
   */
  logLevel?: 'debug' | 'info' | 'warn';
  startTimeoutMs?: number;
}

export interface CtrPullOptions {
  /** The `--hosts-dir` (see `writeHostsToml`). */
  hostsDir: string;
  /** `--platform`, e.g. `linux/arm64`. */
  platform?: string;
  /** `--all-platforms`: fetch every platform's manifest and blobs. */
  allPlatforms?: boolean;
  /** `--user user:password` for registries that require a login. */
  user?: string;
  /** `--snapshotter`; default: containerd's default (overlayfs). */
  snapshotter?: 'overlayfs' | 'native';
  /** `--http-dump`: print every request/response (headers) to stderr. */
  httpDump?: boolean;
  timeoutMs?: number;
}

export interface Containerd {
  /** The gRPC socket path (`ctr -a <address>`). */
  readonly address: string;
  readonly dir: string;
  readonly pid: number;
  /** How long start-up took, in ms. */
  readonly startMs: number;
  log(): string;
  /** Runs `ctr -a <address> …`. */
  ctr(args: readonly string[], opts?: { timeoutMs?: number }): Promise<CmdResult>;
  pull(ref: string, opts: CtrPullOptions): Promise<CmdResult>;
  /** The manifest (or index) digest the image `ref` points to, or undefined if there is no such image. */
  imageDigest(ref: string): Promise<string | undefined>;
  removeImage(ref: string): Promise<CmdResult>;
  leaks(): string[];
  /** Stops containerd by PID and removes its directories. */
  stop(): Promise<void>;
}

export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  const started = Date.now();
  const tmp = makeTmpDir('containerd');
  const dir = tmp.path;
  const d = (name: string): string => {
    const p = join(dir, name);
    mkdirSync(p, { recursive: true });
    return p;
  };
  const address = join(dir, 'containerd.sock');
  const config = join(dir, 'config.toml');
  // Config version 2 (containerd 1.5+). JSON.stringify yields valid TOML basic strings for paths.
  const q = (s: string): string => JSON.stringify(s);
  writeFileSync(
    config,
    [
      'version = 2',
      `root = ${q(d('root'))}`,
      `state = ${q(d('state'))}`,
      `temp = ${q(d('tmp'))}`,
      'plugin_dir = ""',
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '',
      '[grpc]',
      `  address = ${q(address)}`,
      '[ttrpc]',
      `  address = ${q(`${address}.ttrpc`)}`,
      '[debug]',
      `  address = ${q(join(dir, 'debug.sock'))}`,
      `  level = ${q(opts.logLevel ?? 'info')}`,
      '',
      // Its default is /opt/containerd, on the host.
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${q(d('opt'))}`,
      '',
    ].join('\n'),
  );

  const proxy = await deadProxyEnv();
  const env = baseEnv({ ...proxy, HOME: d('home'), TMPDIR: join(dir, 'tmp') });
  const sandbox = new Sandbox(d('sandbox'));
  const wrapped = sandbox.wrap('containerd', ['--config', config]);
  const proc = startProcess('containerd', wrapped.cmd, wrapped.args, {
    logFile: join(dir, 'containerd.log'),
    env,
  });

  const ctr = (args: readonly string[], o: { timeoutMs?: number } = {}): Promise<CmdResult> =>
    runCommand('ctr', ['--address', address, ...args], { env, timeoutMs: o.timeoutMs ?? 60_000 });

  const stop = async (): Promise<void> => {
    await proc.stop(10_000);
    tmp.remove();
  };

  try {
    await waitFor(
      'containerd to answer',
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`containerd exited early:\n${proc.log()}`);
        return (await ctr(['version'], { timeoutMs: 5000 })).code === 0;
      },
      opts.startTimeoutMs ?? 20_000,
    );
  } catch (e) {
    await stop();
    throw e;
  }
  const startMs = Date.now() - started;

  return {
    address,
    dir,
    pid: proc.pid,
    startMs,
    log: () => proc.log(),
    ctr,
    pull: (ref, o) =>
      ctr(
        [
          'images',
          'pull',
          '--hosts-dir',
          o.hostsDir,
          ...(o.platform !== undefined ? ['--platform', o.platform] : []),
          ...(o.allPlatforms === true ? ['--all-platforms'] : []),
          ...(o.user !== undefined ? ['--user', o.user] : []),
          ...(o.snapshotter !== undefined ? ['--snapshotter', o.snapshotter] : []),
          ...(o.httpDump === true ? ['--http-dump'] : []),
          ref,
        ],
        { timeoutMs: o.timeoutMs ?? 120_000 },
      ),
    imageDigest: async (ref) => {
      // `ctr images ls` prints a table: REF TYPE DIGEST SIZE PLATFORMS LABELS. The `name==` filter
      // keeps it to the one image; refs never contain spaces, so splitting on whitespace is safe.
      const r = await ctr(['images', 'ls', `name==${ref}`]);
      if (r.code !== 0) throw new Error(`ctr images ls: ${r.stderr}`);
      for (const line of r.stdout.split('\n').slice(1)) {
        const [name, , digest] = line.trim().split(/\s+/);
        if (name === ref && digest?.startsWith('sha256:') === true) return digest;
      }
      return undefined;
    },
    removeImage: (ref) => ctr(['images', 'rm', '--sync', ref]),
    leaks: () => sandbox.leaks(),
    stop,
  };
}

export interface HostsTomlOptions {
  /**
   * The `server` line: the upstream tried after every `[host]` failed. Default:
   * `https://registry-1.docker.io` for docker.io, `https://<registryHost>` for other registries,
   * and none for `_default` (containerd then uses the image's own registry).
   */
  defaultServer?: string;
  /** `override_path = true`: the mirror URL carries the full API path prefix (no `/v2` added). */
  overridePath?: boolean;
  /** Capabilities of the mirror host; default `["pull", "resolve"]`. */
  capabilities?: readonly ('pull' | 'resolve' | 'push')[];
}

/**
 * Writes `<dir>/<registryHost>/hosts.toml` sending pulls of `registryHost` (e.g. `docker.io`, or
 * `_default` for every registry without a directory of its own) to `mirrorUrl` and returns its path.
 *
 * Plain HTTP in containerd 1.6: the scheme of the `[host."…"]` key decides. `http://127.0.0.1:PORT`
 * works as is — no `--plain-http`, no `skip_verify` (that only relaxes TLS verification, it never
 * switches to HTTP). A key without a scheme means https, and `ctr --plain-http` does NOT change that
 * for hosts listed in hosts.toml ("server gave HTTP response to HTTPS client"), so this function
 * insists on an explicit scheme. (Pulling `127.0.0.1:PORT/name:tag` directly, with no hosts.toml
 * for that host, also works over HTTP: containerd treats localhost registries as plain HTTP.)
 * Requests to a mirror carry `?ns=<registry host>`.
 */
export function writeHostsToml(
  dir: string,
  registryHost: string,
  mirrorUrl: string,
  opts: HostsTomlOptions = {},
): string {
  if (!/^https?:\/\//.test(mirrorUrl)) throw new Error(`mirror URL needs an explicit scheme: ${mirrorUrl}`);
  const server =
    opts.defaultServer ??
    (registryHost === '_default'
      ? undefined
      : registryHost === 'docker.io'
        ? 'https://registry-1.docker.io'
        : `https://${registryHost}`);
  const q = (s: string): string => JSON.stringify(s);
  const caps = (opts.capabilities ?? ['pull', 'resolve']).map(q).join(', ');
  const lines = [
    ...(server !== undefined ? [`server = ${q(server)}`, ''] : []),
    `[host.${q(mirrorUrl)}]`,
    `  capabilities = [${caps}]`,
    ...(opts.overridePath === true ? ['  override_path = true'] : []),
    '',
  ];
  const hostDir = join(dir, registryHost);
  mkdirSync(hostDir, { recursive: true });
  const file = join(hostDir, 'hosts.toml');
  writeFileSync(file, lines.join('\n'));
  return file;
}
