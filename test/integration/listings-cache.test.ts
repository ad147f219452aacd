/**
 * tags/list and referrers through the cache, against the real fake hub (Distribution 2.8 with
 * token auth, which has no referrers API): within the tag TTL an answer costs the upstream nothing,
 * past it the answer is fetched again, and with the registry stopped the stored answer is served
 * stale with its exact bytes and headers (pagination `Link`, `OCI-Filters-Applied`). Referrers are
 * answered from the Referrers Tag index (`sha256-<hex>`) that an OCI 1.1 client pushes to a
 * registry without the API (distribution-spec "Unavailable Referrers API"). A list of a private
 * repository, fetched with a client's credentials, is never stored nor served to anyone else.
 *
 * Upstream requests are counted from the registry's access log. Tests run in order: the last
 * group stops the registry.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { filesUnder, markUpstream, upstreamSince } from '../helpers/cache-probe.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken, type TestResponse } from '../helpers/http.ts';
import {
  basicAuthorization,
  buildImage,
  pushBlob,
  pushImage,
  pushManifest,
  sha256,
  type ImageDescriptor,
} from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';
import { scrape } from '../helpers/prometheus.ts';
import { need } from '../helpers/security.ts';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const SBOM = 'application/vnd.example.sbom.v1';
const SIG = 'application/vnd.example.signature.v1';
const PAST_TTL_MS = 1200;
const alice = { username: 'alice', password: 'alice-upstream-pw' };
const PRIVATE = 'private/lists';

interface Pushed {
  readonly bytes: Buffer;
  readonly digest: string;
}

let hub: FakeHub | undefined;
/** Default tag TTL (5 minutes): every repeat is a hit. */
let warm: TestDocxy | undefined;
/** tag_ttl 1s: repeats after a pause revalidate, or are served stale. */
let short: TestDocxy | undefined;
let subject: ImageDescriptor | undefined;
let lonely: ImageDescriptor | undefined;
let referrersIndex: Pushed | undefined;
let sbomDescriptor: Record<string, unknown> | undefined;
let privateSubject: ImageDescriptor | undefined;
let privateIndex: Buffer | undefined;

const theHub = (): FakeHub => need(hub, 'the fake hub');

/** Pushes an OCI artifact manifest whose subject is `of`, straight to the hub's registry. */
async function pushArtifact(
  repo: string,
  of: ImageDescriptor,
  artifactType: string,
): Promise<Record<string, unknown>> {
  const h = theHub();
  const empty = await pushBlob(h, repo, Buffer.from('{}'), 'application/vnd.oci.empty.v1+json');
  const payload = await pushBlob(h, repo, Buffer.from(`${artifactType} of ${of.digest}`), 'text/plain');
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: empty.size },
      layers: [{ mediaType: 'text/plain', digest: payload.digest, size: payload.size }],
      subject: { mediaType: of.mediaType, digest: of.digest, size: of.size },
      annotations: { 'org.example.kind': artifactType },
    }),
  );
  const digest = sha256(bytes);
  await pushManifest(h, repo, { reference: digest, mediaType: OCI_MANIFEST, digest, bytes });
  return {
    mediaType: OCI_MANIFEST,
    digest,
    size: bytes.length,
    artifactType,
    annotations: { 'org.example.kind': artifactType },
  };
}

