/**
 * Tags and manifests through the cache, against the real fake hub: a warm tag within its TTL costs
 * the upstream nothing, past it one HEAD revalidates it (a HEAD does not count against Docker Hub's
 * pull limit), a moved tag is picked up, a manifest by digest never goes upstream again, and with
 * the upstream down Docxy keeps serving what it has: stale tags, its own challenge, the cached tag
 * list and stand-in tokens.
 *
 * Upstream requests are counted exactly: the registry's access log and the token server's request
 * list, from a mark taken just before the requests under test.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { markUpstream, streamGet, upstreamSince } from '../helpers/cache-probe.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken, type TestResponse } from '../helpers/http.ts';
import { ACCEPT_ALL_MANIFESTS, buildImage, pushImage, type TestImage } from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';

/** The TTL of the short-TTL instances, and how long the tests wait for it to pass. */
const SHORT_TTL = '1s';
const PAST_TTL_MS = 1200;

describe('tags and manifests through the cache', () => {
  let hub: FakeHub;

  before(async () => {
    hub = await startFakeHub();
  });

  after(async () => {
    await hub.stop();
  });

  async function pushed(repo: string, tag: string, seed?: string): Promise<TestImage> {
    const image = await buildImage({ repo: `library/${repo}`, tag, ...(seed === undefined ? {} : { seed }) });
    await pushImage(hub, image);
    return image;
  }

  function manifest(docxy: TestDocxy, token: string, repo: string, ref: string): Promise<TestResponse> {
    return httpGet(`${docxy.url}/v2/${repo}/manifests/${ref}`, {
      headers: { authorization: `Bearer ${token}`, accept: ACCEPT_ALL_MANIFESTS },
    });
  }

  function assertManifest(res: TestResponse, image: TestImage, what: string): void {
    assert.equal(res.status, 200, what);
    assert.equal(res.header('docker-content-digest'), image.digest, what);
    assert.equal(res.header('content-type'), image.mediaType, what);
    assert.deepEqual(res.body, image.manifests.at(-1)?.bytes, `${what}: the pushed bytes`);
  }

  /** The cache result logged for the `n`-th (1-based) request to `path`, once it is logged. */
  async function cacheOf(docxy: TestDocxy, path: string, n: number): Promise<unknown> {
    const lines = (): Record<string, unknown>[] => docxy.requestLogs().filter((l) => l.path === path);
    await waitFor(`${n} log lines for ${path}`, () => lines().length >= n);
    return lines()[n - 1]?.cache;
  }

  it('a warm tag inside its TTL: zero registry and zero token server requests', async () => {
    const image = await pushed('tagwarm', '1');
    const docxy = await startDocxy({ upstream: { url: hub.registryUrl } });
    try {
      const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'tagwarm');
      assertManifest(await manifest(docxy, token, 'tagwarm', '1'), image, 'first GET');
      const mark = await markUpstream(hub);
      assertManifest(await manifest(docxy, token, 'tagwarm', '1'), image, 'warm GET');
      const since = await upstreamSince(hub, mark);
      assert.deepEqual(since.registry, [], 'no registry request');
      assert.deepEqual(since.token, [], 'no token request');
      assert.equal(await cacheOf(docxy, '/v2/tagwarm/manifests/1', 1), 'miss');
      assert.equal(await cacheOf(docxy, '/v2/tagwarm/manifests/1', 2), 'hit');
    } finally {
      await docxy.stop();
    }
  });

  it('past the TTL a tag is revalidated with one HEAD and no GET', async () => {
    const image = await pushed('tagreval', '1');
    const docxy = await startDocxy({ upstream: { url: hub.registryUrl, tag_ttl: SHORT_TTL } });
    try {
      const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'tagreval');
      assertManifest(await manifest(docxy, token, 'tagreval', '1'), image, 'first GET');
      await sleep(PAST_TTL_MS);
      const mark = await markUpstream(hub);
      assertManifest(await manifest(docxy, token, 'tagreval', '1'), image, 'GET past the TTL');
      const since = await upstreamSince(hub, mark);
      assert.deepEqual(
        since.registry.map((r) => `${r.method} ${r.uri} ${r.status}`),
        ['HEAD /v2/library/tagreval/manifests/1 200'],
      );
      assert.deepEqual(since.token, [], 'the token Docxy holds is still good');
      assert.equal(await cacheOf(docxy, '/v2/tagreval/manifests/1', 2), 'revalidated');
    } finally {
      await docxy.stop();
    }
  });

  it('a tag moved upstream: once the TTL has passed the client gets the new digest', async () => {
    const old = await pushed('tagmove', '1');
    const docxy = await startDocxy({ upstream: { url: hub.registryUrl, tag_ttl: SHORT_TTL } });
    try {
      const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'tagmove');
      assertManifest(await manifest(docxy, token, 'tagmove', '1'), old, 'before the move');
      const moved = await pushed('tagmove', '1', 'moved');
      assert.notEqual(moved.digest, old.digest);
      await sleep(PAST_TTL_MS);
      const mark = await markUpstream(hub);
      assertManifest(await manifest(docxy, token, 'tagmove', '1'), moved, 'after the move');
      const since = await upstreamSince(hub, mark);
      assert.deepEqual(
        since.registry.map((r) => `${r.method} ${r.uri} ${r.status}`),
        ['HEAD /v2/library/tagmove/manifests/1 200', 'GET /v2/library/tagmove/manifests/1 200'],
        'a HEAD saw the new digest, one GET fetched it',
      );
      // And the new answer is now the cached one.
      const mark2 = await markUpstream(hub);
      assertManifest(await manifest(docxy, token, 'tagmove', '1'), moved, 'again');
      assert.deepEqual((await upstreamSince(hub, mark2)).registry, []);
    } finally {
      await docxy.stop();
    }
  });

  it('50 concurrent requests of a cold tag, of an expired tag and of a cold digest: one upstream request each', async () => {
    const image = await pushed('tagherd', '1');
    const other = await pushed('tagherd', '2', 'other');
    const docxy = await startDocxy({ upstream: { url: hub.registryUrl, tag_ttl: SHORT_TTL } });
    try {
      const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'tagherd');
      // The one upstream request is answered as `first`; the others joined it (`coalesced`) or
      // came after it ended (`hit`).
      const herd = async (ref: string, want: TestImage, first: string): Promise<string[]> => {
        const mark = await markUpstream(hub);
        const path = `/v2/tagherd/manifests/${ref}`;
        const logged = docxy.requestLogs().filter((l) => l.path === path).length;
        const all = await Promise.all(
          Array.from({ length: 50 }, () => manifest(docxy, token, 'tagherd', ref)),
        );
        all.forEach((r, i) => {
          assertManifest(r, want, `${first}: client ${String(i)}`);
        });
        await cacheOf(docxy, path, logged + 50);
        const counts = new Map<string, number>();
        for (const l of docxy
          .requestLogs()
          .filter((x) => x.path === path)
          .slice(logged))
          counts.set(String(l.cache), (counts.get(String(l.cache)) ?? 0) + 1);
        const seen = JSON.stringify([...counts]);
        assert.equal(counts.get(first), 1, seen);
        assert.equal((counts.get('coalesced') ?? 0) + (counts.get('hit') ?? 0), 49, seen);
        assert.ok((counts.get('coalesced') ?? 0) > 0, `some joined the upstream request: ${seen}`);
        return (await upstreamSince(hub, mark)).registry.map((r) => `${r.method} ${r.uri} ${r.status}`);
      };
      assert.deepEqual(await herd('1', image, 'miss'), ['GET /v2/library/tagherd/manifests/1 200']);
      await sleep(PAST_TTL_MS);
      assert.deepEqual(await herd('1', image, 'revalidated'), ['HEAD /v2/library/tagherd/manifests/1 200']);
      assert.deepEqual(await herd(other.digest, other, 'miss'), [
        `GET /v2/library/tagherd/manifests/${other.digest} 200`,
      ]);
    } finally {
      await docxy.stop();
    }
  });

  it('a manifest by digest, once cached, never goes upstream again, even with the registry down', async () => {
    const image = await pushed('digestonce', '1');
    const docxy = await startDocxy({ upstream: { url: hub.registryUrl, tag_ttl: SHORT_TTL } });
    try {
      const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'digestonce');
      const mark = await markUpstream(hub);
      assertManifest(await manifest(docxy, token, 'digestonce', image.digest), image, 'first GET');
      assert.deepEqual(
        (await upstreamSince(hub, mark)).registry
          .filter((r) => r.uri.startsWith('/v2/library/digestonce/'))
          .map((r) => `${r.method} ${r.uri} ${r.status}`),
        [`GET /v2/library/digestonce/manifests/${image.digest} 200`],
      );
      await sleep(PAST_TTL_MS); // a TTL is for tags only
      const mark2 = await markUpstream(hub);
      assertManifest(await manifest(docxy, token, 'digestonce', image.digest), image, 'second GET');
      assert.deepEqual((await upstreamSince(hub, mark2)).registry, []);
      await hub.stopRegistry();
      try {
        assertManifest(
          await manifest(docxy, token, 'digestonce', image.digest),
          image,
          'GET with the registry down',
        );
      } finally {
        await hub.startRegistry();
      }
      const path = `/v2/digestonce/manifests/${image.digest}`;
      assert.equal(await cacheOf(docxy, path, 2), 'hit');
      assert.equal(await cacheOf(docxy, path, 3), 'hit');
    } finally {
      await docxy.stop();
    }
  });

  // Last: it stops the registry and then the token server for good.
  describe('with the upstream down', () => {
    let docxy: TestDocxy;
    let token: string;
    let one: TestImage;

    before(async () => {
      one = await pushed('stale', '1');
      await pushed('stale', '2', 'two');
      await pushed('stale', '3', 'three'); // upstream only: never pulled through Docxy
      docxy = await startDocxy({ upstream: { url: hub.registryUrl, tag_ttl: SHORT_TTL } });
      token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'stale');
      assertManifest(await manifest(docxy, token, 'stale', '1'), one, 'warm-up of tag 1');
      assert.equal((await manifest(docxy, token, 'stale', '2')).status, 200);
      const layer = one.layers[0]!;
      const blob = await streamGet(`${docxy.url}/v2/stale/blobs/${layer.digest}`, {
        authorization: `Bearer ${token}`,
      });
      assert.equal(blob.digest, layer.digest);
      await waitFor('the layer fill to end', () =>
        docxy.logs().some((l) => l.msg === 'cache fill ended' && l.digest === layer.digest),
      );
      await hub.stopRegistry();
      await sleep(PAST_TTL_MS);
    });

    after(async () => {
      await docxy.stop();
    });

    it('a tag past its TTL is served stale with the old digest', async () => {
      assertManifest(await manifest(docxy, token, 'stale', '1'), one, 'stale GET');
      assert.equal(await cacheOf(docxy, '/v2/stale/manifests/1', 2), 'stale');
    });

    it("/v2/ still answers a 401 challenge with Docxy's realm", async () => {
      const res = await httpGet(`${docxy.url}/v2/`);
      assert.equal(res.status, 401);
      assert.equal(
        res.header('www-authenticate'),
        `Bearer realm="${docxy.publicUrl}/auth/token",service="${hub.service}"`,
      );
      assert.equal(res.header('docker-distribution-api-version'), 'registry/2.0');
    });

    it('tags/list lists the cached tags', async () => {
      const res = await httpGet(`${docxy.url}/v2/stale/tags/list`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(res.status, 200);
      assert.deepEqual(res.json(), { name: 'library/stale', tags: ['1', '2'] });
    });

    it('with the token service unreachable too, /auth/token gives a stand-in docxy. token the cached blob serves with', async () => {
      await hub.token.stop();
      const res = await httpGet(
        `${docxy.url}/auth/token?service=${encodeURIComponent(hub.service)}&scope=${encodeURIComponent('repository:stale:pull')}`,
      );
      assert.equal(res.status, 200);
      const body = res.json() as { token?: unknown; access_token?: unknown };
      assert.equal(typeof body.token, 'string');
      const standIn = String(body.token);
      assert.ok(standIn.startsWith('docxy.'), standIn);
      assert.equal(body.access_token, standIn);

      const layer = one.layers[0]!;
      const blob = await streamGet(`${docxy.url}/v2/stale/blobs/${layer.digest}`, {
        authorization: `Bearer ${standIn}`,
      });
      assert.equal(blob.error, undefined);
      assert.equal(blob.status, 200);
      assert.equal(blob.bytes, layer.size);
      assert.equal(blob.digest, layer.digest);
      assert.equal(await cacheOf(docxy, `/v2/stale/blobs/${layer.digest}`, 2), 'hit');
    });
  });
});
