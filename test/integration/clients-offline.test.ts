/**
 * The cache's promise: once real clients have pulled an image through Docxy, every client can pull
 * it again with the upstream entirely gone — registry AND token service down.
 *
 *   warm-up        -- with the fake Hub up, one pull of every image through Docxy by each client
 *                     kind, so that everything any of them fetches is cached: dockerd (the
 *                     registry-mirrors short name, then 127.0.0.1:PORT/… for every image, both
 *                     platforms of each multi-arch one, the 200 MB image), ctr (tiny, multi),
 *                     podman (tiny, app), skopeo `copy --all` of the OCI index
 *   upstream down  -- `hub.stopRegistry()` and `hub.token.stop()`; then FRESH clients (new daemons,
 *                     new directories, no local image) pull everything again and get the same
 *                     IDs and digests as the pushed descriptors. Docxy answers `/v2/` with its
 *                     401 challenge and `/auth/token` with a stand-in `docxy.` token, so the
 *                     clients' auth dance still works, and logs `stale` or `hit` for every request;
 *                     the registry's access log, the CDN and the token service see nothing.
 *
 * One hub, one Docxy (default configuration, its own data directory) for the whole file; every
 * client is stopped and every directory removed in `after` hooks, whether the tests pass or not.
 * Docxy runs in this process, so the clients are only ever driven through the harnesses' async
 * functions.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';

import { layoutBlob, parseLayoutIndex, timed, need } from '../helpers/client-steps.ts';
import { ctrPulls, dockerdPullsEverything, pullTargetOf, type PullTarget } from '../helpers/client-pulls.ts';
import { startContainerd, writeHostsToml, type Containerd } from '../helpers/clients/containerd.ts';
import { startDockerd, type Dockerd } from '../helpers/clients/dockerd.ts';
import { registriesConfMirror, startPodman, type Podman } from '../helpers/clients/podman.ts';
import { startSkopeo, type Skopeo } from '../helpers/clients/skopeo.ts';
import { describeRequest, type TestDocxy } from '../helpers/docxy.ts';
import type { FakeHub } from '../helpers/fake-hub.ts';
import { httpGet } from '../helpers/http.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  MediaType,
  sha256,
  type ImageDescriptor,
  type ImageName,
} from '../helpers/images.ts';
import { makeTmpDir } from '../helpers/tmp.ts';
import { startSeededWorld, type SeededWorld } from '../helpers/seeded-world.ts';
import { stopUpstream, type UpstreamOutage } from '../helpers/upstream-outage.ts';

// ---------------------------------------------------------------------------------------------
// Shared fixture: one fake hub seeded with every image, one Docxy in front of it

let world: SeededWorld | undefined;

const theWorld = (): SeededWorld => need(world, 'the seeded hub and Docxy');
const theHub = (): FakeHub => theWorld().hub;
const theDocxy = (): TestDocxy => theWorld().docxy;
const image = (name: ImageName): ImageDescriptor => theWorld().images[name];

before(async () => {
  world = await startSeededWorld();
});

after(async () => {
  await world?.stop();
});

// ---------------------------------------------------------------------------------------------
// Helpers

const sha256Hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// ---------------------------------------------------------------------------------------------
// What each client kind does; the warm-up and the offline phase run exactly the same pulls

/** Docxy as the clients' mirror, for the shared dockerd and ctr pulls. */
const target = (): PullTarget => pullTargetOf(theDocxy(), theWorld().images);

/** What ctr pulls (through a docker.io hosts.toml). */
const CTR_IMAGES: readonly ImageName[] = ['tiny', 'multi'];

/** podman: tiny and someuser/app through a registries.conf mirror for docker.io. */
async function podmanPullsItsImages(t: TestContext, p: Podman): Promise<void> {
  for (const [name, ref] of [
    ['tiny', 'docker.io/library/tiny:1'],
    ['app', 'docker.io/someuser/app:2'],
  ] as const) {
    const desc = image(name);
    const mark = theDocxy().logMark();
    const r = await timed(t, `podman pull ${ref}`, () => p.pull(ref));
    assert.equal(r.code, 0, `podman pull ${ref}: ${r.stderr}\ndocxy saw:\n${theDocxy().describeSince(mark)}`);
    assert.equal(await p.imageId(ref), desc.configDigest.slice('sha256:'.length), `${ref} image ID`);
    assert.equal(await p.imageDigest(ref), desc.digest, `${ref} digest`);
    const path = `/v2/${desc.repo}/manifests/${desc.tag}`;
    assert.ok(
      theDocxy().pathsSince(mark).includes(path),
      `docxy saw ${path}:\n${theDocxy().describeSince(mark)}`,
    );
  }
}

