/**
 * Hot manifests served from memory (`cache.memory.manifest_bytes`): two Docxys in front of one
 * fake hub, one keeping manifests in memory (the default) and one with the memory cache off, so
 * that every hit of the second is read from disk. For a tag and a digest, GET and HEAD, a warm hit
 * from memory sends the same status, bytes and headers as one from disk; and a manifest the
 * evictor removed is not answered from memory afterwards, but fetched from the upstream again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { need } from '../helpers/client-steps.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken, type TestResponse } from '../helpers/http.ts';
import { ACCEPT_ALL_MANIFESTS, seedImages, sha256, type ImageDescriptor } from '../helpers/images.ts';

let hub: FakeHub | undefined;
let memory: TestDocxy | undefined;
let disk: TestDocxy | undefined;
let tiny: ImageDescriptor | undefined;

/** Headers a manifest answer must carry identically whichever path served it. */
const compared = [
  'content-type',
  'content-length',
  'docker-content-digest',
  'etag',
  'docker-distribution-api-version',
] as const;

before(async () => {
  hub = await startFakeHub({ cdn: false });
  tiny = (await seedImages(hub, ['tiny'])).tiny;
  // max_size 1 byte: an eviction run removes every manifest not being read.
  memory = await startDocxy({ upstream: { url: hub.registryUrl }, cache: { max_size: 1 } });
  disk = await startDocxy({
    upstream: { url: hub.registryUrl },
    cache: { max_size: 1, memory: { manifest_bytes: 0 } },
  });
});

after(async () => {
  await memory?.stop();
  await disk?.stop();
  await hub?.stop();
});

async function get(d: TestDocxy, reference: string, method: 'GET' | 'HEAD' = 'GET'): Promise<TestResponse> {
  const image = need(tiny, 'library/tiny');
  const token = await pullToken(`${d.url}/auth/token`, 'registry.docker.io', image.repo);
  return httpGet(`${d.url}/v2/${image.repo}/manifests/${reference}`, {
    method,
    headers: { accept: ACCEPT_ALL_MANIFESTS, authorization: `Bearer ${token}` },
  });
}

const upstreamManifestGets = async (): Promise<number> =>
  (await need(hub, 'the hub').registryRequests()).filter(
    (r) => r.method === 'GET' && r.uri.includes('/manifests/'),
  ).length;

describe('hot manifests in memory', () => {
  it('a hit from memory answers the same bytes and headers as one from disk', async () => {
    const image = need(tiny, 'library/tiny');
    const servers = [need(memory, 'memory docxy'), need(disk, 'disk docxy')] as const;
    for (const reference of [image.tag, image.digest]) {
      for (const method of ['GET', 'HEAD'] as const) {
        const answers: TestResponse[] = [];
        for (const d of servers) {
          await get(d, reference, method); // fills the cache when it is the first
          const mark = d.logMark();
          answers.push(await get(d, reference, method));
          const [line] = d.requestsSince(mark).filter((l) => String(l.path).includes('/manifests/'));
          assert.equal(line?.cache, 'hit', `${method} ${reference}: ${d.describeSince(mark)}`);
        }
        const [fromMemory, fromDisk] = answers as [TestResponse, TestResponse];
        assert.equal(fromMemory.status, 200);
        assert.equal(fromDisk.status, 200);
        for (const h of compared)
          assert.equal(fromMemory.header(h), fromDisk.header(h), `${method} ${reference}: ${h}`);
        assert.equal(fromMemory.header('docker-content-digest'), image.digest);
        assert.deepEqual(fromMemory.body, fromDisk.body);
        if (method === 'GET') assert.equal(sha256(fromMemory.body), image.digest);
        else assert.equal(fromMemory.body.length, 0);
      }
    }
  });

  it('an evicted manifest is fetched from the upstream again, not answered from memory', async () => {
    const image = need(tiny, 'library/tiny');
    const d = need(memory, 'memory docxy');
    assert.equal((await get(d, image.digest)).status, 200);
    const before = await upstreamManifestGets();
    assert.equal((await get(d, image.digest)).status, 200);
    assert.equal(await upstreamManifestGets(), before, 'a warm hit asks the upstream nothing');
    const result = await need(d.app.evictor(), 'the evictor').run();
    assert.ok(result.removed > 0, `the eviction removed something: ${JSON.stringify(result)}`);
    const mark = d.logMark();
    const again = await get(d, image.digest);
    assert.equal(again.status, 200);
    assert.equal(sha256(again.body), image.digest);
    const [line] = d.requestsSince(mark).filter((l) => String(l.path).includes('/manifests/'));
    assert.equal(line?.cache, 'miss', d.describeSince(mark));
    assert.equal(await upstreamManifestGets(), before + 1);
  });
});
