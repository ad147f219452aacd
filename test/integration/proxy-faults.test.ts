/**
 * Upstream failures become OCI JSON errors or closed connections, never hangs: an unreachable
 * upstream, one that never answers, one that stalls mid-body, and one whose manifest HEAD lacks
 * Content-Length and digest (answered from a GET, as Docker 29 needs). The misbehaving upstreams
 * are small fault-injection servers; the HEAD case fronts the real fake hub.
 */
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import { ACCEPT_ALL_MANIFESTS, TINY, seedImages } from '../helpers/images.ts';
import { freePort, waitFor } from '../helpers/process.ts';

const digest = `sha256:${'e'.repeat(64)}`;

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) =>
    server.close(() => {
      resolve();
    }),
  );
}

/** Reads a raw HTTP response until the server closes the connection; reports what arrived. */
function rawGet(
  port: number,
  path: string,
): Promise<{ head: string; bodyBytes: number; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const sock: Socket = connect(port, '127.0.0.1', () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    });
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => (buf = Buffer.concat([buf, d])));
    sock.on('error', reject);
    sock.on('close', () => {
      const i = buf.indexOf('\r\n\r\n');
      resolve({
        head: buf.subarray(0, i).toString(),
        bodyBytes: buf.length - i - 4,
        closedAfterMs: Date.now() - start,
      });
    });
  });
}

describe('upstream failures', () => {
  it('an unreachable upstream -> 502 OCI JSON at once', async () => {
    const port = await freePort();
    const docxy = await startDocxy({
      upstream: { url: `http://127.0.0.1:${port}`, timeouts: { connect: '2s' } },
    });
    try {
      const t0 = Date.now();
      const res = await httpGet(`${docxy.url}/v2/library/tiny/manifests/1`);
      assert.equal(res.status, 502);
      assert.equal((res.json() as { errors: { code: string }[] }).errors[0]?.code, 'UNAVAILABLE');
      assert.ok(Date.now() - t0 < 2000, 'answered within the connect timeout');
    } finally {
      await docxy.stop();
    }
  });

  it('no response headers within the header timeout -> 504 OCI JSON', async () => {
    const silent = createServer(() => {
      /* never answers */
    });
    const port = await listen(silent);
    const docxy = await startDocxy({
      upstream: { url: `http://127.0.0.1:${port}`, timeouts: { headers: '700ms' } },
    });
    try {
      const t0 = Date.now();
      const res = await httpGet(`${docxy.url}/v2/library/tiny/manifests/1`);
      const took = Date.now() - t0;
      assert.equal(res.status, 504);
      assert.equal((res.json() as { errors: { code: string }[] }).errors[0]?.code, 'UNAVAILABLE');
      assert.ok(took >= 600 && took < 5000, `took ${took} ms`);
    } finally {
      await docxy.stop();
      await close(silent);
    }
  });

  it('a body that stalls longer than the idle timeout -> the client connection is closed', async () => {
    const stalling = createServer((_req, res) => {
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(1024 * 1024),
      });
      res.write(Buffer.alloc(100 * 1024, 1)); // then nothing more
    });
    const port = await listen(stalling);
    const docxy = await startDocxy({
      upstream: { url: `http://127.0.0.1:${port}`, library_prefix: true, timeouts: { idle: '800ms' } },
      cache: { enabled: false },
    });
    try {
      const got = await rawGet(docxy.port, `/v2/library/tiny/blobs/${digest}`);
      assert.match(got.head, /^HTTP\/1\.1 200/);
      assert.match(got.head, /content-length: 1048576/i);
      assert.equal(got.bodyBytes, 100 * 1024, 'the client got what arrived, then the connection closed');
      assert.ok(
        got.closedAfterMs >= 700 && got.closedAfterMs < 10_000,
        `closed after ${got.closedAfterMs} ms`,
      );
      await waitFor('the request log line', () =>
        docxy.requestLogs().some((l) => l.path === `/v2/library/tiny/blobs/${digest}`),
      );
      const line = docxy.requestLogs().find((l) => l.path === `/v2/library/tiny/blobs/${digest}`);
      assert.equal(line?.completed, false, 'logged as not completed');
    } finally {
      await docxy.stop();
      await close(stalling);
    }
  });
});

describe('manifest HEAD without Content-Length or digest upstream', () => {
  let hub: FakeHub;
  let front: Server;
  let docxy: TestDocxy;
  const seen: string[] = [];

  before(async () => {
    hub = await startFakeHub();
    await seedImages(hub, ['tiny']);
    const target = new URL(hub.registryUrl);
    // A registry that omits both headers on manifest HEAD (as some do): forwards everything to the
    // real registry and strips them from HEAD answers.
    front = createServer((req, res) => {
      seen.push(`${req.method ?? ''} ${req.url ?? ''}`);
      const up = httpRequest(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (upRes) => {
          const headers = { ...upRes.headers };
          if (req.method === 'HEAD') {
            delete headers['content-length'];
            delete headers['docker-content-digest'];
            headers['transfer-encoding'] = 'chunked';
          }
          res.writeHead(upRes.statusCode ?? 502, headers);
          upRes.pipe(res);
        },
      );
      req.pipe(up);
    });
    const port = await listen(front);
    docxy = await startDocxy({ upstream: { url: `http://127.0.0.1:${port}` } });
  });

  after(async () => {
    await docxy.stop();
    await close(front);
    await hub.stop();
  });

  it('is answered from an upstream GET with the exact Content-Length and digest', async () => {
    const t = await pullToken(`${docxy.url}/auth/token`, hub.service, 'tiny');
    const res = await httpGet(`${docxy.url}/v2/tiny/manifests/1`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${t}`, accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(res.status, 200);
    assert.equal(res.header('content-length'), String(TINY.size));
    assert.equal(res.header('docker-content-digest'), TINY.digest);
    assert.equal(res.header('content-type'), TINY.mediaType);
    assert.ok(seen.includes('GET /v2/library/tiny/manifests/1'), 'the answer came from an upstream GET');
  });
});
