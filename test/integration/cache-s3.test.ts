/**
 * Docxy on `storage.driver: s3` against a real RADOS Gateway and the fake hub: what one replica
 * caches, another replica with its own data folder serves from the bucket with the upstream
 * stopped (HTTP and skopeo); `docxy cache ls | rm | gc` work on the bucket; an object store that
 * hangs or is down makes Docxy relay from the upstream without caching, answer a clear OCI 503
 * within the store's timeout when the upstream is down too, commit nothing partial, and cache
 * again by itself once the store is back.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { buildStorage } from '../../src/app-storage.ts';
import { cacheGc, cacheLs, cacheRm } from '../../src/cli/cache.ts';
import { createRedisCoordination } from '../../src/coordination/redis/redis-coordination.ts';
import { deepMerge, validateConfig, type Config } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { paths } from '../../src/storage/paths.ts';
import { streamGet } from '../helpers/cache-probe.ts';
import { layoutBlob, parseLayoutIndex } from '../helpers/client-steps.ts';
import { startSkopeo } from '../helpers/clients/skopeo.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  buildImage,
  deterministicBytes,
  MULTI,
  pushBlob,
  pushImage,
  sha256,
  TINY,
  type TestImage,
} from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';
import { startRedis } from '../helpers/redis.ts';
import { startRgw, type Rgw } from '../helpers/rgw.ts';
import { makeTmpDir } from '../helpers/tmp.ts';

const MiB = 1024 * 1024;
let rgw: Rgw;
let s3: S3Client;
let hub: FakeHub;
let bucket: string;
/** Two layers of 5 MiB parts and a tail: a real multipart upload per blob. */
let big: TestImage;
let spare: TestImage;
const dirs: { remove(): void }[] = [];

before(async () => {
  [rgw, hub, big, spare] = await Promise.all([
    startRgw(),
    startFakeHub({ cdn: false }),
    buildImage({ repo: 'library/s3big', tag: '1', layerSize: 12 * MiB }),
    buildImage({ repo: 'library/s3spare', tag: '1', layerSize: 64 * 1024 }),
  ]);
  s3 = rgw.client();
  bucket = await rgw.createBucket('cache');
  for (const image of [big, spare, TINY, MULTI]) await pushImage(hub, image);
});

after(async () => {
  s3.destroy();
  await Promise.all([rgw.stop(), hub.stop()]);
  for (const d of dirs) d.remove();
});

/** The Docxy config of one replica on the shared bucket (a data folder of its own). */
function replicaConfig(extra: ConfigInput = {}): ConfigInput {
  const data = makeTmpDir('s3-replica');
  dirs.push(data);
  return deepMerge(
    {
      data: data.path,
      upstream: { url: hub.registryUrl },
      storage: {
        driver: 's3',
        s3: {
          endpoint: rgw.endpoint,
          bucket,
          prefix: 'mirror/',
          region: rgw.region,
          force_path_style: true,
          access_key_id: rgw.accessKeyId,
          secret_access_key: rgw.secretAccessKey,
          part_size: '5MiB',
          connect_timeout: '2s',
          request_timeout: '3s',
        },
      },
    },
    extra,
  );
}

async function keysUnder(prefix: string): Promise<string[]> {
  const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `mirror/${prefix}` }));
  return (r.Contents ?? []).map((c) => c.Key ?? '');
}

