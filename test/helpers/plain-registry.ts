/**
 * A plain CNCF Distribution 2.8 registry (/usr/bin/docker-registry) on 127.0.0.1, standing in for
 * registries other than Docker Hub:
 *
 *   - anonymous (no `auth:`): anyone may pull and push, like a quay.io public repository;
 *   - `users`: htpasswd (Basic) auth, like a registry that takes Basic credentials directly. The
 *     htpasswd file is written with `htpasswd -B` (Debian package apache2-utils): Distribution
 *     only accepts bcrypt entries. Any listed user may pull and push;
 *   - `token`: Docker token auth with a realm of the caller's choosing (any URL; Distribution only
 *     names it in its challenges), to put the token service outside the registry's domain.
 *
 * No CDN redirect: blobs are served by the registry itself. The process, its log and the request
 * list (the access log) are handled by the same code as the fake hub's (fake-hub.ts); only the
 * configuration differs.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { readLog, readRegistryRequests, startRegistryProcess, type RegistryRequest } from './fake-hub.ts';
import {
  basicAuthorization,
  pushImageWith,
  type ImageDescriptor,
  type PushAuthorization,
  type TestImage,
} from './images.ts';
import { freePort, type Managed } from './process.ts';
import { makeTmpDir } from './tmp.ts';

const execFileAsync = promisify(execFile);

export const HTPASSWD_BINARY = 'htpasswd';

export interface PlainRegistryUser {
  readonly username: string;
  readonly password: string;
}

export interface PlainRegistryOptions {
  /** htpasswd users: the registry then answers `401 Basic realm=…` without credentials. */
  users?: readonly PlainRegistryUser[];
  /** Token auth instead (Distribution's `auth.token`); `realm` may be any URL. */
  token?: {
    readonly realm: string;
    readonly service: string;
    readonly issuer: string;
    /** PEM bundle of the token signer's certificate (`TokenServer.certPemPath`). */
    readonly rootCertBundle: string;
  };
  /** A label in the registry's JSON log lines (default `plain-registry`). */
  name?: string;
}

export interface PlainRegistry {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  readonly registryUrl: string;
  readonly registryPort: number;
  /** `127.0.0.1:PORT`. */
  readonly hostPort: string;
  /** The htpasswd realm named in the Basic challenge, when `users` was given. */
  readonly basicRealm: string | undefined;
  /**
   * Pushes an image. Default authorization: Basic as the first user for htpasswd auth, none for
   * an anonymous registry; a token-auth registry needs an explicit `Bearer …`.
   */
  push(image: TestImage, authorization?: PushAuthorization): Promise<ImageDescriptor>;
  /** Requests the registry answered since it started (across restarts), oldest first. */
  registryRequests(): Promise<RegistryRequest[]>;
  /** The registry's raw output, for debugging failures. */
  registryLog(): string;
  running(): boolean;
  /** Stops only the process (upstream down); storage and port stay. */
  stopRegistry(): Promise<void>;
  /** Starts it again on the same port with the same storage. */
  startRegistry(): Promise<void>;
  /** Stops the process and removes every file. */
  stop(): Promise<void>;
}

/** One bcrypt htpasswd line per user, from the `htpasswd` binary (cost 4: fast, tests only). */
async function htpasswdLines(users: readonly PlainRegistryUser[]): Promise<string> {
  const lines: string[] = [];
  for (const u of users) {
    try {
      const { stdout } = await execFileAsync(HTPASSWD_BINARY, ['-nbB', '-C', '4', u.username, u.password]);
      lines.push(stdout.trim());
    } catch (err) {
      throw new Error(
        `cannot run ${HTPASSWD_BINARY} (Debian package apache2-utils): ${(err as Error).message}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

export async function startPlainRegistry(opts: PlainRegistryOptions = {}): Promise<PlainRegistry> {
  if (opts.users !== undefined && opts.token !== undefined)
    throw new Error('plain registry: give users (htpasswd) or token, not both');
  const dir = makeTmpDir('plain-registry');
  const configPath = join(dir.path, 'config.yml');
  const logFile = join(dir.path, 'registry.log');
  let registry: Managed | undefined;
  try {
    const registryPort = await freePort();
    const registryUrl = `http://127.0.0.1:${registryPort}`;
    const basicRealm = opts.users === undefined ? undefined : `${opts.name ?? 'plain-registry'} basic realm`;
    let auth: Record<string, unknown> | undefined;
    if (opts.users !== undefined) {
      const htpasswd = join(dir.path, 'htpasswd');
      writeFileSync(htpasswd, await htpasswdLines(opts.users));
      auth = { htpasswd: { realm: basicRealm, path: htpasswd } };
    } else if (opts.token !== undefined) {
      const t = opts.token;
      auth = {
        token: { realm: t.realm, service: t.service, issuer: t.issuer, rootcertbundle: t.rootCertBundle },
      };
    }
    const config = {
      version: 0.1,
      log: { level: 'info', formatter: 'json', fields: { service: opts.name ?? 'plain-registry' } },
      storage: {
        filesystem: { rootdirectory: join(dir.path, 'storage') },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: {
        addr: `127.0.0.1:${registryPort}`,
        secret: 'docxy-plain-registry-upload-state-secret',
        headers: { 'X-Content-Type-Options': ['nosniff'] },
      },
      ...(auth === undefined ? {} : { auth }),
    };
    writeFileSync(configPath, stringify(config));

    const startRegistry = async (): Promise<void> => {
      if (registry !== undefined) throw new Error('plain registry: already running');
      registry = await startRegistryProcess({ configPath, logFile, cwd: dir.path, registryUrl });
    };
    await startRegistry();

    const firstUser = opts.users?.[0];
    const defaultAuthorization = firstUser === undefined ? undefined : basicAuthorization(firstUser);
    return {
      registryUrl,
      registryPort,
      hostPort: `127.0.0.1:${registryPort}`,
      basicRealm,
      push: (image, authorization = defaultAuthorization) => pushImageWith(registryUrl, authorization, image),
      registryRequests: () => readRegistryRequests(registryUrl, logFile, registry !== undefined),
      registryLog: () => readLog(logFile),
      running: () => registry !== undefined,
      async stopRegistry() {
        const proc = registry;
        registry = undefined;
        await proc?.stop();
      },
      startRegistry,
      async stop() {
        const proc = registry;
        registry = undefined;
        try {
          await proc?.stop();
        } finally {
          dir.remove();
        }
      },
    };
  } catch (err) {
    await registry?.stop().catch(() => undefined);
    dir.remove();
    throw err;
  }
}
