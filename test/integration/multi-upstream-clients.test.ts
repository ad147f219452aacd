/**
 * Many registries behind one Docxy, pulled by real clients. Three local upstreams (see
 * test/helpers/multi-upstream.ts): a token-auth fake hub for docker.io, a Basic-auth Distribution
 * for ghcr.io (Docxy holds its credentials; `hosts: [localhost]`), an anonymous Distribution for
 * quay.io; each holds a distinct image. Docxy listens on 127.0.0.1, so:
 *
 *   dockerd 20.10  -- `registry-mirrors` for the hub (short name), host routing
 *                     (`localhost:PORT/owner/ghcrimg:1`, after `docker login localhost:PORT` with
 *                     the ghcr user, which Docxy forwards as Basic), path prefixes
 *                     (`127.0.0.1:PORT/quay.io/…`, `127.0.0.1:PORT/ghcr.io/…`)
 *   containerd 1.6 -- only a `_default/hosts.toml`, the text `docxy client-config` prints
 *                     (`clientConfigs()`), pulls one image of each upstream via `?ns=`
 *   podman 4.3     -- the registries.conf `clientConfigs()` gives for docker.io and ghcr.io
 *
 * Every image is checked against the digests it was pushed with, every pull against the upstream
 * Docxy's request log says it went to, and at the end no line of Docxy's log holds the ghcr
 * password or its Basic form. One world, one Docxy, one daemon per client for the whole file, all
 * stopped in `after` hooks whether the tests pass or not. Docxy runs in this process: clients are
 * only driven through the harnesses' async functions.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';

import { clientConfigs } from '../../src/cli/client-config.ts';
import { validateConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { timed, need } from '../helpers/client-steps.ts';
import { startContainerd, type Containerd } from '../helpers/clients/containerd.ts';
import { startDockerd, type Dockerd } from '../helpers/clients/dockerd.ts';
import { startPodman, type Podman } from '../helpers/clients/podman.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { basicAuthorization, type ImageDescriptor } from '../helpers/images.ts';
import { startRegistryWorld, type RegistryWorld } from '../helpers/multi-upstream.ts';

// ---------------------------------------------------------------------------------------------
// Shared fixture: the three upstreams and one Docxy in front of them

let world: RegistryWorld | undefined;
let docxy: TestDocxy | undefined;
let docxyConfig: ConfigInput | undefined;
const setupTimings: string[] = [];

const theWorld = (): RegistryWorld => need(world, 'the registry world');
const theDocxy = (): TestDocxy => need(docxy, 'docxy');
const image = (which: 'hub' | 'ghcr' | 'quay'): ImageDescriptor => theWorld().images[which];

before(async () => {
  let t0 = Date.now();
  world = await startRegistryWorld();
  setupTimings.push(`three upstreams up and seeded in ${Date.now() - t0} ms`);
  t0 = Date.now();
  docxyConfig = { upstreams: world.upstreamsConfig() };
  docxy = await startDocxy(docxyConfig);
  setupTimings.push(`docxy up in ${Date.now() - t0} ms at ${docxy.url}`);
});

after(async () => {
  const results = await Promise.allSettled([docxy?.stop(), world?.stop()]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

/** `docxy client-config [--upstream NAME…]` for this Docxy: the snippets real clients get. */
function configsFor(only?: readonly string[]): ReturnType<typeof clientConfigs> {
  const cfg = validateConfig(need(docxyConfig, 'the docxy config'), 'test', {});
  const chosen = only === undefined ? cfg.upstreams : cfg.upstreams.filter((u) => only.includes(u.name));
  return clientConfigs(theDocxy().publicUrl, chosen, cfg.defaultUpstream);
}

// ---------------------------------------------------------------------------------------------
// Helpers

/**
 * The upstream each manifest request for `repoPath` (Docxy's path, e.g. `ghcr.io/owner/ghcrimg`)
 * since `mark` was routed to; the pull reached Docxy when this is non-empty.
 */
function manifestUpstreams(mark: number, repoPath: string): string[] {
  return theDocxy()
    .requestsSince(mark)
    .filter((l) => String(l.path).startsWith(`/v2/${repoPath}/manifests/`))
    .map((l) => String(l.upstream));
}

/** Asserts that Docxy saw manifest requests for `repoPath` since `mark`, all routed to `upstream`. */
function assertRouted(mark: number, repoPath: string, upstream: string): void {
  const seen = manifestUpstreams(mark, repoPath);
  assert.ok(
    seen.length > 0,
    `docxy saw manifest requests for ${repoPath}:\n${theDocxy().describeSince(mark)}`,
  );
  assert.deepEqual(
    [...new Set(seen)],
    [upstream],
    `${repoPath} was routed to ${upstream}:\n${theDocxy().describeSince(mark)}`,
  );
}

