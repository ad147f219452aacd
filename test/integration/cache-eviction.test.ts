/**
 * Eviction to `cache.max_size`, observed on the data directory itself: with max_size at 10 MiB and
 * images of about 4 MiB each, pulled in order through Docxy (plain HTTP with Docxy's tokens, as a
 * client would), an eviction run after each pull
 *
 *   - removes the least recently used objects first: the first images' layers leave
 *     <data>/objects/blobs, the newest stay;
 *   - never leaves a manifest (or tag record) pointing at an evicted blob or child manifest;
 *   - keeps the total of blobs and manifests at or below max_size;
 *
 * every image can still be pulled afterwards (evicted ones are fetched from the upstream again,
 * byte-exact); and a blob that is being read — a slow client that took the first chunk and stopped
 * — is not evicted while that read is open, whether it is read from the cache or is still being
 * followed after its fill finished. The layer read there is 64 MiB: a read of a few MiB ends on
 * Docxy's side at once (the socket buffers take all of it), so only a large blob keeps the read
 * open while the client pauses. Loopback receive buffers here grow to tcp_rmem's 32 MiB: a 24 MiB
 * layer once fit whole into them under load, Docxy's read ended, and the layer was (rightly)
 * evicted, failing the test in CI.
 *
 * Last-access times are file mtimes, which Docxy moves at most every 30 s per object; within this
 * test the least recently used objects are therefore the ones written first.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it, type TestContext } from 'node:test';
import { request } from 'undici';

import type { EvictionResult } from '../../src/cache/eviction.ts';
import { need } from '../helpers/client-steps.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import { ACCEPT_ALL_MANIFESTS, buildImage, pushImage, sha256, type TestImage } from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';

const MiB = 1024 * 1024;
const MAX_SIZE = 10 * MiB;
const SMALL_LAYER = 4 * MiB;
const LARGE_LAYER = 64 * MiB;

let hub: FakeHub | undefined;
let docxy: TestDocxy | undefined;
/** evict/img1 … evict/img4, about 4 MiB each, in pull order. */
let small: TestImage[] = [];
/** evict/read-cached:1 and evict/read-filling:1, one 64 MiB layer each (larger than max_size). */
let readCached: TestImage | undefined;
let readFilling: TestImage | undefined;
/** Responses a test left open (it failed mid-read); destroyed before Docxy stops. */
const openBodies = new Set<Readable>();

const theHub = (): FakeHub => need(hub, 'the fake hub');
const theDocxy = (): TestDocxy => need(docxy, 'docxy');
const img = (i: number): TestImage => need(small[i], `evict/img${i + 1}`);

before(async () => {
  hub = await startFakeHub();
  const built = await Promise.all(
    [1, 2, 3, 4].map((i) => buildImage({ repo: `evict/img${i}`, tag: '1', layerSize: SMALL_LAYER })),
  );
  for (const image of built) await pushImage(hub, image);
  small = built;
  const [c, f] = await Promise.all(
    ['evict/read-cached', 'evict/read-filling'].map((repo) =>
      buildImage({ repo, tag: '1', layerSize: LARGE_LAYER }),
    ),
  );
  for (const image of [c, f]) if (image !== undefined) await pushImage(hub, image);
  readCached = c;
  readFilling = f;
  docxy = await startDocxy({ upstream: { url: hub.registryUrl }, cache: { max_size: '10MiB' } });
});

