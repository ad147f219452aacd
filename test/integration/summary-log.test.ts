/**
 * The periodic summary line against the real fake hub: with a 200 ms interval, a cold pull (the
 * tagged manifest and every blob, each fetched upstream) and then a warm one (each served from the
 * cache) add up, over the summary lines logged, to exactly what happened: N misses then N hits, and
 * bytes from upstream and from cache equal to the manifest's and blobs' sizes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import { ACCEPT_ALL_MANIFESTS, buildImage, pushImage } from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';

interface Summary {
  requests: number;
  hits: number;
  misses: number;
  coalesced: number;
  stale: number;
  bytesFromCache: number;
  bytesFromUpstream: number;
  bytesSaved: number;
  cacheSizeBytes: number | null;
}

describe('summary log line', () => {
  let hub: FakeHub;

  before(async () => {
    hub = await startFakeHub();
  });

  after(async () => {
    await hub.stop();
  });

  it('a cold then a warm pull: the summary lines add up to what happened', async () => {
    const image = await buildImage({ repo: 'library/summaryimg', tag: '1' });
    await pushImage(hub, image);
    const docxy = await startDocxy({ upstream: { url: hub.registryUrl }, log: { summary_interval: 200 } });
    try {
      const summaries = (): Summary[] =>
        docxy
          .logs()
          .filter((l) => l.msg === 'cache summary' && l.level === 30)
          .map((l) => l.summary as Summary);
      const total = (list: Summary[]): Omit<Summary, 'cacheSizeBytes'> => {
        const t = {
          requests: 0,
          hits: 0,
          misses: 0,
          coalesced: 0,
          stale: 0,
          bytesFromCache: 0,
          bytesFromUpstream: 0,
          bytesSaved: 0,
        };
        for (const s of list) for (const k of Object.keys(t) as (keyof typeof t)[]) t[k] += s[k];
        return t;
      };
      const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'summaryimg');
      const auth = { authorization: `Bearer ${token}` };
      const top = image.manifests.at(-1)!;
      const blobBytes = image.blobs.reduce((n, b) => n + b.size, 0);
      const pull = async (): Promise<void> => {
        const m = await httpGet(`${docxy.url}/v2/summaryimg/manifests/1`, {
          headers: { ...auth, accept: ACCEPT_ALL_MANIFESTS },
        });
        assert.equal(m.status, 200);
        assert.deepEqual(m.body, top.bytes);
        for (const b of image.blobs) {
          const r = await httpGet(`${docxy.url}/v2/summaryimg/blobs/${b.digest}`, { headers: auth });
          assert.equal(r.status, 200);
          assert.equal(r.body.length, b.size);
        }
      };
      const n = 1 + image.blobs.length;
      const pulledBytes = top.bytes.length + blobBytes;

      await pull();
      await waitFor('the cold pull in the summary lines', () => total(summaries()).requests >= n, 10_000);
      const coldLines = summaries().length;
      assert.deepEqual(total(summaries()), {
        requests: n,
        hits: 0,
        misses: n,
        coalesced: 0,
        stale: 0,
        bytesFromCache: 0,
        bytesFromUpstream: pulledBytes,
        bytesSaved: 0,
      });

      await pull();
      await waitFor('the warm pull in the summary lines', () => total(summaries()).requests >= 2 * n, 10_000);
      assert.deepEqual(total(summaries().slice(coldLines)), {
        requests: n,
        hits: n,
        misses: 0,
        coalesced: 0,
        stale: 0,
        bytesFromCache: pulledBytes,
        bytesFromUpstream: 0,
        bytesSaved: pulledBytes,
      });
      // The cache size is the evictor's scan after the fills: the manifest and every blob.
      await waitFor(
        'a summary line with the cache size',
        () => summaries().at(-1)?.cacheSizeBytes === pulledBytes,
        10_000,
      );
      // One line per request is kept.
      assert.equal(
        docxy.requestLogs().filter((l) => String(l.path).startsWith('/v2/summaryimg/')).length,
        2 * n,
      );
    } finally {
      await docxy.stop();
    }
  });
});
