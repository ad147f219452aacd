/**
 * skopeo 1.9 with private configuration; see containers-image.ts for how it is kept off the host.
 * Every command runs as `skopeo --policy … --registries-conf … --tmpdir … <cmd>` inside the sandbox.
 * "Starting" only creates the directories (a few ms).
 *
 * Quirks observed:
 * - `skopeo inspect` also lists the repository's tags, and containers/image sends that request to
 *   the registry itself, never to a `[[registry.mirror]]`: inspecting `docker://docker.io/…`
 *   through a mirror needs `noTags` (`--no-tags`), or it fails on registry-1.docker.io.
 * - `copy` needs the TLS switch per side: `--src-tls-verify=false` / `--dest-tls-verify=false`.
 */
import { makeTmpDir } from '../tmp.ts';
import { runCommand, type CmdResult } from './common.ts';
import { makeContainersHome, registriesConfMirror, type ContainersHome } from './containers-image.ts';

export { registriesConfMirror };

export interface SkopeoInspectOptions {
  /**
   * `--tls-verify`; default false (the registries in these tests speak plain HTTP).
   * `'registries.conf'` passes no flag, so each endpoint's `insecure` setting decides.
   */
  tlsVerify?: boolean | 'registries.conf';
  /** `--no-tags`: skip the tags list (required when going through a mirror). */
  noTags?: boolean;
  /** `--config`, for `inspectRaw` only: the config blob instead of the manifest. */
  config?: boolean;
  /** `--creds user:password`. */
  creds?: string;
  /** registries.conf text, kept for later commands too. */
  registriesConf?: string;
  /** `--override-arch` / `--override-os` / `--override-variant` for picking from an index. */
  arch?: string;
  os?: string;
  variant?: string;
}

/** The fields of `skopeo inspect` output these tests use (the rest is kept as parsed). */
export interface SkopeoInspect {
  Name: string;
  Digest: string;
  RepoTags?: string[] | null;
  Architecture?: string;
  Os?: string;
  Layers?: string[] | null;
  [key: string]: unknown;
}

export interface SkopeoCopyOptions {
  /** `--all`: copy every image of a list/index. */
  all?: boolean;
  /** `--preserve-digests`: fail rather than change a manifest (no recompression or conversion). */
  preserveDigests?: boolean;
  /** `--src-tls-verify`; default false. */
  srcTlsVerify?: boolean;
  /** `--dest-tls-verify`; default false. */
  destTlsVerify?: boolean;
  srcCreds?: string;
  destCreds?: string;
  /** `--format oci|v2s2`. */
  format?: 'oci' | 'v2s2';
  timeoutMs?: number;
}

export interface Skopeo {
  readonly dir: string;
  readonly home: ContainersHome;
  /** Runs `skopeo <global flags> …args` in the sandbox. */
  skopeo(args: readonly string[], opts?: { timeoutMs?: number }): Promise<CmdResult>;
  /** `skopeo inspect` parsed; rejects on failure. */
  inspect(ref: string, opts?: Omit<SkopeoInspectOptions, 'config'>): Promise<SkopeoInspect>;
  /** `skopeo inspect --raw`: the manifest (or, with `config`, config) exactly as served. */
  inspectRaw(ref: string, opts?: SkopeoInspectOptions): Promise<string>;
  copy(src: string, dest: string, opts?: SkopeoCopyOptions): Promise<CmdResult>;
  leaks(): string[];
  /** Removes every directory (skopeo leaves no process behind). */
  stop(): Promise<void>;
}

export async function startSkopeo(): Promise<Skopeo> {
  const tmp = makeTmpDir('skopeo');
  const dir = tmp.path;
  const home = await makeContainersHome(dir);
  const globals = ['--policy', home.policy, '--registries-conf', home.registriesConf, '--tmpdir', home.tmp];
  const skopeo = (args: readonly string[], o: { timeoutMs?: number } = {}): Promise<CmdResult> => {
    const w = home.sandbox.wrap('skopeo', [...globals, ...args]);
    return runCommand(w.cmd, w.args, { env: home.env, timeoutMs: o.timeoutMs ?? 120_000 });
  };
  const inspectArgs = (ref: string, o: SkopeoInspectOptions, raw: boolean): string[] => {
    if (o.registriesConf !== undefined) home.setRegistriesConf(o.registriesConf);
    return [
      ...(o.arch !== undefined ? ['--override-arch', o.arch] : []),
      ...(o.os !== undefined ? ['--override-os', o.os] : []),
      ...(o.variant !== undefined ? ['--override-variant', o.variant] : []),
      'inspect',
      ...(o.tlsVerify === 'registries.conf' ? [] : [`--tls-verify=${String(o.tlsVerify ?? false)}`]),
      ...(raw ? ['--raw'] : []),
      ...(o.noTags === true ? ['--no-tags'] : []),
      ...(o.config === true ? ['--config'] : []),
      ...(o.creds !== undefined ? ['--creds', o.creds] : []),
      ref,
    ];
  };
  const checked = async (args: string[]): Promise<string> => {
    const r = await skopeo(args);
    if (r.code !== 0) throw new Error(`skopeo ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  };
  return {
    dir,
    home,
    skopeo,
    inspect: async (ref, o = {}) => {
      const parsed: unknown = JSON.parse(await checked(inspectArgs(ref, o, false)));
      if (!isInspect(parsed)) throw new Error(`unexpected skopeo inspect output for ${ref}`);
      return parsed;
    },
    inspectRaw: (ref, o = {}) => checked(inspectArgs(ref, o, true)),
    copy: (src, dest, o = {}) =>
      skopeo(
        [
          'copy',
          '--quiet',
          `--src-tls-verify=${String(o.srcTlsVerify ?? false)}`,
          `--dest-tls-verify=${String(o.destTlsVerify ?? false)}`,
          ...(o.all === true ? ['--all'] : []),
          ...(o.preserveDigests === true ? ['--preserve-digests'] : []),
          ...(o.srcCreds !== undefined ? ['--src-creds', o.srcCreds] : []),
          ...(o.destCreds !== undefined ? ['--dest-creds', o.destCreds] : []),
          ...(o.format !== undefined ? ['--format', o.format] : []),
          src,
          dest,
        ],
        { timeoutMs: o.timeoutMs ?? 120_000 },
      ),
    leaks: () => home.sandbox.leaks(),
    stop: () => {
      tmp.remove();
      return Promise.resolve();
    },
  };
}

function isInspect(x: unknown): x is SkopeoInspect {
  return (
    typeof x === 'object' &&
    x !== null &&
    'Digest' in x &&
    typeof x.Digest === 'string' &&
    'Name' in x &&
    typeof x.Name === 'string'
  );
}
