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
import { startContainerd, writeHostsToml, type Containerd } from '../helpers/clients/containerd.ts';
import { startDockerd, type Dockerd } from '../helpers/clients/dockerd.ts';
import { registriesConfMirror, startPodman, type Podman } from '../helpers/clients/podman.ts';
import { startSkopeo, type Skopeo } from '../helpers/clients/skopeo.ts';
import { describeRequest, type TestDocxy } from '../helpers/docxy.ts';
import { parseRegistryLog, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet } from '../helpers/http.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  MediaType,
  sha256,
  type ChildDescriptor,
  type ImageDescriptor,
  type ImageName,
} from '../helpers/images.ts';
import { makeTmpDir } from '../helpers/tmp.ts';
import { startSeededWorld, type SeededWorld } from '../helpers/seeded-world.ts';

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

/** Every multi-arch image is pulled for both of its platforms. */
const ARCHES = ['arm64', 'amd64'] as const;

/** The platform manifest of a multi-arch image for `architecture`. */
function child(desc: ImageDescriptor, architecture: string): ChildDescriptor {
  const c = desc.children?.find((x) => x.platform.os === 'linux' && x.platform.architecture === architecture);
  if (c === undefined) throw new Error(`${desc.repo}:${desc.tag} has no linux/${architecture} child`);
  return c;
}

const sha256Hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// ---------------------------------------------------------------------------------------------
// What each client kind does; the warm-up and the offline phase run exactly the same pulls

/** Pulls `ref` (optionally for a platform), checking the exit code and reporting the time. */
async function dockerPull(t: TestContext, d: Dockerd, ref: string, platform?: string): Promise<void> {
  const mark = theDocxy().logMark();
  const r = await timed(
    t,
    `docker pull ${platform === undefined ? '' : `--platform ${platform} `}${ref}`,
    () => d.pull(ref, { ...(platform === undefined ? {} : { platform }), timeoutMs: 300_000 }),
  );
  assert.equal(r.code, 0, `docker pull ${ref}: ${r.stderr}\ndocxy saw:\n${theDocxy().describeSince(mark)}`);
}

/** dockerd: the mirror's short name, then every image directly, each checked against its descriptor. */
async function dockerdPullsEverything(t: TestContext, d: Dockerd): Promise<void> {
  const host = theDocxy().hostPort;

  // registry-mirrors: Docker asks the mirror for library/tiny; falling back to the Hub is impossible
  // (dead proxy), so a pull that works came through Docxy.
  const tiny = image('tiny');
  const mark = theDocxy().logMark();
  await dockerPull(t, d, 'tiny:1');
  assert.equal(await d.imageId('tiny:1'), tiny.configDigest);
  assert.deepEqual(await d.repoDigests('tiny:1'), [`tiny@${tiny.digest}`]);
  assert.ok(
    theDocxy().pathsSince(mark).includes('/v2/library/tiny/manifests/1'),
    theDocxy().describeSince(mark),
  );
  // Gone again, so the direct pull of the same image below is a real pull with one repo digest.
  assert.equal((await d.removeImage('tiny:1')).code, 0);

  // Single-platform images, directly from the insecure registry 127.0.0.1:PORT.
  for (const [name, path] of [
    ['tiny', 'tiny:1'],
    ['app', 'someuser/app:2'],
    ['ocimanifest', 'ocimanifest:1'],
  ] as const) {
    const desc = image(name);
    const ref = `${host}/${path}`;
    await dockerPull(t, d, ref);
    assert.equal(await d.imageId(ref), desc.configDigest, `${ref} image ID`);
    const repo = path.slice(0, path.lastIndexOf(':'));
    assert.deepEqual(await d.repoDigests(ref), [`${host}/${repo}@${desc.digest}`], `${ref} repo digest`);
  }

  // Both platforms of the manifest list and of the OCI index, each a real pull (removed in between).
  for (const name of ['multi', 'ociindex'] as const) {
    const desc = image(name);
    const ref = `${host}/${name}:1`;
    for (const arch of ARCHES) {
      await dockerPull(t, d, ref, `linux/${arch}`);
      assert.equal(await d.imageId(ref), child(desc, arch).configDigest, `${ref} linux/${arch} image ID`);
      assert.deepEqual(await d.repoDigests(ref), [`${host}/${name}@${desc.digest}`]);
      assert.equal((await d.removeImage(ref)).code, 0);
      await assert.rejects(d.imageId(ref));
    }
  }

  // The 200 MB image; dropped again at once (the image store is vfs).
  const big = image('big');
  const bigRef = `${host}/big:1`;
  await dockerPull(t, d, bigRef);
  assert.equal(await d.imageId(bigRef), big.configDigest);
  assert.deepEqual(await d.repoDigests(bigRef), [`${host}/big@${big.digest}`]);
  assert.equal((await d.removeImage(bigRef)).code, 0);
}

