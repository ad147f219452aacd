/**
 * Real clients pulling through Docxy from the fake Docker Hub (Distribution 2.8 with token auth and
 * a CDN that refuses `Authorization`), each checked against the digests the images were pushed
 * with:
 *
 *   dockerd 20.10  -- `registry-mirrors` (short name -> library/), and direct pulls of
 *                     127.0.0.1:PORT/… (insecure registry): Docker schema2, a non-library
 *                     namespace, both platforms of a manifest list, an OCI index, an OCI manifest
 *                     and the 200 MB image
 *   containerd 1.6 -- `ctr images pull --hosts-dir` with a docker.io hosts.toml pointing at Docxy
 *   podman 4.3     -- a registries.conf `[[registry.mirror]]` for docker.io
 *   skopeo 1.9     -- inspect (direct and through the mirror) and `copy --all --preserve-digests`
 *                     of the OCI index into an `oci:` layout
 *
 * and that no credential reached the CDN or Docxy's log. One hub, one Docxy, one daemon per client
 * for the whole file; every one of them is stopped and its directories removed in `after` hooks,
 * whether the tests pass or not. Docxy runs in this process, so the clients are only ever driven
 * through the harnesses' async functions.
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
import type { TestDocxy } from '../helpers/docxy.ts';
import type { FakeHub } from '../helpers/fake-hub.ts';
import { MediaType, type ChildDescriptor, type ImageDescriptor, type ImageName } from '../helpers/images.ts';
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

/** Docker's name for the host's platform, as in a platform descriptor. */
const HOST_ARCH = process.arch === 'arm64' ? 'arm64' : 'amd64';

/** The platform manifest of a multi-arch image for `architecture`. */
function child(desc: ImageDescriptor, architecture: string): ChildDescriptor {
  const c = desc.children?.find((x) => x.platform.os === 'linux' && x.platform.architecture === architecture);
  if (c === undefined) throw new Error(`${desc.repo}:${desc.tag} has no linux/${architecture} child`);
  return c;
}

/**
 * No credential left its lane: the CDN stand-in refused no request for carrying `Authorization`,
 * and no token the token service issued (nor any `Bearer` header) is in Docxy's log.
 */
function assertNoCredentialLeak(t: TestContext): void {
  const h = theHub();
  const cdn = need(h.cdn, 'the CDN stand-in');
  assert.ok(cdn.requests.length > 0, 'the blobs came through the CDN redirect');
  assert.deepEqual(
    cdn.rejected.map((r) => `${r.method} ${r.path}`),
    [],
    'no request reached the CDN with Authorization',
  );
  const tokens = h.token.requests.map((r) => r.token).filter((x): x is string => x !== undefined);
  assert.ok(tokens.length > 0, 'the clients fetched tokens');
  const log = theDocxy().logText();
  const leaked = tokens.filter((tok) => log.includes(tok));
  assert.equal(leaked.length, 0, `${leaked.length} of ${tokens.length} issued tokens appear in docxy's log`);
  assert.ok(!log.includes('Bearer '), "docxy's log has no Bearer credential");
  t.diagnostic(
    `${cdn.requests.length} CDN requests, none refused; ${tokens.length} tokens issued, none in ` +
      `${theDocxy().logs().length} docxy log lines`,
  );
}

const sha256Hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// ---------------------------------------------------------------------------------------------
// dockerd: one daemon with Docxy both as its registry mirror and as an insecure registry

