/**
 * The "fake Docker Hub": a real registry (Debian's CNCF Distribution 2.8, /usr/bin/docker-registry)
 * behind a Docker token server, whose blob GETs are redirected (307) to a separate CDN host, the
 * way registry-1.docker.io sends clients to its CDN. Everything listens on 127.0.0.1 only.
 *
 * Pieces and their wiring:
 *   token server (realm)   -- signs ES256 JWTs with x5c; the registry trusts its certificate
 *   docker-registry        -- filesystem storage in a tmp dir, JSON logs, token auth, and (unless
 *                             `cdn: false`) the `redirect` storage middleware pointing at the CDN
 *   CDN server             -- serves the registry's storage root directory as-is, refuses any
 *                             request carrying `Authorization`
 *
 * Distribution 2.8's redirect middleware builds the redirect as `scheme://host` of `baseurl` + the
 * storage-driver path of the blob (`/docker/registry/v2/blobs/sha256/ab/<hex>/data`); a path in
 * `baseurl` is ignored. That driver path is relative to the filesystem driver's `rootdirectory`, so
 * the CDN's root is the rootdirectory and the mapping is the identity. Only blob GET/HEAD use the
 * redirect; manifests and pushes are served by the registry itself.
 *
 * Behaviours of Distribution 2.8 (observed with this binary) that tests must keep in mind:
 *   - A blob HEAD is redirected too: 307 with a Location, but no Content-Length and no
 *     Docker-Content-Digest. The size is only known from the CDN's answer.
 *   - A schema2 manifest asked for by tag without `application/vnd.docker.distribution.manifest.v2+json`
 *     in `Accept` (no Accept at all, or only OCI types) is converted to a signed schema1 manifest
 *     with another digest. A manifest list asked for without the list type is replaced by its
 *     linux/amd64 child.
 *   - An OCI manifest or index asked for without its OCI media type in `Accept` is a 404
 *     MANIFEST_UNKNOWN ("OCI manifest found, but accept header does not support OCI manifests").
 *   - Refused requests (401 challenges, insufficient scope) never get a JSON "response completed"
 *     log line, only a warning; the Apache-style access log on stdout has every request, so
 *     `registryRequests()` reads that.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startCdnServer, type CdnServer } from './cdn-server.ts';
import { freePort, startProcess, waitFor, type Managed } from './process.ts';
import { makeTmpDir } from './tmp.ts';
import { startTokenServer, type TokenServer } from './token-server.ts';

export const REGISTRY_BINARY = '/usr/bin/docker-registry';

export interface FakeHubOptions {
  /** Redirect blob GETs to a CDN host (default true); false: the registry serves blobs itself. */
  cdn?: boolean;
  /** Token `aud` / registry `auth.token.service` (default Docker Hub's `registry.docker.io`). */
  service?: string;
  /** Token `iss` (default Docker Hub's `auth.docker.io`). */
  issuer?: string;
  /** Token lifetime in seconds (default 300, like Docker Hub). */
  tokenExpiresInSeconds?: number;
  /** More token-server users (name -> password) besides the push user; they get pull and push. */
  users?: Readonly<Record<string, string>>;
  /**
   * Private repositories (e.g. `private/app`) -> the users granted access to each; anonymous callers
   * and every other user get nothing on them. The push user is always added, so tests can seed them.
   */
  privateRepositories?: Readonly<Record<string, readonly string[]>>;
}

/** One request the registry answered, from its access log. */
export interface RegistryRequest {
  method: string;
  /** Request URI as received: path plus query string. */
  uri: string;
  status: number;
  /** Milliseconds since the epoch (the access log has one-second resolution). */
  time: number;
  /** Bytes of response body written (0 for HEAD and redirects). */
  bytes: number;
  userAgent: string;
}

