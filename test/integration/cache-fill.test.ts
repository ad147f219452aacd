/**
 * Blob fills through the cache, against the real fake hub (Distribution 2.8 + token server + CDN):
 * one upstream download shared by concurrent clients (whole and ranged), hits that cost the
 * upstream nothing, resume after a cut CDN connection, wrong bytes never cached, a SIGKILL mid-fill
 * leaving nothing behind, a full disk still relaying every byte, and `cache.enabled: false`.
 *
 * Upstream requests are counted exactly: the registry's access log, the CDN's and the token
 * server's request lists, from a mark taken just before the requests under test.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { paths } from '../../src/storage/paths.ts';
import {
  cdnBlobSuffix,
  filesUnder,
  markUpstream,
  streamGet,
  upstreamSince,
  type StreamedResponse,
} from '../helpers/cache-probe.ts';
import type { CdnServer } from '../helpers/cdn-server.ts';
import { spawnDocxy, type DocxyProcess } from '../helpers/docxy-process.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  buildImage,
  deterministicBytes,
  pushBlob,
  pushImage,
  sha256,
  type BlobRef,
} from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';
import { makeTmpDir } from '../helpers/tmp.ts';

const MiB = 1024 * 1024;

/** Where a committed blob lives in a data directory. */
function committedPath(dataDir: string, digest: string): string {
  return join(dataDir, 'objects', paths.blob(digest));
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * Stops Docxy once no fill is writing any more (data/tmp is empty: each fill's temporary is renamed
 * on commit or removed on cancel). `close()` does not wait for fills, and one still committing
 * would recreate folders in the data directory while it is being removed.
 */
async function stopSettled(docxy: TestDocxy): Promise<void> {
  await waitFor('fills to settle', () => filesUnder(join(docxy.dataDir, 'tmp')).length === 0, 30_000).catch(
    () => undefined,
  );
  await docxy.stop();
}

/** A body that arrived whole and right: 200, every byte, the digest, no transport error. */
function assertWhole(res: StreamedResponse, blob: BlobRef, what: string): void {
  assert.equal(res.error, undefined, `${what}: ${res.error?.message ?? ''}`);
  assert.equal(res.status, 200, what);
  assert.equal(res.bytes, blob.size, `${what}: length`);
  assert.equal(res.digest, blob.digest, `${what}: digest`);
}

/** A response that did not deliver a blob: a non-200, or a 200 whose body broke before its end. */
function assertNotDelivered(res: StreamedResponse, size: number, what: string): void {
  if (res.status !== 200) return;
  assert.ok(
    res.error !== undefined && res.bytes < size,
    `${what}: got a 200 with ${res.bytes} of ${size} bytes and ${res.error === undefined ? 'no error' : `error ${res.error.message}`} ` +
      '(a client must never receive a complete body that failed verification)',
  );
}

describe('blob fills through the cache', () => {
  let hub: FakeHub;
  let cdn: CdnServer;

  before(async () => {
    hub = await startFakeHub();
    if (hub.cdn === undefined) throw new Error('the fake hub has no CDN');
    cdn = hub.cdn;
  });

  after(async () => {
    cdn.intercept = undefined;
    await hub.stop();
  });

  /** Request log lines of Docxy for one path. */
  function linesFor(docxy: TestDocxy, path: string): Record<string, unknown>[] {
    return docxy.requestLogs().filter((l) => l.path === path);
  }

  async function waitForCommit(docxy: TestDocxy, digest: string): Promise<void> {
    await waitFor(`${digest} to be committed`, () => isFile(committedPath(docxy.dataDir, digest)), 30_000);
    // The flight ends right after the commit; a GET that raced it would coalesce instead of hit.
    await waitFor('the fill to end', () =>
      docxy.logs().some((l) => l.msg === 'cache fill ended' && l.digest === digest),
    );
  }

  it('20 concurrent GETs of a cold 64 MiB blob: one upstream GET, 20 verified bodies, 1 miss + 19 coalesced', async () => {
    const bytes = deterministicBytes('cache-fill: concurrent whole', 64 * MiB);
    const blob = await pushBlob(hub, 'library/fillwhole', bytes);
    const docxy = await startDocxy({ upstream: { url: hub.registryUrl } });
    try {
      const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'fillwhole');
      const path = `/v2/fillwhole/blobs/${blob.digest}`;
      const mark = await markUpstream(hub);
      const results = await Promise.all(
        Array.from({ length: 20 }, () =>
          streamGet(`${docxy.url}${path}`, { authorization: `Bearer ${token}` }),
        ),
      );
      results.forEach((r, i) => {
        assertWhole(r, blob, `client ${i}`);
      });

      const since = await upstreamSince(hub, mark);
      assert.deepEqual(
        since.registry
          .filter((r) => r.uri.startsWith(`/v2/library/fillwhole/blobs/`))
          .map((r) => `${r.method} ${r.uri} ${r.status}`),
        [`GET /v2/library/fillwhole/blobs/${blob.digest} 307`],
        'the registry saw exactly one blob request',
      );
      assert.equal(since.cdn.length, 1, 'the CDN saw exactly one request');
      const cdnReq = since.cdn[0];
      assert.ok(cdnReq !== undefined);
      assert.equal(cdnReq.method, 'GET');
      assert.ok(cdnReq.path.endsWith(cdnBlobSuffix(blob.digest)));
      assert.equal(cdnReq.range, undefined);

      await waitFor('20 request log lines', () => linesFor(docxy, path).length === 20);
      const caches = linesFor(docxy, path)
        .map((l) => String(l.cache))
        .sort();
      assert.deepEqual(caches, [...Array<string>(19).fill('coalesced'), 'miss']);
    } finally {
      await stopSettled(docxy);
    }
  });

  it('20 concurrent Range GETs at different offsets of a cold 64 MiB blob: one upstream GET, each 206 the right slice', async () => {
    const size = 64 * MiB;
    const bytes = deterministicBytes('cache-fill: concurrent ranges', size);
    const blob = await pushBlob(hub, 'library/fillranges', bytes);
    const ranges: { header: string; start: number; end: number }[] = [];
    for (let i = 0; i < 18; i++) {
      const start = i * 3.5 * MiB + 12_345 * i;
      const end = start + 2 * MiB + 777 * i;
      ranges.push({ header: `bytes=${start}-${end - 1}`, start, end });
    }
    const openStart = size - 5 * MiB + 3;
    ranges.push({ header: `bytes=${openStart}-`, start: openStart, end: size });
    ranges.push({ header: 'bytes=-1000000', start: size - 1_000_000, end: size });

    const docxy = await startDocxy({ upstream: { url: hub.registryUrl } });
    try {
      const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'fillranges');
      const path = `/v2/fillranges/blobs/${blob.digest}`;
      const mark = await markUpstream(hub);
      const results = await Promise.all(
        ranges.map((r) =>
          streamGet(`${docxy.url}${path}`, { authorization: `Bearer ${token}`, range: r.header }),
        ),
      );
      results.forEach((res, i) => {
        const r = ranges[i]!;
        assert.equal(res.error, undefined, `${r.header}: ${res.error?.message ?? ''}`);
        assert.equal(res.status, 206, r.header);
        assert.equal(res.header('content-range'), `bytes ${r.start}-${r.end - 1}/${size}`, r.header);
        assert.equal(res.bytes, r.end - r.start, `${r.header}: length`);
        assert.equal(res.digest, sha256(bytes.subarray(r.start, r.end)), `${r.header}: bytes`);
      });

      const since = await upstreamSince(hub, mark);
      assert.deepEqual(
        since.registry
          .filter((r) => r.uri.startsWith(`/v2/library/fillranges/blobs/`))
          .map((r) => `${r.method} ${r.status}`),
        ['GET 307'],
        'the registry saw exactly one blob request',
      );
      assert.equal(since.cdn.length, 1, 'the CDN saw exactly one request');
      assert.ok(since.cdn[0]?.path.endsWith(cdnBlobSuffix(blob.digest)));
      assert.equal(since.cdn[0]?.range, undefined, 'the fill downloads the whole blob, not a client range');

      await waitFor('20 request log lines', () => linesFor(docxy, path).length === 20);
      const caches = linesFor(docxy, path).map((l) => String(l.cache));
      assert.equal(caches.filter((c) => c === 'miss').length, 1, caches.join(','));
      assert.equal(caches.filter((c) => c === 'coalesced').length, 19, caches.join(','));
    } finally {
      await stopSettled(docxy);
    }
  });

  describe('a committed blob', () => {
    const size = 8 * MiB + 321;
    const bytes = deterministicBytes('cache-fill: hits', size);
    let blob: BlobRef;
    let docxy: TestDocxy;
    let token: string;
    let path: string;

    before(async () => {
      blob = await pushBlob(hub, 'library/fillhit', bytes);
      docxy = await startDocxy({ upstream: { url: hub.registryUrl } });
      token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'fillhit');
      path = `/v2/fillhit/blobs/${blob.digest}`;
      assertWhole(
        await streamGet(`${docxy.url}${path}`, { authorization: `Bearer ${token}` }),
        blob,
        'filling GET',
      );
      await waitForCommit(docxy, blob.digest);
    });

    after(async () => {
      await stopSettled(docxy);
    });

    /** The log line of the newest request for the path, once it is written. */
    async function lastLine(count: number): Promise<Record<string, unknown>> {
      await waitFor(`${count} request log lines`, () => linesFor(docxy, path).length === count);
      return linesFor(docxy, path)[count - 1]!;
    }

    it('a GET is a hit and costs the upstream nothing', async () => {
      const before = linesFor(docxy, path).length;
      const mark = await markUpstream(hub);
      const res = await streamGet(`${docxy.url}${path}`, { authorization: `Bearer ${token}` });
      assertWhole(res, blob, 'GET');
      assert.equal(res.header('etag'), `"${blob.digest}"`);
      assert.equal(res.header('docker-content-digest'), blob.digest);
      assert.deepEqual(await upstreamSince(hub, mark), { registry: [], cdn: [], token: [] });
      assert.equal((await lastLine(before + 1)).cache, 'hit');
    });

    it('a Range GET on a hit -> 206 with Content-Range and the right bytes, no upstream request', async () => {
      const before = linesFor(docxy, path).length;
      const mark = await markUpstream(hub);
      const start = 3 * MiB + 17;
      const end = 5 * MiB + 4099; // exclusive
      const res = await streamGet(`${docxy.url}${path}`, {
        authorization: `Bearer ${token}`,
        range: `bytes=${start}-${end - 1}`,
      });
      assert.equal(res.error, undefined);
      assert.equal(res.status, 206);
      assert.equal(res.header('content-range'), `bytes ${start}-${end - 1}/${size}`);
      assert.equal(res.header('content-length'), String(end - start));
      assert.equal(res.bytes, end - start);
      assert.equal(res.digest, sha256(bytes.subarray(start, end)));
      assert.deepEqual(await upstreamSince(hub, mark), { registry: [], cdn: [], token: [] });
      assert.equal((await lastLine(before + 1)).cache, 'hit');
    });

    it('If-None-Match with the ETag -> 304 without a body, no upstream request', async () => {
      const before = linesFor(docxy, path).length;
      const mark = await markUpstream(hub);
      const res = await streamGet(`${docxy.url}${path}`, {
        authorization: `Bearer ${token}`,
        'if-none-match': `"${blob.digest}"`,
      });
      assert.equal(res.error, undefined);
      assert.equal(res.status, 304);
      assert.equal(res.bytes, 0);
      assert.deepEqual(await upstreamSince(hub, mark), { registry: [], cdn: [], token: [] });
      assert.equal((await lastLine(before + 1)).cache, 'hit');
    });
  });

  it('a CDN connection cut at half the blob: resumed with a Range from the cut, the client gets all of it, then a hit', async () => {
    const size = 16 * MiB + 5;
    const bytes = deterministicBytes('cache-fill: resume', size);
    const blob = await pushBlob(hub, 'library/fillresume', bytes);
    const cut = Math.floor(size / 2);
    const suffix = cdnBlobSuffix(blob.digest);
    let cutDone = false;
    cdn.intercept = (_req, res, record) => {
      if (cutDone || !record.path.endsWith(suffix)) return false;
      cutDone = true;
      record.status = 200;
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': size,
        'accept-ranges': 'bytes',
      });
      // Once the first half is handed to the kernel and Docxy has had time to consume it, drop the
      // connection. (Destroying at once would make undici discard what it had received but Docxy
      // had not read yet, and the resume would rightly start earlier than the cut.)
      res.write(bytes.subarray(0, cut), () => {
        setTimeout(() => res.socket?.destroy(), 300);
      });
      return true;
    };
    const docxy = await startDocxy({
      upstream: { url: hub.registryUrl },
      cache: { resume_backoff: '50ms' },
    });
    try {
      const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'fillresume');
      const path = `/v2/fillresume/blobs/${blob.digest}`;
      const mark = await markUpstream(hub);
      assertWhole(await streamGet(`${docxy.url}${path}`, { authorization: `Bearer ${token}` }), blob, 'GET');
      assert.ok(cutDone, 'the interceptor cut the first CDN request');

      const since = await upstreamSince(hub, mark);
      assert.deepEqual(
        since.cdn.map((r) => `${r.method} ${r.range ?? '(whole)'}`),
        ['GET (whole)', `GET bytes=${cut}-`],
        'one cut download, then one resume from the cut offset',
      );
      assert.deepEqual(
        since.registry
          .filter((r) => r.uri.startsWith('/v2/library/fillresume/blobs/'))
          .map((r) => `${r.method} ${r.status}`),
        ['GET 307', 'GET 307'],
      );

      await waitForCommit(docxy, blob.digest);
      const mark2 = await markUpstream(hub);
      assertWhole(
        await streamGet(`${docxy.url}${path}`, { authorization: `Bearer ${token}` }),
        blob,
        'second GET',
      );
      assert.deepEqual(await upstreamSince(hub, mark2), { registry: [], cdn: [], token: [] });
      await waitFor('the second request log line', () => linesFor(docxy, path).length === 2);
      assert.equal(linesFor(docxy, path)[1]?.cache, 'hit');
    } finally {
      cdn.intercept = undefined;
      await stopSettled(docxy);
    }
  });

  it('wrong bytes from the CDN: the client gets no complete body, nothing is cached; right bytes later are cached', async () => {
    const size = 8 * MiB;
    const bytes = deterministicBytes('cache-fill: wrong bytes', size);
    const wrong = deterministicBytes('cache-fill: something else', size);
    const blob = await pushBlob(hub, 'library/fillwrong', bytes);
    const suffix = cdnBlobSuffix(blob.digest);
    cdn.intercept = (_req, res, record) => {
      if (!record.path.endsWith(suffix)) return false;
      record.status = 200;
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': size,
        'accept-ranges': 'bytes',
      });
      res.end(wrong);
      return true;
    };
    const docxy = await startDocxy({ upstream: { url: hub.registryUrl } });
    try {
      const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'fillwrong');
      const path = `/v2/fillwrong/blobs/${blob.digest}`;
      const get = (): Promise<StreamedResponse> =>
        streamGet(`${docxy.url}${path}`, { authorization: `Bearer ${token}` });
      const failedFills = (): number =>
        docxy.logs().filter((l) => l.msg === 'cache fill ended' && l.digest === blob.digest).length;

      const mark = await markUpstream(hub);
      const first = await get();
      assertNotDelivered(first, size, 'first GET');
      assert.notEqual(first.digest, sha256(wrong), 'the wrong bytes never reach the client whole');
      await waitFor('the failed fill to end', () => failedFills() === 1);
      assert.deepEqual(filesUnder(join(docxy.dataDir, 'objects', 'blobs')), [], 'nothing committed');
      assert.deepEqual(filesUnder(join(docxy.dataDir, 'tmp')), [], 'no temporary left');

      const second = await get();
      assertNotDelivered(second, size, 'second GET');
      await waitFor('the second failed fill to end', () => failedFills() === 2);
      const since = await upstreamSince(hub, mark);
      assert.equal(
        since.cdn.filter((r) => r.path.endsWith(suffix)).length,
        2,
        'the second GET went upstream again: no cache entry',
      );
      assert.deepEqual(filesUnder(join(docxy.dataDir, 'objects', 'blobs')), [], 'still nothing committed');

      cdn.intercept = undefined;
      const mark2 = await markUpstream(hub);
      assertWhole(await get(), blob, 'GET with the right bytes upstream');
      assert.equal((await upstreamSince(hub, mark2)).cdn.length, 1);
      await waitForCommit(docxy, blob.digest);
      const mark3 = await markUpstream(hub);
      assertWhole(await get(), blob, 'GET after the commit');
      assert.deepEqual(await upstreamSince(hub, mark3), { registry: [], cdn: [], token: [] });
    } finally {
      cdn.intercept = undefined;
      await stopSettled(docxy);
    }
  });

  it('SIGKILL mid-fill: the leftover is removed at restart, the blob is fetched again and verified, nothing partial served', async () => {
    const size = 32 * MiB;
    const bytes = deterministicBytes('cache-fill: sigkill', size);
    const blob = await pushBlob(hub, 'library/fillkill', bytes);
    const suffix = cdnBlobSuffix(blob.digest);
    const dir = makeTmpDir('cache-kill');
    const dataDir = join(dir.path, 'data');
    const tmpDir = join(dataDir, 'tmp');
    const configFile = join(dir.path, 'docxy.yaml');
    writeFileSync(
      configFile,
      stringify({ data: dataDir, log_level: 'info', upstream: { url: hub.registryUrl } }),
    );
    // A slow CDN: 512 KiB every 40 ms (about 2.6 s for the blob), so the kill lands mid-fill.
    cdn.intercept = (_req, res, record) => {
      if (!record.path.endsWith(suffix)) return false;
      record.status = 200;
      const conn = { closed: false };
      res.once('close', () => {
        conn.closed = true;
      });
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': size,
        'accept-ranges': 'bytes',
      });
      void (async () => {
        for (let off = 0; off < size && !conn.closed; off += 512 * 1024) {
          res.write(bytes.subarray(off, off + 512 * 1024));
          await sleep(40);
        }
        if (!conn.closed) res.end();
      })();
      return true;
    };
    let first: DocxyProcess | undefined;
    let second: DocxyProcess | undefined;
    try {
      first = await spawnDocxy({ configFile, logFile: join(dir.path, 'first.log') });
      const path = `/v2/fillkill/blobs/${blob.digest}`;
      const token = await pullToken(`${first.url}/auth/token`, hub.service, 'fillkill');
      const mark = await markUpstream(hub);
      const pending = streamGet(`${first.url}${path}`, { authorization: `Bearer ${token}` });
      const tmpSize = (): number =>
        filesUnder(tmpDir).reduce((n, f) => n + statSync(join(tmpDir, f)).size, 0);
      await waitFor('half of the blob in data/tmp', () => tmpSize() >= size / 2, 30_000);
      await first.kill9();
      const leftover = tmpSize();
      assert.ok(leftover >= size / 2 && leftover < size, `the kill landed mid-fill (${leftover} bytes)`);
      assert.equal(filesUnder(tmpDir).length, 1, 'the unfinished fill is left in data/tmp');
      assert.deepEqual(filesUnder(join(dataDir, 'objects', 'blobs')), [], 'nothing committed');

      const cut = await pending;
      assertNotDelivered(cut, size, 'the GET in flight at the kill');

      cdn.intercept = undefined;
      second = await spawnDocxy({ configFile, logFile: join(dir.path, 'second.log') });
      assert.deepEqual(readdirSync(tmpDir), [], 'data/tmp is empty after the restart');
      const cdnBefore = (await upstreamSince(hub, mark)).cdn.filter((r) => r.path.endsWith(suffix)).length;
      assert.equal(cdnBefore, 1);

      const token2 = await pullToken(`${second.url}/auth/token`, hub.service, 'fillkill');
      assertWhole(
        await streamGet(`${second.url}${path}`, { authorization: `Bearer ${token2}` }),
        blob,
        'GET after the restart',
      );
      const cdnAfter = (await upstreamSince(hub, mark)).cdn.filter((r) => r.path.endsWith(suffix));
      assert.equal(cdnAfter.length, 2, 'fetched again from the upstream');
      assert.equal(cdnAfter[1]?.range, undefined, 'from the start: the leftover is not trusted');
      await waitFor('the blob to be committed', () => isFile(committedPath(dataDir, blob.digest)));
      const restartLog = second.logs();
      assert.ok(
        restartLog.some((l) => l.removed === 1),
        'the restart logged the removed leftover',
      );
    } finally {
      cdn.intercept = undefined;
      await first?.stop();
      await second?.stop();
      dir.remove();
    }
  });

  describe('a full disk', () => {
    let mountDir: { path: string; remove: () => void } | undefined;
    let mounted = false;

    before(() => {
      mountDir = makeTmpDir('cache-tmpfs');
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountDir.path]);
      mounted = true;
    });

    after(() => {
      if (mounted && mountDir !== undefined) execFileSync('umount', [mountDir.path]);
      mountDir?.remove();
    });

    it('an 8 MiB data dir and a 32 MiB blob: the client gets every byte, nothing is committed, a warning is logged', async () => {
      const dataDir = mountDir!.path;
      const size = 32 * MiB;
      const blob = await pushBlob(hub, 'library/fillfull', deterministicBytes('cache-fill: disk full', size));
      const docxy = await startDocxy({ upstream: { url: hub.registryUrl }, data: dataDir });
      try {
        const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'fillfull');
        const path = `/v2/fillfull/blobs/${blob.digest}`;
        assertWhole(
          await streamGet(`${docxy.url}${path}`, { authorization: `Bearer ${token}` }),
          blob,
          'GET',
        );
        await waitFor('the fill to end', () =>
          docxy.logs().some((l) => l.msg === 'cache fill ended' && l.digest === blob.digest),
        );
        assert.deepEqual(filesUnder(join(dataDir, 'objects', 'blobs')), [], 'nothing committed');
        assert.deepEqual(filesUnder(join(dataDir, 'tmp')), [], 'no temporary left');
        const warnings = docxy
          .logs()
          .filter((l) => l.level === 40 && l.digest === blob.digest && /cach/i.test(String(l.msg)));
        assert.ok(warnings.length >= 1, 'a warning says the blob could not be cached');
        assert.match(String(warnings[0]?.err), /ENOSPC|no space/i);
      } finally {
        await stopSettled(docxy);
      }
    });

    it('six concurrent clients (two with ranges) of a 32 MiB blob on the full disk all get their bytes', async (t) => {
      const dataDir = mountDir!.path;
      const size = 32 * MiB;
      const bytes = deterministicBytes('cache-fill: disk full, followers', size);
      const blob = await pushBlob(hub, 'library/fillfull', bytes);
      const docxy = await startDocxy({ upstream: { url: hub.registryUrl }, data: dataDir });
      try {
        const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'fillfull');
        const url = `${docxy.url}/v2/fillfull/blobs/${blob.digest}`;
        const auth = { authorization: `Bearer ${token}` };
        // Followers at different places when the write fails: from the fill's memory, then each
        // with its own upstream Range from where it is.
        const ranges = [
          [3 * MiB + 1, 29 * MiB + 7],
          [17 * MiB + 3, size],
        ] as const;
        const mark = await markUpstream(hub);
        const [whole, parts] = await Promise.all([
          Promise.all(Array.from({ length: 4 }, () => streamGet(url, auth))),
          Promise.all(ranges.map(([a, b]) => streamGet(url, { ...auth, range: `bytes=${a}-${b - 1}` }))),
        ]);
        whole.forEach((res, i) => {
          assertWhole(res, blob, `client ${i}`);
        });
        parts.forEach((res, i) => {
          const [a, b] = ranges[i]!;
          assert.equal(res.error, undefined, `range ${i}: ${res.error?.message ?? ''}`);
          assert.equal(res.status, 206, `range ${i}`);
          assert.equal(res.bytes, b - a, `range ${i}: length`);
          assert.equal(res.digest, sha256(bytes.subarray(a, b)), `range ${i}: digest`);
        });
        await waitFor('the fill to end', () =>
          docxy.logs().some((l) => l.msg === 'cache fill ended' && l.digest === blob.digest),
        );
        // The fill's own GET, then the followers that were past its memory fetched the rest.
        const gets = (await upstreamSince(hub, mark)).registry.filter(
          (r) => r.method === 'GET' && r.uri === `/v2/library/fillfull/blobs/${blob.digest}`,
        );
        t.diagnostic(`upstream blob GETs: ${gets.length}`);
        assert.ok(gets.length >= 2, `followers fetched their rest upstream (${gets.length} GETs)`);
        assert.deepEqual(filesUnder(join(dataDir, 'objects', 'blobs')), [], 'nothing committed');
        assert.deepEqual(filesUnder(join(dataDir, 'tmp')), [], 'no temporary left');
      } finally {
        await stopSettled(docxy);
      }
    });
  });

  it('cache.enabled: false relays: every pull goes upstream and nothing is stored', async () => {
    const image = await buildImage({ repo: 'library/fillrelay', tag: '1', layerSize: 256 * 1024 });
    await pushImage(hub, image);
    const layer = image.layers[0]!;
    const dir = makeTmpDir('cache-off');
    const dataDir = join(dir.path, 'data');
    mkdirSync(dataDir);
    const docxy = await startDocxy({
      upstream: { url: hub.registryUrl },
      data: dataDir,
      cache: { enabled: false },
    });
    try {
      const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'fillrelay');
      const auth = { authorization: `Bearer ${token}` };
      const mark = await markUpstream(hub);
      for (let i = 0; i < 2; i++) {
        const m = await httpGet(`${docxy.url}/v2/fillrelay/manifests/1`, {
          headers: { ...auth, accept: ACCEPT_ALL_MANIFESTS },
        });
        assert.equal(m.status, 200);
        assert.equal(m.header('docker-content-digest'), image.digest);
        assertWhole(
          await streamGet(`${docxy.url}/v2/fillrelay/blobs/${layer.digest}`, auth),
          layer,
          `blob ${i}`,
        );
      }
      const since = await upstreamSince(hub, mark);
      assert.deepEqual(
        since.registry
          .filter((r) => r.uri.startsWith('/v2/library/fillrelay/'))
          .map((r) => `${r.method} ${r.uri} ${r.status}`),
        [
          `GET /v2/library/fillrelay/manifests/1 200`,
          `GET /v2/library/fillrelay/blobs/${layer.digest} 307`,
          `GET /v2/library/fillrelay/manifests/1 200`,
          `GET /v2/library/fillrelay/blobs/${layer.digest} 307`,
        ],
        'each pull went upstream',
      );
      assert.equal(since.cdn.length, 2);
      assert.deepEqual(filesUnder(join(dataDir, 'objects')), [], 'nothing under data/objects');
      assert.deepEqual(readdirSync(dataDir), [], 'nothing in the data dir at all');
    } finally {
      await stopSettled(docxy);
      dir.remove();
    }
  });
});
