/**
 * `docxy client-config [--upstream NAME…]`: ready-to-use client snippets pointing at this Docxy —
 * the same text the tests feed to the real clients. containerd (and k3s) name the registry with
 * `?ns=`; podman and CRI-O reach a non-default upstream through its path prefix; Docker's
 * `registry-mirrors` only ever applies to Docker Hub.
 */
import type { Config } from '../config/load.ts';
import type { ResolvedUpstream } from '../config/upstreams.ts';

export interface ClientConfigs {
  readonly dockerDaemonJson: string;
  /** Folder name under certs.d (registry name, or `_default`) -> hosts.toml text. */
  readonly containerdHosts: Readonly<Record<string, string>>;
  readonly podmanRegistriesConf: string;
  readonly k3sRegistriesYaml: string;
}

/** The registry's own address, as containerd's fallback `server` (never Docxy's upstream override). */
function canonicalServer(name: string): string {
  return name === 'docker.io' ? 'https://registry-1.docker.io' : `https://${name}`;
}

function hostsToml(mirror: string, server?: string): string {
  return `${server === undefined ? '' : `server = "${server}"\n\n`}[host."${mirror}"]\n  capabilities = ["pull", "resolve"]\n`;
}

export function clientConfigs(
  publicUrl: string,
  upstreams: readonly ResolvedUpstream[],
  defaultUpstream: string,
): ClientConfigs {
  const url = new URL(publicUrl);
  const base = publicUrl.replace(/\/+$/, '');
  const insecure = url.protocol === 'http:';
  const hostPort = url.host + url.pathname.replace(/\/+$/, '');

  const hub = upstreams.find((u) => u.name === 'docker.io');
  const daemon: Record<string, string[]> = {};
  // A registry mirror must be a bare scheme://host[:port] and gets Docker Hub names as they are:
  // it only works when Docker Hub is Docxy's default upstream.
  if (hub !== undefined && hub.name === defaultUpstream) daemon['registry-mirrors'] = [base];
  if (insecure) daemon['insecure-registries'] = [url.host];

  const containerdHosts: Record<string, string> = { _default: hostsToml(base) };
  for (const u of upstreams) containerdHosts[u.name] = hostsToml(base, canonicalServer(u.name));

  const podman = [`unqualified-search-registries = [${hub === undefined ? '' : '"docker.io"'}]`, ''];
  for (const u of upstreams) {
    const location = u.name === defaultUpstream ? hostPort : `${hostPort}/${u.prefix}`;
    podman.push(
      '[[registry]]',
      `prefix = "${u.name}"`,
      `location = "${u.name === 'docker.io' ? 'registry-1.docker.io' : u.name}"`,
      '',
      '[[registry.mirror]]',
      `location = "${location}"`,
      ...(insecure ? ['insecure = true'] : []),
      '',
    );
  }

  const k3s = [
    'mirrors:',
    ...upstreams.flatMap((u) => [`  "${u.name}":`, '    endpoint:', `      - "${base}"`]),
  ];

  return {
    dockerDaemonJson: `${JSON.stringify(daemon, null, 2)}\n`,
    containerdHosts,
    podmanRegistriesConf: podman.join('\n'),
    k3sRegistriesYaml: `${k3s.join('\n')}\n`,
  };
}

export function printClientConfig(
  config: Config,
  publicUrl: string,
  only: readonly string[],
  out: (s: string) => void,
): number {
  const unknown = only.filter((n) => !config.upstreams.some((u) => u.name === n));
  if (unknown.length > 0) {
    out(`unknown upstream(s): ${unknown.join(', ')}\n`);
    return 2;
  }
  const chosen = only.length === 0 ? config.upstreams : config.upstreams.filter((u) => only.includes(u.name));
  const c = clientConfigs(publicUrl, chosen, config.defaultUpstream);
  out(
    `# Docker: /etc/docker/daemon.json (registry-mirrors applies to Docker Hub images only)\n${c.dockerDaemonJson}\n`,
  );
  for (const [dir, text] of Object.entries(c.containerdHosts)) {
    out(`# containerd: /etc/containerd/certs.d/${dir}/hosts.toml\n${text}\n`);
  }
  out(`# podman, skopeo, CRI-O: /etc/containers/registries.conf\n${c.podmanRegistriesConf}\n`);
  out(`# k3s: /etc/rancher/k3s/registries.yaml\n${c.k3sRegistriesYaml}`);
  return 0;
}