// ---------------------------------------------------------------------------------------------
// dockerd: registry-mirrors, host routing and path prefixes from one daemon

describe('docker (dockerd 20.10) through one docxy for three registries', () => {
  let dockerd: Dockerd | undefined;
  const docker = (): Dockerd => need(dockerd, 'dockerd');
  /** `localhost:PORT`: Docxy by the host name that routes to ghcr.io. */
  const ghcrHost = (): string => `localhost:${theDocxy().port}`;

  before(async () => {
    const d = theDocxy();
    dockerd = await startDockerd({
      mirrors: [d.url],
      insecureRegistries: [d.hostPort, `localhost:${d.port}`],
    });
  });

  after(async () => {
    await dockerd?.stop();
  });

  async function pull(t: TestContext, ref: string): Promise<void> {
    const mark = theDocxy().logMark();
    const r = await timed(t, `docker pull ${ref}`, () => docker().pull(ref));
    assert.equal(r.code, 0, `docker pull ${ref}: ${r.stderr}\ndocxy saw:\n${theDocxy().describeSince(mark)}`);
  }

  it('reports the shared fixture set-up', (t) => {
    for (const line of setupTimings) t.diagnostic(line);
    t.diagnostic(`dockerd started in ${docker().startMs} ms`);
  });

  it('docker login localhost:PORT with the ghcr user succeeds through docxy (Basic forwarded)', async (t) => {
    const user = theWorld().ghcrUser;
    const mark = theDocxy().logMark();
    // docker login only pings /v2/ without credentials first; Docxy answers that itself because it
    // holds ghcr's credentials (anonymous pulls need no login), so a wrong password cannot be
    // caught by docker login here — the registry refuses it on /v2/ (multi-upstream-security).
    const r = await timed(t, `docker login ${ghcrHost()}`, () =>
      docker().login(ghcrHost(), user.username, user.password),
    );
    assert.equal(r.code, 0, `docker login: ${r.stderr}\ndocxy saw:\n${theDocxy().describeSince(mark)}`);
    assert.match(r.stdout, /Login Succeeded/);
    // /v2/ went to ghcr.io (host routing), which answered the forwarded Basic credentials.
    const bases = theDocxy()
      .requestsSince(mark)
      .filter((l) => l.path === '/v2/');
    assert.ok(
      bases.some((l) => l.upstream === 'ghcr.io' && l.status === 200),
      `a /v2/ with the credentials reached ghcr.io and was accepted:\n${theDocxy().describeSince(mark)}`,
    );
    assert.ok(
      bases.every((l) => l.upstream === 'ghcr.io'),
      `every /v2/ went to ghcr.io:\n${theDocxy().describeSince(mark)}`,
    );
  });

  it('pulls localhost:PORT/owner/ghcrimg:1 (host routing to ghcr.io)', async (t) => {
    const ghcr = image('ghcr');
    const ref = `${ghcrHost()}/owner/ghcrimg:1`;
    const mark = theDocxy().logMark();
    await pull(t, ref);
    assert.equal(await docker().imageId(ref), ghcr.configDigest);
    assert.deepEqual(await docker().repoDigests(ref), [`${ghcrHost()}/owner/ghcrimg@${ghcr.digest}`]);
    assertRouted(mark, 'owner/ghcrimg', 'ghcr.io');
    // Gone, so the path-prefix pull below is a pull of its own.
    assert.equal((await docker().removeImage(ref)).code, 0);
  });

  it('pulls 127.0.0.1:PORT/quay.io/org/quayimg:1 (path prefix to quay.io)', async (t) => {
    const quay = image('quay');
    const ref = `${theDocxy().hostPort}/quay.io/org/quayimg:1`;
    const mark = theDocxy().logMark();
    await pull(t, ref);
    assert.equal(await docker().imageId(ref), quay.configDigest);
    assert.deepEqual(await docker().repoDigests(ref), [
      `${theDocxy().hostPort}/quay.io/org/quayimg@${quay.digest}`,
    ]);
    assertRouted(mark, 'quay.io/org/quayimg', 'quay.io');
  });

  it('pulls 127.0.0.1:PORT/ghcr.io/owner/ghcrimg:1 (path prefix to ghcr.io)', async (t) => {
    const ghcr = image('ghcr');
    const ref = `${theDocxy().hostPort}/ghcr.io/owner/ghcrimg:1`;
    const mark = theDocxy().logMark();
    await pull(t, ref);
    assert.equal(await docker().imageId(ref), ghcr.configDigest);
    assert.deepEqual(await docker().repoDigests(ref), [
      `${theDocxy().hostPort}/ghcr.io/owner/ghcrimg@${ghcr.digest}`,
    ]);
    assertRouted(mark, 'ghcr.io/owner/ghcrimg', 'ghcr.io');
  });

  it('pulls the short name hubimg:1 through registry-mirrors (the docker.io stand-in)', async (t) => {
    const hub = image('hub');
    const mark = theDocxy().logMark();
    await pull(t, 'hubimg:1');
    assert.equal(await docker().imageId('hubimg:1'), hub.configDigest);
    assert.deepEqual(await docker().repoDigests('hubimg:1'), [`hubimg@${hub.digest}`]);
    assertRouted(mark, 'library/hubimg', 'docker.io');
  });
});