before(async () => {
  hub = await startFakeHub({
    users: { [alice.username]: alice.password },
    privateRepositories: { [PRIVATE]: [alice.username] },
  });
  for (const tag of ['1', '2', '3']) await pushImage(hub, await buildImage({ repo: 'library/lsttags', tag }));
  privateSubject = await pushImage(hub, await buildImage({ repo: PRIVATE, tag: 'secret-tag' }));
  const secret = await pushArtifact(PRIVATE, privateSubject, SBOM);
  const secretIndex = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [secret] }),
  );
  await pushManifest(hub, PRIVATE, {
    reference: `sha256-${privateSubject.digest.slice('sha256:'.length)}`,
    mediaType: OCI_INDEX,
    digest: sha256(secretIndex),
    bytes: secretIndex,
  });
  privateIndex = secretIndex;
  subject = await pushImage(hub, await buildImage({ repo: 'library/lstref', tag: '1', format: 'oci' }));
  lonely = await pushImage(
    hub,
    await buildImage({ repo: 'library/lstref', tag: '2', seed: 'lonely', format: 'oci' }),
  );
  sbomDescriptor = await pushArtifact('library/lstref', subject, SBOM);
  const sig = await pushArtifact('library/lstref', subject, SIG);
  // What oras or cosign push to a registry without the referrers API: the index at the Referrers Tag.
  const bytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [sbomDescriptor, sig] }),
  );
  const tag = `sha256-${subject.digest.slice('sha256:'.length)}`;
  await pushManifest(hub, 'library/lstref', {
    reference: tag,
    mediaType: OCI_INDEX,
    digest: sha256(bytes),
    bytes,
  });
  referrersIndex = { bytes, digest: sha256(bytes) };
  warm = await startDocxy({ upstream: { url: hub.registryUrl } });
  short = await startDocxy({ upstream: { url: hub.registryUrl, tag_ttl: '1s' } });
});