/** Pulls `image` through `docxy` over HTTP: every manifest and blob, each checked against its digest. */
async function pullAll(docxy: TestDocxy, image: TestImage): Promise<void> {
  const short = image.repo.replace(/^library\//, '');
  const token = await pullToken(`${docxy.url}/auth/token`, hub.service, short);
  const headers = { authorization: `Bearer ${token}`, accept: ACCEPT_ALL_MANIFESTS };
  const top = await httpGet(`${docxy.url}/v2/${short}/manifests/${image.tag}`, { headers });
  assert.equal(top.status, 200, `${image.repo}:${image.tag}: ${top.body.toString()}`);
  assert.equal(sha256(top.body), image.digest);
  for (const m of image.manifests.filter((x) => x.reference.startsWith('sha256:'))) {
    const r = await httpGet(`${docxy.url}/v2/${short}/manifests/${m.digest}`, { headers });
    assert.equal(r.status, 200);
    assert.equal(sha256(r.body), m.digest);
  }
  for (const b of image.blobs) {
    const r = await streamGet(`${docxy.url}/v2/${short}/blobs/${b.digest}`, headers);
    assert.equal(r.error, undefined, r.error?.message);
    assert.equal(r.status, 200, b.digest);
    assert.equal(r.digest, b.digest);
    assert.equal(r.bytes, b.size);
  }
}

describe('docxy on an S3 bucket (RADOS Gateway)', () => {
  it('replica B serves what replica A cached, from the bucket, with the upstream stopped (HTTP and skopeo)', async (t) => {
    const a = await startDocxy(replicaConfig());
    try {
      for (const image of [big, TINY, MULTI]) await pullAll(a, image);
    } finally {
      await a.stop();
    }
    const blobKeys = await keysUnder('blobs/');
    for (const b of [...big.blobs, ...TINY.blobs, ...MULTI.blobs]) {
      assert.ok(
        blobKeys.some((k) => k.endsWith(b.digest.slice('sha256:'.length))),
        `${b.digest} is in the bucket`,
      );
    }
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.equal(uploads.Uploads?.length ?? 0, 0, 'no multipart upload left open');

    const b = await startDocxy(replicaConfig());
    const skopeo = await startSkopeo();
    await hub.stopRegistry();
    try {
      const mark = b.logMark();
      for (const image of [big, TINY, MULTI]) await pullAll(b, image);
      const blobLines = b.requestsSince(mark).filter((l) => String(l.path).includes('/blobs/'));
      assert.ok(blobLines.length > 0);
      assert.deepEqual(new Set(blobLines.map((l) => l.cache)), new Set(['hit']), b.describeSince(mark));

      // A real client through B, upstream still down.
      const layout = join(skopeo.dir, 'layout');
      const r = await skopeo.copy(`docker://${b.hostPort}/s3big:1`, `oci:${layout}:x`, {
        preserveDigests: true,
      });
      assert.equal(r.code, 0, `skopeo copy: ${r.stderr}\n${b.describeSince(mark)}`);
      const entries = parseLayoutIndex(readFileSync(join(layout, 'index.json'), 'utf8'));
      assert.equal(entries[0]?.digest, big.digest);
      for (const blob of big.blobs)
        assert.equal(sha256(readFileSync(layoutBlob(layout, blob.digest))), blob.digest);
      t.diagnostic(`B served ${blobLines.length} blob GETs from the bucket`);
    } finally {
      await hub.startRegistry();
      await skopeo.stop();
      await b.stop();
    }
  });

  it('docxy cache ls, rm and gc work on the bucket', async () => {
    const cfgInput = replicaConfig();
    const config: Config = validateConfig(deepMerge({ listen: '127.0.0.1:0' }, cfgInput), 'test');
    const a = await startDocxy(cfgInput);
    try {
      await pullAll(a, spare);
    } finally {
      await a.stop();
    }
    let out = '';
    const write = (s: string): void => {
      out += s;
    };
    await cacheLs(config, write);
    assert.match(out, /library\/s3spare\s+1\s+sha256:/);
    assert.match(out, /library\/s3big\s+1\s+sha256:/);

    out = '';
    assert.equal(await cacheRm(config, 's3spare:1', write), 0, out);
    assert.match(out, /removed 1 tag\(s\) of library\/s3spare, 3 objects, .* \d+ repository links/);
    const links = await keysUnder('links/docker.io/library/s3spare/');
    assert.deepEqual(links, [], 'the links of what the repository no longer holds are gone');
    const left = [...(await keysUnder('blobs/')), ...(await keysUnder('manifests/'))];
    for (const blob of spare.blobs) {
      assert.ok(
        !left.some((k) => k.endsWith(blob.digest.slice(7))),
        `${blob.digest} removed from the bucket`,
      );
    }
    assert.ok(
      left.some((k) => k.endsWith(big.blobs[0]!.digest.slice(7))),
      'other images stay',
    );

    out = '';
    const small: Config = { ...config, cache: { ...config.cache, max_size: 1 * MiB } };
    assert.equal(await cacheGc(small, createLogger('silent'), write), 0);
    assert.match(out, /removed \d+ objects/);
    const blobsLeft = await keysUnder('blobs/');
    const total =
      (await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'mirror/blobs/' }))).Contents ?? [];
    assert.ok(
      total.reduce((n, c) => n + (c.Size ?? 0), 0) <= 1 * MiB,
      `gc trimmed the bucket to max_size (${blobsLeft.length} blobs left)`,
    );
  });

  it('a hanging or stopped store: relayed uncached, a clear 503 when the upstream is down too, caching again once back', async (t) => {
    const a = await startDocxy(replicaConfig());
    const blob = spare.blobs.find((b) => b.size > 60 * 1024);
    assert.ok(blob !== undefined);
    const path = `/v2/s3spare/blobs/${blob.digest}`;
    const token = await pullToken(`${a.url}/auth/token`, hub.service, 's3spare');
    const auth = { authorization: `Bearer ${token}` };
    try {
      // Hanging store (SIGSTOP): the request gives up after the store's timeout and relays.
      process.kill(rgw.radosgw().pid, 'SIGSTOP');
      let t0 = Date.now();
      const relayed = await streamGet(`${a.url}${path}`, auth);
      const hangMs = Date.now() - t0;
      process.kill(rgw.radosgw().pid, 'SIGCONT');
      assert.equal(relayed.status, 200);
      assert.equal(relayed.digest, blob.digest);
      assert.ok(hangMs < 15_000, `relayed after ${hangMs} ms`);
      t.diagnostic(`hanging store: relayed from the upstream after ${hangMs} ms`);

      // Stopped store and stopped upstream: a clear OCI 503, fast.
      await rgw.killGateway();
      await hub.stopRegistry();
      t0 = Date.now();
      const down = await httpGet(`${a.url}${path}`, { headers: auth });
      const downMs = Date.now() - t0;
      assert.equal(down.status, 503, down.body.toString());
      const err = (down.json() as { errors: { code: string; message: string }[] }).errors[0];
      assert.equal(err?.code, 'UNAVAILABLE');
      assert.match(err.message, /object store unavailable/);
      assert.ok(downMs < 10_000, `503 after ${downMs} ms`);
      await hub.startRegistry();

      // Store still down, upstream up: relayed, and nothing half-written is left behind.
      const again = await streamGet(`${a.url}${path}`, auth);
      assert.equal(again.status, 200);
      assert.equal(again.digest, blob.digest);
      await rgw.startGateway();
      assert.ok(
        !(await keysUnder('blobs/')).some((k) => k.endsWith(blob.digest.slice(7))),
        'a blob relayed while the store was down is not in the bucket',
      );
      const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      assert.equal(uploads.Uploads?.length ?? 0, 0, 'no multipart upload left open');

      // Store back: the next GET fills the cache, the one after is a hit.
      const mark = a.logMark();
      const fill = await streamGet(`${a.url}${path}`, auth);
      assert.equal(fill.digest, blob.digest);
      await waitFor('the fill to commit', async () =>
        (await keysUnder('blobs/')).some((k) => k.endsWith(blob.digest.slice(7))),
      );
      const hit = await streamGet(`${a.url}${path}`, auth);
      assert.equal(hit.digest, blob.digest);
      const caches = a
        .requestsSince(mark)
        .filter((l) => l.path === path)
        .map((l) => l.cache);
      assert.deepEqual(caches, ['miss', 'hit']);
    } finally {
      try {
        process.kill(rgw.radosgw().pid, 'SIGCONT');
      } catch {
        // Not stopped, or not running.
      }
      await a.stop();
    }
  });

  it('a missing bucket or refused keys stop the start with an error naming the key', async () => {
    await assert.rejects(
      startDocxy(replicaConfig({ storage: { s3: { bucket: 'no-such-bucket-here' } } })),
      /storage\.s3\.bucket: bucket "no-such-bucket-here" does not exist at http:\/\/127\.0\.0\.1:/,
    );
    await assert.rejects(
      startDocxy(replicaConfig({ storage: { s3: { bucket, secret_access_key: 'wrong-secret' } } })),
      /storage\.s3: http:\/\/127\.0\.0\.1:\d+ refused access to bucket/,
    );
  });

  it("with Redis, last accesses are shared: what replica A recorded orders replica B's listing (eviction)", async () => {
    const redis = await startRedis();
    const coordination = createRedisCoordination({ url: redis.url, log: createLogger('silent') });
    try {
      const a = await startDocxy(replicaConfig({ coordination: { redis: { url: redis.url } } }));
      try {
        await pullAll(a, TINY);
      } finally {
        await a.stop(); // flushes its access records to Redis
      }
      const keys = TINY.blobs.map((b) => paths.blob(b.digest));
      const shared = await coordination.stamps.get(keys.map((k) => `${bucket}/mirror/${k}`));
      assert.equal(shared.size, keys.length, 'A shared a last access for every blob it cached');

      // Replica B (its own, empty local index) lists the bucket as its evictor would: a read
      // recorded elsewhere in the fleet (here: an hour ahead) is what it orders by.
      const later = Date.now() + 3_600_000;
      const first = keys[0] ?? '';
      await coordination.stamps.raise(new Map([[`${bucket}/mirror/${first}`, later]]));
      const config = validateConfig(
        deepMerge({ listen: '127.0.0.1:0' }, replicaConfig({ coordination: { redis: { url: redis.url } } })),
        'test',
      );
      const b = buildStorage(config, coordination);
      try {
        assert.equal(await b.start(), true);
        const listed = new Map<string, number>();
        for await (const e of b.driver.list('blobs/')) listed.set(e.key, e.lastAccess.getTime());
        assert.equal(listed.get(first), later);
        for (const k of keys.slice(1)) assert.equal(listed.get(k), shared.get(`${bucket}/mirror/${k}`));
      } finally {
        await b.close();
      }

      // `docxy cache gc` on the fleet's Redis takes the same eviction lease as the replicas: while
      // one holds it, gc refuses (exit 1) and removes nothing; released, gc runs.
      let out = '';
      const write = (s: string): void => {
        out += s;
      };
      const evictor = { id: 'replica-evicting', address: '' };
      assert.deepEqual(await coordination.leases.acquire('eviction', evictor, 30_000), { granted: true });
      const small: Config = { ...config, cache: { ...config.cache, max_size: 1 } };
      const before = (await keysUnder('blobs/')).length;
      assert.equal(await cacheGc(small, createLogger('silent'), write), 1, out);
      assert.match(out, /evicting right now/);
      assert.equal((await keysUnder('blobs/')).length, before, 'gc removed nothing while refused');
      assert.equal(await coordination.leases.release('eviction', evictor.id), true);
      out = '';
      assert.equal(await cacheGc(small, createLogger('silent'), write), 0, out);
      assert.match(out, /removed \d+ objects/);
    } finally {
      await coordination.close();
      await redis.close();
    }
  });

  it('with Redis, docxy cache gc leaves alone a blob a replica is reading, and evicts it once no read is open', async () => {
    const redis = await startRedis();
    try {
      const withRedis = replicaConfig({ coordination: { redis: { url: redis.url } } });
      const config = validateConfig(deepMerge({ listen: '127.0.0.1:0' }, withRedis), 'test');
      const small: Config = { ...config, cache: { ...config.cache, max_size: 1 } };
      const bytes = deterministicBytes('s3:pinned', 64 * MiB);
      const blob = await pushBlob(hub, 'library/s3pinned', bytes);
      const key = paths.blob(blob.digest);
      const a = await startDocxy(withRedis);
      let body: Readable | undefined;
      try {
        const token = await pullToken(`${a.url}/auth/token`, hub.service, 's3pinned');
        const url = `${a.url}/v2/s3pinned/blobs/${blob.digest}`;
        const headers = { authorization: `Bearer ${token}` };
        const filled = await streamGet(url, headers);
        assert.equal(filled.digest, blob.digest, filled.error?.message);
        await waitFor('the blob in the bucket', async () => (await keysUnder(key)).length === 1, 10_000);

        // A client that takes one chunk and stops: 64 MiB is more than the socket buffers and the
        // driver's read-ahead take, so replica A's read from the bucket stays open (and pinned).
        const res = await request(url, { headers });
        assert.equal(res.statusCode, 200);
        body = res.body;
        const it = body[Symbol.asyncIterator]();
        const first = await it.next();
        assert.equal(first.done, false);
        const chunks = [Buffer.from(first.value as Buffer)];

        let out = '';
        const write = (x: string): void => {
          out += x;
        };
        assert.equal(await cacheGc(small, createLogger('silent'), write), 0, out);
        assert.deepEqual(await keysUnder(key), [`mirror/${key}`], `gc kept the blob being read: ${out}`);

        for (;;) {
          const n = await it.next();
          if (n.done === true) break;
          chunks.push(Buffer.from(n.value as Buffer));
        }
        const all = Buffer.concat(chunks);
        assert.equal(all.length, bytes.length);
        assert.equal(sha256(all), blob.digest, 'the slow client got every byte');
      } finally {
        body?.destroy();
        await a.stop(); // unpins what it still held
      }
      // No replica reads it now: gc evicts it like anything else.
      let out = '';
      assert.equal(
        await cacheGc(small, createLogger('silent'), (x) => {
          out += x;
        }),
        0,
      );
      assert.deepEqual(await keysUnder(key), [], `gc evicted the blob once unread: ${out}`);
    } finally {
      await redis.close();
    }
  });
});
