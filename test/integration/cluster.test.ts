/**
 * A fleet (issue 12): three Docxy processes on one RADOS Gateway bucket and one Redis, in front of
 * the fake hub (registry + CDN), with a round-robin nginx before them. A cold blob costs the
 * upstream ONE GET however many replicas are asked for it at once: the replica holding the
 * `blob:<digest>` lease fetches, the others stream from its internal endpoint (`cluster.listen`).
 * A holder SIGKILLed mid-fill loses its lease after `cluster.lease_ttl`; one follower takes over
 * and resumes from the upstream with a Range, the others follow it, and every client gets the
 * right bytes. Without Redis each replica fills on its own; once Redis is back, one GET again.
 * Everything is started once for the file and stopped by PID in `after`, pass or fail.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { paths } from '../../src/storage/paths.ts';
import { cdnBlobSuffix, streamGet, type StreamedResponse } from '../helpers/cache-probe.ts';
import { layoutBlob, need, parseLayoutIndex } from '../helpers/client-steps.ts';
import { startSkopeo } from '../helpers/clients/skopeo.ts';
import type { FakeHub } from '../helpers/fake-hub.ts';
import { startFleet, type Fleet, type FleetReplica } from '../helpers/fleet.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  bigImage,
  buildImage,
  deterministicBytes,
  pushBlob,
  pushImage,
  sha256,
  TINY,
  type BlobRef,
  type TestImage,
} from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';
import { assertOciError } from '../helpers/security.ts';

const MiB = 1024 * 1024;
const REPO = 'library/fleet';
const SECRET = 'fleet-internal-secret-0123456789';
/** The big layer's upstream speed: its fill lasts ~5 s, long enough to kill the holder halfway. */
const SLOW_RATE = 40 * MiB;

interface Replica extends FleetReplica {
  killed: boolean;
}

let fleet: Fleet | undefined;
let auth: Record<string, string> = {};
const replicas: Replica[] = [];

/** Blob contents kept in memory, so a Range answer can be compared with its slice. */
const contents = {
  coalesced: deterministicBytes('fleet:coalesced', 64 * MiB),
  ranges: deterministicBytes('fleet:ranges', 64 * MiB),
  outage: deterministicBytes('fleet:outage', 4 * MiB),
  after: deterministicBytes('fleet:after-outage', 16 * MiB),
  elsewhere: deterministicBytes('fleet:elsewhere', 16 * MiB),
};
const blobs = new Map<keyof typeof contents, BlobRef>();
let image: TestImage | undefined;
let big: TestImage | undefined;

const theFleet = (): Fleet => need(fleet, 'the fleet');
const theHub = (): FakeHub => theFleet().hub;
const blob = (k: keyof typeof contents): BlobRef => need(blobs.get(k), k);
const alive = (): Replica[] => replicas.filter((r) => !r.killed);

before(async () => {
  // Built in this process while the fleet's servers start; the hub is seeded while replicas start.
  const bigP = bigImage();
  const imgP = buildImage({ repo: 'library/fleetimg', tag: '1', layerSize: 3 * MiB });
  const seed = async (h: FakeHub): Promise<void> => {
    for (const [k, bytes] of Object.entries(contents)) {
      blobs.set(k as keyof typeof contents, await pushBlob(h, REPO, bytes));
    }
    [big, image] = await Promise.all([bigP, imgP]);
    for (const i of [TINY, image, big]) await pushImage(h, i);
  };
  fleet = await startFleet({ names: ['a', 'b', 'c'], secret: SECRET, seed });
  for (const r of fleet.replicas) replicas.push({ ...r, killed: false });
  // A token of the hub's realm (relayed by Docxy's), valid on every replica.
  const token = await pullToken(`${need(replicas[0], 'a').url}/auth/token`, fleet.hub.service, 'fleet');
  auth = { authorization: `Bearer ${token}` };
});

after(async () => {
  await fleet?.stop();
});

