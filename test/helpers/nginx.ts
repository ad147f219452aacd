/**
 * Debian's nginx for tests and the bench: the configuration pieces every setup shares (its own
 * pid, logs and temp paths under one directory, so nothing touches /var) and a plain-HTTP
 * round-robin proxy in front of several Docxy replicas, the way a fleet is run behind one
 * address. Started in the foreground with a known PID, stopped by it.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLog } from './fake-hub.ts';
import { freePort, startProcess, waitForPort, type Managed } from './process.ts';
import { makeTmpDir } from './tmp.ts';

export const NGINX_BINARY = '/usr/sbin/nginx';

/** The top of every nginx configuration here: its process, pid and error log under `dir`. */
export function nginxHead(dir: string, title: string): string {
  // As root, nginx would switch its workers to `nobody`, who cannot read the temp directory.
  const asRoot = process.getuid?.() === 0;
  return `# docxy: ${title}
${asRoot ? 'user root;' : ''}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }`;
}

/** Inside `http {}`: sendfile, long keep-alive, and every temp path under `dir`. */
export function nginxHttpBasics(dir: string): string {
  return `  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy_temp;
  fastcgi_temp_path ${dir}/fastcgi_temp;
  uwsgi_temp_path ${dir}/uwsgi_temp;
  scgi_temp_path ${dir}/scgi_temp;`;
}

export interface RoundRobinNginx {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
  /** `127.0.0.1:PORT`, as clients name the registry. */
  readonly hostPort: string;
  readonly proc: Managed;
  /** Access log lines so far: `"<request line>" <status> upstream=<backend host:port>`. */
  accessLog(): string[];
  /** Stops nginx (by PID) and removes its directory. */
  stop(): Promise<void>;
}

/**
 * nginx on `port` (a free one when omitted) passing every request to `backends` (`host:port`) in
 * turn, unbuffered (blobs stream through as the backend sends them), HTTP/1.1 keep-alive to the
 * backends and the client's `Host` kept, as docs/deployment.md's proxy does.
 */
export async function startRoundRobinNginx(opts: {
  backends: readonly string[];
  port?: number;
}): Promise<RoundRobinNginx> {
  if (!existsSync(NGINX_BINARY))
    throw new Error(`${NGINX_BINARY} is missing: apt-get install -y nginx-light`);
  const dir = makeTmpDir('nginx-rr');
  const port = opts.port ?? (await freePort());
  const conf = `${nginxHead(dir.path, `round robin over ${opts.backends.join(', ')}`)}
http {
  log_format rr '"$request" $status upstream=$upstream_addr';
  access_log ${dir.path}/access.log rr;
${nginxHttpBasics(dir.path)}
  upstream docxy {
${opts.backends.map((b) => `    server ${b};`).join('\n')}
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${String(port)};
    client_max_body_size 0;
    location / {
      proxy_pass http://docxy;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
    }
  }
}
`;
  const file = join(dir.path, 'nginx.conf');
  writeFileSync(file, conf);
  const proc = startProcess(NGINX_BINARY, NGINX_BINARY, ['-p', dir.path, '-c', file, '-g', 'daemon off;'], {
    logFile: join(dir.path, 'nginx.out'),
    cwd: dir.path,
  });
  try {
    await waitForPort(port, '127.0.0.1', 10_000, proc.exited);
  } catch (err) {
    await proc.stop();
    const why = `${(err as Error).message}\n${proc.log()}${readLog(join(dir.path, 'error.log'))}`;
    dir.remove();
    throw new Error(why);
  }
  return {
    url: `http://127.0.0.1:${String(port)}`,
    port,
    hostPort: `127.0.0.1:${String(port)}`,
    proc,
    accessLog: () =>
      readLog(join(dir.path, 'access.log'))
        .split('\n')
        .filter((l) => l !== ''),
    async stop() {
      await proc.stop();
      dir.remove();
    },
  };
}
