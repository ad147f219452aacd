/**
 * The warm reference (issue 14, target 3): nginx serving the blob file straight from disk with
 * `sendfile`, no cache logic, no auth, at the blob's registry path. Whatever a cache adds on a
 * warm hit (lookup, headers, its own read path) shows as the gap to this; a cache that reaches
 * 1.0x of it sends its stored file as fast as the kernel can.
 *
 * Same process shape as the nginx contestant (one worker, sendfile, tcp_nopush), so the two nginx
 * rows differ only in what sits in front of the file.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../test/helpers/process.ts';
import { makeTmpDir } from '../test/helpers/tmp.ts';
import type { BlobFile } from './blob-file.ts';
import { NGINX_BINARY, readTail, ready, spawnServer, stopAndRemove, type Contestant } from './contestants.ts';

function staticConfig(dir: string, port: number, path: string, file: string): string {
  const asRoot = process.getuid?.() === 0;
  return `# docxy bench: nginx static sendfile reference for ${path}
${asRoot ? 'user root;' : ''}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy_temp;
  fastcgi_temp_path ${dir}/fastcgi_temp;
  uwsgi_temp_path ${dir}/uwsgi_temp;
  scgi_temp_path ${dir}/scgi_temp;
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
export async function startNginxStatic(blob: BlobFile, repo: string): Promise<Contestant> {
  if (!existsSync(NGINX_BINARY)) {
    throw new Error(`${NGINX_BINARY} is missing: apt-get install -y nginx-light (or nginx)`);
  }
  const dir = makeTmpDir('bench-nginx-static');
  try {
    const port = await freePort();
    const path = `/v2/${repo}/blobs/${blob.digest}`;
    const text = staticConfig(dir.path, port, path, blob.file);
    const file = join(dir.path, 'nginx.conf');
    writeFileSync(file, text);
    const proc = spawnServer(
      NGINX_BINARY,
      ['-p', dir.path, '-c', file, '-e', join(dir.path, 'error.log'), '-g', 'daemon off;'],
      { logFile: join(dir.path, 'nginx.out'), cwd: dir.path },
    );
    const url = `http://127.0.0.1:${port}`;
    await ready(proc, 'nginx static', `${url}/`, (s) => s === 404);
    return {
      name: 'nginx-static',
      url,
      pid: proc.pid,
      summary:
        'nginx 1 worker, sendfile, tcp_nopush: the blob file from disk at its registry path (warm reference)',
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
