/**
 * What podman and skopeo share: both are built on containers/image (5.23 here) and
 * containers/storage, which read /etc/containers/{registries.conf,registries.conf.d,policy.json,
 * containers.conf,storage.conf}, ~/.config/containers, and write /var/lib/containers,
 * /run/containers, /var/cache/containers.
 *
 * `makeContainersHome()` builds a private configuration directory and the environment that points
 * both tools at it. Flags and variables alone are NOT enough — observed with podman 4.3.1 and
 * skopeo 1.9.3 even with --root/--runroot/--tmpdir/--registries-conf/--signature-policy/
 * CONTAINERS_*_CONF/REGISTRY_AUTH_FILE/HOME/XDG_* set:
 *   - every pull or copy writes /var/lib/containers/cache/blob-info-cache-v1.boltdb (root's
 *     BlobInfoCacheDir has no flag or variable);
 *   - short-name resolution locks /var/cache/containers/short-name-aliases.conf.lock;
 *   - podman locks /etc/cni/net.d/cni.lock unless --network-config-dir is given.
 * So every command also runs in the sandbox (common.ts), with the private directory bind-mounted
 * over /etc/containers: the host's drop-ins (registries.conf.d/shortnames.conf) and policy can't
 * leak in, and the stray writes above land in throw-away overlays.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { Sandbox, baseEnv, deadProxyEnv } from './common.ts';

/** A signature policy that accepts everything (test images are unsigned). */
export const INSECURE_POLICY = `${JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }, null, 2)}\n`;

/**
 * registries.conf (v2 format) that sends pulls for `registry` (e.g. `docker.io`) to a mirror first.
 * `mirrorLocation` is `host[:port][/path]` without a scheme; `insecure = true` allows plain HTTP
 * (containers/image still tries TLS first, then falls back to HTTP). Short names resolve against
 * docker.io. A mirror for docker.io receives `library/` names, like Docker's `registry-mirrors`.
 * When the mirror fails, containers/image falls back to `location` (the real registry — made
 * unreachable here by the dead proxy).
 */
export function registriesConfMirror(registry: string, mirrorLocation: string, insecure = true): string {
  if (mirrorLocation.includes('://')) throw new Error(`mirror location takes no scheme: ${mirrorLocation}`);
  const q = (s: string): string => JSON.stringify(s);
  return [
    'unqualified-search-registries = ["docker.io"]',
    // One search registry means no interactive short-name prompt; be explicit anyway.
    'short-name-mode = "permissive"',
    '',
    '[[registry]]',
    `prefix = ${q(registry)}`,
    `location = ${q(registry)}`,
    '',
    '[[registry.mirror]]',
    `location = ${q(mirrorLocation)}`,
    `insecure = ${insecure ? 'true' : 'false'}`,
    '',
  ].join('\n');
}

export interface ContainersHome {
  /** The private stand-in for /etc/containers. */
  readonly etc: string;
  readonly registriesConf: string;
  readonly policy: string;
  readonly authFile: string;
  readonly storageRoot: string;
  readonly runRoot: string;
  readonly tmp: string;
  readonly env: NodeJS.ProcessEnv;
  readonly sandbox: Sandbox;
  /** Replaces registries.conf (the same file /etc/containers/registries.conf shows in the sandbox). */
  setRegistriesConf(text: string): void;
}

export async function makeContainersHome(dir: string): Promise<ContainersHome> {
  const d = (name: string): string => {
    const p = join(dir, name);
    mkdirSync(p, { recursive: true });
    return p;
  };
  const etc = d('etc-containers');
  const storageRoot = d('storage');
  const runRoot = d('runroot');
  const tmp = d('tmp');
  const home = d('home');
  const registriesConf = join(etc, 'registries.conf');
  const policy = join(etc, 'policy.json');
  const authFile = join(dir, 'auth.json');
  const q = (s: string): string => JSON.stringify(s);

  // No search registries until a test sets a mirror: a short name then fails fast.
  writeFileSync(registriesConf, 'unqualified-search-registries = []\n');
  writeFileSync(policy, INSECURE_POLICY);
  // containers/image refuses an auth file named by REGISTRY_AUTH_FILE that does not exist.
  writeFileSync(authFile, '{"auths":{}}\n');
  writeFileSync(
    join(etc, 'storage.conf'),
    ['[storage]', 'driver = "vfs"', `graphroot = ${q(storageRoot)}`, `runroot = ${q(runRoot)}`, ''].join(
      '\n',
    ),
  );
  writeFileSync(
    join(etc, 'containers.conf'),
    [
      '[engine]',
      'events_logger = "none"',
      'cgroup_manager = "cgroupfs"',
      `tmp_dir = ${q(d('libpod-tmp'))}`,
      '[network]',
      `network_config_dir = ${q(d('net'))}`,
      '',
    ].join('\n'),
  );

  const env = baseEnv({
    ...(await deadProxyEnv()),
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_DATA_HOME: join(home, '.local', 'share'),
    XDG_CACHE_HOME: join(home, '.cache'),
    XDG_RUNTIME_DIR: d('xdg-run'),
    // Big temporary files (layer downloads) go to $TMPDIR, else /var/tmp.
    TMPDIR: tmp,
    CONTAINERS_REGISTRIES_CONF: registriesConf,
    CONTAINERS_CONF: join(etc, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: join(etc, 'storage.conf'),
    REGISTRY_AUTH_FILE: authFile,
  });
  const sandbox = new Sandbox(d('sandbox'), { binds: [{ source: etc, target: '/etc/containers' }] });
  return {
    etc,
    registriesConf,
    policy,
    authFile,
    storageRoot,
    runRoot,
    tmp,
    env,
    sandbox,
    setRegistriesConf: (text) => {
      writeFileSync(registriesConf, text);
    },
  };
}
