/**
 * Proves the fake Docker Hub test world (test/helpers/fake-hub.ts) behaves like Docker Hub where
 * the proxy's tests depend on it: Bearer challenges, anonymous and user tokens, exact manifest
 * bytes and digests, blob 307s to a CDN that refuses Authorization, an access log, and a
 * registry that can be stopped and started again; and the 200 MB image builds and pushes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  bigImage,
  buildImage,
  MediaType,
  MULTI,
  OCI_INDEX,
  OCI_MANIFEST,
  pushBlob,
  pushImage,
  seedImages,
  sha256,
  SOMEUSER_APP,
  TINY,
  type TestImage,
} from '../helpers/images.ts';

interface TokenAnswer {
  token: string;
  access_token: string;
  expires_in: number;
  issued_at: string;
}

/** Parses `Bearer realm="…",service="…",scope="…"` into its parameters. */
function parseChallenge(header: string | null): Record<string, string> {
  assert.ok(header !== null, 'WWW-Authenticate is missing');
  assert.match(header, /^Bearer /);
  const params: Record<string, string> = {};
  for (const m of header.slice('Bearer '.length).matchAll(/(\w+)="([^"]*)"/g)) {
    if (m[1] !== undefined && m[2] !== undefined) params[m[1]] = m[2];
  }
  return params;
}

async function getToken(hub: FakeHub, scopes: readonly string[], authorization?: string): Promise<Response> {
  const url = new URL(hub.realm);
  url.searchParams.set('service', hub.service);
  for (const s of scopes) url.searchParams.append('scope', s);
  return fetch(url, authorization === undefined ? {} : { headers: { authorization } });
}

async function pullToken(hub: FakeHub, repo: string): Promise<string> {
  const res = await getToken(hub, [`repository:${repo}:pull`]);
  assert.equal(res.status, 200);
  return ((await res.json()) as TokenAnswer).token;
}

function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

async function getManifest(hub: FakeHub, repo: string, reference: string, accept = ACCEPT_ALL_MANIFESTS) {
  const token = await pullToken(hub, repo);
  const res = await fetch(`${hub.registryUrl}/v2/${repo}/manifests/${reference}`, {
    headers: { authorization: `Bearer ${token}`, accept },
  });
  const body = Buffer.from(await res.arrayBuffer());
  return { res, body };
}

async function getBlobRedirect(
  hub: FakeHub,
  repo: string,
  digest: string,
  method = 'GET',
): Promise<Response> {
  const token = await pullToken(hub, repo);
  return fetch(`${hub.registryUrl}/v2/${repo}/blobs/${digest}`, {
    method,
    redirect: 'manual',
    headers: { authorization: `Bearer ${token}` },
  });
}