describe('docker (dockerd 20.10) through docxy', () => {
  let dockerd: Dockerd | undefined;
  const docker = (): Dockerd => need(dockerd, 'dockerd');

  before(async () => {
    const d = theDocxy();
    dockerd = await startDockerd({ mirrors: [d.url], insecureRegistries: [d.hostPort] });
  });

  after(async () => {
    await dockerd?.stop();
  });

  it('reports the shared fixture set-up', (t) => {
    for (const line of theWorld().timings) t.diagnostic(line);
    t.diagnostic(`dockerd started in ${docker().startMs} ms`);
  });

  /** Pulls `ref` (optionally for a platform), checking the exit code and reporting the time. */
  async function pull(t: TestContext, ref: string, platform?: string): Promise<void> {
    const mark = theDocxy().logMark();
    const r = await timed(
      t,
      `docker pull ${platform === undefined ? '' : `--platform ${platform} `}${ref}`,
      () => docker().pull(ref, { ...(platform === undefined ? {} : { platform }), timeoutMs: 300_000 }),
    );
    assert.equal(r.code, 0, `docker pull ${ref}: ${r.stderr}\ndocxy saw:\n${theDocxy().describeSince(mark)}`);
  }

  it('pulls the short name tiny:1 through registry-mirrors (library/tiny on the mirror)', async (t) => {
    const tiny = image('tiny');
    const mark = theDocxy().logMark();
    await pull(t, 'tiny:1');
    assert.equal(await docker().imageId('tiny:1'), tiny.configDigest);
    assert.deepEqual(await docker().repoDigests('tiny:1'), [`tiny@${tiny.digest}`]);
    // The daemon asked the mirror for library/tiny: the pull went through Docxy, not the Hub.
    assert.ok(
      theDocxy().pathsSince(mark).includes('/v2/library/tiny/manifests/1'),
      `docxy saw the mirror's manifest request:\n${theDocxy().describeSince(mark)}`,
    );
    assert.equal((await docker().removeImage('tiny:1')).code, 0);
  });

  it('pulls 127.0.0.1:PORT/tiny:1 directly (docxy adds library/)', async (t) => {
    const tiny = image('tiny');
    const ref = `${theDocxy().hostPort}/tiny:1`;
    const mark = theDocxy().logMark();
    await pull(t, ref);
    assert.equal(await docker().imageId(ref), tiny.configDigest);
    assert.deepEqual(await docker().repoDigests(ref), [`${theDocxy().hostPort}/tiny@${tiny.digest}`]);
    assert.ok(theDocxy().pathsSince(mark).includes('/v2/tiny/manifests/1'), theDocxy().describeSince(mark));
  });

  it('pulls 127.0.0.1:PORT/someuser/app:2 (a non-library namespace)', async (t) => {
    const app = image('app');
    const ref = `${theDocxy().hostPort}/someuser/app:2`;
    await pull(t, ref);
    assert.equal(await docker().imageId(ref), app.configDigest);
    assert.deepEqual(await docker().repoDigests(ref), [`${theDocxy().hostPort}/someuser/app@${app.digest}`]);
  });

  it('pulls each platform of the manifest list multi:1', async (t) => {
    const multi = image('multi');
    const ref = `${theDocxy().hostPort}/multi:1`;
    for (const arch of ['arm64', 'amd64']) {
      await pull(t, ref, `linux/${arch}`);
      assert.equal(await docker().imageId(ref), child(multi, arch).configDigest, `linux/${arch} image ID`);
      assert.deepEqual(await docker().repoDigests(ref), [`${theDocxy().hostPort}/multi@${multi.digest}`]);
      // Gone before the next platform, so that one is a real pull too.
      assert.equal((await docker().removeImage(ref)).code, 0);
      await assert.rejects(docker().imageId(ref));
    }
  });

  it('pulls the OCI index ociindex:1 (the host platform child)', async (t) => {
    const idx = image('ociindex');
    const ref = `${theDocxy().hostPort}/ociindex:1`;
    await pull(t, ref);
    assert.equal(await docker().imageId(ref), child(idx, HOST_ARCH).configDigest);
    assert.deepEqual(await docker().repoDigests(ref), [`${theDocxy().hostPort}/ociindex@${idx.digest}`]);
  });

  it('pulls the OCI manifest ocimanifest:1', async (t) => {
    const oci = image('ocimanifest');
    const ref = `${theDocxy().hostPort}/ocimanifest:1`;
    await pull(t, ref);
    assert.equal(await docker().imageId(ref), oci.configDigest);
    assert.deepEqual(await docker().repoDigests(ref), [`${theDocxy().hostPort}/ocimanifest@${oci.digest}`]);
  });

  it('pulls the 200 MB image big:1', async (t) => {
    const big = image('big');
    const ref = `${theDocxy().hostPort}/big:1`;
    const size = big.layers.reduce((n, l) => n + l.size, 0);
    const t0 = Date.now();
    await pull(t, ref);
    const s = (Date.now() - t0) / 1000;
    t.diagnostic(
      `${(size / 1024 / 1024).toFixed(1)} MiB layer, ${(size / 1024 / 1024 / s).toFixed(1)} MiB/s incl. extraction`,
    );
    assert.equal(await docker().imageId(ref), big.configDigest);
    assert.deepEqual(await docker().repoDigests(ref), [`${theDocxy().hostPort}/big@${big.digest}`]);
    // The image store is vfs: drop the copy now rather than at daemon stop.
    assert.equal((await docker().removeImage(ref)).code, 0);
  });

  it('sent no Authorization to the CDN and logged no token', (t) => {
    assertNoCredentialLeak(t);
  });
});

// ---------------------------------------------------------------------------------------------
// containerd: ctr with a docker.io hosts.toml naming Docxy

