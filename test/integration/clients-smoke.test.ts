/**
 * Proves the real-client harnesses in test/helpers/clients work end to end, against a plain,
 * anonymous CNCF Distribution 2.8 (`docker-registry`) on 127.0.0.1 — no docxy involved — and that
 * they leave the machine as they found it.
 *
 * The registry is seeded with one tiny single-layer OCI image, written here as an `oci:` layout and
 * copied with skopeo under `x/tiny:1` and `library/tiny:1` (`--preserve-digests`, so the digests
 * computed here are the registry's).
 *
 * Start-up times measured on this machine (several runs; also printed as test diagnostics):
 *   dockerd (+ its managed containerd) until /_ping answers: 0.12–0.35 s; stop ~1.1 s
 *   containerd until `ctr version` answers:                  0.05–0.3 s; stop < 0.1 s
 *   podman: no daemon; first pull incl. storage init:        0.1–0.15 s
 *   skopeo: no daemon; first inspect:                        0.04–0.09 s
 *   docker-registry until its port accepts:                  ~0.1 s
 * The whole file takes about 5 s.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';

import { freePort, startProcess, waitForPort, type Managed } from '../helpers/process.ts';
import { makeTmpDir } from '../helpers/tmp.ts';
import {
  Sandbox,
  alive,
  cmdline,
  footprintDiff,
  hostFootprint,
  readPid,
  runCommand,
} from '../helpers/clients/common.ts';
import { startContainerd, writeHostsToml } from '../helpers/clients/containerd.ts';
import { DOCKER_CLI, startDockerd } from '../helpers/clients/dockerd.ts';
import { registriesConfMirror, startPodman } from '../helpers/clients/podman.ts';
import { startSkopeo } from '../helpers/clients/skopeo.ts';

// ---------------------------------------------------------------------------------------------
// The tiny image

interface TinyImage {
  manifestDigest: string;
  configDigest: string;
  layerDigest: string;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A one-file tar with fixed owner, mode and mtime, so its bytes (and digests) are reproducible. */
async function tinyTar(): Promise<Buffer> {
  const p = tarPack();
  const body = Buffer.from('hello from docxy clients-smoke\n');
  p.entry({ name: 'hello.txt', size: body.length, mode: 0o644, uid: 0, gid: 0, mtime: new Date(0) }, body);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Writes an OCI image layout at `dir` holding the tiny image under tag `tag`. */
async function writeTinyOciLayout(dir: string, tag: string): Promise<TinyImage> {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (b: Buffer): string => {
    const d = sha256(b);
    writeFileSync(join(blobs, d.slice('sha256:'.length)), b);
    return d;
  };
  const tar = await tinyTar();
  // Node's gzip header carries mtime 0, so the compressed bytes are stable too.
  const layer = gzipSync(tar, { level: 6 });
  const layerDigest = put(layer);
  const config = Buffer.from(
    JSON.stringify({
      architecture: process.arch === 'arm64' ? 'arm64' : 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
    }),
  );
  const configDigest = put(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length },
      ],
    }),
  );
  const manifestDigest = put(manifest);
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: manifestDigest,
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  return { manifestDigest, configDigest, layerDigest };
}

// ---------------------------------------------------------------------------------------------
// Shared fixture: host footprint, registry, seeded image

const footprintBefore = hostFootprint();
/** Every harness dir, to check at the end that none survived and no process still uses one. */
const harnessDirs: string[] = [];
const work = makeTmpDir('clients-smoke');
let registry: Managed | undefined;
let port = 0;
let tiny: TinyImage;

