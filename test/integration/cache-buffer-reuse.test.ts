/**
 * Blob bodies sent through reused buffers (cache/body-source.ts, http/response-sink.ts, the
 * followers of cache/blob-fill.ts). A buffer back in the pool while a connection still sends it
 * would hand one client another blob's bytes, so every body here is checked byte for byte (length
 * and sha256 against what was pushed) under the conditions that keep writes pending: many
 * concurrent clients of different blobs, slow readers whose socket buffers fill, odd Range offsets,
 * clients that disconnect mid-body, cold followers that fall behind the fill's in-memory window and
 * read back from the temporary file, and HTTP/2 streams sharing one TLS connection.
 *
 * Against the real fake hub; Docxy runs in-process on 127.0.0.1. Every client connection is
 * tracked and destroyed by the after hooks, so a failing test leaves nothing open.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect as h2connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { cdnBlobSuffix, filesUnder, markUpstream, upstreamSince } from '../helpers/cache-probe.ts';
import { need } from '../helpers/client-steps.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import {
  buildImage,
  deterministicBytes,
  pushBlob,
  pushImage,
  sha256,
  type TestImage,
} from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';
import { createTestCa, type TestCa } from '../helpers/test-ca.ts';
import { httpsPullToken } from '../helpers/tls-client.ts';

const MiB = 1024 * 1024;
const REPO = 'library/reuse';
const path = (b: Blob): string => `/v2/reuse/blobs/${b.digest}`;

type Blob = { readonly name: string; readonly digest: string; readonly size: number; readonly bytes: Buffer };

/** One request and how its client behaves. */
interface Job {
  readonly blob: Blob;
  /** Bytes [start, end) asked for with `Range` (`bytes=start-` when open); the whole blob when absent. */
  readonly range?: { readonly start: number; readonly end: number; readonly open?: boolean };
  /** Pauses 20-50 ms after every 192 KiB, so its socket buffers fill and Docxy's writes stay pending. */
  readonly slow?: boolean;
  /** Drops the connection once this many body bytes have arrived. */
  readonly cutAt?: number;
}

type Body = { bytes: number; digest: string; error: Error | undefined };
type Got = Body & { status: number; contentRange: string | undefined; ms: number };

/** Its own HTTP/1.1 connection (HTTPS trusting `ca` when given), or a stream of an HTTP/2 session. */
type Via = { headers: Record<string, string> } & (
  { url: string; ca?: string } | { session: ClientHttp2Session; path: string }
);

/** How `runAll` runs a batch of jobs. */
interface RunOptions {
  readonly t?: TestContext;
  /** How to reach a blob (default: the plain-HTTP Docxy). */
  readonly via?: (b: Blob) => Via;
  /** Clients fetching whole warm blobs at full speed until the jobs are done (default 2)... */
  readonly background?: number;
  /** ...each over its own connection made by this (default `via`). */
  readonly backgroundVia?: (b: Blob) => Via;
  /** Runs once the jobs have started, before they are awaited. */
  readonly watch?: (runs: Promise<Got>[], progress: { bytes: number }[]) => Promise<void>;
}

/** Open client connections and sessions, destroyed by the after hooks. */
const open = new Set<() => void>();

function closeAll(): void {
  for (const close of [...open]) close();
  open.clear();
}

/** The pushed layer of a single-layer image, with its bytes (expected slices are cut from them). */
function layerOf(image: TestImage, name: string): Blob {
  const layer = image.blobs.find((b) => b.digest === image.layers[0]?.digest);
  if (layer?.bytes === undefined) throw new Error(`${name}: the layer is not in memory`);
  return { name, digest: layer.digest, size: layer.size, bytes: layer.bytes };
}