describe('containerd (ctr 1.6) through docxy', () => {
  let containerd: Containerd | undefined;
  let hostsDir = '';
  const ctr = (): Containerd => need(containerd, 'containerd');

  before(async () => {
    containerd = await startContainerd();
    hostsDir = join(containerd.dir, 'hosts');
    writeHostsToml(hostsDir, 'docker.io', theDocxy().url);
  });

  after(async () => {
    await containerd?.stop();
  });

  for (const name of ['tiny', 'multi'] as const) {
    it(`pulls docker.io/library/${name}:1 through a hosts.toml mirror`, async (t) => {
      if (name === 'tiny') t.diagnostic(`containerd started in ${ctr().startMs} ms`);
      const desc = image(name);
      const ref = `docker.io/library/${name}:1`;
      const mark = theDocxy().logMark();
      const r = await timed(t, `ctr images pull ${ref}`, () => ctr().pull(ref, { hostsDir }));
      assert.equal(
        r.code,
        0,
        `ctr pull ${ref}: ${r.stdout}\n${r.stderr}\ndocxy saw:\n${theDocxy().describeSince(mark)}`,
      );
      assert.equal(await ctr().imageDigest(ref), desc.digest);
      assert.ok(
        theDocxy().pathsSince(mark).includes(`/v2/library/${name}/manifests/1`),
        theDocxy().describeSince(mark),
      );
    });
  }
});

// ---------------------------------------------------------------------------------------------
// podman: a registries.conf mirror for docker.io

describe('podman 4.3 through docxy', () => {
  let podman: Podman | undefined;
  const pm = (): Podman => need(podman, 'podman');

  before(async () => {
    podman = await startPodman();
    podman.home.setRegistriesConf(registriesConfMirror('docker.io', theDocxy().hostPort, true));
  });

  after(async () => {
    await podman?.stop();
  });

  for (const [name, ref] of [
    ['tiny', 'docker.io/library/tiny:1'],
    ['app', 'docker.io/someuser/app:2'],
  ] as const) {
    it(`pulls ${ref} through a registries.conf mirror`, async (t) => {
      const desc = image(name);
      const mark = theDocxy().logMark();
      const r = await timed(t, `podman pull ${ref}`, () => pm().pull(ref));
      assert.equal(
        r.code,
        0,
        `podman pull ${ref}: ${r.stderr}\ndocxy saw:\n${theDocxy().describeSince(mark)}`,
      );
      assert.equal(await pm().imageId(ref), desc.configDigest.slice('sha256:'.length));
      assert.equal(await pm().imageDigest(ref), desc.digest);
      const path = `/v2/${desc.repo}/manifests/${desc.tag}`;
      assert.ok(
        theDocxy().pathsSince(mark).includes(path),
        `docxy saw ${path}:\n${theDocxy().describeSince(mark)}`,
      );
    });
  }
});

// ---------------------------------------------------------------------------------------------
// skopeo: inspect and copy

describe('skopeo 1.9 through docxy', () => {
  let skopeo: Skopeo | undefined;
  const sk = (): Skopeo => need(skopeo, 'skopeo');
  const layoutDir = makeTmpDir('clients-through-docxy-oci');

  before(async () => {
    skopeo = await startSkopeo();
  });

  after(async () => {
    await skopeo?.stop();
    layoutDir.remove();
  });

  it("inspects the mirror's tiny:1, directly and as docker.io's mirror", async (t) => {
    const tiny = image('tiny');
    const ref = `docker://${theDocxy().hostPort}/tiny:1`;
    const direct = await timed(t, `skopeo inspect ${ref}`, () => sk().inspect(ref));
    assert.equal(direct.Digest, tiny.digest);
    assert.deepEqual(direct.RepoTags, ['1'], 'tags/list came through docxy');
    assert.deepEqual(
      direct.Layers,
      tiny.layers.map((l) => l.digest),
    );
    const viaMirror = await timed(t, 'skopeo inspect docker://docker.io/library/tiny:1 (mirror)', () =>
      sk().inspect('docker://docker.io/library/tiny:1', {
        registriesConf: registriesConfMirror('docker.io', theDocxy().hostPort, true),
        noTags: true,
        tlsVerify: 'registries.conf',
      }),
    );
    assert.equal(viaMirror.Digest, tiny.digest);
  });

  it('copies the OCI index with --all --preserve-digests into an oci: layout', async (t) => {
    const idx = image('ociindex');
    const layout = join(layoutDir.path, 'layout');
    const mark = theDocxy().logMark();
    const r = await timed(t, 'skopeo copy --all --preserve-digests ociindex:1', () =>
      sk().copy(`docker://${theDocxy().hostPort}/ociindex:1`, `oci:${layout}:x`, {
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

    // The index, every platform manifest, and every config and layer are in the layout, intact.
    const blobs = [
      idx.digest,
      ...(idx.children ?? []).flatMap((c) => [c.digest, c.configDigest, ...c.layers.map((l) => l.digest)]),
    ];
    assert.equal(idx.children?.length, 2);
    for (const digest of blobs) {
      const file = layoutBlob(layout, digest);
      assert.ok(existsSync(file), `${digest} is in the layout`);
      assert.equal(`sha256:${sha256Hex(readFileSync(file))}`, digest, `${digest} has its content`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// After every client

describe('after all clients', () => {
  it('no request carried a credential to the CDN and no token reached the log', (t) => {
    assertNoCredentialLeak(t);
    t.diagnostic(`docxy answered ${theDocxy().requestLogs().length} requests in all`);
  });
});
