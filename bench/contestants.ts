/**
 * The contestants, each in front of the same fake hub and each its own process (so its memory and
 * CPU can be read from /proc), started with a known PID and stopped by that PID:
 *
 *   direct        the client talks to the hub itself (token, GET, follows the CDN redirect)
 *   docxy         `node bin/docxy.js serve --config FILE` (needs `npm run build`)
 *   distribution  Debian's CNCF Distribution 2.8 in pull-through proxy mode
 *   nginx         Debian's nginx as a `proxy_cache` mirror that follows the hub's blob redirect
 *   nginx-static  nginx serving the blob file from disk with sendfile: the warm reference (nginx-static.ts)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { ConfigInput } from '../src/config/schema.ts';
import { REGISTRY_BINARY, type FakeHub } from '../test/helpers/fake-hub.ts';
import { freePort, waitFor } from '../test/helpers/process.ts';
import { makeTmpDir } from '../test/helpers/tmp.ts';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const NGINX_BINARY = '/usr/sbin/nginx';

/** The contestants that pull through the hub (every scenario). */
export type PullerName = 'direct' | 'docxy' | 'docxy-nometrics' | 'distribution' | 'nginx';
/** `nginx-static` is a reference, not a cache: it serves one file, in scenario B's warm phase only. */
export type ContestantName = PullerName | 'nginx-static';
/** The default set; `docxy-nometrics` (metrics.enabled false, for the metrics' cost) is opt-in. */
export const CONTESTANTS: readonly ContestantName[] = [
  'direct',
  'docxy',
  'distribution',
  'nginx',
  'nginx-static',
];
export const ALL_PULLERS: readonly PullerName[] = [
  'direct',
  'docxy',
  'distribution',
  'nginx',
  'docxy-nometrics',
];
export const ALL_CONTESTANTS: readonly ContestantName[] = [...ALL_PULLERS, 'nginx-static'];

export interface Contestant {
  readonly name: ContestantName;
  /** Where clients pull from. */
  readonly url: string;
  /** PID of the server process (root of its tree), undefined for `direct`. */
  readonly pid: number | undefined;
  /** One line describing the setup, for the report. */
  readonly summary: string;
  /** The configuration file it runs with, verbatim (for the JSON report). */
  readonly config: string | undefined;
  /** After a cold pull: waits until the contestant has stored the blob, when it stores in the background. */
  stored(digest: string, size: number, signal: AbortSignal): Promise<void>;
  /** The process's log so far (for diagnosing a failure). */
  log(): string;
  stop(): Promise<void>;
}

async function answers(url: string, ok: (status: number) => boolean): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.body?.cancel();
    return ok(res.status);
  } catch {
    return false;
  }
}

/**
 * A server process whose stdout and stderr go straight to a file. (test/helpers/process.ts pipes
 * them through this process, which here is also the load generator: Docxy's one log line per
 * request at 20k req/s would cost the client CPU, and a full pipe would throttle the server.)
 */