/** One tracked GET; a transport failure or a 20 s stall ends up in `error`, never a throw or a hang. */
function fetchBlob(via: Via, job: Job, seq: number, progress = { bytes: 0 }): Promise<Got> {
  const t0 = Date.now();
  const r = job.range;
  const range = r === undefined ? {} : { range: `bytes=${r.start}-${r.open === true ? '' : r.end - 1}` };
  const headers = { ...via.headers, ...range };
  return new Promise((resolve) => {
    let close = (): void => undefined;
    let done = false;
    const settle = (b: Body, status = 0, cr?: string | string[]): void => {
      if (done) return;
      done = true;
      open.delete(close);
      close();
      resolve({ ...b, status, contentRange: Array.isArray(cr) ? cr[0] : cr, ms: Date.now() - t0 });
    };
    const fail = (error: Error): void => {
      settle({ bytes: progress.bytes, digest: '', error });
    };
    /** Hashes the body as it arrives, at the job's pace; drops the connection at `job.cutAt`. */
    const read = async (body: Readable, status: number, cr?: string | string[]): Promise<void> => {
      const hash = createHash('sha256');
      let [unpaused, pauses] = [0, 0];
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          hash.update(chunk);
          progress.bytes += chunk.length;
          unpaused += chunk.length;
          if (job.cutAt !== undefined && progress.bytes >= job.cutAt) break;
          if (job.slow === true && unpaused >= 192 * 1024) {
            unpaused = 0;
            await sleep(20 + ((seq * 7 + pauses++ * 13) % 31));
          }
        }
      } catch (err) {
        fail(err instanceof Error ? err : new Error(String(err)));
      }
      settle({ bytes: progress.bytes, digest: `sha256:${hash.digest('hex')}`, error: undefined }, status, cr);
    };
    if ('session' in via) {
      const stream = via.session.request({ ':path': via.path, ...headers });
      close = () => {
        stream.close(h2.NGHTTP2_CANCEL);
      };
      stream.setTimeout(20_000, () => stream.destroy(new Error('no data for 20 s')));
      stream
        .on('error', fail)
        .once('response', (h) => void read(stream, Number(h[':status']), h['content-range']));
    } else {
      const opts = { headers, agent: false as const };
      const req =
        via.ca === undefined ? httpRequest(via.url, opts) : httpsRequest(via.url, { ...opts, ca: via.ca });
      close = () => {
        req.destroy();
      };
      req.setTimeout(20_000, () => req.destroy(new Error('no data for 20 s')));
      req
        .on('error', fail)
        .once('response', (res) => void read(res, res.statusCode ?? 0, res.headers['content-range']));
      req.end();
    }
    open.add(close);
  });
}

/** What is wrong with a response, or undefined when it is exactly what the job asked for. */
function problem(got: Got, job: Job): string | undefined {
  const { blob, range } = job;
  if (job.cutAt !== undefined) {
    // Cut by the client: what arrived must be a true prefix of the blob.
    const prefix = sha256(blob.bytes.subarray(0, got.bytes));
    if (got.status !== 200 || got.bytes < job.cutAt || got.bytes >= blob.size) return `cut at ${got.bytes}`;
    return got.digest === prefix ? undefined : 'WRONG BYTES before the cut';
  }
  if (got.error !== undefined) return `error after ${got.bytes} bytes: ${got.error.message}`;
  const [start, end] = range === undefined ? [0, blob.size] : [range.start, range.end];
  if (got.status !== (range === undefined ? 200 : 206)) return `status ${got.status}`;
  if (range !== undefined && got.contentRange !== `bytes ${start}-${end - 1}/${blob.size}`)
    return `Content-Range ${String(got.contentRange)}`;
  if (got.bytes !== end - start) return `${got.bytes} bytes, wanted ${end - start}`;
  const want = range === undefined ? blob.digest : sha256(blob.bytes.subarray(start, end));
  return got.digest === want ? undefined : 'WRONG BYTES';
}

/** Every response must be exactly right: lists all that are not, after reporting timings. */
function assertAll(what: string, jobs: readonly Job[], gots: readonly Got[], t?: TestContext): void {
  const mib = (gots.reduce((n, g) => n + g.bytes, 0) / MiB).toFixed(1);
  const slowest = Math.max(...gots.map((g) => g.ms));
  t?.diagnostic(`${what}: ${jobs.length} bodies, ${mib} MiB, slowest ${slowest} ms`);
  const bad = gots.flatMap((g, i) => {
    const job = jobs[i]!;
    const p = problem(g, job);
    const r = job.range === undefined ? 'whole' : `${job.range.start}-${job.range.end - 1}`;
    const how = `${job.slow === true ? ' slow' : ''}${job.cutAt === undefined ? '' : ` cut@${job.cutAt}`}`;
    return p === undefined ? [] : [`#${i} ${job.blob.name} ${r}${how}: ${p}`];
  });
  assert.deepEqual(bad, [], `${what}: every body exactly right`);
}

