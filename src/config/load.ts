/**
 * Loads the configuration: YAML file, then `DOCXY_*` environment variables, then CLI flags, each
 * overriding the one before, validated by the one schema.
 *
 * Environment mapping: `DOCXY_` + the key path in upper case with `__` between levels, e.g.
 * `DOCXY_PUBLIC_URL`, `DOCXY_UPSTREAM__URL`, `DOCXY_UPSTREAM__TIMEOUTS__CONNECT`. Values are read as
 * YAML scalars (`true`, `30s`, `5000`). `DOCXY_UPSTREAM` and `DOCXY_CONFIG` are shorthands for the
 * upstream URL and the file, like the flags.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { resolveCluster, type ResolvedCluster } from './cluster-schema.ts';
import { configSchema, formatIssues, type ConfigFile } from './schema.ts';
import { resolveStorage, type ResolvedStorage } from './storage-schema.ts';
import { resolveUpstreams, type ResolvedUpstreams } from './upstreams.ts';

/** The configuration the app runs with: the file's keys, upstreams and listeners resolved. */
export type Config = Omit<
  ConfigFile,
  'upstream' | 'upstreams' | 'default_upstream' | 'listen' | 'http_listen' | 'storage' | 'cluster'
> &
  ResolvedUpstreams & {
    readonly storage: ResolvedStorage;
    /** The internal endpoint of a fleet, when configured. */
    readonly cluster: ResolvedCluster | undefined;
    readonly listen: string;
    /** The plain HTTP redirect/ACME listener, when TLS is on and it is not disabled. */
    readonly http_listen: string | undefined;
    readonly tlsEnabled: boolean;
  };

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(source: string, problems: readonly string[]) {
    super(`invalid configuration (${source}):\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Tree = Record<string, unknown>;

function isTree(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function setPath(tree: Tree, path: readonly string[], value: unknown): void {
  let node = tree;
  path.forEach((key, i) => {
    if (i === path.length - 1) {
      node[key] = value;
      return;
    }
    const next = node[key];
    if (!isTree(next)) node[key] = {};
    node = node[key] as Tree;
  });
}

/** Overlays `top` on `base`, merging nested objects; arrays and scalars replace. */
export function deepMerge(base: Tree, top: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(top)) {
    const b = out[k];
    out[k] = isTree(b) && isTree(v) ? deepMerge(b, v) : v;
  }
  return out;
}

export function readConfigFile(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read file: ${(err as Error).message}`]);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(file, [`not valid YAML: ${(err as Error).message}`]);
  }
  if (doc === null || doc === undefined) return {};
  if (!isTree(doc)) throw new ConfigError(file, ['(root): must be a mapping of keys']);
  return doc;
}

export function envOverrides(env: NodeJS.ProcessEnv): Tree {
  const tree: Tree = {};
  for (const [k, raw] of Object.entries(env)) {
    if (!k.startsWith('DOCXY_') || raw === undefined || k === 'DOCXY_CONFIG') continue;
    if (k === 'DOCXY_UPSTREAM') {
      setPath(tree, ['upstream', 'url'], raw);
      continue;
    }
    // The seed's names for the certificate and key files.
    if (k === 'DOCXY_CERT_PATH' || k === 'DOCXY_KEY_PATH') {
      setPath(tree, ['tls', k === 'DOCXY_CERT_PATH' ? 'cert' : 'key'], raw);
      continue;
    }
    const path = k
      .slice('DOCXY_'.length)
      .toLowerCase()
      .split('__')
      .filter((p) => p !== '');
    if (path.length === 0) continue;
    let value: unknown = raw;
    try {
      value = parseYaml(raw);
    } catch {
      /* keep the raw string */
    }
    // URLs and host:port stay strings whatever YAML makes of them.
    if (typeof value !== 'string' && /[:/]/.test(raw)) value = raw;
    setPath(tree, path, value);
  }
  return tree;
}

export interface Flags {
  config?: string;
  listen?: string;
  publicUrl?: string;
  upstream?: string;
  logLevel?: string;
  data?: string;
}

export function flagOverrides(flags: Flags): Tree {
  const tree: Tree = {};
  if (flags.listen !== undefined) tree.listen = flags.listen;
  if (flags.publicUrl !== undefined) tree.public_url = flags.publicUrl;
  if (flags.logLevel !== undefined) tree.log_level = flags.logLevel;
  if (flags.upstream !== undefined) tree.upstream = { url: flags.upstream };
  if (flags.data !== undefined) tree.data = flags.data;
  return tree;
}

export function validateConfig(tree: unknown, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  const res = configSchema.safeParse(tree);
  if (!res.success) throw new ConfigError(source, formatIssues(res.error));
  const problems: string[] = [];
  const {
    upstream: _u,
    upstreams: _us,
    default_upstream: _d,
    listen,
    http_listen: httpListen,
    ...rest
  } = res.data;
  const resolved = resolveUpstreams(res.data, env, problems);
  const storage = resolveStorage(rest.storage, env, problems);
  const tlsEnabled = rest.tls !== undefined && (rest.tls.cert !== undefined || rest.tls.acme !== undefined);
  const publicListen = listen ?? (tlsEnabled ? '0.0.0.0:443' : '0.0.0.0:5000');
  const cluster = resolveCluster(
    rest.cluster,
    { redis: rest.coordination.redis !== undefined, listen: publicListen },
    env,
    problems,
  );
  if (problems.length > 0) throw new ConfigError(source, problems);
  return {
    ...rest,
    ...resolved,
    storage,
    cluster,
    tlsEnabled,
    listen: publicListen,
    http_listen: !tlsEnabled || httpListen === false ? undefined : (httpListen ?? '0.0.0.0:80'),
  };
}

/** File < environment < flags. */
export function loadConfig(flags: Flags, env: NodeJS.ProcessEnv = process.env): Config {
  const file = flags.config ?? env.DOCXY_CONFIG;
  const fromFile = file === undefined ? {} : readConfigFile(file);
  const merged = deepMerge(deepMerge(fromFile, envOverrides(env)), flagOverrides(flags));
  return validateConfig(merged, file ?? 'defaults, environment and flags', env);
}