export interface ServerProcess {
  readonly pid: number;
  running(): boolean;
  log(): string;
  /** SIGTERM to its process group, SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  // Last resort when the benchmark dies without running its finally blocks: kill, by PID, what it started.
  for (const c of live) {
    try {
      if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

export function spawnServer(
  cmd: string,
  args: readonly string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv; logFile: string },
): ServerProcess {
  const fd = openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', fd, fd],
      detached: true,
    });
  } finally {
    closeSync(fd);
  }
  child.on('error', () => {
    /* a spawn failure shows as pid === undefined, or as an early exit */
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${cmd}`);
  live.add(child);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      live.delete(child);
      resolve();
    });
  });
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    pid,
    running,
    log: () => readTail(opts.logFile),
    async stop(graceMs = 10_000) {
      if (!running()) return;
      const send = (sig: NodeJS.Signals): void => {
        try {
          process.kill(-pid, sig);
        } catch {
          child.kill(sig);
        }
      };
      send('SIGTERM');
      const timer = setTimeout(() => {
        send('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Waits for the server to answer; stops it and throws (with its log) if it does not. */
export async function ready(
  proc: ServerProcess,
  what: string,
  url: string,
  ok: (status: number) => boolean,
): Promise<void> {
  try {
    await waitFor(
      `${what} to answer ${url}`,
      async () => {
        if (!proc.running()) throw new Error(`${what} exited early:\n${proc.log()}`);
        return answers(url, ok);
      },
      30_000,
    );
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** A contestant's stop: its process, then its temporary directory (also when stopping fails). */
export function stopAndRemove(proc: ServerProcess, dir: { remove: () => void }): () => Promise<void> {
  return async () => {
    try {
      await proc.stop();
    } finally {
      dir.remove();
    }
  };
}

function envWithout(prefix: string): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith(prefix)));
}

const nothingToWait = (): Promise<void> => Promise.resolve();

export function direct(hub: FakeHub): Contestant {
  return {
    name: 'direct',
    url: hub.registryUrl,
    pid: undefined,
    summary: `the client pulls from the hub itself (${hub.cdn === undefined ? 'blobs served by the registry' : 'blob GETs redirected to the CDN'})`,
    config: undefined,
    stored: nothingToWait,
    log: () => '',
    stop: nothingToWait,
  };
}

/** Docxy as a contestant; `extra` adds or replaces top-level keys of its configuration (the soak sets memory and cache limits). */
export async function startDocxy(hub: FakeHub, extra: Partial<ConfigInput> = {}): Promise<Contestant> {
  const dir = makeTmpDir('bench-docxy');
  try {
    const port = await freePort();
    const data = join(dir.path, 'data');
    mkdirSync(data);
    const config = {
      listen: `127.0.0.1:${port}`,
      log_level: 'info',
      data,
      upstream: { url: hub.registryUrl },
      cache: { enabled: true },
      ...extra,
    } satisfies ConfigInput;
    const text = stringify(config);
    const file = join(dir.path, 'docxy.yaml');
    writeFileSync(file, text);
    const proc = spawnServer(
      process.execPath,
      [
        // Extra node flags for Docxy only, e.g. BENCH_DOCXY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/p".
        ...(process.env.BENCH_DOCXY_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''),
        join(REPO_ROOT, 'bin', 'docxy.js'),
        'serve',
        '--config',
        file,
      ],
      {
        logFile: join(dir.path, 'docxy.log'),
        cwd: REPO_ROOT,
        env: envWithout('DOCXY_'),
      },
    );
    const url = `http://127.0.0.1:${port}`;
    await ready(proc, 'docxy', `${url}/health`, (s) => s === 200);
    return {
      name: extra.metrics?.enabled === false ? 'docxy-nometrics' : 'docxy',
      url,
      pid: proc.pid,
      summary: `node bin/docxy.js serve: listen ${config.listen}, upstream ${hub.registryUrl}, data <tmp>, cache.enabled true, metrics.enabled ${String(extra.metrics?.enabled !== false)}, log_level info`,
      config: text,
      stored: nothingToWait,
      log: () => proc.log(),
      stop: stopAndRemove(proc, dir),
    };
  } catch (err) {
    dir.remove();
    throw err;
  }
}