/** Waits until each blob's fill has ended (committed), so that later GETs are hits. */
const fillsEnded = (d: TestDocxy, which: readonly Blob[]): Promise<void> =>
  waitFor(
    'the fills to end',
    () => which.every((b) => d.logs().some((l) => l.msg === 'cache fill ended' && l.digest === b.digest)),
    30_000,
  );

/** Stops Docxy once no fill is writing (data/tmp empty), as cache-fill.test.ts does. */
async function stopSettled(docxy: TestDocxy | undefined): Promise<void> {
  if (docxy === undefined) return;
  const idle = (): boolean => filesUnder(join(docxy.dataDir, 'tmp')).length === 0;
  await waitFor('fills to settle', idle, 30_000).catch(() => undefined);
  await docxy.stop();
}

describe('blob bodies through reused buffers', () => {
  let hub: FakeHub | undefined;
  let docxy: TestDocxy | undefined;
  let auth: Record<string, string> = {};
  const blobs: Blob[] = [];
  const warm = (): Job[] => blobs.map((blob) => ({ blob }));
  const plain = (b: Blob): Via => ({ url: `${need(docxy, 'docxy').url}${path(b)}`, headers: auth });

  /**
   * Runs every job at once while `background` more clients keep fetching whole blobs at full speed
   * until the jobs are done (so a buffer released too early is reused at once); asserts that every
   * body, theirs included, is right.
   */
  async function runAll(what: string, jobs: Job[], opts: RunOptions = {}): Promise<void> {
    const { t, via = plain, background = 2, backgroundVia = via } = opts;
    let running = true;
    const extra: [Job, Got][] = [];
    const loop = async (k: number): Promise<void> => {
      for (let n = k; running; n++) {
        const job = { blob: blobs[n % 3]! };
        extra.push([job, await fetchBlob(backgroundVia(job.blob), job, n)]);
      }
    };
    const loops = Array.from({ length: background }, (_, k) => loop(k));
    const progress = jobs.map(() => ({ bytes: 0 }));
    const runs = jobs.map((j, i) => fetchBlob(via(j.blob), j, i, progress[i]));
    let gots: Got[];
    try {
      await opts.watch?.(runs, progress);
      gots = await Promise.all(runs);
    } finally {
      running = false;
    }
    await Promise.all(loops);
    const all = `${what} (+${extra.length} background)`;
    assertAll(all, [...jobs, ...extra.map((e) => e[0])], [...gots, ...extra.map((e) => e[1])], t);
  }

  before(async () => {
    hub = await startFakeHub();
    const sizes = { a: 9 * MiB, b: 13 * MiB + 5, c: 17 * MiB + 1 };
    for (const [tag, layerSize] of Object.entries(sizes)) {
      const image = await buildImage({ repo: REPO, tag, layerSize });
      await pushImage(hub, image);
      blobs.push(layerOf(image, tag));
    }
    for (const b of blobs) assert.notEqual(b.size % (256 * 1024), 0, `${b.name} is no pool-buffer multiple`);
    docxy = await startDocxy({ upstream: { url: hub.registryUrl } });
    auth = { authorization: `Bearer ${await pullToken(`${docxy.url}/auth/token`, hub.service, 'reuse')}` };
    await runAll('warming GETs', warm(), { background: 0 });
    await fillsEnded(docxy, blobs);
  });

  after(async () => {
    closeAll();
    if (hub?.cdn !== undefined) hub.cdn.intercept = undefined;
    await stopSettled(docxy);
    await hub?.stop();
  });

  it('warm: 30 whole and 30 odd-offset Range GETs of 3 blobs, some slow', { timeout: 40_000 }, async (t) => {
    const jobs: Job[] = Array.from({ length: 30 }, (_, i) => ({ blob: blobs[i % 3]!, slow: i % 5 < 2 }));
    for (let i = 0; i < 30; i++) {
      const blob = blobs[(i + 1) % 3]!;
      const start = ((i * 1_048_573 + 12_345) % (blob.size - 300_000)) | 1;
      const open = i % 6 === 5;
      const end = open ? blob.size : Math.min(blob.size, start + 262_143 + (i % 7) * 65_536 + i * 3);
      jobs.push({ blob, range: { start, end, open }, slow: i % 4 === 0 });
    }
    await runAll('warm, mixed', jobs, { t });
  });

  it('clients that disconnect mid-body leave no poisoned buffer behind', { timeout: 40_000 }, async (t) => {
    const cutAt = (i: number): number | undefined => (i < 5 ? MiB + i * 700_001 : undefined);
    const jobs = [
      ...Array.from({ length: 10 }, (_, i) => ({ blob: blobs[2]!, slow: true, cutAt: cutAt(i) })),
      ...Array.from({ length: 10 }, (_, i) => ({ blob: blobs[i % 2]! })),
    ];
    await runAll('10 slow readers of c (5 cut mid-body), 10 fast of a and b', jobs, { t });
    const again = Array.from({ length: 30 }, (_, i) => ({ blob: blobs[i % 3]! }));
    await runAll('then 10 full GETs of each blob', again, { t });
    const v2 = await httpGet(`${need(docxy, 'docxy').url}/v2/`);
    assert.equal(v2.status, 401, 'Docxy still answers /v2/ with its challenge');
    assert.equal(v2.header('docker-distribution-api-version'), 'registry/2.0');
  });

  it('cold 40 MiB blob: lagging followers and ranges, one upstream GET', { timeout: 50_000 }, async (t) => {
    const h = need(hub, 'the hub');
    const cdn = need(h.cdn, 'the CDN');
    const image = await buildImage({ repo: REPO, tag: 'cold', layerSize: 40 * MiB });
    await pushImage(h, image);
    const blob = layerOf(image, 'cold');
    const { size, bytes } = blob;
    // The CDN sends 256 KiB every 15 ms (about 2.5 s in all), so the fill is still running while
    // the slow followers fall more than its 8 MiB window behind and read the temporary file.
    const suffix = cdnBlobSuffix(blob.digest);
    cdn.intercept = (_req, res, record) => {
      if (!record.path.endsWith(suffix)) return false;
      record.status = 200;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
      void (async () => {
        for (let off = 0; off < size && !res.destroyed; off += 256 * 1024) {
          res.write(bytes.subarray(off, off + 256 * 1024));
          await sleep(15);
        }
        res.end();
      })();
      return true;
    };
    t.after(() => (cdn.intercept = undefined));
    const jobs: Job[] = [
      ...Array.from({ length: 4 }, () => ({ blob, slow: true })),
      { blob, range: { start: MiB + 1, end: size, open: true } },
      { blob, range: { start: 13 * MiB + 3, end: 21 * MiB + 6 } },
      { blob, range: { start: 27 * MiB + 5, end: size, open: true } },
      { blob, range: { start: size - 1_000_001, end: size, open: true } },
    ];
    const mark = await markUpstream(h);
    const t0 = Date.now();
    let behind: number[] = [];
    // A range to the end completes once the fill is verified: how far behind are the slow ones then?
    const watch = async (runs: Promise<Got>[], progress: { bytes: number }[]): Promise<void> => {
      await runs[4];
      behind = progress.slice(0, 4).map((p) => size - p.bytes);
      t.diagnostic(`fill verified after ${Date.now() - t0} ms`);
    };
    await runAll('cold followers, warm background', jobs, { t, watch });
    const list = behind.map((b) => (b / MiB).toFixed(1)).join(', ');
    t.diagnostic(`the slow followers were ${list} MiB behind then`);
    const far = behind.every((b) => b > 12 * MiB);
    assert.ok(far, `the slow followers fell well behind the 8 MiB window: ${list} MiB`);
    const since = await upstreamSince(h, mark);
    const gets = since.registry
      .filter((r) => r.uri.startsWith(`/v2/${REPO}/blobs/`))
      .map((r) => `${r.method} ${r.status}`);
    assert.deepEqual(gets, ['GET 307'], 'the registry saw exactly one blob GET');
    assert.equal(since.cdn.filter((r) => r.path.endsWith(suffix)).length, 1, 'one CDN request');
    await fillsEnded(need(docxy, 'docxy'), [blob]);
  });

  describe('over TLS', () => {
    let ca: TestCa | undefined;
    let tls: TestDocxy | undefined;
    let tlsAuth: Record<string, string> = {};
    const base = (): string => `https://127.0.0.1:${need(tls, 'docxy').port}`;
    const https = (b: Blob): Via => ({ url: base() + path(b), ca: need(ca, 'CA').certPem, headers: tlsAuth });
    const jobs = (): Job[] => [
      ...Array.from({ length: 9 }, (_, i) => ({ blob: blobs[i % 3]!, slow: i % 4 === 1 })),
      { blob: blobs[0]!, range: { start: 3 * MiB + 7, end: 5 * MiB + 1 } },
      { blob: blobs[1]!, range: { start: 262_145, end: blobs[1]!.size, open: true }, slow: true },
      { blob: blobs[2]!, range: { start: 11 * MiB - 3, end: 16 * MiB + 9 } },
    ];

    before(async () => {
      const h = need(hub, 'the hub');
      ca = await createTestCa();
      const cert = await ca.issue({ name: 'reuse' });
      const tlsConfig = { cert: cert.certFile, key: cert.keyFile };
      tls = await startDocxy({ tls: tlsConfig, http_listen: false, upstream: { url: h.registryUrl } });
      tlsAuth = { authorization: `Bearer ${await httpsPullToken(base(), ca.certPem, h.service, 'reuse')}` };
      await runAll('warming GETs over TLS', warm(), { via: https, background: 0 });
      await fillsEnded(tls, blobs);
    });

    after(async () => {
      closeAll();
      await stopSettled(tls);
      ca?.remove();
    });

    it('HTTP/2: 12 concurrent streams of one session', { timeout: 30_000 }, async (t) => {
      const session = h2connect(base(), { ca: need(ca, 'the CA').certPem });
      const close = session.destroy.bind(session, undefined, undefined);
      open.add(close);
      const errors: Error[] = [];
      try {
        await once(session, 'connect');
        session.on('error', (err: Error) => errors.push(err));
        assert.equal(session.alpnProtocol, 'h2');
        const stream = (b: Blob): Via => ({ session, path: path(b), headers: tlsAuth });
        // The background clients have their own HTTPS connections, so they churn the pool whatever
        // the session's flow control does.
        await runAll('HTTP/2 streams', jobs(), { t, via: stream, backgroundVia: https });
        assert.deepEqual(errors, [], 'no session error');
      } finally {
        open.delete(close);
        session.close();
      }
    });

    it('HTTPS/1.1: the same 12 requests, each on its own connection', { timeout: 30_000 }, async (t) => {
      await runAll('HTTPS/1.1', jobs(), { t, via: https });
    });

    // Regression: HTTP/2 responses have no writableNeedDrain, and the sink took that for "never
    // full": a paused HTTP/2 follower of a cold blob made Docxy queue the whole blob for it.
    it(
      'HTTP/2: a paused follower of a cold 64 MiB blob does not make Docxy buffer it',
      { timeout: 30_000 },
      async (t) => {
        // What Docxy holds for the paused client is what it frees once the client goes; a full
        // collection before each reading, so garbage does not count.
        setFlagsFromString('--expose-gc');
        const collect = runInNewContext('gc') as () => void;
        // Backing stores are freed a little after a collection: the lowest of a few readings.
        const buffers = async (): Promise<number> => {
          let low = Number.POSITIVE_INFINITY;
          for (let i = 0; i < 4; i++) {
            collect();
            await sleep(100);
            low = Math.min(low, process.memoryUsage().arrayBuffers);
          }
          return low;
        };
        const h = need(hub, 'the hub');
        const blob = await pushBlob(h, REPO, deterministicBytes('reuse h2 paused', 64 * MiB));
        const session = h2connect(base(), { ca: need(ca, 'the CA').certPem });
        const close = session.destroy.bind(session, undefined, undefined);
        open.add(close);
        try {
          const stream = session.request({ ':path': `/v2/reuse/blobs/${blob.digest}`, ...tlsAuth });
          const [headers] = (await once(stream, 'response')) as [Record<string, unknown>];
          stream.pause();
          assert.equal(headers[':status'], 200);
          await waitFor(
            'the fill to end',
            () =>
              need(tls, 'docxy')
                .logs()
                .some((l) => l.msg === 'cache fill ended' && l.digest === blob.digest),
            20_000,
          );
          const paused = await buffers();
          session.destroy();
          const gone = await buffers();
          const held = paused - gone;
          t.diagnostic(`freed when the paused client went: ${(held / MiB).toFixed(1)} MiB`);
          assert.ok(held < 16 * MiB, `Docxy held ${(held / MiB).toFixed(1)} MiB for a paused client`);
        } finally {
          open.delete(close);
          session.destroy();
        }
      },
    );
  });
});