/** ctr: tiny and multi through a docker.io hosts.toml naming Docxy. */
async function ctrPullsItsImages(t: TestContext, c: Containerd, hostsDir: string): Promise<void> {
  for (const name of ['tiny', 'multi'] as const) {
    const desc = image(name);
    const ref = `docker.io/library/${name}:1`;
    const mark = theDocxy().logMark();
    const r = await timed(t, `ctr images pull ${ref}`, () => c.pull(ref, { hostsDir }));
    assert.equal(
      r.code,
      0,
      `ctr pull ${ref}: ${r.stdout}\n${r.stderr}\ndocxy saw:\n${theDocxy().describeSince(mark)}`,
    );
    assert.equal(await c.imageDigest(ref), desc.digest, `${ref} digest`);
    assert.ok(
      theDocxy().pathsSince(mark).includes(`/v2/library/${name}/manifests/1`),
      theDocxy().describeSince(mark),
    );
  }
}

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
    await dockerdPullsEverything(t, need(warm.dockerd, 'dockerd'));
  });

  it('ctr pulls tiny and multi through a hosts.toml mirror', async (t) => {
    await ctrPullsItsImages(t, need(warm.containerd, 'containerd'), need(warm.hostsDir, 'the hosts dir'));
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
  let registryRequestsBefore = 0;
  let cdnRequestsBefore = 0;
  let tokenRequestsBefore = 0;

  before(async () => {
    const h = theHub();
    // Flushed while the registry still runs, so the count is complete.
    registryRequestsBefore = (await h.registryRequests()).length;
    await h.stopRegistry();
    await h.token.stop();
    cdnRequestsBefore = need(h.cdn, 'the CDN stand-in').requests.length;
    tokenRequestsBefore = h.token.requests.length;
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
    await dockerdPullsEverything(t, d);
  });

  it('a fresh containerd pulls tiny and multi through a hosts.toml mirror', async (t) => {
    await ctrPullsItsImages(t, need(fresh.containerd, 'containerd'), need(fresh.hostsDir, 'the hosts dir'));
  });

  it('a fresh podman pulls tiny and someuser/app through a registries.conf mirror', async (t) => {
    await podmanPullsItsImages(t, need(fresh.podman, 'podman'));
  });

  it('a fresh skopeo copies ociindex with --all --preserve-digests', async (t) => {
    const layout = join(need(fresh.layoutDir, 'the layout dir').path, 'layout');
    await skopeoCopiesTheIndex(t, need(fresh.skopeo, 'skopeo'), layout);
  });

  it('docxy answered every request from the cache (hit) or as stale, and the upstream saw nothing', (t) => {
    const h = theHub();
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

    // The upstream saw nothing: the registry's access log did not grow (it cannot be flushed while
    // the registry is stopped, but a stopped registry writes nothing), nor did the CDN's or the
    // token service's request lists.
    assert.equal(h.registryPid(), undefined, 'the registry is still stopped');
    assert.equal(parseRegistryLog(h.registryLog()).length, registryRequestsBefore, 'registry access log');
    const cdn = need(h.cdn, 'the CDN stand-in');
    assert.deepEqual(
      cdn.requests.slice(cdnRequestsBefore).map((r) => `${r.method} ${r.path}`),
      [],
      'no CDN request while the upstream was down',
    );
    assert.equal(h.token.requests.length, tokenRequestsBefore, 'no token request reached the token service');

    const count = (c: string): number => lines.filter((l) => l.cache === c).length;
    t.diagnostic(
      `${lines.length} requests while the upstream was down: ${count('hit')} hit, ${count('stale')} stale ` +
        `(${base.length} /v2/ challenges, ${tokens.length} stand-in tokens)`,
    );
  });
});
