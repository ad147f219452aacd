/**
 * `/metrics` against what really happened: skopeo copies an image through Docxy from the fake
 * Docker Hub twice (cold, then warm), and the scrape — parsed with a Prometheus text parser —
 * moves by exactly one fill per blob, one hit per blob on the warm copy, and upstream blob bytes
 * equal to the blob sizes. A scrape from an address outside `metrics.allow` is refused with 403.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startSkopeo, type Skopeo } from '../helpers/clients/skopeo.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { seedImages } from '../helpers/images.ts';
import { scrape, type Scrape } from '../helpers/prometheus.ts';
import { makeTmpDir } from '../helpers/tmp.ts';
import { freePort } from '../helpers/process.ts';

let hub: FakeHub | undefined;
let docxy: TestDocxy | undefined;
let skopeo: Skopeo | undefined;

before(async () => {
  hub = await startFakeHub();
  await seedImages(hub, ['tiny']);
  docxy = await startDocxy({ upstream: { url: hub.registryUrl } });
  skopeo = await startSkopeo();
});
after(async () => {
  await skopeo?.stop();
  await docxy?.stop();
  await hub?.stop();
});

function need<T>(v: T | undefined): T {
  assert.ok(v !== undefined, 'fixture not started');
  return v;
}

/** The sizes of tiny:1's config and layers, as its manifest (served through Docxy) states them. */
async function blobSizes(d: TestDocxy): Promise<number[]> {
  const res = await fetch(`${d.url}/v2/library/tiny/manifests/1`, {
    headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
  });
  const m = (await res.json()) as { config: { size: number }; layers: { size: number }[] };
  return [m.config.size, ...m.layers.map((l) => l.size)];
}

const delta = (a: Scrape, b: Scrape, name: string, labels?: Record<string, string>): number =>
  b.value(name, labels) - a.value(name, labels);

describe('GET /metrics', () => {
  it('counts a cold and a warm copy exactly: one fill per blob, then one hit per blob', async () => {
    const d = need(docxy);
    const s = need(skopeo);
    const before0 = await scrape(d.url);
    const cold = makeTmpDir('metrics-cold');
    const r1 = await s.copy(`docker://${d.hostPort}/library/tiny:1`, `dir:${cold.path}`);
    assert.equal(r1.code, 0, r1.stderr);
    const afterCold = await scrape(d.url);
    const sizes = await blobSizes(d);
    const total = sizes.reduce((a, b) => a + b, 0);

    assert.equal(delta(before0, afterCold, 'docxy_cache_fills_started_total'), sizes.length);
    assert.equal(delta(before0, afterCold, 'docxy_cache_fills_completed_total'), sizes.length);
    assert.equal(delta(before0, afterCold, 'docxy_cache_fills_failed_total'), 0);
    assert.equal(
      delta(before0, afterCold, 'docxy_http_requests_total', {
        route: 'blob',
        cache: 'miss',
        status_class: '2xx',
      }),
      sizes.length,
    );
    assert.equal(delta(before0, afterCold, 'docxy_upstream_response_bytes_total', { kind: 'blob' }), total);
    assert.equal(
      delta(before0, afterCold, 'docxy_upstream_requests_total', { kind: 'blob', status: '200' }),
      sizes.length,
    );

    const warm = makeTmpDir('metrics-warm');
    const r2 = await s.copy(`docker://${d.hostPort}/library/tiny:1`, `dir:${warm.path}`);
    assert.equal(r2.code, 0, r2.stderr);
    const afterWarm = await scrape(d.url);
    assert.equal(delta(afterCold, afterWarm, 'docxy_cache_fills_started_total'), 0);
    assert.equal(
      delta(afterCold, afterWarm, 'docxy_http_requests_total', { route: 'blob', cache: 'hit' }),
      sizes.length,
    );
    assert.equal(delta(afterCold, afterWarm, 'docxy_upstream_response_bytes_total', { kind: 'blob' }), 0);
    assert.equal(delta(afterCold, afterWarm, 'docxy_upstream_requests_total', { kind: 'blob' }), 0);
    // The warm copy's blob bytes all came from the cache.
    assert.ok(delta(afterCold, afterWarm, 'docxy_http_response_bytes_total', { source: 'cache' }) >= total);
    assert.ok(afterWarm.has('docxy_process_cpu_seconds_total'), 'Node process metrics are collected');
    assert.ok(afterWarm.value('docxy_cache_max_size_bytes') > 0);
    cold.remove();
    warm.remove();
  });

  it('refuses a scrape from an address outside metrics.allow with 403 in OCI JSON', async () => {
    const d = await startDocxy({
      upstream: { url: need(hub).registryUrl },
      metrics: { allow: ['10.0.0.0/8'] },
    });
    try {
      const res = await fetch(`${d.url}/metrics`);
      assert.equal(res.status, 403);
      const body = (await res.json()) as { errors: { code: string }[] };
      assert.equal(body.errors[0]?.code, 'DENIED');
    } finally {
      await d.stop();
    }
  });

  it('with metrics.listen, serves /metrics there and not on the main listener', async () => {
    const port = await freePort();
    const d = await startDocxy({
      upstream: { url: need(hub).registryUrl },
      metrics: { listen: `127.0.0.1:${port}` },
    });
    try {
      const own = await scrape(`http://127.0.0.1:${port}`);
      assert.ok(own.has('docxy_http_requests_total'));
      const main = await fetch(`${d.url}/metrics`);
      assert.equal(main.status, 404);
      await main.body?.cancel();
    } finally {
      await d.stop();
    }
  });
});