after(async () => {
  for (const b of openBodies) b.destroy();
  const results = await Promise.allSettled([docxy?.stop(), hub?.stop()]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

// ---------------------------------------------------------------------------------------------
// The data directory, read directly (not through Docxy's own index)

function objectsDir(): string {
  return join(theDocxy().dataDir, 'objects');
}

function objectFile(kind: 'blobs' | 'manifests', digest: string): string {
  const [alg, hex] = digest.split(':');
  if (alg === undefined || hex === undefined) throw new Error(`bad digest ${digest}`);
  return join(objectsDir(), kind, alg, hex.slice(0, 2), hex);
}

const blobCached = (digest: string): boolean => existsSync(objectFile('blobs', digest));
const manifestCached = (digest: string): boolean => existsSync(objectFile('manifests', digest));

/**
 * Whether this process — Docxy runs in it — has the blob's file open: a read from the cache, or
 * the shared reader of a fill (renamed into place at commit), that has not ended yet. A read
 * that the socket buffers took whole has closed its file already; this tells the two apart.
 * (A file evicted while open still counts: it is the read that matters here.)
 */
function heldOpen(digest: string): boolean {
  const file = objectFile('blobs', digest);
  return readdirSync('/proc/self/fd').some((fd) => {
    try {
      const target = readlinkSync(join('/proc/self/fd', fd));
      return target === file || target === `${file} (deleted)`;
    } catch {
      return false; // closed while listing
    }
  });
}

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

/** Bytes held by blobs and manifests (what max_size limits). */
function cachedBytes(): number {
  return [...filesUnder(join(objectsDir(), 'blobs')), ...filesUnder(join(objectsDir(), 'manifests'))]
    .map((f) => statSync(f).size)
    .reduce((a, b) => a + b, 0);
}

/** What a manifest or index refers to. */
function refsOf(bytes: Buffer): { blobs: string[]; manifests: string[] } {
  const parsed: unknown = JSON.parse(bytes.toString('utf8'));
  const digests = (v: unknown): string[] =>
    Array.isArray(v)
      ? v.flatMap((d: unknown) =>
          typeof d === 'object' && d !== null && 'digest' in d && typeof d.digest === 'string'
            ? [d.digest]
            : [],
        )
      : [];
  if (typeof parsed !== 'object' || parsed === null) return { blobs: [], manifests: [] };
  const config = 'config' in parsed ? digests([parsed.config]) : [];
  const layers = 'layers' in parsed ? digests(parsed.layers) : [];
  const children = 'manifests' in parsed ? digests(parsed.manifests) : [];
  return { blobs: [...config, ...layers], manifests: children };
}

/**
 * The cache is consistent: every cached manifest's blobs and child manifests are cached, every tag
 * record points at a cached manifest, and (unless `allowOver`) the total is within max_size.
 */
function assertConsistent(what: string, allowOver = false): void {
  const problems: string[] = [];
  for (const file of filesUnder(join(objectsDir(), 'manifests'))) {
    const refs = refsOf(readFileSync(file));
    for (const b of refs.blobs)
      if (!blobCached(b)) problems.push(`manifest ${file} refers to evicted blob ${b}`);
    for (const m of refs.manifests)
      if (!manifestCached(m)) problems.push(`manifest ${file} refers to evicted manifest ${m}`);
  }
  for (const file of filesUnder(join(objectsDir(), 'tags'))) {
    const rec: unknown = JSON.parse(readFileSync(file, 'utf8'));
    const digest =
      typeof rec === 'object' && rec !== null && 'digest' in rec && typeof rec.digest === 'string'
        ? rec.digest
        : '';
    if (!manifestCached(digest)) problems.push(`tag record ${file} points at evicted manifest ${digest}`);
  }
  assert.deepEqual(problems, [], `${what}: the cache is consistent`);
  if (!allowOver) {
    const total = cachedBytes();
    assert.ok(total <= MAX_SIZE, `${what}: ${total} bytes cached, max_size is ${MAX_SIZE}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Pulling over HTTP, as a client does

const layerOf = (image: TestImage): string => need(image.layers[0], `${image.repo}'s layer`).digest;
const layerSize = (image: TestImage): number => need(image.layers[0], `${image.repo}'s layer`).size;

async function tokenFor(repo: string): Promise<string> {
  return pullToken(`${theDocxy().url}/auth/token`, theHub().service, repo);
}

/** Docxy's cache outcome for each request since `mark`, as `METHOD path -> status cache`. */
function outcomesSince(mark: number): string[] {
  return theDocxy()
    .requestLogs()
    .slice(mark)
    .map((l) => `${String(l.method)} ${String(l.path)} -> ${String(l.status)} ${String(l.cache)}`);
}

/** Pulls `image` (manifest by tag, then config and layer) and checks every byte against its digest. */
async function pull(image: TestImage): Promise<void> {
  const d = theDocxy();
  const auth = { authorization: `Bearer ${await tokenFor(image.repo)}` };
  const m = await httpGet(`${d.url}/v2/${image.repo}/manifests/${image.tag}`, {
    headers: { ...auth, accept: ACCEPT_ALL_MANIFESTS },
  });
  assert.equal(m.status, 200, `${image.repo}:${image.tag}: ${m.body.toString()}`);
  assert.equal(m.header('docker-content-digest'), image.digest);
  assert.equal(sha256(m.body), image.digest, `${image.repo}:${image.tag} manifest bytes`);
  for (const digest of [image.configDigest, layerOf(image)]) {
    const b = await httpGet(`${d.url}/v2/${image.repo}/blobs/${digest}`, { headers: auth });
    assert.equal(b.status, 200, `${image.repo} blob ${digest}: ${b.body.toString().slice(0, 200)}`);
    assert.equal(sha256(b.body), digest, `${image.repo} blob ${digest} bytes`);
  }
}

/**
 * An eviction run that starts now. `run()` joins a run already in progress — Docxy starts one a
 * second after every fill — and that one may have scanned the cache before the pull that just
 * ended; once it is over, the second `run()` starts afresh (or joins a run that started after the
 * pull), so its result reflects the cache as it is now.
 */
async function evict(t: TestContext, what: string): Promise<{ seen: number; after: number }> {
  const evictor = need(theDocxy().app.evictor(), 'the evictor');
  const runs: EvictionResult[] = [await evictor.run(), await evictor.run()];
  const text = runs.map((r) => `${r.before} -> ${r.after} bytes (${r.removed} removed)`).join(', then ');
  t.diagnostic(`${what}: eviction ${text}`);
  // The most either run found in the cache, and what the last one left.
  return { seen: Math.max(...runs.map((r) => r.before)), after: runs[1]?.after ?? 0 };
}

/** Which of the four images' layers are cached, e.g. `[false, true, true, true]`. */
function smallLayersCached(): boolean[] {
  return small.map((image) => blobCached(layerOf(image)));
}

/** A GET of a blob whose client took the first chunk and then stopped reading. */
interface SlowRead {
  readonly first: Buffer;
  /** Reads the rest; resolves with every byte received. */
  finish(): Promise<Buffer>;
}

async function startSlowRead(
  image: TestImage,
  digest: string,
  given?: Record<string, string>,
): Promise<SlowRead> {
  const auth = given ?? { authorization: `Bearer ${await tokenFor(image.repo)}` };
  const res = await request(`${theDocxy().url}/v2/${image.repo}/blobs/${digest}`, { headers: auth });
  assert.equal(res.statusCode, 200);
  const body = res.body;
  openBodies.add(body);
  const it = body[Symbol.asyncIterator]();
  const next = await it.next();
  if (next.done === true) throw new Error('the blob response ended before its first chunk');
  const first = Buffer.from(next.value as Buffer);
  return {
    first,
    async finish() {
      const chunks = [first];
      for (;;) {
        const n = await it.next();
        if (n.done === true) break;
        chunks.push(Buffer.from(n.value as Buffer));
      }
      openBodies.delete(body);
      return Buffer.concat(chunks);
    },
  };
}

/** Waits until Docxy has logged the end of the fill of `digest` (after `logMark`); returns its state. */
async function fillEnded(digest: string, logMark: number): Promise<unknown> {
  const find = (): Record<string, unknown> | undefined =>
    theDocxy()
      .logs()
      .slice(logMark)
      .find((l) => l.msg === 'cache fill ended' && l.digest === digest);
  const deadline = Date.now() + 20_000;
  // A tight poll: the test that waits here has a second to act once the fill has ended.
  while (find() === undefined) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for the fill of ${digest} to end`);
    await sleep(10);
  }
  return find()?.state;
}

/** Waits until Docxy has logged the request for `path` (it logs when the response has closed). */
async function requestLogged(path: string, mark: number): Promise<Record<string, unknown>> {
  let line: Record<string, unknown> | undefined;
  await waitFor(
    `docxy's log line for ${path}`,
    () => {
      line = theDocxy()
        .requestLogs()
        .slice(mark)
        .find((l) => l.path === path);
      return line !== undefined;
    },
    10_000,
  );
  return need(line, `the log line for ${path}`);
}

// ---------------------------------------------------------------------------------------------

describe('cache eviction to max_size (10 MiB) over ~4 MiB images', () => {
  it('pulls four images in order; each run evicts the least recently used and keeps the cache consistent', async (t) => {
    const expected = [
      [true, false, false, false],
      [true, true, false, false],
      [false, true, true, false],
      [false, false, true, true],
    ];
    for (let i = 0; i < 4; i++) {
      await pull(img(i));
      await evict(t, `after pulling evict/img${i + 1}`);
      assertConsistent(`after pulling evict/img${i + 1}`);
      assert.deepEqual(
        smallLayersCached(),
        expected[i],
        `layers of img1..img4 cached after pulling img${i + 1} (${cachedBytes()} bytes cached)`,
      );
    }
    // The evicted images' manifests went with their layers; the newest are intact.
    assert.deepEqual(
      small.map((image) => manifestCached(image.digest)),
      [false, false, true, true],
      'manifests of img1..img4',
    );
    assert.deepEqual(
      small.map((image) => blobCached(image.configDigest)),
      [false, false, true, true],
      'configs of img1..img4',
    );
    t.diagnostic(`${cachedBytes()} bytes cached of ${MAX_SIZE}`);
  });

  it('pulls every image again afterwards: evicted ones are fetched from the upstream again', async (t) => {
    const cdn = need(theHub().cdn, 'the CDN stand-in');
    for (let i = 0; i < 4; i++) {
      const image = img(i);
      const layer = layerOf(image);
      const wasCached = blobCached(layer);
      const cdnMark = cdn.requests.length;
      const mark = theDocxy().requestLogs().length;
      await pull(image);
      const hex = layer.slice('sha256:'.length);
      const fetched = cdn.requests
        .slice(cdnMark)
        .some((r) => r.method === 'GET' && r.path.endsWith(`/${hex}/data`));
      const layerLine = outcomesSince(mark).find((l) => l.startsWith(`GET /v2/${image.repo}/blobs/${layer}`));
      t.diagnostic(`evict/img${i + 1}: ${layerLine ?? '(no log line)'}`);
      assert.equal(
        fetched,
        !wasCached,
        `img${i + 1}'s layer came from the upstream again iff it had been evicted`,
      );
      assert.match(layerLine ?? '', wasCached ? / -> 200 hit$/ : / -> 200 miss$/);
      await evict(t, `after pulling evict/img${i + 1} again`);
      assertConsistent(`after pulling evict/img${i + 1} again`);
      assert.ok(blobCached(layer), `img${i + 1}'s layer, just pulled, is cached`);
    }
  });

  it('does not evict a cached blob while a slow client is reading it', async (t) => {
    const big = need(readCached, 'evict/read-cached');
    const layer = layerOf(big);
    const path = `/v2/${big.repo}/blobs/${layer}`;
    // Docxy starts an eviction run a second after any fill; with the 64 MiB layer cached (larger
    // than max_size on its own) that run removes it. So: let the runs of the earlier pulls pass,
    // fill the layer alone (one fill, its run a second later), and within that second open a GET
    // served from the cache whose client takes one chunk and stops.
    await sleep(1100);
    await need(theDocxy().app.evictor(), 'the evictor').run();
    const auth = { authorization: `Bearer ${await tokenFor(big.repo)}` };
    const logMark = theDocxy().logs().length;
    const filled = await httpGet(`${theDocxy().url}${path}`, { headers: auth });
    assert.equal(filled.status, 200);
    assert.equal(await fillEnded(layer, logMark), 'complete', 'the fill completed');
    const mark = theDocxy().requestLogs().length;
    const read = await startSlowRead(big, layer, auth);
    t.diagnostic(`first chunk: ${read.first.length} bytes`);
    assert.ok(heldOpen(layer), 'docxy is still reading the layer from the cache');

    const r = await evict(t, 'with the read open');
    assert.ok(r.seen >= layerSize(big), 'the runs saw the layer');
    assert.ok(r.after >= layerSize(big), 'the runs kept the layer');
    assert.ok(blobCached(layer), 'the layer being read is still cached');
    assertConsistent('with the read open', true);
    // Everything else that could go went: what remains is the pinned layer (plus what fits).
    assert.ok(cachedBytes() - layerSize(big) <= MAX_SIZE, `${cachedBytes()} bytes cached`);

    const all = await read.finish();
    assert.equal(all.length, layerSize(big));
    assert.equal(sha256(all), layer, 'the slow client got every byte');
    const line = await requestLogged(path, mark);
    assert.equal(line.cache, 'hit', 'the slow read was served from the cache');
    assert.equal(line.completed, true);

    // Once the read is over the layer is evictable like any other object.
    await evict(t, 'after the read ended');
    assert.ok(!blobCached(layer), 'the layer, no longer read, is evicted (it alone exceeds max_size)');
    assertConsistent('after the read ended');
  });

  it('does not evict a blob a slow client is still reading after its fill has finished', async (t) => {
    const big = need(readFilling, 'evict/read-filling');
    const layer = layerOf(big);
    assert.ok(!blobCached(layer), 'the layer is not cached yet');
    // Let the eviction runs the earlier fills started pass first (see the test above).
    await sleep(1100);
    await need(theDocxy().app.evictor(), 'the evictor').run();
    const logMark = theDocxy().logs().length;
    const reqMark = theDocxy().requestLogs().length;
    // A cold GET: the client follows Docxy's fill, takes one chunk and stops; the fill goes on
    // and commits the layer to the cache while the client still has most of it to read.
    const read = await startSlowRead(big, layer);
    assert.equal(await fillEnded(layer, logMark), 'complete', 'the fill completed');
    assert.ok(heldOpen(layer), 'docxy is still reading the layer for the client');
    const r = await evict(t, 'with the read open after the fill');
    assert.ok(r.seen >= layerSize(big), 'the runs saw the layer');
    const keptWhileRead = blobCached(layer);

    // Whatever the run did, the client gets every byte (it reads through its own open file).
    const all = await read.finish();
    assert.equal(sha256(all), layer, 'the slow client got every byte');
    const line = await requestLogged(`/v2/${big.repo}/blobs/${layer}`, reqMark);
    assert.equal(line.cache, 'miss', 'the slow read followed the fill');
    assert.ok(keptWhileRead, 'the layer being read was still cached after the eviction run');

    await evict(t, 'after the read ended');
    assert.ok(!blobCached(layer), 'the layer, no longer read, is evicted');
    assertConsistent('after the read ended');
  });
});