describe('fake Docker Hub (with CDN)', () => {
  let hub: FakeHub;

  before(async () => {
    hub = await startFakeHub();
    await seedImages(hub);
  });

  after(async () => {
    // `hub` is unset when startFakeHub itself failed; it cleaned up after itself then.
    await (hub as FakeHub | undefined)?.stop();
  });

  it('challenges GET /v2/ with a Bearer realm and service', async () => {
    const res = await fetch(`${hub.registryUrl}/v2/`);
    assert.equal(res.status, 401);
    const challenge = parseChallenge(res.headers.get('www-authenticate'));
    assert.equal(challenge.realm, hub.realm);
    assert.equal(challenge.service, hub.service);
    assert.equal(challenge.scope, undefined);
  });

  it('names the scope in a manifest challenge', async () => {
    const res = await fetch(`${hub.registryUrl}/v2/library/tiny/manifests/1`);
    assert.equal(res.status, 401);
    const challenge = parseChallenge(res.headers.get('www-authenticate'));
    assert.equal(challenge.scope, 'repository:library/tiny:pull');
  });

  it('issues an anonymous pull token signed with an x5c certificate', async () => {
    const res = await getToken(hub, ['repository:library/tiny:pull']);
    assert.equal(res.status, 200);
    const body = (await res.json()) as TokenAnswer;
    assert.equal(body.token, body.access_token);
    assert.equal(body.expires_in, 300);
    assert.ok(!Number.isNaN(Date.parse(body.issued_at)));
    const header = decodeProtectedHeader(body.token);
    assert.equal(header.alg, 'ES256');
    assert.equal(header.x5c?.length, 1);
    const claims = decodeJwt(body.token);
    assert.equal(claims.aud, hub.service);
    assert.equal(claims.sub, '');
    assert.deepEqual(claims.access, [{ type: 'repository', name: 'library/tiny', actions: ['pull'] }]);
    const last = hub.token.requests.at(-1);
    assert.ok(last);
    assert.equal(last.authorization, undefined);
    assert.deepEqual(last.query.scope, ['repository:library/tiny:pull']);
    assert.equal(last.query.service, hub.service);
  });

  it('never grants push anonymously, grants pull+push to the push user, refuses a wrong password', async () => {
    const anon = (await (await getToken(hub, ['repository:library/tiny:pull,push'])).json()) as TokenAnswer;
    assert.deepEqual(decodeJwt(anon.token).access, [
      { type: 'repository', name: 'library/tiny', actions: ['pull'] },
    ]);

    const { username, password } = hub.pushUser;
    const url = new URL(hub.realm);
    url.searchParams.set('service', hub.service);
    url.searchParams.set('account', username);
    url.searchParams.append('scope', 'repository:library/tiny:pull,push');
    url.searchParams.append('scope', 'repository:someuser/app:pull');
    const user = await fetch(url, { headers: { authorization: basic(username, password) } });
    assert.equal(user.status, 200);
    const claims = decodeJwt(((await user.json()) as TokenAnswer).token);
    assert.equal(claims.sub, username);
    assert.deepEqual(claims.access, [
      { type: 'repository', name: 'library/tiny', actions: ['pull', 'push'] },
      { type: 'repository', name: 'someuser/app', actions: ['pull'] },
    ]);
    assert.equal(hub.token.requests.at(-1)?.query.account, username);

    const wrong = await getToken(hub, ['repository:library/tiny:pull'], basic(username, 'wrong'));
    assert.equal(wrong.status, 401);
    assert.match(wrong.headers.get('content-type') ?? '', /json/);
    assert.ok(((await wrong.json()) as { details?: string }).details);
  });

  it('serves every seeded manifest with its pushed digest and bytes', async () => {
    const images: readonly TestImage[] = [TINY, MULTI, OCI_INDEX, OCI_MANIFEST, SOMEUSER_APP];
    for (const image of images) {
      const { res, body } = await getManifest(hub, image.repo, image.tag);
      assert.equal(res.status, 200, `${image.repo}:${image.tag}`);
      assert.equal(res.headers.get('docker-content-digest'), image.digest);
      assert.equal(res.headers.get('content-type'), image.mediaType);
      assert.equal(sha256(body), image.digest);
      assert.equal(body.length, image.size);
      for (const child of image.children ?? []) {
        const c = await getManifest(hub, image.repo, child.digest);
        assert.equal(c.res.status, 200);
        assert.equal(sha256(c.body), child.digest);
        const manifest = JSON.parse(c.body.toString('utf8')) as { config: { digest: string } };
        assert.equal(manifest.config.digest, child.configDigest);
      }
    }
    assert.equal(TINY.mediaType, MediaType.dockerManifest);
    assert.equal(MULTI.mediaType, MediaType.dockerManifestList);
    assert.equal(OCI_INDEX.mediaType, MediaType.ociIndex);
    assert.equal(OCI_MANIFEST.mediaType, MediaType.ociManifest);
  });

  it('answers a manifest HEAD with the digest and exact Content-Length', async () => {
    const token = await pullToken(hub, 'library/tiny');
    const res = await fetch(`${hub.registryUrl}/v2/library/tiny/manifests/1`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${token}`, accept: MediaType.dockerManifest },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-content-digest'), TINY.digest);
    assert.equal(res.headers.get('content-length'), String(TINY.size));
  });

  it('redirects a blob GET to the CDN, which serves it only without Authorization', async () => {
    const cdn = hub.cdn;
    assert.ok(cdn);
    const layer = TINY.layers[0];
    assert.ok(layer);
    const res = await getBlobRedirect(hub, 'library/tiny', layer.digest);
    assert.equal(res.status, 307);
    const location = res.headers.get('location');
    assert.ok(location !== null, 'Location is missing');
    assert.ok(location.startsWith(`${cdn.url}/docker/registry/v2/blobs/`), `Location ${location}`);

    const followed = await fetch(location);
    assert.equal(followed.status, 200);
    const bytes = Buffer.from(await followed.arrayBuffer());
    assert.equal(bytes.length, layer.size);
    assert.equal(sha256(bytes), layer.digest);

    const rejectedBefore = cdn.rejected.length;
    const withAuth = await fetch(location, { headers: { authorization: 'Bearer some-registry-token' } });
    assert.equal(withAuth.status, 400);
    await withAuth.body?.cancel();
    assert.equal(cdn.rejected.length, rejectedBefore + 1);
    assert.equal(cdn.requests.at(-1)?.authorization, 'Bearer some-registry-token');

    const ranged = await fetch(location, { headers: { range: 'bytes=10-19' } });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.headers.get('content-range'), `bytes 10-19/${layer.size}`);
    assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), bytes.subarray(10, 20));
  });

  it('redirects a blob HEAD too (Distribution 2.8 does; the CDN answers the HEAD)', async () => {
    const res = await getBlobRedirect(hub, 'library/tiny', TINY.configDigest, 'HEAD');
    assert.equal(res.status, 307);
    const location = res.headers.get('location');
    assert.ok(location !== null);
    const head = await fetch(location, { method: 'HEAD' });
    assert.equal(head.status, 200);
    const config = TINY.blobs.find((b) => b.digest === TINY.configDigest);
    assert.ok(config);
    assert.equal(head.headers.get('content-length'), String(config.size));
  });

  it('logs the requests it answered, 401 challenges included', async () => {
    await getManifest(hub, 'library/tiny', '1');
    const log = await hub.registryRequests();
    const gets = log.filter((r) => r.method === 'GET' && r.uri === '/v2/library/tiny/manifests/1');
    assert.ok(
      gets.some((r) => r.status === 200),
      'manifest GET with status 200',
    );
    assert.ok(
      gets.some((r) => r.status === 401),
      'the earlier token-less GET',
    );
    assert.ok(
      log.some((r) => r.method === 'PUT' && r.uri === '/v2/library/tiny/manifests/1' && r.status === 201),
    );
    assert.ok(log.every((r) => Number.isFinite(r.time)));
  });

  it('pushes ad-hoc images and raw blobs; a tag can move', async () => {
    const v1 = await buildImage({ repo: 'library/moving', tag: 'latest', seed: 'v1', layerSize: 4096 });
    const v2 = await buildImage({ repo: 'library/moving', tag: 'latest', seed: 'v2', layerSize: 4096 });
    assert.notEqual(v1.digest, v2.digest);
    await pushImage(hub, v1);
    assert.equal(
      (await getManifest(hub, 'library/moving', 'latest')).res.headers.get('docker-content-digest'),
      v1.digest,
    );
    await pushImage(hub, v2);
    assert.equal(
      (await getManifest(hub, 'library/moving', 'latest')).res.headers.get('docker-content-digest'),
      v2.digest,
    );
    // Building twice gives identical bytes.
    assert.equal(
      (await buildImage({ repo: 'library/moving', tag: 'latest', seed: 'v1', layerSize: 4096 })).digest,
      v1.digest,
    );

    const blob = await pushBlob(hub, 'library/moving', Buffer.from('raw blob bytes'));
    assert.equal(blob.digest, sha256('raw blob bytes'));
    assert.equal((await getBlobRedirect(hub, 'library/moving', blob.digest)).status, 307);
  });

  it('stops and restarts the registry on the same port with the same storage', async () => {
    const pid = hub.registryPid();
    assert.ok(pid !== undefined);
    await hub.stopRegistry();
    assert.equal(hub.registryPid(), undefined);
    await assert.rejects(fetch(`${hub.registryUrl}/v2/`));
    // The token server and CDN stay up while the registry is down.
    assert.equal((await getToken(hub, ['repository:library/tiny:pull'])).status, 200);

    await hub.startRegistry();
    assert.notEqual(hub.registryPid(), pid);
    const { res, body } = await getManifest(hub, 'library/tiny', '1');
    assert.equal(res.status, 200);
    assert.equal(sha256(body), TINY.digest);
  });
});

describe('fake Docker Hub (cdn: false)', () => {
  let hub: FakeHub | undefined;

  after(async () => {
    await hub?.stop();
  });

  it('serves blobs itself when there is no CDN', async () => {
    hub = await startFakeHub({ cdn: false });
    assert.equal(hub.cdn, undefined);
    await seedImages(hub, ['tiny']);
    const layer = TINY.layers[0];
    assert.ok(layer);
    const res = await getBlobRedirect(hub, 'library/tiny', layer.digest);
    assert.equal(res.status, 200);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), layer.digest);
  });
});

describe('fake Docker Hub: big image', () => {
  let hub: FakeHub | undefined;

  after(async () => {
    await hub?.stop();
  });

  it('builds (or reuses) and pushes the 200 MB layer', { timeout: 300_000 }, async () => {
    const big = await bigImage();
    const layer = big.layers[0];
    assert.ok(layer);
    assert.ok(layer.size >= 200 * 1024 * 1024);
    hub = await startFakeHub();
    await seedImages(hub, ['big']);
    const res = await getBlobRedirect(hub, big.repo, layer.digest, 'HEAD');
    assert.equal(res.status, 307);
    const location = res.headers.get('location');
    assert.ok(location !== null);
    const head = await fetch(location, { method: 'HEAD' });
    assert.equal(head.headers.get('content-length'), String(layer.size));
  });
});