/** skopeo: `copy --all --preserve-digests` of the OCI index into an `oci:` layout, every byte checked. */
async function skopeoCopiesTheIndex(t: TestContext, s: Skopeo, layout: string): Promise<void> {
  const idx = image('ociindex');
  const mark = theDocxy().logMark();
  const r = await timed(t, 'skopeo copy --all --preserve-digests ociindex:1', () =>
    s.copy(`docker://${theDocxy().hostPort}/ociindex:1`, `oci:${layout}:x`, {
      all: true,
      preserveDigests: true,
    }),
  );
  assert.equal(r.code, 0, `skopeo copy: ${r.stderr}\ndocxy saw:\n${theDocxy().describeSince(mark)}`);

  const entries = parseLayoutIndex(readFileSync(join(layout, 'index.json'), 'utf8'));
  const tagged = entries.find((e) => e.annotations['org.opencontainers.image.ref.name'] === 'x');
  assert.ok(tagged !== undefined, `index.json names x: ${JSON.stringify(entries)}`);
  assert.equal(tagged.digest, idx.digest, 'the copied index is the pushed one');
  assert.equal(tagged.mediaType, MediaType.ociIndex);
  assert.equal(idx.children?.length, 2);
  const blobs = [
    idx.digest,
    ...(idx.children ?? []).flatMap((c) => [c.digest, c.configDigest, ...c.layers.map((l) => l.digest)]),
  ];
  for (const digest of blobs) {
    const file = layoutBlob(layout, digest);
    assert.ok(existsSync(file), `${digest} is in the layout`);
    assert.equal(`sha256:${sha256Hex(readFileSync(file))}`, digest, `${digest} has its content`);
  }
}

/** A fresh set of clients: new daemons and directories, nothing pulled yet. */
interface Clients {
  dockerd?: Dockerd;
  containerd?: Containerd;
  hostsDir?: string;
  podman?: Podman;
  skopeo?: Skopeo;
  layoutDir?: { path: string; remove: () => void };
}