export async function startDistributionProxy(hub: FakeHub): Promise<Contestant> {
  const dir = makeTmpDir('bench-distribution');
  try {
    const port = await freePort();
    const storage = join(dir.path, 'storage');
    // Distribution 2.8's proxy mode needs only `proxy.remoteurl` (credentials are optional: it then
    // fetches anonymous tokens from the realm the remote's challenge names). No `auth` section:
    // its front is open. Storage and the proxy scheduler's state live in `storage`.
    const config = {
      version: 0.1,
      log: { level: 'info', formatter: 'text', fields: { service: 'bench-distribution-proxy' } },
      storage: {
        filesystem: { rootdirectory: storage },
        delete: { enabled: true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: { addr: `127.0.0.1:${port}`, secret: 'docxy-bench-distribution-proxy-secret' },
      proxy: { remoteurl: hub.registryUrl },
    };
    const text = stringify(config);
    const file = join(dir.path, 'config.yml');
    writeFileSync(file, text);
    const proc = spawnServer(REGISTRY_BINARY, ['serve', file], {
      logFile: join(dir.path, 'registry.log'),
      cwd: dir.path,
      env: envWithout('REGISTRY_'),
    });
    const url = `http://127.0.0.1:${port}`;
    await ready(proc, 'distribution proxy', `${url}/v2/`, (s) => s === 200);
    return {
      name: 'distribution',
      url,
      pid: proc.pid,
      summary: `docker-registry 2.8 serve: proxy.remoteurl ${hub.registryUrl}, filesystem storage <tmp>, no auth on its front`,
      config: text,
      // It serves a cold blob from one upstream GET while a second GET fills its storage in the
      // background: wait for that copy, so the next run does not overlap it.
      async stored(digest, size, signal) {
        const hex = digest.slice('sha256:'.length);
        const data = join(storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
        const deadline = Date.now() + 300_000;
        for (let i = 0; i < 3000 && !signal.aborted && Date.now() < deadline; i++) {
          if (existsSync(data) && statSync(data).size === size) return;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`distribution proxy never stored ${digest}`);
      },
      log: () => proc.log(),
      stop: stopAndRemove(proc, dir),
    };
  } catch (err) {
    dir.remove();
    throw err;
  }
}

/**
 * nginx as a caching mirror. Blobs are cached by path (a digest never changes), manifests by path
 * and Accept for 1 minute, everything else (`/v2/`, 401 challenges) passes through; the client
 * gets its token from the hub's realm, which the challenge names. A blob GET the hub redirects
 * (307 to its CDN) is intercepted and fetched from the `Location` without `Authorization`, into
 * the same cache entry. `proxy_cache_lock` makes concurrent misses wait for one upstream fetch.
 * One worker process: Docxy is one Node process, and the benchmark client needs the other core.
 */
function nginxConfig(dir: string, port: number, hub: FakeHub): string {
  // The hub's address as the contestants see it (scenario E puts a capped link in between).
  const upstreamHost = new URL(hub.registryUrl).host;
  const cacheCommon = [
    'proxy_cache registry;',
    'proxy_cache_lock on;',
    'proxy_cache_lock_timeout 10m;',
    'proxy_cache_lock_age 10m;',
    'proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;',
  ];
  const blobCache = [...cacheCommon, 'proxy_cache_key $uri;', 'proxy_cache_valid 200 7d;'];
  const asRoot = process.getuid?.() === 0;
  return `# docxy bench: nginx as a proxy_cache mirror of ${hub.registryUrl}
${asRoot ? 'user root;' : ''}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  log_format bench '$remote_addr "$request" $status $body_bytes_sent cache=$upstream_cache_status upstream=$upstream_status $request_time';
  access_log ${dir}/access.log bench buffer=64k flush=1s;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy_temp;
  fastcgi_temp_path ${dir}/fastcgi_temp;
  uwsgi_temp_path ${dir}/uwsgi_temp;
  scgi_temp_path ${dir}/scgi_temp;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=registry:16m max_size=20g inactive=7d use_temp_path=off;
  proxy_http_version 1.1;
  proxy_read_timeout 300s;
  upstream hub { server ${upstreamHost}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    proxy_set_header Host ${upstreamHost};
    proxy_set_header Connection "";

    location ~ "^/v2/.+/blobs/sha256:[0-9a-f]{64}$" {
      proxy_pass http://hub;
      ${blobCache.join('\n      ')}
      proxy_intercept_errors on;
      error_page 301 302 303 307 308 = @redirected_blob;
    }
    location @redirected_blob {
      set $blob_location $upstream_http_location;
      proxy_pass $blob_location;
      proxy_set_header Authorization "";
      proxy_set_header Host $proxy_host;
      ${blobCache.join('\n      ')}
    }
    location ~ "^/v2/.+/manifests/[^/]+$" {
      proxy_pass http://hub;
      ${cacheCommon.join('\n      ')}
      proxy_cache_key "$uri|$http_accept";
      proxy_cache_valid 200 1m;
    }
    location / {
      proxy_pass http://hub;
    }
  }
}
`;
}

export async function startNginx(hub: FakeHub): Promise<Contestant> {
  if (!existsSync(NGINX_BINARY)) {
    throw new Error(`${NGINX_BINARY} is missing: apt-get install -y nginx-light (or nginx)`);
  }
  const dir = makeTmpDir('bench-nginx');
  try {
    const port = await freePort();
    const text = nginxConfig(dir.path, port, hub);
    const file = join(dir.path, 'nginx.conf');
    writeFileSync(file, text);
    const proc = spawnServer(
      NGINX_BINARY,
      ['-p', dir.path, '-c', file, '-e', join(dir.path, 'error.log'), '-g', 'daemon off;'],
      { logFile: join(dir.path, 'nginx.out'), cwd: dir.path },
    );
    const url = `http://127.0.0.1:${port}`;
    // Through to the hub: 401 is the healthy answer to an unauthenticated ping.
    await ready(proc, 'nginx', `${url}/v2/`, (s) => s === 401 || s === 200);
    return {
      name: 'nginx',
      url,
      pid: proc.pid,
      summary:
        'nginx 1 worker, sendfile, proxy_cache: blobs by path 7d, manifests by path+Accept 1m, ' +
        'proxy_cache_lock, follows the blob redirect itself',
      config: text,
      stored: nothingToWait,
      log: () => `${proc.log()}\n${readTail(join(dir.path, 'error.log'))}`,
      stop: stopAndRemove(proc, dir),
    };
  } catch (err) {
    dir.remove();
    throw err;
  }
}

export function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-4000);
  } catch {
    return '';
  }
}

/** Starts one contestant by name. */
export function startContestant(name: PullerName, hub: FakeHub): Promise<Contestant> {
  switch (name) {
    case 'direct':
      return Promise.resolve(direct(hub));
    case 'docxy':
      return startDocxy(hub);
    case 'docxy-nometrics':
      return startDocxy(hub, { metrics: { enabled: false } });
    case 'distribution':
      return startDistributionProxy(hub);
    case 'nginx':
      return startNginx(hub);
  }
}
