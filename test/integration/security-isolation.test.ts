/**
 * Isolation of private content on the open mirror (`auth.anonymous: true`, the default), where
 * clients bring their own upstream credentials (pass-through tokens from `/auth/token`).
 *
 * The fake hub's token server makes `private/app` private: anonymous callers and bob get no access
 * to it, alice does. Alice pulls private/app:1 through Docxy, which fetches it with her token and
 * caches it (as private). Then anonymous clients and bob ask for the manifest (by tag and digest,
 * GET and HEAD) and every blob, under private/app and under a public repository name: never 200,
 * never the bytes. Alice again: 200 from the cache. Her upstream proof is remembered for a while
 * (no upstream request on a repeat), and a new credential is checked anew.
 *
 * Tests in this file run in order and build on each other (alice's first pull fills the cache).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { paths } from '../../src/storage/paths.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken, type TestResponse } from '../helpers/http.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  basicAuthorization,
  buildImage,
  pushImage,
  seedImages,
  type ImageDescriptor,
} from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';
import { httpPull, need, type HttpPull } from '../helpers/security.ts';

const alice = { username: 'alice', password: 'alice-upstream-pw' };
const bob = { username: 'bob', password: 'bob-upstream-pw' };
const REPO = 'private/app';

let hub: FakeHub | undefined;
let docxy: TestDocxy | undefined;
let image: ImageDescriptor | undefined;
/** What alice's first pull returned: manifest bytes and blob digests. */
let pulled: HttpPull | undefined;
/** Every blob's bytes, as alice received them (to check nobody else gets them). */
const blobBytes = new Map<string, Buffer>();

const theHub = (): FakeHub => need(hub, 'the fake hub');
const theDocxy = (): TestDocxy => need(docxy, 'docxy');
const theImage = (): ImageDescriptor => need(image, 'the private image');

before(async () => {
  hub = await startFakeHub({
    users: { [alice.username]: alice.password, [bob.username]: bob.password },
    privateRepositories: { [REPO]: [alice.username] },
  });
  await seedImages(hub, ['tiny']);
  image = await pushImage(hub, await buildImage({ repo: REPO, tag: '1' }));
  docxy = await startDocxy({ upstream: { url: hub.registryUrl } });
});

after(async () => {
  const results = await Promise.allSettled([docxy?.stop(), hub?.stop()]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

/** A pull token from Docxy's realm (forwarded to the hub's token server) for `user`, or anonymous. */
function token(user?: { username: string; password: string }, repo = REPO): Promise<string> {
  return pullToken(
    `${theDocxy().url}/auth/token`,
    theHub().service,
    repo,
    user === undefined ? undefined : basicAuthorization(user),
  );
}

const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });

/** Registry requests (from its access log) since `mark`, as `METHOD uri -> status`. */
async function registrySince(mark: number): Promise<string[]> {
  return (await theHub().registryRequests()).slice(mark).map((r) => `${r.method} ${r.uri} -> ${r.status}`);
}

/**
 * Every way to ask for the private image's content under `repo`: manifest by tag and digest (GET
 * and HEAD) and every blob (GET and HEAD).
 */
function probes(repo: string): { method: 'GET' | 'HEAD'; path: string }[] {
  const img = theImage();
  const out: { method: 'GET' | 'HEAD'; path: string }[] = [];
  for (const method of ['GET', 'HEAD'] as const) {
    out.push({ method, path: `/v2/${repo}/manifests/1` });
    out.push({ method, path: `/v2/${repo}/manifests/${img.digest}` });
    for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)])
      out.push({ method, path: `/v2/${repo}/blobs/${d}` });
  }
  return out;
}

/** The response is a refusal (401/403/404) and carries none of the private bytes. */
function assertRefusal(res: TestResponse, what: string): void {
  assert.ok(
    [401, 403, 404].includes(res.status),
    `${what}: ${res.status} ${res.body.toString().slice(0, 200)}`,
  );
  const p = need(pulled, "alice's pull");
  assert.ok(!res.body.includes(p.manifest), `${what}: the manifest bytes`);
  for (const [d, bytes] of blobBytes) assert.ok(!res.body.includes(bytes), `${what}: the bytes of ${d}`);
  assert.notEqual(res.header('docker-content-digest'), theImage().digest, `${what}: the manifest digest`);
}

