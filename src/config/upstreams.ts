/**
 * Resolves the configured upstreams into what the app runs with: presets applied, the seed's
 * `upstream:` shorthand (and `--upstream`) merged into the default upstream, defaults filled,
 * secrets read from their files or variables, names, prefixes and hosts checked to be unique.
 * Problems name their key path (`upstreams[1].credentials: …`).
 */
import { readFileSync } from 'node:fs';
import { resolveSecret } from './secret.ts';
import { presets, type ConfigFile, type UpstreamEntry } from './schema.ts';

export interface ResolvedUpstream {
  /** The registry as clients name it: `docker.io`, `ghcr.io`. Keys the cache and the logs. */
  readonly name: string;
  readonly url: string;
  /** Lower-case host names (no port) whose requests route here. */
  readonly hosts: readonly string[];
  readonly prefix: string;
  readonly libraryPrefix: boolean;
  readonly credentials?: { readonly username: string; readonly password: string };
  readonly mirrors: readonly string[];
  readonly authHosts: readonly string[];
  readonly timeouts: { readonly connect: number; readonly headers: number; readonly idle: number };
  readonly tagTtlMs: number;
  readonly tls: { readonly ca?: string; readonly insecure: boolean };
  readonly proxy?: string;
}

export interface ResolvedUpstreams {
  readonly upstreams: readonly ResolvedUpstream[];
  readonly defaultUpstream: string;
}

const defaultTimeouts = { connect: 10_000, headers: 30_000, idle: 60_000 };

export function resolveUpstreams(
  cfg: Pick<ConfigFile, 'upstreams' | 'upstream' | 'default_upstream'>,
  env: NodeJS.ProcessEnv,
  problems: string[],
): ResolvedUpstreams {
  const entries: UpstreamEntry[] = cfg.upstreams ?? [
    { name: 'docker.io', hosts: [], mirrors: [], auth_hosts: [] },
  ];
  const defaultName = cfg.default_upstream ?? entries[0]?.name ?? 'docker.io';
  const defaultIndex = entries.findIndex((e) => e.name === defaultName);
  if (defaultIndex < 0) problems.push(`default_upstream: names no configured upstream (${defaultName})`);

  const out: ResolvedUpstream[] = [];
  entries.forEach((raw, i) => {
    const at = cfg.upstreams === undefined ? 'upstream' : `upstreams[${i}]`;
    const e: Partial<UpstreamEntry> & { name: string } =
      i === defaultIndex && cfg.upstream !== undefined ? { ...raw, ...cfg.upstream } : raw;
    const presetName = e.preset ?? (e.name in presets ? (e.name as keyof typeof presets) : undefined);
    const preset = presetName === undefined ? undefined : presets[presetName];
    const url = e.url ?? preset?.url;
    if (url === undefined) {
      problems.push(`${at}.url: required (or a preset)`);
      return;
    }
    let credentials: ResolvedUpstream['credentials'];
    if (e.credentials !== undefined) {
      const c = e.credentials;
      const password = resolveSecret(
        `${at}.credentials.password`,
        { value: c.password, file: c.password_file, env: c.password_env },
        env,
        problems,
      );
      if (password !== undefined) credentials = { username: c.username, password };
    }
    let ca: string | undefined;
    if (e.tls?.ca_file !== undefined) {
      try {
        ca = readFileSync(e.tls.ca_file, 'utf8');
      } catch (err) {
        problems.push(`${at}.tls.ca_file: cannot read ${e.tls.ca_file} (${(err as Error).message})`);
      }
    }
    out.push({
      name: e.name,
      url,
      hosts: (e.hosts ?? []).map((h) => h.toLowerCase()),
      prefix: e.prefix ?? e.name,
      libraryPrefix: e.library_prefix ?? preset?.library_prefix ?? false,
      credentials,
      mirrors: e.mirrors ?? [],
      authHosts: (e.auth_hosts ?? []).map((h) => h.toLowerCase()),
      timeouts: e.timeouts ?? defaultTimeouts,
      tagTtlMs: e.tag_ttl ?? 300_000,
      tls: { ca, insecure: e.tls?.insecure ?? false },
      proxy: e.proxy,
    });
  });

  const seen = {
    name: new Map<string, number>(),
    prefix: new Map<string, number>(),
    host: new Map<string, number>(),
  };
  out.forEach((u, i) => {
    const check = (kind: keyof typeof seen, value: string): void => {
      const other = seen[kind].get(value);
      if (other !== undefined)
        problems.push(
          `upstreams[${i}].${kind === 'host' ? 'hosts' : kind}: ${value} is already used by upstreams[${other}]`,
        );
      else seen[kind].set(value, i);
    };
    check('name', u.name);
    check('prefix', u.prefix);
    for (const h of u.hosts) check('host', h);
  });
  return { upstreams: out, defaultUpstream: defaultName };
}