after(async () => {
  const results = await Promise.allSettled([warm?.stop(), short?.stop(), hub?.stop()]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

/** The cache result logged for the `n`-th (1-based) request to `path`, once it is logged. */
async function cacheOf(docxy: TestDocxy, path: string, n: number): Promise<unknown> {
  const lines = (): Record<string, unknown>[] => docxy.requestLogs().filter((l) => l.path === path);
  await waitFor(`${n} log lines for ${path}`, () => lines().length >= n);
  return lines()[n - 1]?.cache;
}

/** The cache result of the next logged request to `path` after the log mark `mark`. */
async function cacheAfter(docxy: TestDocxy, mark: number, path: string): Promise<unknown> {
  const lines = (): Record<string, unknown>[] => docxy.requestsSince(mark).filter((l) => l.path === path);
  await waitFor(`a log line for ${path}`, () => lines().length >= 1);
  return lines()[0]?.cache;
}

/** Registry requests since `mark` whose path contains `part`, as `METHOD uri status`. */
async function seen(mark: Awaited<ReturnType<typeof markUpstream>>, part: string): Promise<string[]> {
  return (await upstreamSince(theHub(), mark)).registry
    .filter((r) => r.uri.includes(part))
    .map((r) => `${r.method} ${r.uri} ${r.status}`);
}

function get(docxy: TestDocxy, path: string, method: 'GET' | 'HEAD' = 'GET'): Promise<TestResponse> {
  return httpGet(`${docxy.url}${path}`, { method });
}

/** The tags of a tags/list answer, sorted (Distribution 2.8 lists them in storage order). */
function tagsOf(res: TestResponse): string[] {
  const body = res.json() as { name: string; tags: string[] };
  assert.equal(body.name, 'library/lsttags');
  return [...body.tags].sort();
}

const referrersPath = (d: ImageDescriptor, query = ''): string => `/v2/lstref/referrers/${d.digest}${query}`;

describe('tags/list through the cache', () => {
  it('the first GET goes upstream, a second within the TTL does not, with the same bytes', async () => {
    const d = need(warm, 'docxy');
    const mark = await markUpstream(theHub());
    const first = await get(d, '/v2/lsttags/tags/list');
    assert.equal(first.status, 200, first.body.toString());
    assert.deepEqual(tagsOf(first), ['1', '2', '3']);
    assert.deepEqual(await seen(mark, '/tags/list'), ['GET /v2/library/lsttags/tags/list 200']);
    const mark2 = await markUpstream(theHub());
    const second = await get(d, '/v2/lsttags/tags/list');
    assert.equal(second.status, 200);
    assert.deepEqual(second.body, first.body);
    assert.equal(second.header('content-type'), first.header('content-type'));
    assert.deepEqual((await upstreamSince(theHub(), mark2)).registry, [], 'no registry request');
    assert.equal(await cacheOf(d, '/v2/lsttags/tags/list', 1), 'miss');
    assert.equal(await cacheOf(d, '/v2/lsttags/tags/list', 2), 'hit');
  });

  it('each query is its own entry, answered with its own bytes; HEAD answers from it with its length', async () => {
    // Debian's Distribution 2.8 ignores `n` and `last` (it sends no Link either): the entry per
    // query is checked by the upstream requests each new query costs.
    const d = need(warm, 'docxy');
    const mark = await markUpstream(theHub());
    const page = await get(d, '/v2/lsttags/tags/list?n=1');
    assert.equal(page.status, 200);
    assert.deepEqual(await seen(mark, '/tags/list'), ['GET /v2/library/lsttags/tags/list?n=1 200']);
    const mark2 = await markUpstream(theHub());
    const again = await get(d, '/v2/lsttags/tags/list?n=1');
    assert.deepEqual(again.body, page.body);
    assert.equal(again.header('link'), page.header('link'));
    const head = await get(d, '/v2/lsttags/tags/list?n=1', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.header('content-length'), String(page.body.length));
    assert.equal(head.body.length, 0);
    assert.deepEqual((await upstreamSince(theHub(), mark2)).registry, []);
    const mark3 = await markUpstream(theHub());
    await get(d, '/v2/lsttags/tags/list?last=1&n=1');
    await get(d, '/v2/lsttags/tags/list?n=1&last=1');
    assert.deepEqual(
      await seen(mark3, '/tags/list'),
      ['GET /v2/library/lsttags/tags/list?last=1&n=1 200'],
      'a new query goes upstream once, whatever the order of its parameters',
    );
  });

  it('the request metric counts the miss and the hits', async () => {
    const d = need(warm, 'docxy');
    const before0 = await scrape(d.url);
    const mark = d.logMark();
    for (let i = 0; i < 3; i++) await get(d, '/v2/lsttags/tags/list?n=2');
    await waitFor(
      'three log lines',
      () => d.requestsSince(mark).filter((l) => l.path === '/v2/lsttags/tags/list').length >= 3,
    );
    const after0 = await scrape(d.url);
    const delta = (cache: string): number =>
      after0.value('docxy_http_requests_total', { route: 'tags', cache }) -
      before0.value('docxy_http_requests_total', { route: 'tags', cache });
    assert.equal(delta('miss'), 1);
    assert.equal(delta('hit'), 2);
  });

  it('past the TTL the list is fetched again (revalidated) and a new tag shows', async () => {
    const d = need(short, 'docxy');
    await get(d, '/v2/lsttags/tags/list');
    await pushImage(theHub(), await buildImage({ repo: 'library/lsttags', tag: '4' }));
    await sleep(PAST_TTL_MS);
    const mark = await markUpstream(theHub());
    const res = await get(d, '/v2/lsttags/tags/list');
    assert.deepEqual(tagsOf(res), ['1', '2', '3', '4']);
    assert.deepEqual(await seen(mark, '/tags/list'), ['GET /v2/library/lsttags/tags/list 200']);
    assert.equal(await cacheOf(d, '/v2/lsttags/tags/list', 2), 'revalidated');
  });

  it('a repository unknown upstream: the 404 is relayed and not stored', async () => {
    const d = need(warm, 'docxy');
    for (let i = 0; i < 2; i++) {
      const mark = await markUpstream(theHub());
      const res = await get(d, '/v2/nosuchrepo/tags/list');
      assert.equal(res.status, 404);
      assert.equal((res.json() as { errors: { code: string }[] }).errors[0]?.code, 'NAME_UNKNOWN');
      assert.deepEqual(await seen(mark, '/tags/list'), ['GET /v2/library/nosuchrepo/tags/list 404']);
    }
  });
});

describe('referrers through the cache (an upstream without the referrers API)', () => {
  it('answers the Referrers Tag index, as the spec has clients fall back to', async () => {
    const d = need(warm, 'docxy');
    const s = need(subject, 'subject');
    const mark = await markUpstream(theHub());
    const res = await get(d, referrersPath(s));
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.header('content-type'), OCI_INDEX);
    assert.deepEqual(res.body, need(referrersIndex, 'index').bytes);
    assert.equal(res.header('oci-filters-applied'), undefined);
    const hex = s.digest.slice('sha256:'.length);
    assert.deepEqual(await seen(mark, '/v2/library/lstref/'), [
      `GET /v2/library/lstref/referrers/${s.digest} 404`,
      `GET /v2/library/lstref/manifests/sha256-${hex} 200`,
    ]);
    const mark2 = await markUpstream(theHub());
    const again = await get(d, referrersPath(s));
    assert.deepEqual(again.body, res.body);
    const head = await get(d, referrersPath(s), 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.header('content-length'), String(res.body.length));
    assert.deepEqual(
      (await upstreamSince(theHub(), mark2)).registry,
      [],
      'within the TTL: no upstream request',
    );
    assert.equal(await cacheOf(d, referrersPath(s), 1), 'miss');
    assert.equal(await cacheOf(d, referrersPath(s), 2), 'hit');
  });

  it('filters by artifactType and says so in OCI-Filters-Applied', async () => {
    const d = need(warm, 'docxy');
    const res = await get(
      d,
      referrersPath(need(subject, 'subject'), `?artifactType=${encodeURIComponent(SBOM)}`),
    );
    assert.equal(res.status, 200);
    assert.equal(res.header('oci-filters-applied'), 'artifactType');
    assert.equal(res.header('content-type'), OCI_INDEX);
    assert.deepEqual(res.json(), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [sbomDescriptor] });
  });

  it('a subject with no referrers: 200 and an empty index', async () => {
    const d = need(warm, 'docxy');
    const res = await get(d, referrersPath(need(lonely, 'lonely')));
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.header('content-type'), OCI_INDEX);
    assert.deepEqual(res.json(), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
  });

  it('an invalid digest is a 400 DIGEST_INVALID, never asked upstream', async () => {
    const d = need(warm, 'docxy');
    const mark = await markUpstream(theHub());
    const res = await get(d, '/v2/lstref/referrers/sha256:1234');
    assert.equal(res.status, 400);
    assert.equal((res.json() as { errors: { code: string }[] }).errors[0]?.code, 'DIGEST_INVALID');
    assert.deepEqual(await seen(mark, '/referrers/'), []);
  });
});

describe('a private repository listed with a client credential', () => {
  /** What is stored under listings/ (relative paths). */
  const storedListings = (d: TestDocxy): string[] => filesUnder(join(d.dataDir, 'objects', 'listings'));
  const aliceToken = (d: TestDocxy): Promise<string> =>
    pullToken(`${d.url}/auth/token`, theHub().service, PRIVATE, basicAuthorization(alice));

  it('tags/list: relayed to that client, never stored, refused to an anonymous client', async () => {
    const d = need(warm, 'docxy');
    const token = await aliceToken(d);
    const path = `/v2/${PRIVATE}/tags/list`;
    const hers = await httpGet(`${d.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(hers.status, 200, hers.body.toString());
    const body = hers.json() as { name: string; tags: string[] };
    assert.equal(body.name, PRIVATE);
    assert.ok(body.tags.includes('secret-tag'), JSON.stringify(body));
    assert.equal(await cacheOf(d, path, 1), 'bypass');
    assert.ok(
      storedListings(d).some((f) => f.startsWith('docker.io/library/lsttags/')),
      'control: public lists are stored',
    );
    assert.deepEqual(
      storedListings(d).filter((f) => f.includes('private')),
      [],
    );
    const anonymous = await get(d, path);
    assert.equal(anonymous.status, 401);
    assert.ok(!anonymous.body.includes('secret-tag'), anonymous.body.toString());
  });

  it('referrers: answered to that client from its Referrers Tag, fetched anew each time, never to anyone else', async () => {
    const d = need(warm, 'docxy');
    const token = await aliceToken(d);
    const s = need(privateSubject, 'private subject');
    const path = `/v2/${PRIVATE}/referrers/${s.digest}`;
    for (let i = 1; i <= 2; i++) {
      const mark = await markUpstream(theHub());
      const hers = await httpGet(`${d.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(hers.status, 200, hers.body.toString());
      assert.equal(hers.header('content-type'), OCI_INDEX);
      assert.deepEqual(hers.body, need(privateIndex, 'private index'));
      assert.equal(await cacheOf(d, path, i), 'bypass');
      const upstream = await seen(mark, `/v2/${PRIVATE}/`);
      assert.ok(
        upstream.includes(`GET /v2/${PRIVATE}/manifests/sha256-${s.digest.slice('sha256:'.length)} 200`),
        `request ${i} asked the upstream with her credentials: ${upstream.join(', ')}`,
      );
    }
    assert.deepEqual(
      storedListings(d).filter((f) => f.includes('private')),
      [],
    );
    const anonymous = await get(d, path);
    assert.equal(anonymous.status, 401, anonymous.body.toString());
    assert.ok(!anonymous.body.includes(need(privateIndex, 'private index')));
  });
});

describe('with the registry stopped', () => {
  /** What each path answered just before the registry stopped. */
  const stored = new Map<string, Buffer>();
  before(async () => {
    const d = need(short, 'docxy');
    // Fill the short-TTL instance, then let every entry pass its TTL with the registry down.
    for (const p of [
      '/v2/lsttags/tags/list',
      '/v2/lsttags/tags/list?n=1',
      referrersPath(need(subject, 'subject')),
    ])
      stored.set(p, (await get(d, p)).body);
    await get(d, referrersPath(need(subject, 'subject'), `?artifactType=${encodeURIComponent(SIG)}`));
    await get(d, referrersPath(need(lonely, 'lonely')));
    await theHub().stopRegistry();
    await sleep(PAST_TTL_MS);
  });

  it('tags/list is served stale, the exact stored body', async () => {
    const d = need(short, 'docxy');
    const mark = d.logMark();
    const res = await get(d, '/v2/lsttags/tags/list');
    assert.equal(res.status, 200, res.body.toString());
    assert.deepEqual(tagsOf(res), ['1', '2', '3', '4']);
    assert.deepEqual(res.body, stored.get('/v2/lsttags/tags/list'), 'the exact stored bytes');
    assert.equal(await cacheAfter(d, mark, '/v2/lsttags/tags/list'), 'stale');
  });

  it('a ?n= page is served stale, its own stored bytes', async () => {
    const res = await get(need(short, 'docxy'), '/v2/lsttags/tags/list?n=1');
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, stored.get('/v2/lsttags/tags/list?n=1'));
  });

  it('referrers are served stale, filtered ones with their header, empty ones too', async () => {
    const d = need(short, 'docxy');
    const s = need(subject, 'subject');
    const mark = d.logMark();
    const all = await get(d, referrersPath(s));
    assert.equal(all.status, 200, all.body.toString());
    assert.deepEqual(all.body, need(referrersIndex, 'index').bytes);
    assert.equal(await cacheAfter(d, mark, referrersPath(s)), 'stale');
    const sigs = await get(d, referrersPath(s, `?artifactType=${encodeURIComponent(SIG)}`));
    assert.equal(sigs.status, 200);
    assert.equal(sigs.header('oci-filters-applied'), 'artifactType');
    const listed = (sigs.json() as { manifests: { artifactType: string }[] }).manifests;
    assert.deepEqual(
      listed.map((m) => m.artifactType),
      [SIG],
    );
    const none = await get(d, referrersPath(need(lonely, 'lonely')));
    assert.equal(none.status, 200);
    assert.deepEqual(none.json(), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
  });

  it('a list never fetched: a 502 OCI error naming the upstream failure', async () => {
    const d = need(short, 'docxy');
    for (const path of [
      '/v2/neverlisted/tags/list',
      `/v2/neverlisted/referrers/${need(subject, 'subject').digest}`,
    ]) {
      const res = await get(d, path);
      assert.equal(res.status, 502, `${path}: ${res.body.toString()}`);
      const err = (res.json() as { errors: { code: string; message: string }[] }).errors[0];
      assert.equal(err?.code, 'UNAVAILABLE', path);
    }
  });
});
