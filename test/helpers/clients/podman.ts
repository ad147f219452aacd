/**
 * podman 4.3 (no daemon: every call is a fresh process) with private storage and configuration;
 * see containers-image.ts for how it is kept off the host.
 *
 * Each command runs as `podman --root … --runroot … --storage-driver vfs --tmpdir …
 * --events-backend none --cgroup-manager cgroupfs --network-config-dir … --registries-conf …`
 * inside the sandbox; the same settings are also in the private containers.conf/storage.conf,
 * belt and braces. "Starting" only creates the directories (a few ms); the first command also
 * initialises the storage (about 0.1 s).
 *
 * Mirror behaviour observed (containers/image 5.23): with a `[[registry.mirror]]` for docker.io,
 * `podman pull docker.io/library/tiny:1` (or `tiny:1`) asks the mirror for
 * `/v2/library/tiny/manifests/1` (no `ns` parameter) after a TLS probe and `GET /v2/`; on failure it
 * tries the registry's own location next.
 */
import { join } from 'node:path';

import { makeTmpDir } from '../tmp.ts';
import { runCommand, type CmdResult } from './common.ts';
import { makeContainersHome, registriesConfMirror, type ContainersHome } from './containers-image.ts';

export { registriesConfMirror };

export interface PodmanPullOptions {
  /** registries.conf text (see `registriesConfMirror`); kept for later commands too. */
  registriesConf?: string;
  /** `--tls-verify`; default true (a mirror marked `insecure` needs no flag). */
  tlsVerify?: boolean;
  /** `--platform`, e.g. `linux/arm64`. */
  platform?: string;
  /** `--creds user:password`. */
  creds?: string;
  timeoutMs?: number;
}

export interface Podman {
  readonly dir: string;
  readonly home: ContainersHome;
  /** Runs `podman <global flags> …args` in the sandbox. */
  podman(args: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<CmdResult>;
  pull(ref: string, opts?: PodmanPullOptions): Promise<CmdResult>;
  /** The image ID (config digest, hex without `sha256:`); rejects when the image is absent. */
  imageId(ref: string): Promise<string>;
  /** The manifest digest the image was pulled by (`sha256:…`). */
  imageDigest(ref: string): Promise<string>;
  removeImage(ref: string): Promise<CmdResult>;
  login(server: string, user: string, password: string, opts?: { tlsVerify?: boolean }): Promise<CmdResult>;
  /** Host paths podman tried to write (kept in the sandbox instead). */
  leaks(): string[];
  /** Removes every directory (podman leaves no process behind). */
  stop(): Promise<void>;
}

export async function startPodman(): Promise<Podman> {
  const tmp = makeTmpDir('podman');
  const dir = tmp.path;
  const home = await makeContainersHome(dir);
  const globals = [
    `--root=${home.storageRoot}`,
    `--runroot=${home.runRoot}`,
    '--storage-driver=vfs',
    `--tmpdir=${join(dir, 'libpod-tmp')}`,
    '--events-backend=none',
    '--cgroup-manager=cgroupfs',
    `--network-config-dir=${join(dir, 'net')}`,
    `--registries-conf=${home.registriesConf}`,
  ];
  const podman = (
    args: readonly string[],
    o: { input?: string; timeoutMs?: number } = {},
  ): Promise<CmdResult> => {
    const w = home.sandbox.wrap('podman', [...globals, ...args]);
    return runCommand(w.cmd, w.args, { env: home.env, input: o.input, timeoutMs: o.timeoutMs ?? 120_000 });
  };
  const inspect = async (ref: string, format: string): Promise<string> => {
    const r = await podman(['image', 'inspect', '--format', format, ref]);
    if (r.code !== 0) throw new Error(`podman image inspect ${ref}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };
  return {
    dir,
    home,
    podman,
    pull: (ref, o = {}) => {
      if (o.registriesConf !== undefined) home.setRegistriesConf(o.registriesConf);
      return podman(
        [
          'pull',
          // Hidden flag in 4.3; the private /etc/containers/policy.json says the same.
          `--signature-policy=${home.policy}`,
          ...(o.tlsVerify !== undefined ? [`--tls-verify=${String(o.tlsVerify)}`] : []),
          ...(o.platform !== undefined ? ['--platform', o.platform] : []),
          ...(o.creds !== undefined ? ['--creds', o.creds] : []),
          ref,
        ],
        { timeoutMs: o.timeoutMs ?? 120_000 },
      );
    },
    imageId: (ref) => inspect(ref, '{{.Id}}'),
    imageDigest: (ref) => inspect(ref, '{{.Digest}}'),
    removeImage: (ref) => podman(['rmi', '--force', ref]),
    login: (server, user, password, o = {}) =>
      podman(
        [
          'login',
          ...(o.tlsVerify !== undefined ? [`--tls-verify=${String(o.tlsVerify)}`] : []),
          `--username=${user}`,
          '--password-stdin',
          server,
        ],
        { input: password },
      ),
    leaks: () => home.sandbox.leaks(),
    stop: () => {
      tmp.remove();
      return Promise.resolve();
    },
  };
}