before(async () => {
  port = await freePort();
  const root = join(work.path, 'registry');
  mkdirSync(root);
  const config = join(work.path, 'registry.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: info',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${root}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '  secret: clients-smoke',
      '',
    ].join('\n'),
  );
  const t0 = Date.now();
  registry = startProcess('docker-registry', 'docker-registry', ['serve', config], {
    logFile: join(work.path, 'registry.log'),
    // Distribution reads REGISTRY_* variables as config overrides: pass none from outside.
    env: { PATH: process.env.PATH },
  });
  await waitForPort(port);
  const registryMs = Date.now() - t0;

  const layout = join(work.path, 'oci');
  tiny = await writeTinyOciLayout(layout, '1');
  const seeder = await startSkopeo();
  harnessDirs.push(seeder.dir);
  try {
    for (const repo of ['x/tiny', 'library/tiny']) {
      const r = await seeder.copy(`oci:${layout}:1`, `docker://127.0.0.1:${port}/${repo}:1`, {
        preserveDigests: true,
      });
      assert.equal(r.code, 0, `seeding ${repo}: ${r.stderr}`);
    }
  } finally {
    await seeder.stop();
  }
  console.log(`docker-registry up in ${registryMs} ms on 127.0.0.1:${port}`);
});

after(async () => {
  await registry?.stop();
  work.remove();
});

/** Logs what a sandboxed client tried to write on the host (it went to a throw-away overlay). */
function reportLeaks(t: TestContext, who: string, leaks: string[]): void {
  t.diagnostic(
    `${who} wrote ${leaks.length === 0 ? 'nothing' : leaks.join(', ')} outside its dirs (kept in the sandbox)`,
  );
}

// ---------------------------------------------------------------------------------------------
// The sandbox itself

test('the sandbox keeps writes to host paths off the host and reports them', async () => {
  const tmp = makeTmpDir('sandbox-probe');
  try {
    const sb = new Sandbox(tmp.path);
    const name = `docxy-sandbox-probe-${process.pid}`;
    const targets = ['/run', '/etc', '/var/lib', '/opt', homedir()].map((d) => join(d, name)).sort();
    const w = sb.wrap('/bin/sh', [
      '-c',
      // Write into every overlaid dir, read a host file through the overlay, and check that
      // /run/containerd is an empty private tmpfs.
      'for p in "$@"; do echo x > "$p"; done; cat /etc/os-release >/dev/null; ' +
        'test -z "$(ls -A /run/containerd)"; touch /run/containerd/probe',
      'sh',
      ...targets,
    ]);
    const r = await runCommand(w.cmd, w.args);
    assert.equal(r.code, 0, r.stderr);
    for (const p of [...targets, '/run/containerd/probe'])
      assert.ok(!existsSync(p), `${p} is not on the host`);
    assert.deepEqual(sb.leaks(), targets);
  } finally {
    tmp.remove();
  }
});

// ---------------------------------------------------------------------------------------------
// dockerd

