/**
 * Docker Hub's pull budget: `ratelimit-remaining` is read from upstream responses and logged, and a
 * 429 with no cached answer reaches the client as 429 TOOMANYREQUESTS with Retry-After. The
 * upstream is a small stand-in that answers like Docker Hub over its limit (Docker Hub itself is
 * out of reach here).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { httpGet } from '../helpers/http.ts';
import { waitFor } from '../helpers/process.ts';

describe('upstream pull budget', () => {
  let upstream: Server;
  let docxy: TestDocxy;
  let overLimit = false;

  before(async () => {
    upstream = createServer((req, res) => {
      const headers = {
        'ratelimit-limit': '100;w=21600',
        'ratelimit-remaining': overLimit ? '0;w=21600' : '76;w=21600',
      };
      if (req.url === '/v2/') {
        res.writeHead(200, { ...headers, 'content-type': 'application/json' });
        res.end('{}');
        return;
      }
      if (overLimit) {
        res.writeHead(429, { ...headers, 'content-type': 'application/json', 'retry-after': '3600' });
        res.end(
          JSON.stringify({
            errors: [{ code: 'TOOMANYREQUESTS', message: 'You have reached your pull rate limit.' }],
          }),
        );
        return;
      }
      res.writeHead(404, { ...headers, 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    docxy = await startDocxy({
      upstream: { url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` },
    });
  });

  after(async () => {
    await docxy.stop();
    upstream.closeAllConnections();
    await new Promise<void>((resolve) =>
      upstream.close(() => {
        resolve();
      }),
    );
  });

  it('logs ratelimit-remaining from upstream responses', async () => {
    const res = await httpGet(`${docxy.url}/v2/library/x/manifests/1`);
    assert.equal(res.status, 404);
    await waitFor('the pull budget log line', () =>
      docxy.logs().some((l) => l.ratelimitRemaining === '76;w=21600'),
    );
    const line = docxy.logs().find((l) => l.ratelimitRemaining === '76;w=21600');
    assert.ok(line);
    assert.equal(line.ratelimitLimit, '100;w=21600');
    assert.equal(line.upstream, 'docker.io');
  });

  it('relays a 429 without a cached answer as TOOMANYREQUESTS with Retry-After, and warns', async () => {
    overLimit = true;
    const res = await httpGet(`${docxy.url}/v2/library/y/manifests/1`);
    assert.equal(res.status, 429);
    assert.equal(res.header('retry-after'), '3600');
    assert.equal((res.json() as { errors: { code: string }[] }).errors[0]!.code, 'TOOMANYREQUESTS');
    await waitFor('a warning about the exhausted budget', () =>
      docxy.logs().some((l) => l.ratelimitRemaining === '0;w=21600' && l.level === 40),
    );
  });
});
