/**
 * The server's `warm:` schedule, against the fake Hub with Docxy in-process:
 *
 *   with warm.interval 1 s, the listed images' manifests and blobs (every platform) land in the
 *   cache without any client request; a missing tag in the list is a warn and the others still warm;
 *   the runs are counted in /metrics
 *   the tag moved upstream to a new manifest: a later run stores the new manifest and its blobs,
 *   and with the Hub stopped the tag through Docxy answers the new digest and every new blob
 *   against an upstream that never answers, runs do not overlap (the next is skipped, logged) and
 *   closing Docxy during the run returns promptly
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { need } from '../helpers/client-steps.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  buildImage,
  pushImage,
  seedImages,
  type ChildDescriptor,
  type ImageDescriptor,
} from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';
import { scrape } from '../helpers/prometheus.ts';

function objectFile(dataDir: string, kind: 'blobs' | 'manifests', digest: string): string {
  const [alg, hex] = digest.split(':');
  if (alg === undefined || hex === undefined) throw new Error(`bad digest ${digest}`);
  return join(dataDir, 'objects', kind, alg, hex.slice(0, 2), hex);
}

const blobsOf = (c: ChildDescriptor | ImageDescriptor): string[] => [
  c.configDigest,
  ...c.layers.map((l) => l.digest),
];

describe('the warm: schedule', () => {
  let hub: FakeHub | undefined;
  let hubStopped = false;
  let docxy: TestDocxy | undefined;
  let tiny: ImageDescriptor | undefined;
  let multi: ImageDescriptor | undefined;

  before(async () => {
    hub = await startFakeHub();
    const seeded = await seedImages(hub, ['tiny', 'multi']);
    tiny = seeded.tiny;
    multi = seeded.multi;
    docxy = await startDocxy({
      upstream: { url: hub.registryUrl, tag_ttl: '1s' },
      warm: { interval: '1s', images: ['tiny:1', 'multi:1', 'tiny:nope'], platforms: 'all', concurrency: 2 },
    });
  });

  after(async () => {
    const results = await Promise.allSettled([docxy?.stop(), hubStopped ? undefined : hub?.stop()]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  });

  it('warms every listed image without a client request; a missing tag is a warn, the others still warm', async () => {
    const d = need(docxy, 'docxy');
    const m = need(multi, 'multi');
    const expected = [
      objectFile(d.dataDir, 'manifests', need(tiny, 'tiny').digest),
      ...blobsOf(need(tiny, 'tiny')).map((b) => objectFile(d.dataDir, 'blobs', b)),
      objectFile(d.dataDir, 'manifests', m.digest),
      ...need(m.children, 'platforms').flatMap((c) => [
        objectFile(d.dataDir, 'manifests', c.digest),
        ...blobsOf(c).map((b) => objectFile(d.dataDir, 'blobs', b)),
      ]),
    ];
    await waitFor('a finished warm run', () => d.logs().some((l) => l.msg === 'warm run'), 20_000);
    for (const f of expected) assert.ok(existsSync(f), `${f} is cached`);
    const clientPulls = (): unknown[] => d.requestLogs().filter((l) => String(l.path).startsWith('/v2/'));
    assert.deepEqual(clientPulls(), [], 'no client asked for anything');

    const run = d.logs().find((l) => l.msg === 'warm run');
    assert.equal(run?.level, 30, 'info');
    assert.equal(run.images, 3);
    assert.equal(run.warmed, 2);
    assert.equal(run.failures, 1);
    // tiny: config + 1 layer; multi: config + layer for each of its two platforms.
    assert.equal(run.blobs, 2 + 2 * need(m.children, 'platforms').length);
    assert.equal(run.fetched, run.blobs, 'all of them were fetched on the first run');
    assert.ok(typeof run.bytes === 'number' && run.bytes > 0);
    assert.ok(typeof run.durationMs === 'number');
    const warn = d.logs().find((l) => l.msg === 'warm failed');
    assert.equal(warn?.level, 40, 'warn');
    assert.equal(warn.image, 'tiny:nope');
    assert.match(String(warn.reason), /^manifest nope: MANIFEST_UNKNOWN: /);

    const s = await scrape(d.url);
    assert.ok(s.value('docxy_warm_runs_total', { result: 'failed' }) >= 1, 'the run is counted');
    assert.ok(s.value('docxy_warm_image_failures_total') >= 1, 'its failure is counted');
    assert.equal(s.value('docxy_warm_runs_total', { result: 'ok' }), 0, 'no run was without a failure');
  });

  it('stores a moved tag and its new blobs; with the Hub stopped the tag answers the new digest', async () => {
    const d = need(docxy, 'docxy');
    const h = need(hub, 'the fake hub');
    const moved = await pushImage(h, await buildImage({ repo: 'library/tiny', tag: '1', seed: 'moved' }));
    assert.notEqual(moved.digest, need(tiny, 'tiny').digest);
    const files = [
      objectFile(d.dataDir, 'manifests', moved.digest),
      ...blobsOf(moved).map((b) => objectFile(d.dataDir, 'blobs', b)),
    ];
    const runsBefore = d.logs().filter((l) => l.msg === 'warm run').length;
    // Two runs after the push: the tag record is stored before its blobs are fetched.
    await waitFor(
      'the moved tag warmed',
      () =>
        files.every((f) => existsSync(f)) &&
        d.logs().filter((l) => l.msg === 'warm run').length >= runsBefore + 2,
      20_000,
    );
    assert.deepEqual(
      d.requestLogs().filter((l) => String(l.path).startsWith('/v2/')),
      [],
      'still no client asked for anything',
    );

    hubStopped = true;
    await h.stop();
    const token = await pullToken(`${d.url}/auth/token`, h.service, 'library/tiny');
    const auth = { authorization: `Bearer ${token}` };
    const res = await httpGet(`${d.url}/v2/library/tiny/manifests/1`, {
      headers: { ...auth, accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(res.status, 200, res.body.toString().slice(0, 300));
    assert.equal(res.headers['docker-content-digest'], moved.digest, 'the tag answers the new manifest');
    assert.equal(`sha256:${createHash('sha256').update(res.body).digest('hex')}`, moved.digest);
    for (const digest of blobsOf(moved)) {
      const b = await httpGet(`${d.url}/v2/library/tiny/blobs/${digest}`, { headers: auth });
      assert.equal(b.status, 200, `${digest}: ${b.body.toString().slice(0, 200)}`);
      assert.equal(`sha256:${createHash('sha256').update(b.body).digest('hex')}`, digest);
    }
    const served = d.requestLogs().filter((l) => String(l.path).startsWith('/v2/library/tiny/'));
    assert.ok(
      served.every((l) => l.cache === 'hit' || l.cache === 'stale'),
      `from the cache: ${served.map((l) => `${String(l.path)} ${String(l.cache)}`).join(', ')}`,
    );
  });
});

describe('closing Docxy during a warm run', () => {
  let upstream: Server | undefined;
  const sockets = new Set<Socket>();
  const hanging = new Set<string>();
  let docxy: TestDocxy | undefined;

  before(async () => {
    // An upstream whose /v2/ answers (no auth) and whose manifests never do: the run hangs there.
    const s = createServer((req, res) => {
      if (req.url === '/v2/') res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      else hanging.add(req.url ?? '');
    });
    s.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => {
        sockets.delete(socket);
      });
    });
    upstream = s;
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    const address = s.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    docxy = await startDocxy({
      upstream: { url: `http://127.0.0.1:${address.port}` },
      warm: { interval: '1s', images: ['hang:1'] },
    });
  });

  after(async () => {
    await docxy?.stop();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => {
      if (upstream === undefined) resolve();
      else
        upstream.close(() => {
          resolve();
        });
    });
  });

  it('skips a run while the previous one still runs, and close() aborts it at once', async () => {
    const d = need(docxy, 'docxy');
    await waitFor('a skipped run', () => d.logs().some((l) => String(l.msg).includes('skipped')), 10_000);
    const skipped = d.logs().find((l) => String(l.msg).includes('skipped'));
    assert.equal(skipped?.level, 40, 'a skipped run is a warn');
    assert.deepEqual([...hanging], ['/v2/library/hang/manifests/1'], 'the run waits on the manifest');
    const t0 = Date.now();
    await d.stop();
    docxy = undefined;
    const ms = Date.now() - t0;
    assert.ok(ms < 3000, `close took ${ms} ms`);
    const aborted = d.logs().find((l) => l.msg === 'warm run aborted');
    assert.equal(aborted?.level, 30, 'the aborted run is logged once, at info');
    assert.equal(aborted.failures, 0, 'an aborted image is no failure');
    assert.ok(!d.logs().some((l) => l.msg === 'warm failed'), 'nothing logged as failed');
  });
});
