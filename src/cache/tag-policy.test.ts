import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  acceptList,
  acceptable,
  createAcceptCache,
  createTagPolicy,
  isUpstreamFailure,
} from './tag-policy.ts';

const rec = { digest: 'sha256:x', mediaType: 'm', size: 1, checkedAt: 1_000_000 };

test('a tag is fresh within the TTL only', () => {
  const p = createTagPolicy({ ttlMs: 300_000, maxStaleMs: 0 });
  assert.ok(p.isFresh(rec, 1_000_000 + 299_999));
  assert.ok(!p.isFresh(rec, 1_000_000 + 300_000));
});

test('serve-stale: without limit when max_stale is 0, else until TTL + max_stale', () => {
  assert.ok(createTagPolicy({ ttlMs: 1000, maxStaleMs: 0 }).mayServeStale(rec, 1e12));
  const p = createTagPolicy({ ttlMs: 1000, maxStaleMs: 5000 });
  assert.ok(p.mayServeStale(rec, 1_000_000 + 6000));
  assert.ok(!p.mayServeStale(rec, 1_000_000 + 6001));
});

test('5xx and 429 are upstream failures; 4xx answers are not', () => {
  assert.ok(isUpstreamFailure(500) && isUpstreamFailure(503) && isUpstreamFailure(429));
  assert.ok(!isUpstreamFailure(404) && !isUpstreamFailure(401) && !isUpstreamFailure(200));
});

test('Accept: exact media types, */* and no Accept admit; others do not', () => {
  const docker = 'application/vnd.docker.distribution.manifest.v2+json';
  const index = 'application/vnd.oci.image.index.v1+json';
  assert.ok(acceptable(docker, acceptList([`${docker}, ${index}`])));
  assert.ok(acceptable(index, acceptList([docker, 'application/vnd.oci.image.index.v1+json;q=0.5'])));
  assert.ok(acceptable(index, acceptList([`${docker}, */*`])));
  assert.ok(acceptable(index, []));
  assert.ok(!acceptable(index, acceptList([docker, 'application/json'])));
});

test('acceptList lowercases and drops parameters; the cache answers the same list for the same text', () => {
  assert.deepEqual(acceptList(['Application/JSON; q=0.5 , */*', '']), ['application/json', '*/*']);
  const cached = createAcceptCache();
  const a = cached(['application/vnd.oci.image.index.v1+json', 'application/json']);
  assert.deepEqual(a, ['application/vnd.oci.image.index.v1+json', 'application/json']);
  assert.equal(cached(['application/vnd.oci.image.index.v1+json', 'application/json']), a);
  assert.equal(cached(['application/vnd.oci.image.index.v1+json,application/json']), a);
  assert.deepEqual(cached(undefined), []);
  assert.deepEqual(cached([]), []);
  assert.ok(Object.isFrozen(a));
});

test('the accept cache answers right past its bound of remembered sets', () => {
  const cached = createAcceptCache();
  for (let i = 0; i < 1000; i++) assert.deepEqual(cached([`application/x-${i}`]), [`application/x-${i}`]);
});
