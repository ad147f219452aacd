/**
 * The plain HTTP listener beside HTTPS: ACME HTTP-01 challenges, `/health` and `/health/ready` are
 * answered here, everything else is redirected (308, method kept) to the same path on the public HTTPS URL — built
 * from the configuration, never from the Host header.
 */
import { createServer, type Server } from 'node:http';
import type { Readiness } from '../app-readiness.ts';
import { version } from '../version.ts';

export function createRedirectListener(opts: {
  publicUrl: () => string;
  challenges: () => ReadonlyMap<string, string> | undefined;
  ready: Readiness;
}): Server {
  return createServer((req, res) => {
    const url = req.url ?? '/';
    const path = url.split('?')[0] ?? '/';
    const challenge = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(path);
    if (challenge?.[1] !== undefined) {
      const keyAuth = opts.challenges()?.get(challenge[1]);
      res.writeHead(keyAuth === undefined ? 404 : 200, { 'content-type': 'text/plain' });
      res.end(keyAuth ?? 'not found');
      return;
    }
    if (path === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok', version }));
      return;
    }
    if (path === '/health/ready') {
      opts.ready.check().then(
        ({ status, body }) =>
          res
            .writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
            .end(JSON.stringify(body)),
        () => res.writeHead(500).end(),
      );
      return;
    }
    // Only a path and query from the request: a full URL or a scheme-relative one is not a path.
    const safe = url.startsWith('/') && !url.startsWith('//') ? url : '/';
    res.writeHead(308, { location: `${opts.publicUrl()}${safe}`, 'content-type': 'text/plain' });
    res.end('use HTTPS\n');
  });
}