export interface FakeHub {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  readonly registryUrl: string;
  readonly registryPort: number;
  /** The token endpoint (`WWW-Authenticate` realm). */
  readonly realm: string;
  readonly service: string;
  /** The CDN stand-in, or undefined when started with `cdn: false`. */
  readonly cdn: CdnServer | undefined;
  readonly token: TokenServer;
  /** The user the token server grants `push` to. */
  readonly pushUser: { readonly username: string; readonly password: string };
  /** The registry's storage root (the filesystem driver's `rootdirectory`). */
  readonly storageDir: string;
  /** PID of the running registry process, undefined while it is stopped. */
  registryPid(): number | undefined;
  /**
   * Requests the registry answered since the hub started (across restarts), oldest first. Async
   * because the registry logs a request only after answering it: this first flushes the log (see
   * `flushRegistryLog`) so a request a test has just seen answered is in the list.
   */
  registryRequests(): Promise<RegistryRequest[]>;
  /** The registry's raw log (stdout + stderr), for debugging failures. */
  registryLog(): string;
  /** Stops only the registry (upstream down); token server and CDN stay up. */
  stopRegistry(): Promise<void>;
  /** Starts the registry again on the same port with the same storage. */
  startRegistry(): Promise<void>;
  /** Stops everything and removes every temporary directory. */
  stop(): Promise<void>;
}

const PUSH_USER = { username: 'pusher', password: 'push-secret' } as const;

/**
 * Query parameter of the marker request `registryRequests()` sends to flush the log; entries
 * carrying it are dropped from the result.
 */
const LOG_MARKER_PARAM = 'docxy-log-marker';

/**
 * One line of the Apache "combined" access log Distribution writes to stdout for every request:
 * `127.0.0.1 - - [28/Nov/2026:06:24:28 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "node"`.
 */
const ACCESS_LINE =
  /^\S+ \S+ \S+ \[(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-)(?: "(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)")?/;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * Parses the registry's access log out of its combined output. The JSON (logrus) lines are
 * skipped: their "response completed" entries miss every request refused by the auth layer (401
 * challenges are logged only as a warning, "error authorizing context"), while the access log
 * has exactly one line per request, whatever its outcome.
 */
export function parseRegistryLog(log: string): RegistryRequest[] {
  const out: RegistryRequest[] = [];
  for (const line of log.split('\n')) {
    const m = ACCESS_LINE.exec(line);
    if (m === null) continue;
    const [, day, mon, year, hh, mm, ss, zone, method, uri, status, bytes, userAgent] = m;
    if (method === undefined || uri === undefined || status === undefined) continue;
    if (uri.includes(`${LOG_MARKER_PARAM}=`)) continue;
    const month = String(MONTHS.indexOf(mon ?? '') + 1).padStart(2, '0');
    const zoneIso = zone === undefined ? 'Z' : `${zone.slice(0, 3)}:${zone.slice(3)}`;
    out.push({
      method,
      uri,
      status: Number(status),
      time: Date.parse(`${year}-${month}-${day}T${hh}:${mm}:${ss}${zoneIso}`),
      bytes: bytes === undefined || bytes === '-' ? 0 : Number(bytes),
      userAgent: userAgent ?? '',
    });
  }
  return out;
}

/** Environment for the registry without any REGISTRY_* variables that would override config.yml. */
function registryEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_')));
}

/** True once the registry answers HTTP on `/v2/` (401 without a token is the healthy answer). */
async function registryAnswers(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
    await res.body?.cancel();
    return res.status === 401 || res.status === 200;
  } catch {
    return false;
  }
}

/**
 * Starts `docker-registry serve <configPath>` (output appended to `logFile`) and waits until it
 * answers on `registryUrl`; a registry that exits or never answers is stopped and reported.
 * Shared by the fake hub and the plain registries (plain-registry.ts).
 */
export async function startRegistryProcess(opts: {
  configPath: string;
  logFile: string;
  cwd: string;
  registryUrl: string;
}): Promise<Managed> {
  const proc = startProcess('docker-registry', REGISTRY_BINARY, ['serve', opts.configPath], {
    logFile: opts.logFile,
    env: registryEnv(),
    cwd: opts.cwd,
  });
  try {
    await waitFor(
      'docker-registry to answer',
      async () => {
        if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
          throw new Error(`docker-registry exited early:\n${proc.log()}`);
        }
        return registryAnswers(opts.registryUrl);
      },
      20_000,
    );
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}

let logMarkers = 0;

/**
 * The requests a registry answered, from its access log in `logFile`, oldest first; while it runs,
 * the log is flushed first (see `flushRegistryLog`).
 */
export async function readRegistryRequests(
  registryUrl: string,
  logFile: string,
  running: boolean,
): Promise<RegistryRequest[]> {
  if (running) await flushRegistryLog(registryUrl, logFile, ++logMarkers);
  return parseRegistryLog(readLog(logFile));
}