// ---------------------------------------------------------------------------------------------
// containerd: one _default hosts.toml for every registry

describe('containerd (ctr 1.6) with the _default hosts.toml from docxy client-config', () => {
  let containerd: Containerd | undefined;
  let hostsDir = '';
  const ctr = (): Containerd => need(containerd, 'containerd');

  before(async () => {
    containerd = await startContainerd();
    hostsDir = join(containerd.dir, 'hosts');
    const text = configsFor().containerdHosts._default;
    if (text === undefined) throw new Error('clientConfigs gave no _default hosts.toml');
    // Only _default: every registry, whatever its name, goes to Docxy with ?ns=<registry>.
    mkdirSync(join(hostsDir, '_default'), { recursive: true });
    writeFileSync(join(hostsDir, '_default', 'hosts.toml'), text);
  });

  after(async () => {
    await containerd?.stop();
  });

  for (const [which, ref, upstream] of [
    ['hub', 'docker.io/library/hubimg:1', 'docker.io'],
    ['ghcr', 'ghcr.io/owner/ghcrimg:1', 'ghcr.io'],
    ['quay', 'quay.io/org/quayimg:1', 'quay.io'],
  ] as const) {
    it(`pulls ${ref} (ns=${upstream})`, async (t) => {
      if (which === 'hub') t.diagnostic(`containerd started in ${ctr().startMs} ms`);
      const desc = image(which);
      const mark = theDocxy().logMark();
      const r = await timed(t, `ctr images pull ${ref}`, () => ctr().pull(ref, { hostsDir }));
      assert.equal(
        r.code,
        0,
        `ctr pull ${ref}: ${r.stdout}\n${r.stderr}\ndocxy saw:\n${theDocxy().describeSince(mark)}`,
      );
      assert.equal(await ctr().imageDigest(ref), desc.digest);
      assertRouted(mark, desc.repo, upstream);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// podman: the registries.conf for docker.io and ghcr.io

describe('podman 4.3 with the registries.conf from docxy client-config', () => {
  let podman: Podman | undefined;
  const pm = (): Podman => need(podman, 'podman');

  before(async () => {
    podman = await startPodman();
    podman.home.setRegistriesConf(configsFor(['docker.io', 'ghcr.io']).podmanRegistriesConf);
  });

  after(async () => {
    await podman?.stop();
  });

  for (const [which, ref, docxyRepo, upstream] of [
    ['hub', 'docker.io/library/hubimg:1', 'library/hubimg', 'docker.io'],
    ['ghcr', 'ghcr.io/owner/ghcrimg:1', 'ghcr.io/owner/ghcrimg', 'ghcr.io'],
  ] as const) {
    it(`pulls ${ref}`, async (t) => {
      const desc = image(which);
      const mark = theDocxy().logMark();
      const r = await timed(t, `podman pull ${ref}`, () => pm().pull(ref));
      assert.equal(
        r.code,
        0,
        `podman pull ${ref}: ${r.stderr}\ndocxy saw:\n${theDocxy().describeSince(mark)}`,
      );
      assert.equal(await pm().imageId(ref), desc.configDigest.slice('sha256:'.length));
      assert.equal(await pm().imageDigest(ref), desc.digest);
      assertRouted(mark, docxyRepo, upstream);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// After every client

describe('after all clients', () => {
  it('no docxy log line holds the ghcr password or its Basic credentials', (t) => {
    const user = theWorld().ghcrUser;
    const basic = basicAuthorization(user);
    const encoded = basic.slice('Basic '.length);
    const log = theDocxy().logText();
    const ghcrLines = theDocxy()
      .requestLogs()
      .filter((l) => l.upstream === 'ghcr.io');
    assert.ok(ghcrLines.length > 0, 'requests went to ghcr.io');
    assert.ok(!log.includes(user.password), 'the ghcr password is in no log line');
    assert.ok(!log.includes(encoded), 'the base64 Basic credentials are in no log line');
    assert.ok(!log.includes('Basic '), 'no Basic authorization value is in the log');
    t.diagnostic(
      `${theDocxy().logs().length} log lines, ${ghcrLines.length} requests routed to ghcr.io, no credential`,
    );
  });
});