/** The upstream's GETs of `digest` so far: the registry's (each a 307) and the CDN's (the bytes). */
async function upstreamGets(digest: string): Promise<{ registry: number; cdn: { range?: string }[] }> {
  const h = theHub();
  const registry = (await h.registryRequests()).filter(
    (r) => r.method === 'GET' && r.uri.includes(`/blobs/${digest}`),
  ).length;
  const cdn = (h.cdn?.requests ?? []).filter(
    (r) => r.method === 'GET' && r.path.endsWith(cdnBlobSuffix(digest)),
  );
  return { registry, cdn };
}

const inBucket = (key: string): Promise<boolean> => theFleet().inBucket(key);

/** One replica's request log lines from `mark` (an index into its log lines) on. */
function requestsSince(r: Replica, mark: number): Record<string, unknown>[] {
  return r.proc
    .logs()
    .slice(mark)
    .filter((l) => l.msg === 'request');
}

function assertBody(r: StreamedResponse, digest: string, size: number, what: string): void {
  assert.equal(r.error, undefined, `${what}: ${r.error?.message ?? ''}`);
  assert.equal(r.bytes, size, `${what}: bytes`);
  assert.equal(r.digest, digest, `${what}: digest`);
}

/** `docxy_coordination_redis_up` of a replica's /metrics, or undefined when absent. */
async function redisUp(r: Replica): Promise<number | undefined> {
  const res = await httpGet(`${r.url}/metrics`);
  const m = /^docxy_coordination_redis_up (\d)/m.exec(res.body.toString('utf8'));
  return m === null ? undefined : Number(m[1]);
}

/**
 * `n` concurrent GETs of the cold blob `b`, spread in turn over `over`: every body must be the
 * blob and the upstream must have been asked for it once. Returns the request path.
 */
async function coldGetsOneUpstream(b: BlobRef, n: number, over: readonly Replica[]): Promise<string> {
  const path = `/v2/fleet/blobs/${b.digest}`;
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      streamGet(`${need(over[i % over.length], 'replica').url}${path}`, auth),
    ),
  );
  results.forEach((r, i) => {
    assert.equal(r.status, 200, `client ${String(i)}`);
    assertBody(r, b.digest, b.size, `client ${String(i)}`);
  });
  const up = await upstreamGets(b.digest);
  assert.equal(up.cdn.length, 1, `upstream body GETs: ${JSON.stringify(up.cdn)}`);
  assert.equal(up.registry, 1, 'registry GETs of the blob');
  return path;
}