export async function startFakeHub(opts: FakeHubOptions = {}): Promise<FakeHub> {
  const useCdn = opts.cdn ?? true;
  const service = opts.service ?? 'registry.docker.io';
  const issuer = opts.issuer ?? 'auth.docker.io';
  const dir = makeTmpDir('fakehub');
  const storageDir = join(dir.path, 'storage');
  const configPath = join(dir.path, 'config.yml');
  const logFile = join(dir.path, 'registry.log');

  let token: TokenServer | undefined;
  let cdn: CdnServer | undefined;
  let registry: Managed | undefined;

  const stopAll = async (): Promise<void> => {
    // Each piece is stopped even when another one fails to, and the files go last.
    const results = await Promise.allSettled([registry?.stop(), cdn?.stop(), token?.stop()]);
    registry = undefined;
    dir.remove();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  };

  try {
    token = await startTokenServer({
      issuer,
      service,
      users: { ...opts.users, [PUSH_USER.username]: PUSH_USER.password },
      ...(opts.tokenExpiresInSeconds === undefined ? {} : { expiresInSeconds: opts.tokenExpiresInSeconds }),
      ...(opts.privateRepositories === undefined
        ? {}
        : {
            privateRepositories: Object.fromEntries(
              Object.entries(opts.privateRepositories).map(([repo, who]) => [
                repo,
                [...who, PUSH_USER.username],
              ]),
            ),
          }),
    });
    if (useCdn) cdn = await startCdnServer({ root: storageDir });

    const registryPort = await freePort();
    const registryUrl = `http://127.0.0.1:${registryPort}`;
    const config = {
      version: 0.1,
      log: {
        // JSON lines for debugging (registryLog()); the request list comes from the access log,
        // which Distribution writes to stdout in Apache format regardless of these settings.
        level: 'info',
        formatter: 'json',
        fields: { service: 'fake-hub' },
      },
      storage: {
        filesystem: { rootdirectory: storageDir },
        // Lets tests delete manifests upstream ("tag gone" scenarios).
        delete: { enabled: true },
        // No background upload purging or blob-descriptor cache: nothing may change or be
        // remembered behind a test's back.
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: {
        addr: `127.0.0.1:${registryPort}`,
        // A fixed secret avoids the "No HTTP secret provided" warning; it signs upload state only.
        secret: 'docxy-fake-hub-upload-state-secret',
        headers: { 'X-Content-Type-Options': ['nosniff'] },
      },
      auth: {
        token: { realm: token.url, service, issuer, rootcertbundle: token.certPemPath },
      },
      ...(cdn === undefined
        ? {}
        : { middleware: { storage: [{ name: 'redirect', options: { baseurl: cdn.url } }] } }),
    };
    writeFileSync(configPath, stringify(config));

    const startRegistry = async (): Promise<void> => {
      if (registry !== undefined) throw new Error('fake hub: registry already running');
      registry = await startRegistryProcess({ configPath, logFile, cwd: dir.path, registryUrl });
    };

    await startRegistry();

    const tokenServer = token;
    return {
      registryUrl,
      registryPort,
      realm: tokenServer.url,
      service,
      cdn,
      token: tokenServer,
      pushUser: PUSH_USER,
      storageDir,
      registryPid: () => registry?.pid,
      // One log file across restarts (startProcess appends), so history survives a restart.
      registryRequests: () => readRegistryRequests(registryUrl, logFile, registry !== undefined),
      registryLog: () => readLog(logFile),
      async stopRegistry() {
        const proc = registry;
        registry = undefined;
        await proc?.stop();
      },
      startRegistry,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
}

/**
 * Makes sure every request answered so far is in the log file. Distribution writes an access line
 * after the response has gone out, and the line then travels through a pipe into the file, so a
 * test reading the file right after a response can miss it. A marker request, sent now, is
 * logged after every request answered before it; once its line is in the file, so are theirs.
 */
async function flushRegistryLog(registryUrl: string, logFile: string, n: number): Promise<void> {
  const marker = `${LOG_MARKER_PARAM}=${process.pid}-${n}`;
  try {
    const res = await fetch(`${registryUrl}/v2/?${marker}`, { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
  } catch {
    return; // Registry not answering: nothing more can arrive anyway.
  }
  await waitFor('the registry log marker', () => readLog(logFile).includes(marker), 5000);
}

/** A log file's text, or '' when it does not exist (yet). */
export function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
