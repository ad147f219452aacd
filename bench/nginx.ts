/**
 * The two nginx setups: a `proxy_cache` mirror of the hub (a contestant in every scenario) and the
 * static `sendfile` reference for scenario B's warm phase (issue 14, target 3), which serves the
 * blob file straight from disk, no cache logic, no auth, at the blob's registry path: whatever a
 * cache adds on a warm hit (lookup, headers, its own read path) shows as the gap to it. Both run
 * the same process shape (one worker, sendfile, tcp_nopush), so they differ only in what sits in
 * front of the file.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FakeHub } from '../test/helpers/fake-hub.ts';
import { NGINX_BINARY, nginxHead, nginxHttpBasics } from '../test/helpers/nginx.ts';
import { freePort } from '../test/helpers/process.ts';
import { makeTmpDir } from '../test/helpers/tmp.ts';
import type { BlobFile } from './blob-file.ts';
import type { Contestant } from './contestants.ts';
import { readTail, ready, spawnServer, stopAndRemove } from './server-process.ts';

export { NGINX_BINARY };

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
  return `${nginxHead(dir, `nginx as a proxy_cache mirror of ${hub.registryUrl}`)}
http {
  log_format bench '$remote_addr "$request" $status $body_bytes_sent cache=$upstream_cache_status upstream=$upstream_status $request_time';
  access_log ${dir}/access.log bench buffer=64k flush=1s;
${nginxHttpBasics(dir)}
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

/**
 * One nginx contestant: `config(dir, port)` written as `<tmp>/nginx.conf`, nginx started on it in
 * the foreground, ready once `probe` (a path) answers a status `ok` accepts; stopped and its
 * temporary directory removed on failure.
 */
async function startNginxContestant(opts: {
  name: 'nginx' | 'nginx-static';
  summary: string;
  config: (dir: string, port: number) => string;
  probe: string;
  ok: (status: number) => boolean;
}): Promise<Contestant> {
  if (!existsSync(NGINX_BINARY)) {
    throw new Error(`${NGINX_BINARY} is missing: apt-get install -y nginx-light (or nginx)`);
  }
  const dir = makeTmpDir(`bench-${opts.name}`);
  try {
    const port = await freePort();
    const text = opts.config(dir.path, port);
    const file = join(dir.path, 'nginx.conf');
    writeFileSync(file, text);
    const proc = spawnServer(
      NGINX_BINARY,
      ['-p', dir.path, '-c', file, '-e', join(dir.path, 'error.log'), '-g', 'daemon off;'],
      { logFile: join(dir.path, 'nginx.out'), cwd: dir.path },
    );
    const url = `http://127.0.0.1:${port}`;
    await ready(proc, opts.name, `${url}${opts.probe}`, opts.ok);
    return {
      name: opts.name,
      url,
      pid: proc.pid,
      summary: opts.summary,
      config: text,
      stored: () => Promise.resolve(),
      log: () => `${proc.log()}\n${readTail(join(dir.path, 'error.log'))}`,
      stop: stopAndRemove(proc, dir),
    };
  } catch (err) {
    dir.remove();
    throw err;
  }
}

export function startNginx(hub: FakeHub): Promise<Contestant> {
  return startNginxContestant({
    name: 'nginx',
    summary:
      'nginx 1 worker, sendfile, proxy_cache: blobs by path 7d, manifests by path+Accept 1m, ' +
      'proxy_cache_lock, follows the blob redirect itself',
    config: (dir, port) => nginxConfig(dir, port, hub),
    // Through to the hub: 401 is the healthy answer to an unauthenticated ping.
    probe: '/v2/',
    ok: (s) => s === 401 || s === 200,
  });
}

function staticConfig(dir: string, port: number, path: string, file: string): string {
  return `${nginxHead(dir, `nginx static sendfile reference for ${path}`)}
http {
  access_log off;
${nginxHttpBasics(dir)}
  server {
    listen 127.0.0.1:${port};
    location = ${path} {
      alias ${file};
      default_type application/octet-stream;
    }
    location / { return 404; }
  }
}
`;
}

/** nginx serving `blob` at `/v2/<repo>/blobs/<digest>` from its file. */
export function startNginxStatic(blob: BlobFile, repo: string): Promise<Contestant> {
  const path = `/v2/${repo}/blobs/${blob.digest}`;
  return startNginxContestant({
    name: 'nginx-static',
    summary:
      'nginx 1 worker, sendfile, tcp_nopush: the blob file from disk at its registry path (warm reference)',
    config: (dir, port) => staticConfig(dir, port, path, blob.file),
    probe: '/',
    ok: (s) => s === 404,
  });
}
