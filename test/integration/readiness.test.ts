/**
 * Readiness against the real fake hub and a real read-only filesystem: `/health/ready` is 200 while
 * the data directory (a tmpfs mounted for the test) is writable, 503 with the same JSON shape once
 * it is remounted read-only (root ignores chmod, a read-only mount it cannot), 200 again after
 * remounting it read-write. The per-upstream state comes from the requests Docxy really made.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ReadyReport } from '../../src/app-readiness.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import { ACCEPT_ALL_MANIFESTS, buildImage, pushImage } from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';
import { makeTmpDir } from '../helpers/tmp.ts';

describe('/health/ready', () => {
  let hub: FakeHub;
  let mountDir: { path: string; remove: () => void } | undefined;
  let mounted = false;
  let docxy: TestDocxy | undefined;

  before(async () => {
    hub = await startFakeHub();
    mountDir = makeTmpDir('ready-tmpfs');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountDir.path]);
    mounted = true;
  });

  after(async () => {
    await docxy?.stop();
    if (mounted && mountDir !== undefined) {
      execFileSync('mount', ['-o', 'remount,rw', mountDir.path]);
      execFileSync('umount', [mountDir.path]);
    }
    mountDir?.remove();
    await hub.stop();
  });

  async function ready(d: TestDocxy): Promise<{ status: number; body: ReadyReport; cache?: string }> {
    const res = await httpGet(`${d.url}/health/ready`);
    assert.equal(res.header('content-type')?.split(';')[0], 'application/json');
    return { status: res.status, body: res.json() as ReadyReport, cache: res.header('cache-control') };
  }

  it('200 while storage is writable, 503 when the data directory is read-only, 200 again after', async () => {
    const dataDir = mountDir!.path;
    const image = await buildImage({ repo: 'library/readyimg', tag: '1' });
    await pushImage(hub, image);
    docxy = await startDocxy({ upstream: { url: hub.registryUrl }, data: dataDir });

    const cold = await ready(docxy);
    assert.equal(cold.status, 200);
    assert.equal(cold.cache, 'no-store');
    assert.equal(cold.body.status, 'ready');
    assert.equal(cold.body.storage.writable, true);
    assert.deepEqual(
      cold.body.upstreams.map((u) => [u.name, u.reachable, u.lastSuccess]),
      [['docker.io', null, null]],
      'no upstream request yet: reachability unknown',
    );

    const token = await pullToken(`${docxy.url}/auth/token`, hub.service, 'readyimg');
    const got = await httpGet(`${docxy.url}/v2/readyimg/manifests/1`, {
      headers: { authorization: `Bearer ${token}`, accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(got.status, 200);
    // The probe's answer is kept for a moment: wait until a fresh one reports the upstream.
    await waitFor('the upstream reported reachable', async () => {
      const r = await ready(docxy!);
      return r.body.upstreams[0]?.reachable === true;
    });
    const warm = await ready(docxy);
    assert.equal(warm.status, 200);
    assert.equal(typeof warm.body.upstreams[0]?.lastSuccess, 'string');
    assert.equal(warm.body.upstreams[0]?.lastError, null);

    execFileSync('mount', ['-o', 'remount,ro', dataDir]);
    await waitFor('503 on a read-only data directory', async () => (await ready(docxy!)).status === 503);
    const broken = await ready(docxy);
    assert.equal(broken.body.status, 'not_ready');
    assert.equal(broken.body.storage.writable, false);
    assert.match(String(broken.body.storage.error), /EROFS/);
    assert.equal(broken.body.upstreams[0]?.reachable, true, 'the same shape, upstream state included');
    // Liveness is not readiness: the process is alive.
    assert.equal((await httpGet(`${docxy.url}/health`)).status, 200);

    execFileSync('mount', ['-o', 'remount,rw', dataDir]);
    await waitFor(
      '200 once the data directory is writable again',
      async () => (await ready(docxy!)).status === 200,
    );
    assert.deepEqual(
      readdirSync(join(dataDir, 'tmp')).filter((n) => n.startsWith('ready-')),
      [],
      'no probe file left behind',
    );
  });
});
