/**
 * The seed proxy's protocol, against the fake Docker Hub (real Distribution 2.8 with token auth and
 * a CDN that refuses Authorization): challenge and realm, token forwarding with library/ scopes,
 * manifests, blobs across the CDN redirect, ranges, errors, logs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  MULTI,
  OCI_INDEX,
  SOMEUSER_APP,
  TINY,
  seedImages,
  sha256,
} from '../helpers/images.ts';

describe('seed proxy protocol', () => {
  let hub: FakeHub;
  let docxy: TestDocxy;
  let forged: TestDocxy;
  const publicUrl = 'http://docxy.public.example:7000';

  before(async () => {
    hub = await startFakeHub();
    await seedImages(hub);
    docxy = await startDocxy({ upstream: { url: hub.registryUrl } });
    forged = await startDocxy({ upstream: { url: hub.registryUrl }, public_url: publicUrl });
  });

  after(async () => {
    await docxy.stop();
    await forged.stop();
    await hub.stop();
  });

  async function token(repo: string): Promise<string> {
    return pullToken(`${docxy.url}/auth/token`, hub.service, repo);
  }

  it('relays the /v2/ challenge with the realm rewritten to its own token endpoint', async () => {
    const res = await httpGet(`${docxy.url}/v2/`);
    assert.equal(res.status, 401);
    assert.equal(
      res.header('www-authenticate'),
      `Bearer realm="${docxy.url}/auth/token",service="${hub.service}"`,
    );
    assert.equal(res.header('docker-distribution-api-version'), 'registry/2.0');
  });

  it('builds the realm from the configured public URL, never from a forged Host header', async () => {
    const res = await httpGet(`${forged.url}/v2/`, {
      headers: { host: 'evil.example' },
    });
    assert.equal(res.status, 401);
    const challenge = res.header('www-authenticate') ?? '';
    assert.match(challenge, new RegExp(`realm="${publicUrl}/auth/token"`));
    assert.doesNotMatch(challenge, /evil/);
  });

  it('forwards token requests to the discovered token service with library/ added to the scope', async () => {
    const before = hub.token.requests.length;
    const res = await httpGet(`${docxy.url}/auth/token?service=${hub.service}&scope=repository:tiny:pull`);
    assert.equal(res.status, 200);
    const json = res.json() as Record<string, unknown>;
    assert.equal(typeof json.token, 'string');
    assert.deepEqual(Object.keys(json).sort(), ['access_token', 'expires_in', 'issued_at', 'token']);
    const seen = hub.token.requests.slice(before);
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0]?.query.scope, ['repository:library/tiny:pull']);
  });

  it('forwards the client Authorization to the token service and relays its refusal', async () => {
    const bad = `Basic ${Buffer.from('pusher:wrong').toString('base64')}`;
    const res = await httpGet(`${docxy.url}/auth/token?service=${hub.service}&scope=repository:tiny:pull`, {
      headers: { authorization: bad },
    });
    assert.equal(res.status, 401);
    assert.equal(hub.token.requests.at(-1)?.authorization, bad);
  });

  it('serves a manifest by short name (library/ added) with its exact digest and bytes', async () => {
    const t = await token('tiny');
    const res = await httpGet(`${docxy.url}/v2/tiny/manifests/1`, {
      headers: { authorization: `Bearer ${t}`, accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(res.status, 200);
    assert.equal(res.header('docker-content-digest'), TINY.digest);
    assert.equal(sha256(res.body), TINY.digest);
    assert.equal(res.header('content-type'), TINY.mediaType);
  });

  it('forwards every Accept value: a manifest list stays a list, an OCI index stays an index', async () => {
    for (const img of [MULTI, OCI_INDEX]) {
      const name = img.repo.replace('library/', '');
      const t = await token(name);
      const accept = [
        'application/vnd.docker.distribution.manifest.v2+json',
        'application/vnd.docker.distribution.manifest.list.v2+json',
        'application/vnd.oci.image.manifest.v1+json',
        'application/vnd.oci.image.index.v1+json',
      ];
      const res = await httpGet(`${docxy.url}/v2/${name}/manifests/1`, {
        headers: { authorization: `Bearer ${t}`, accept },
      });
      assert.equal(res.status, 200, name);
      assert.equal(res.header('docker-content-digest'), img.digest);
      assert.equal(res.header('content-type'), img.mediaType);
    }
  });

  it('answers a manifest HEAD with the exact Content-Length and digest', async () => {
    const t = await token('someuser/app');
    const res = await httpGet(`${docxy.url}/v2/someuser/app/manifests/2`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${t}`, accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(res.status, 200);
    assert.equal(res.header('content-length'), String(SOMEUSER_APP.size));
    assert.equal(res.header('docker-content-digest'), SOMEUSER_APP.digest);
  });

  it('follows the CDN redirect itself and never sends Authorization there', async () => {
    const layer = TINY.layers[0]!;
    const t = await token('tiny');
    const cdnBefore = hub.cdn!.requests.length;
    const res = await httpGet(`${docxy.url}/v2/tiny/blobs/${layer.digest}`, {
      headers: { authorization: `Bearer ${t}` },
    });
    assert.equal(res.status, 200);
    assert.equal(res.header('location'), undefined);
    assert.equal(sha256(res.body), layer.digest);
    const cdnSeen = hub.cdn!.requests.slice(cdnBefore);
    assert.ok(cdnSeen.length >= 1, 'the blob came from the CDN');
    assert.ok(cdnSeen.every((r) => r.authorization === undefined));
    assert.equal(hub.cdn!.rejected.length, 0);
  });

  it('answers a Range GET on a blob with 206 and exactly those bytes', async () => {
    const layer = TINY.blobs.find((b) => b.digest === TINY.layers[0]!.digest)!;
    const bytes = layer.bytes!;
    const t = await token('tiny');
    const res = await httpGet(`${docxy.url}/v2/tiny/blobs/${layer.digest}`, {
      headers: { authorization: `Bearer ${t}`, range: 'bytes=10-99' },
    });
    assert.equal(res.status, 206);
    assert.equal(res.header('content-range'), `bytes 10-99/${layer.size}`);
    assert.deepEqual(res.body, bytes.subarray(10, 100));
  });

  it('relays tags/list', async () => {
    const t = await token('tiny');
    const res = await httpGet(`${docxy.url}/v2/tiny/tags/list`, {
      headers: { authorization: `Bearer ${t}` },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { name: 'library/tiny', tags: ['1'] });
  });

  it('refuses push with 405 UNSUPPORTED in the OCI error format', async () => {
    for (const [method, path] of [
      ['POST', '/v2/tiny/blobs/uploads/'],
      ['PUT', '/v2/tiny/manifests/1'],
      ['PATCH', '/v2/tiny/blobs/uploads/x'],
      ['DELETE', `/v2/tiny/blobs/${TINY.digest}`],
    ] as const) {
      const res = await httpGet(`${docxy.url}${path}`, {
        method,
        body: 'x',
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(res.status, 405, `${method} ${path}`);
      assert.equal((res.json() as { errors: { code: string }[] }).errors[0]?.code, 'UNSUPPORTED');
    }
  });

  it('rejects invalid names, tags and digests with 400 before contacting the upstream', async () => {
    const before = (await hub.registryRequests()).length;
    const cases = [
      ['/v2/Bad/manifests/1', 'NAME_INVALID'],
      ['/v2/a/..b/manifests/1', 'NAME_INVALID'],
      ['/v2/tiny/manifests/-1', 'TAG_INVALID'],
      ['/v2/tiny/blobs/sha256:1234', 'DIGEST_INVALID'],
    ] as const;
    for (const [path, code] of cases) {
      const res = await httpGet(`${docxy.url}${path}`);
      assert.equal(res.status, 400, path);
      assert.equal((res.json() as { errors: { code: string }[] }).errors[0]?.code, code);
    }
    assert.equal((await hub.registryRequests()).length, before);
  });

  it('relays the upstream 404 for an unknown manifest as OCI JSON', async () => {
    const t = await token('tiny');
    const res = await httpGet(`${docxy.url}/v2/tiny/manifests/nope`, {
      headers: { authorization: `Bearer ${t}`, accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(res.status, 404);
    assert.equal((res.json() as { errors: { code: string }[] }).errors[0]?.code, 'MANIFEST_UNKNOWN');
  });

  it('answers /health', async () => {
    const res = await httpGet(`${docxy.url}/health`);
    assert.equal(res.status, 200);
    assert.equal((res.json() as { status: string }).status, 'ok');
  });

  it('logs one line per request with the fields that matter and never a token', async () => {
    const t = await token('tiny');
    await httpGet(`${docxy.url}/v2/tiny/manifests/1`, {
      headers: { authorization: `Bearer ${t}`, accept: ACCEPT_ALL_MANIFESTS },
    });
    const line = docxy.requestLogs().findLast((l) => l.path === '/v2/tiny/manifests/1');
    assert.ok(line);
    for (const k of ['reqId', 'method', 'path', 'upstream', 'status', 'bytes', 'durationMs'])
      assert.ok(k in line, k);
    assert.equal(line.status, 200);
    assert.equal(line.bytes, TINY.size);
    assert.ok(!docxy.logText().includes(t), 'the token appears in a log line');
  });
});