test('dockerd pulls from a plain-HTTP registry given as --insecure-registry', async (t) => {
  // A second daemon at the same time: the two must not share a managed containerd.
  const [docker, other] = await Promise.all([
    startDockerd({ insecureRegistries: [`127.0.0.1:${port}`] }),
    startDockerd(),
  ]);
  harnessDirs.push(docker.dir, other.dir);
  t.after(() => Promise.all([docker.stop(), other.stop()]));
  t.diagnostic(`two dockerds started in ${docker.startMs} and ${other.startMs} ms (${DOCKER_CLI})`);

  // Each managed containerd lives entirely under its own daemon's dirs.
  const containerdPids = [docker, other].map((d) => {
    const conf = readFileSync(join(d.dir, 'exec', 'containerd', 'containerd.toml'), 'utf8');
    assert.ok(conf.includes(`root = "${d.dir}/data/containerd/daemon"`), conf);
    assert.ok(conf.includes(`state = "${d.dir}/exec/containerd/daemon"`), conf);
    assert.ok(conf.includes(`address = "${d.dir}/exec/containerd/containerd.sock"`), conf);
    const pid = readPid(join(d.dir, 'exec', 'containerd', 'containerd.pid'));
    assert.ok(pid !== undefined && cmdline(pid).includes(`${d.dir}/exec/containerd/containerd.toml`));
    return pid;
  });
  assert.notEqual(containerdPids[0], containerdPids[1]);
  assert.equal((await other.docker(['version'])).code, 0);

  const ref = `127.0.0.1:${port}/x/tiny:1`;
  const r = await docker.pull(ref);
  assert.equal(r.code, 0, `pull: ${r.stderr}`);
  assert.equal(await docker.imageId(ref), tiny.configDigest);
  assert.deepEqual(await docker.repoDigests(ref), [`127.0.0.1:${port}/x/tiny@${tiny.manifestDigest}`]);

  // Login goes to the private DOCKER_CONFIG (Distribution without auth accepts any login).
  const login = await docker.login(`127.0.0.1:${port}`, 'someone', 'secret');
  assert.equal(login.code, 0, `login: ${login.stderr}`);
  const cfg: unknown = JSON.parse(docker.cliConfig() ?? '{}');
  assert.ok(
    typeof cfg === 'object' &&
      cfg !== null &&
      'auths' in cfg &&
      JSON.stringify(cfg.auths).includes(`127.0.0.1:${port}`),
    `credentials in the private config: ${JSON.stringify(cfg)}`,
  );
  assert.equal((await docker.logout(`127.0.0.1:${port}`)).code, 0);
  assert.equal((await docker.removeImage(ref)).code, 0);
  await assert.rejects(docker.imageId(ref));
  reportLeaks(t, 'dockerd', docker.leaks());

  const t0 = Date.now();
  await Promise.all([docker.stop(), other.stop()]);
  t.diagnostic(`both stopped in ${Date.now() - t0} ms`);
  for (const d of [docker, other]) {
    assert.ok(!alive(d.pid), 'dockerd is gone');
    assert.ok(!existsSync(d.dir), 'its dirs are removed');
  }
  for (const pid of containerdPids) assert.equal(cmdline(pid), '', 'its containerd is gone');
});

test('dockerd with registry-mirrors pulls a Docker Hub short name from the mirror', async (t) => {
  const docker = await startDockerd({ mirrors: [`http://127.0.0.1:${port}`] });
  harnessDirs.push(docker.dir);
  t.after(() => docker.stop());
  t.diagnostic(`dockerd started in ${docker.startMs} ms`);

  const r = await docker.pull('tiny:1');
  assert.equal(r.code, 0, `pull: ${r.stderr}`);
  assert.equal(await docker.imageId('tiny:1'), tiny.configDigest);
  assert.deepEqual(await docker.repoDigests('tiny:1'), [`tiny@${tiny.manifestDigest}`]);

  // A name the mirror lacks falls back to Docker Hub, which the dead proxy makes fail at once.
  const t0 = Date.now();
  const miss = await docker.pull('absent:1');
  assert.notEqual(miss.code, 0);
  assert.match(miss.stderr, /proxyconnect|connection refused/);
  t.diagnostic(`mirror miss + failed Hub fallback took ${Date.now() - t0} ms`);
  reportLeaks(t, 'dockerd', docker.leaks());
});

// ---------------------------------------------------------------------------------------------
// containerd

test('ctr pulls docker.io/library/tiny:1 through a hosts.toml mirror', async (t) => {
  const ctd = await startContainerd();
  harnessDirs.push(ctd.dir);
  t.after(() => ctd.stop());
  t.diagnostic(`containerd started in ${ctd.startMs} ms`);

  const hosts = join(ctd.dir, 'hosts');
  writeHostsToml(hosts, 'docker.io', `http://127.0.0.1:${port}`);
  const ref = 'docker.io/library/tiny:1';
  const r = await ctd.pull(ref, { hostsDir: hosts });
  assert.equal(r.code, 0, `pull: ${r.stdout}\n${r.stderr}`);
  assert.equal(await ctd.imageDigest(ref), tiny.manifestDigest);

  // The same through a `_default` host config, which catches every registry.
  assert.equal((await ctd.removeImage(ref)).code, 0);
  assert.equal(await ctd.imageDigest(ref), undefined);
  const catchAll = join(ctd.dir, 'hosts-default');
  writeHostsToml(catchAll, '_default', `http://127.0.0.1:${port}`);
  const r2 = await ctd.pull(ref, { hostsDir: catchAll, snapshotter: 'native' });
  assert.equal(r2.code, 0, `pull via _default: ${r2.stdout}\n${r2.stderr}`);
  assert.equal(await ctd.imageDigest(ref), tiny.manifestDigest);

  // containerd sent `?ns=docker.io` to the mirror (Distribution ignores it).
  assert.match(
    readFileSync(join(work.path, 'registry.log'), 'utf8'),
    /\/v2\/library\/tiny\/manifests\/1\?ns=docker\.io/,
  );
  reportLeaks(t, 'containerd', ctd.leaks());

  await ctd.stop();
  assert.ok(!alive(ctd.pid), 'containerd is gone');
});

