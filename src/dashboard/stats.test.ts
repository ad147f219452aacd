import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { RequestContext } from '../http/server.ts';
import { createStats } from './stats.ts';

const done = (ctx: RequestContext, bytes: number, status = 200) => ({
  method: 'GET',
  status,
  ctx,
  bytes,
  seconds: 0.01,
  routeUrl: '/v2/*',
});

it('counts hits and misses of blobs and manifests, bytes by source, and ignores other routes', () => {
  let t = 0;
  const s = createStats({ upstreams: ['hub'], maxSizeBytes: 100, activeFills: () => [], now: () => t });
  s.request(done({ route: 'blob', cache: 'miss', repository: 'a' }, 10));
  t = 6000;
  s.request(done({ route: 'blob', cache: 'hit', repository: 'a' }, 10));
  s.request(done({ route: 'manifest', cache: 'hit', repository: 'b' }, 1));
  s.request(done({ route: 'tags' }, 50));
  const snap = s.snapshot();
  assert.deepEqual(snap.requests, { total: 3, hits: 2, misses: 1, coalesced: 0, stale: 0, hitRatio: 2 / 3 });
  assert.deepEqual(snap.bytes, { fromCache: 11, fromUpstream: 10, saved: 11 });
  assert.deepEqual(snap.topRepositories, [
    { name: 'a', bytes: 20, requests: 2 },
    { name: 'b', bytes: 1, requests: 1 },
  ]);
  assert.deepEqual(snap.series.at(-1)?.slice(1), [11, 10]);
});

it('keeps the series and the error ring bounded', () => {
  let t = 0;
  const s = createStats({
    upstreams: [],
    maxSizeBytes: 1,
    activeFills: () => [],
    now: () => t,
    sampleMs: 1,
    samples: 5,
  });
  for (let i = 0; i < 100; i++) {
    t += 10;
    s.request(done({ route: 'blob', cache: 'miss', error: 'broke' }, 1, 502));
  }
  const snap = s.snapshot();
  assert.equal(snap.series.length, 5);
  assert.equal(snap.recentErrors.length, 50);
  assert.equal(snap.recentErrors[0]?.time, new Date(1000).toISOString());
});