/** Starts one client of each kind, all pointed at Docxy; what started is in `into` even on failure. */
async function startClients(into: Clients): Promise<void> {
  const d = theDocxy();
  into.layoutDir = makeTmpDir('clients-offline-oci');
  const results = await Promise.allSettled([
    startDockerd({ mirrors: [d.url], insecureRegistries: [d.hostPort] }).then((x) => {
      into.dockerd = x;
    }),
    startContainerd().then((x) => {
      into.containerd = x;
      into.hostsDir = join(x.dir, 'hosts');
      writeHostsToml(into.hostsDir, 'docker.io', d.url);
    }),
    startPodman().then((x) => {
      into.podman = x;
      x.home.setRegistriesConf(registriesConfMirror('docker.io', d.hostPort, true));
    }),
    startSkopeo().then((x) => {
      into.skopeo = x;
    }),
  ]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

async function stopClients(c: Clients): Promise<void> {
  const results = await Promise.allSettled([
    c.dockerd?.stop(),
    c.containerd?.stop(),
    c.podman?.stop(),
    c.skopeo?.stop(),
  ]);
  c.layoutDir?.remove();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

// ---------------------------------------------------------------------------------------------
// Warm-up: the upstream is up; every client kind pulls what it will pull again later

describe('warm-up: every client pulls every image through docxy (upstream up)', () => {
  const warm: Clients = {};

  before(async () => {
    await startClients(warm);
  });

  after(async () => {
    await stopClients(warm);
  });

  it('reports the shared fixture set-up', (t) => {
    for (const line of theWorld().timings) t.diagnostic(line);
  });

  it('dockerd pulls tiny:1 via registry-mirrors and every image (both platforms, big) directly', async (t) => {
    await dockerdPullsEverything(t, target(), need(warm.dockerd, 'dockerd'));
  });

  it('ctr pulls tiny and multi through a hosts.toml mirror', async (t) => {
    const c = need(warm.containerd, 'containerd');
    await ctrPulls(t, target(), c, need(warm.hostsDir, 'the hosts dir'), CTR_IMAGES);
  });

  it('podman pulls tiny and someuser/app through a registries.conf mirror', async (t) => {
    await podmanPullsItsImages(t, need(warm.podman, 'podman'));
  });

  it('skopeo copies ociindex with --all --preserve-digests', async (t) => {
    const layout = join(need(warm.layoutDir, 'the layout dir').path, 'layout');
    await skopeoCopiesTheIndex(t, need(warm.skopeo, 'skopeo'), layout);
  });
});

// ---------------------------------------------------------------------------------------------
// The upstream is gone: registry and token service both down

describe('upstream down (registry and token service stopped): fresh clients pull everything again', () => {
  const fresh: Clients = {};
  /** Docxy's request log length when the upstream went down. */
  let downMark = 0;
  let outage: UpstreamOutage | undefined;

  before(async () => {
    outage = await stopUpstream(theHub());
    downMark = theDocxy().logMark();
    await startClients(fresh);
  });

  after(async () => {
    await stopClients(fresh);
  });

  it('the upstream really is unreachable', async () => {
    const h = theHub();
    assert.equal(h.registryPid(), undefined, 'the registry process is stopped');
    await assert.rejects(fetch(`${h.registryUrl}/v2/`), 'nothing answers on the registry port');
    await assert.rejects(fetch(h.realm), 'nothing answers on the token service port');
  });

  it('answers /v2/ with its own 401 challenge and /auth/token with a docxy. stand-in token', async () => {
    const d = theDocxy();
    const h = theHub();
    const base = await httpGet(`${d.url}/v2/`);
    assert.equal(base.status, 401, base.body.toString());
    assert.equal(
      base.header('www-authenticate'),
      `Bearer realm="${d.url}/auth/token",service="${h.service}"`,
    );
    assert.equal(base.header('docker-distribution-api-version'), 'registry/2.0');

    const tok = await httpGet(`${d.url}/auth/token?service=${h.service}&scope=repository:tiny:pull`);
    assert.equal(tok.status, 200, tok.body.toString());
    const json = tok.json() as Record<string, unknown>;
    assert.equal(typeof json.token, 'string');
    assert.ok(String(json.token).startsWith('docxy.'), `a stand-in token: ${String(json.token)}`);
    assert.equal(json.access_token, json.token);

    // The stand-in token opens the cached manifest.
    const tiny = image('tiny');
    const res = await httpGet(`${d.url}/v2/tiny/manifests/1`, {
      headers: { authorization: `Bearer ${String(json.token)}`, accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.header('docker-content-digest'), tiny.digest);
    assert.equal(sha256(res.body), tiny.digest);
  });

  it('a fresh dockerd pulls tiny:1 via registry-mirrors and every image (both platforms, big) directly', async (t) => {
    const d = need(fresh.dockerd, 'dockerd');
    t.diagnostic(`dockerd started in ${d.startMs} ms`);
    await dockerdPullsEverything(t, target(), d);
  });

  it('a fresh containerd pulls tiny and multi through a hosts.toml mirror', async (t) => {
    const c = need(fresh.containerd, 'containerd');
    await ctrPulls(t, target(), c, need(fresh.hostsDir, 'the hosts dir'), CTR_IMAGES);
  });

  it('a fresh podman pulls tiny and someuser/app through a registries.conf mirror', async (t) => {
    await podmanPullsItsImages(t, need(fresh.podman, 'podman'));
  });

  it('a fresh skopeo copies ociindex with --all --preserve-digests', async (t) => {
    const layout = join(need(fresh.layoutDir, 'the layout dir').path, 'layout');
    await skopeoCopiesTheIndex(t, need(fresh.skopeo, 'skopeo'), layout);
  });

  it('docxy answered every request from the cache (hit) or as stale, and the upstream saw nothing', (t) => {
    const lines = theDocxy().requestsSince(downMark);
    assert.ok(lines.length > 0, 'the clients talked to docxy');
    const all = lines.map(describeRequest).join('\n');

    // Every request the clients made was answered without the upstream.
    const other = lines.filter((l) => l.cache !== 'hit' && l.cache !== 'stale');
    assert.deepEqual(other.map(describeRequest), [], `requests not answered as hit or stale:\n${all}`);
    const failed = lines.filter((l) => typeof l.status !== 'number' || l.status >= 500);
    assert.deepEqual(failed.map(describeRequest), [], `requests that failed:\n${all}`);

    // The pieces the auth dance needs: the /v2/ challenge and stand-in tokens, both "stale".
    const base = lines.filter((l) => l.path === '/v2/');
    assert.ok(base.length > 0, `the clients pinged /v2/:\n${all}`);
    for (const l of base)
      assert.equal(l.status, 401, `/v2/ answered with a challenge: ${describeRequest(l)}`);
    const tokens = lines.filter((l) => l.path === '/auth/token');
    assert.ok(tokens.length > 0, `the clients fetched tokens:\n${all}`);
    for (const l of tokens) {
      assert.equal(l.status, 200, describeRequest(l));
      assert.equal(l.cache, 'stale', describeRequest(l));
    }
    const served = lines.filter((l) => /\/(manifests|blobs)\//.test(String(l.path)));
    assert.ok(
      served.every((l) => l.status === 200),
      `every manifest and blob request was a 200:\n${served.map(describeRequest).join('\n')}`,
    );
    const bigLayer = image('big').layers[0]?.digest ?? '';
    assert.ok(
      served.some((l) => String(l.path).endsWith(bigLayer) && l.method === 'GET' && l.cache === 'hit'),
      'the 200 MB layer was served from the cache',
    );

    need(outage, 'the outage').assertUntouched();

    const count = (c: string): number => lines.filter((l) => l.cache === c).length;
    t.diagnostic(
      `${lines.length} requests while the upstream was down: ${count('hit')} hit, ${count('stale')} stale ` +
        `(${base.length} /v2/ challenges, ${tokens.length} stand-in tokens)`,
    );
  });
});