describe('private content fetched with a client credential (open mirror)', () => {
  it('control: the hub refuses private/app to anonymous callers and bob, and grants it to alice', async () => {
    const h = theHub();
    for (const [who, user] of [
      ['anonymous', undefined],
      ['bob', bob],
    ] as const) {
      const t = await pullToken(
        h.realm,
        h.service,
        REPO,
        user === undefined ? undefined : basicAuthorization(user),
      );
      const res = await httpGet(`${h.registryUrl}/v2/${REPO}/manifests/1`, {
        headers: { ...bearer(t), accept: ACCEPT_ALL_MANIFESTS },
      });
      assert.equal(res.status, 401, `${who} at the hub`);
    }
    const t = await pullToken(h.realm, h.service, REPO, basicAuthorization(alice));
    const res = await httpGet(`${h.registryUrl}/v2/${REPO}/manifests/1`, {
      headers: { ...bearer(t), accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(res.status, 200, 'alice at the hub');
  });

  it('alice pulls private/app:1 with her token: every object a cache miss, then stored under data/objects', async (t) => {
    const d = theDocxy();
    const mark = d.requestLogs().length;
    const p = await httpPull(d.url, REPO, '1', bearer(await token(alice)));
    pulled = p;
    assert.equal(p.digest, theImage().digest);
    for (const digest of p.blobs) {
      const res = await httpGet(`${d.url}/v2/${REPO}/blobs/${digest}`, {
        headers: bearer(await token(alice)),
      });
      blobBytes.set(digest, res.body);
    }
    const lines = d.requestLogs().slice(mark);
    const cacheOf = (path: string): unknown => lines.find((l) => l.path === path)?.cache;
    assert.equal(cacheOf(`/v2/${REPO}/manifests/1`), 'miss');
    for (const digest of p.blobs) assert.equal(cacheOf(`/v2/${REPO}/blobs/${digest}`), 'miss', digest);
    const objects = join(d.dataDir, 'objects');
    const keys = [paths.manifest(p.digest), ...p.blobs.map((b) => paths.blob(b))];
    await waitFor(
      'the objects to be committed',
      () => keys.every((k) => existsSync(join(objects, k))),
      10_000,
    );
    for (const k of keys) {
      const meta = JSON.parse(readFileSync(join(d.dataDir, 'meta', `${k}.json`), 'utf8')) as {
        visibility?: string;
      };
      const visibility = meta.visibility;
      t.diagnostic(`${k}: visibility ${String(visibility)}`);
      assert.equal(visibility, 'private', `${k} is stored as private`);
    }
  });

  it('an anonymous client gets none of it under private/app (no token, or an anonymous one)', async (t) => {
    const d = theDocxy();
    const anonToken = await token();
    for (const headers of [{}, bearer(anonToken)]) {
      for (const { method, path } of probes(REPO)) {
        const res = await httpGet(`${d.url}${path}`, {
          method,
          headers: { ...headers, accept: ACCEPT_ALL_MANIFESTS },
        });
        assertRefusal(res, `anonymous ${method} ${path}`);
      }
    }
    t.diagnostic(`${probes(REPO).length * 2} anonymous requests refused`);
  });

  it('bob (a hub user without access) gets none of it under private/app', async () => {
    const d = theDocxy();
    const bobToken = await token(bob);
    for (const headers of [bearer(bobToken), { authorization: basicAuthorization(bob) }]) {
      for (const { method, path } of probes(REPO)) {
        const res = await httpGet(`${d.url}${path}`, {
          method,
          headers: { ...headers, accept: ACCEPT_ALL_MANIFESTS },
        });
        assertRefusal(res, `bob ${method} ${path}`);
      }
    }
  });

  it('nobody gets it by digest under a public repository name (library/tiny)', async () => {
    const d = theDocxy();
    const tinyToken = await token(undefined, 'tiny');
    const bobTiny = await token(bob, 'tiny');
    const img = theImage();
    for (const [who, headers] of [
      ['anonymous', {}],
      ['anonymous with a tiny token', bearer(tinyToken)],
      ['bob with a tiny token', bearer(bobTiny)],
    ] as const) {
      for (const path of [
        `/v2/tiny/manifests/${img.digest}`,
        `/v2/library/tiny/manifests/${img.digest}`,
        ...[img.configDigest, ...img.layers.map((l) => l.digest)].map((b) => `/v2/library/tiny/blobs/${b}`),
      ]) {
        const res = await httpGet(`${d.url}${path}`, {
          headers: { ...headers, accept: ACCEPT_ALL_MANIFESTS },
        });
        assertRefusal(res, `${who} GET ${path}`);
      }
    }
  });

  it('alice again gets 200 from the cache (hit)', async () => {
    const d = theDocxy();
    const aliceToken = await token(alice);
    const mark = d.requestLogs().length;
    const p = await httpPull(d.url, REPO, '1', bearer(aliceToken));
    assert.equal(p.digest, theImage().digest);
    const lines = d.requestLogs().slice(mark);
    assert.equal(lines.length, 1 + p.blobs.length);
    for (const l of lines) assert.equal(l.cache, 'hit', `${String(l.path)}: ${String(l.cache)}`);
  });

  it("alice's access is remembered: a repeat with the same token within a minute asks the upstream nothing", async (t) => {
    const d = theDocxy();
    const aliceToken = await token(alice);
    await httpPull(d.url, REPO, '1', bearer(aliceToken)); // proves (or re-uses a proof) for this token
    const mark = (await theHub().registryRequests()).length;
    const p = await httpPull(d.url, REPO, '1', bearer(aliceToken));
    assert.equal(p.digest, theImage().digest);
    const seen = await registrySince(mark);
    t.diagnostic(`registry requests on the repeat: ${seen.length === 0 ? 'none' : seen.join(', ')}`);
    assert.deepEqual(seen, [], 'no upstream request (no HEAD) on the repeat');
  });

  it('a new credential is proven anew: its first request is checked upstream with a HEAD', async (t) => {
    const d = theDocxy();
    const fresh = await token(alice);
    const mark = (await theHub().registryRequests()).length;
    const res = await httpGet(`${d.url}/v2/${REPO}/manifests/${theImage().digest}`, {
      headers: { ...bearer(fresh), accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(res.status, 200);
    const seen = await registrySince(mark);
    t.diagnostic(`registry requests for a new token: ${seen.join(', ')}`);
    assert.ok(
      seen.some((r) => r.startsWith(`HEAD /v2/${REPO}/manifests/${theImage().digest} -> 200`)),
      `a HEAD with the new credential: ${seen.join(', ')}`,
    );
  });
});