describe('a fleet of three replicas on one bucket and one Redis', () => {
  it('30 concurrent cold GETs of a 64 MiB blob, 10 on each replica: ONE upstream GET, every body right', async (t) => {
    const b = blob('coalesced');
    const path = await coldGetsOneUpstream(b, 30, replicas);
    await waitFor('the blob in the bucket', () => inBucket(paths.blob(b.digest)), 20_000);
    t.diagnostic(`cache results: ${replicas.map((r) => `${r.name}=${cacheResults(r, path)}`).join(' ')}`);
  });

  it('30 concurrent cold Range GETs (bytes=k*2MiB-) of another 64 MiB blob: ONE upstream GET, every slice right', async () => {
    const b = blob('ranges');
    const path = `/v2/fleet/blobs/${b.digest}`;
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, k) =>
        streamGet(`${need(replicas[k % 3], 'replica').url}${path}`, {
          ...auth,
          range: `bytes=${String(k * 2 * MiB)}-`,
        }),
      ),
    );
    results.forEach((r, k) => {
      const start = k * 2 * MiB;
      const slice = contents.ranges.subarray(start);
      assert.equal(r.status, 206, `range ${String(k)}`);
      assert.equal(
        r.header('content-range'),
        `bytes ${String(start)}-${String(b.size - 1)}/${String(b.size)}`,
      );
      assertBody(r, sha256(slice), slice.length, `range ${String(k)}`);
    });
    const up = await upstreamGets(b.digest);
    assert.deepEqual(
      up.cdn.map((r) => r.range),
      [undefined],
      'one full upstream GET, no Range',
    );
    assert.equal(up.registry, 1, 'registry GETs of the blob');
  });

  it('skopeo through the round-robin nginx, then again with the upstream stopped: served from the bucket', async (t) => {
    const n = theFleet().nginx;
    const skopeo = await startSkopeo();
    const images = [TINY, need(image, 'image')];
    const copyAll = async (round: string): Promise<void> => {
      for (const img of images) {
        const layout = join(skopeo.dir, `${round}-${img.repo.replace('/', '-')}`);
        const ref = `docker://${n.hostPort}/${img.repo.replace(/^library\//, '')}:${img.tag}`;
        const r = await skopeo.copy(ref, `oci:${layout}:x`, { preserveDigests: true });
        assert.equal(r.code, 0, `${round} skopeo copy ${ref}: ${r.stderr}`);
        const entries = parseLayoutIndex(readFileSync(join(layout, 'index.json'), 'utf8'));
        assert.equal(entries[0]?.digest, img.digest);
        for (const bl of img.blobs)
          assert.equal(sha256(readFileSync(layoutBlob(layout, bl.digest))), bl.digest);
      }
    };
    try {
      await copyAll('first');
      const keys = images.flatMap((i) => [
        ...i.blobs.map((bl) => paths.blob(bl.digest)),
        ...i.manifests.map((m) => paths.manifest(m.digest)),
      ]);
      for (const k of keys) await waitFor(`${k} in the bucket`, () => inBucket(k), 20_000);

      const marks = replicas.map((r) => r.proc.logs().length);
      await theHub().stopRegistry();
      await copyAll('offline');
      const lines = replicas.flatMap((r, i) =>
        requestsSince(r, marks[i] ?? 0).map((l) => ({ r: r.name, l })),
      );
      const blobLines = lines.filter(({ l }) => String(l.path).includes('/blobs/'));
      assert.ok(blobLines.length >= images.flatMap((i) => i.blobs).length, 'the blobs came through nginx');
      assert.deepEqual(
        new Set(blobLines.map(({ l }) => l.cache)),
        new Set(['hit']),
        lines.map(({ r, l }) => `${r}: ${String(l.path)} ${String(l.status)} ${String(l.cache)}`).join('\n'),
      );
      const answered = new Set(lines.map(({ r }) => r));
      t.diagnostic(
        `with the upstream down, replicas ${[...answered].join(', ')} answered ${String(lines.length)} requests`,
      );
      assert.ok(answered.size >= 2, 'nginx spread the requests over the replicas');
    } finally {
      await theHub().startRegistry();
      await skopeo.stop();
    }
  });

  it('a blob another replica is filling for one repository is not served under a repository the upstream never showed it in', async () => {
    const b = blob('elsewhere');
    const [a, other] = replicas;
    const cdn = need(theHub().cdn, 'the CDN');
    // Slow enough that A is still filling when B is asked.
    cdn.bodyRate = (p) => (p.endsWith(cdnBlobSuffix(b.digest)) ? 4 * MiB : undefined);
    try {
      const filling = streamGet(`${need(a, 'a').url}/v2/fleet/blobs/${b.digest}`, auth);
      await waitFor('A to start the fill', async () => (await upstreamGets(b.digest)).cdn.length > 0, 20_000);
      const token = await pullToken(`${need(other, 'b').url}/auth/token`, theHub().service, 'fleetimg');
      const res = await httpGet(`${need(other, 'b').url}/v2/fleetimg/blobs/${b.digest}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.notEqual(res.status, 200, 'B must not serve a blob of library/fleet as library/fleetimg');
      assert.equal(res.status, 404, res.body.toString());
      assertBody(await filling, b.digest, b.size, 'the client on A');
    } finally {
      cdn.bodyRate = undefined;
    }
  });

  it('the fill holder SIGKILLed halfway: one follower resumes with a Range, every client of the others completes', async (t) => {
    const layer = need(need(big, 'big').layers[0], 'the big layer');
    const [a, b, c] = replicas;
    const holder = need(a, 'a');
    const path = `/v2/big/blobs/${layer.digest}`;
    const h = theHub();
    const cdn = need(h.cdn, 'the CDN');
    cdn.bodyRate = (p) => (p.endsWith(cdnBlobSuffix(layer.digest)) ? SLOW_RATE : undefined);
    const leaseReader = new Redis(theFleet().redis.url, { maxRetriesPerRequest: 1 });
    const t0 = Date.now();
    const since = (): string => `${String(Date.now() - t0)} ms`;
    const phases: string[] = [];
    const first = streamGet(`${holder.url}${path}`, auth);
    try {
      await waitFor(
        'A to start the fill',
        async () => (await upstreamGets(layer.digest)).cdn.length > 0,
        20_000,
      );
      phases.push(`A's upstream GET at ${since()}`);
      const lease = await leaseReader.get(`docxy:lease:blob:${layer.digest}`);
      assert.ok(
        lease?.endsWith(`\n${holder.clusterUrl}`),
        `the lease names A's cluster address: ${String(lease)}`,
      );

      const received = [0, 0, 0, 0, 0, 0];
      const clients = [b, b, b, c, c, c].map((r, i) =>
        streamGet(`${need(r, 'replica').url}${path}`, auth, (n) => {
          received[i] = n;
        }),
      );
      await waitFor('the followers at half the blob', () => Math.max(...received) >= layer.size / 2, 60_000);
      const killedAt = Math.max(...received);
      await holder.proc.kill9();
      holder.killed = true;
      phases.push(`A killed at ${since()} (${String(Math.round(killedAt / MiB))} MiB at the followers)`);
      const done = await Promise.all(clients);
      phases.push(`the clients done at ${since()}`);
      done.forEach((r, i) => {
        assert.equal(r.status, 200, `client ${String(i)}`);
        assertBody(r, layer.digest, layer.size, `client ${String(i)} on ${i < 3 ? 'B' : 'C'}`);
      });
      const up = await upstreamGets(layer.digest);
      assert.equal(up.cdn.length, 2, `upstream body GETs: ${JSON.stringify(up.cdn)}`);
      assert.equal(up.cdn[0]?.range, undefined, 'the first fill is a full GET');
      const resume = /^bytes=(\d+)-$/.exec(up.cdn[1]?.range ?? '');
      assert.ok(resume !== null, `the takeover resumes with bytes=N-: ${String(up.cdn[1]?.range)}`);
      const from = Number(resume[1]);
      assert.ok(from > 0 && from < layer.size, `resumed from ${String(from)}`);
      phases.push(`resumed from byte ${String(from)} of ${String(layer.size)}`);
      await waitFor('the big layer in the bucket', () => inBucket(paths.blob(layer.digest)), 30_000);
      phases.push(`in the bucket at ${since()}`);
    } finally {
      t.diagnostic(phases.join('; '));
      cdn.bodyRate = undefined;
      leaseReader.disconnect();
      await first; // broken by the kill; streamGet reports rather than throws
    }
  });

  it('Redis stopped: pulls keep working; Redis back: ONE upstream GET for 10 concurrent cold GETs again', async (t) => {
    const two = alive().slice(0, 2);
    assert.equal(two.length, 2, 'two replicas alive');
    const r = theFleet().redis;
    const outage = blob('outage');
    await r.stop();
    try {
      const results = await Promise.all(
        two.map((x) => streamGet(`${x.url}/v2/fleet/blobs/${outage.digest}`, auth)),
      );
      results.forEach((res, i) => {
        assert.equal(res.status, 200, `replica ${String(i)} without Redis`);
        assertBody(res, outage.digest, outage.size, `replica ${String(i)} without Redis`);
      });
      await waitFor('both replicas to report Redis down', async () =>
        (await Promise.all(two.map(redisUp))).every((v) => v === 0),
      );
      t.diagnostic(
        `without Redis: ${String((await upstreamGets(outage.digest)).cdn.length)} upstream GET(s)`,
      );
    } finally {
      await r.start();
    }
    const t0 = Date.now();
    await waitFor(
      'both replicas to share coordination again',
      async () => (await Promise.all(two.map(redisUp))).every((v) => v === 1),
      30_000,
    );
    t.diagnostic(`coordination shared again ${String(Date.now() - t0)} ms after Redis restarted`);

    await coldGetsOneUpstream(blob('after'), 10, two);
  });

  it('30 concurrent cold GETs of a tag and of a manifest digest over the replicas: ONE upstream GET each', async (t) => {
    const live = alive();
    assert.ok(live.length >= 2, 'two replicas alive');
    const herd = await buildImage({ repo: 'library/fleetherd', tag: '1', layerSize: 1024 });
    const byDigest = await buildImage({
      repo: 'library/fleetherd',
      tag: '2',
      layerSize: 1024,
      seed: 'digest',
    });
    await pushImage(theHub(), herd);
    await pushImage(theHub(), byDigest);
    const token = await pullToken(`${need(live[0], 'a').url}/auth/token`, theHub().service, 'fleetherd');
    const headers = { authorization: `Bearer ${token}`, accept: ACCEPT_ALL_MANIFESTS };
    // The second is asked for by its digest only (never by its tag).
    for (const [ref, digest] of [
      ['1', herd.digest],
      [byDigest.digest, byDigest.digest],
    ] as const) {
      const marks = live.map((r) => r.proc.logs().length);
      const answers = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          httpGet(`${need(live[i % live.length], 'replica').url}/v2/fleetherd/manifests/${ref}`, { headers }),
        ),
      );
      answers.forEach((r, i) => {
        assert.equal(r.status, 200, `${ref} client ${String(i)}: ${r.body.toString()}`);
        assert.equal(sha256(r.body), digest, `${ref} client ${String(i)}`);
      });
      const upstream = (await theHub().registryRequests())
        .filter((r) => r.uri === `/v2/library/fleetherd/manifests/${ref}`)
        .map((r) => `${r.method} ${String(r.status)}`);
      const served = live.map((r, i) =>
        requestsSince(r, marks[i] ?? 0)
          .filter((l) => l.path === `/v2/fleetherd/manifests/${ref}`)
          .map((l) => String(l.cache))
          .join(' '),
      );
      const seen = `upstream: ${upstream.join(', ')}; replicas: ${served.join(' | ')}`;
      t.diagnostic(seen);
      // A 401 before the token is not a pull; Docker Hub counts the GETs it answers 200.
      assert.equal(upstream.filter((x) => x === 'GET 200').length, 1, `manifests/${ref}: ${seen}`);
    }
  });

  it('the internal endpoint wants the secret (401 OCI JSON), 404s what it is not filling; the public listener has no /cluster', async () => {
    const r = need(alive()[0], 'a live replica');
    const digest = sha256('no replica is filling this');
    const internal = `${r.clusterUrl}/cluster/v1/blobs/${digest}`;
    assertOciError(await httpGet(internal), 401, 'UNAUTHORIZED', 'no secret');
    assertOciError(
      await httpGet(internal, { headers: { authorization: 'Bearer not-the-secret' } }),
      401,
      'UNAUTHORIZED',
      'a wrong secret',
    );
    const good = { authorization: `Bearer ${SECRET}` };
    assert.equal((await httpGet(internal, { headers: good })).status, 404, 'not filling it');
    const cached = `${r.clusterUrl}/cluster/v1/blobs/${blob('coalesced').digest}`;
    assert.equal((await httpGet(cached, { headers: good })).status, 404, 'cached, not filling');
    const publicPath = await httpGet(`${r.url}/cluster/v1/blobs/${digest}`, { headers: good });
    assert.equal(publicPath.status, 404, 'the public listener');
  });
});

/** The cache results a replica logged for `path` (miss, coalesced, …), for diagnostics. */
function cacheResults(r: Replica, path: string): string {
  const counts = new Map<string, number>();
  for (const l of requestsSince(r, 0).filter((x) => x.path === path)) {
    const k = String(l.cache);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([k, v]) => `${k}:${String(v)}`).join(',');
}