// ---------------------------------------------------------------------------------------------
// podman and skopeo

test('podman pulls docker.io/library/tiny:1 through a registries.conf mirror', async (t) => {
  const podman = await startPodman();
  harnessDirs.push(podman.dir);
  t.after(() => podman.stop());

  const t0 = Date.now();
  const conf = registriesConfMirror('docker.io', `127.0.0.1:${port}`, true);
  const r = await podman.pull('docker.io/library/tiny:1', { registriesConf: conf });
  assert.equal(r.code, 0, `pull: ${r.stderr}`);
  t.diagnostic(`first podman pull (storage init included) took ${Date.now() - t0} ms`);
  assert.equal(await podman.imageId('docker.io/library/tiny:1'), tiny.configDigest.slice('sha256:'.length));
  assert.equal(await podman.imageDigest('docker.io/library/tiny:1'), tiny.manifestDigest);

  // A short name resolves against docker.io and so goes through the mirror too.
  const short = await podman.pull('tiny:1');
  assert.equal(short.code, 0, `short-name pull: ${short.stderr}`);
  assert.equal(await podman.imageId('tiny:1'), tiny.configDigest.slice('sha256:'.length));
  reportLeaks(t, 'podman', podman.leaks());
});

test('skopeo inspects directly and through a mirror', async (t) => {
  const skopeo = await startSkopeo();
  harnessDirs.push(skopeo.dir);
  t.after(() => skopeo.stop());

  const t0 = Date.now();
  const direct = await skopeo.inspect(`docker://127.0.0.1:${port}/x/tiny:1`);
  t.diagnostic(`first skopeo inspect took ${Date.now() - t0} ms`);
  assert.equal(direct.Digest, tiny.manifestDigest);
  assert.deepEqual(direct.RepoTags, ['1']);
  assert.deepEqual(direct.Layers, [tiny.layerDigest]);

  const raw = await skopeo.inspectRaw(`docker://127.0.0.1:${port}/x/tiny:1`);
  assert.equal(sha256(Buffer.from(raw)), tiny.manifestDigest, 'raw manifest bytes are the stored bytes');

  // Through the mirror: the tags list would go to the real registry, hence noTags.
  const viaMirror = await skopeo.inspect('docker://docker.io/library/tiny:1', {
    registriesConf: registriesConfMirror('docker.io', `127.0.0.1:${port}`),
    noTags: true,
    // No --tls-verify flag: the mirror's `insecure = true` must be what allows plain HTTP.
    tlsVerify: 'registries.conf',
  });
  assert.equal(viaMirror.Digest, tiny.manifestDigest);
  reportLeaks(t, 'skopeo', skopeo.leaks());
});

// ---------------------------------------------------------------------------------------------
// Nothing left behind

test('the harnesses left no process, directory or host state behind', () => {
  assert.ok(harnessDirs.length >= 7, 'every harness ran');
  for (const d of harnessDirs) assert.ok(!existsSync(d), `${d} was removed`);
  // No process anywhere still runs from one of the harness dirs (dockerd, containerd, shims).
  const stragglers: string[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue;
    }
    if (harnessDirs.some((d) => cmd.includes(d))) stragglers.push(`${pid}: ${cmd}`);
  }
  assert.deepEqual(stragglers, []);
  assert.deepEqual(footprintDiff(footprintBefore, hostFootprint()), []);
});
