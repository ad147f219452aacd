/**
 * `docxy warm` and `docxy cache stats`, each run as its own process against a Docxy process in
 * front of the fake Hub:
 *
 *   warm --platform linux/amd64,linux/arm64 of the seeded multi-arch image puts every manifest and
 *   blob of both platforms in the data directory; with the Hub stopped, docker pulls it through
 *   Docxy as its registry mirror (linux/amd64, dockerd's own platform), skopeo copies each platform
 *   and every blob still answers byte for byte
 *   warm of a missing tag exits 1 naming the image and the registry's MANIFEST_UNKNOWN
 *   output: plain lines without escapes when piped; bars and a total redrawn in place under `script`
 *   cache stats: the server's numbers (--json parsed), the data directory with --offline, and the
 *   data directory when no server answers
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';

const ESC = '\u001b';

import { need } from '../helpers/client-steps.ts';
import { runCommand, shQuote } from '../helpers/clients/common.ts';
import { startDockerd, type Dockerd } from '../helpers/clients/dockerd.ts';
import { startSkopeo, type Skopeo } from '../helpers/clients/skopeo.ts';
import { spawnDocxy, type DocxyProcess } from '../helpers/docxy-process.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import {
  seedImages,
  type ChildDescriptor,
  type DefaultImageName,
  type ImageDescriptor,
} from '../helpers/images.ts';
import { makeTmpDir } from '../helpers/tmp.ts';
import { cliEnv, docxyCli, ENTRY, REPO_ROOT, showCmd } from '../helpers/docxy-cli.ts';

let hub: FakeHub | undefined;
let docxy: DocxyProcess | undefined;
let images: Record<DefaultImageName, ImageDescriptor> | undefined;
const dataDir = makeTmpDir('warm-data');
const filesDir = makeTmpDir('warm-files');
const configFile = join(filesDir.path, 'config.yaml');

const theHub = (): FakeHub => need(hub, 'the fake hub');
const theDocxy = (): DocxyProcess => need(docxy, 'docxy');
const image = (name: DefaultImageName): ImageDescriptor => need(images, 'the seeded images')[name];
const children = (d: ImageDescriptor): ChildDescriptor[] => need(d.children, `${d.repo}'s platforms`);

const show = showCmd;

function objectFile(kind: 'blobs' | 'manifests', digest: string): string {
  const [alg, hex] = digest.split(':');
  if (alg === undefined || hex === undefined) throw new Error(`bad digest ${digest}`);
  return join(dataDir.path, 'objects', kind, alg, hex.slice(0, 2), hex);
}

const blobsOf = (c: ChildDescriptor): string[] => [c.configDigest, ...c.layers.map((l) => l.digest)];

before(async () => {
  hub = await startFakeHub();
  images = await seedImages(hub);
  writeFileSync(
    configFile,
    stringify({ log_level: 'warn', data: dataDir.path, upstream: { url: hub.registryUrl } }),
  );
  docxy = await spawnDocxy({
    configFile,
    logFile: join(filesDir.path, 'docxy.log'),
    env: cliEnv() as Record<string, string>,
  });
});

after(async () => {
  const results = await Promise.allSettled([docxy?.stop(), hub?.stop()]);
  dataDir.remove();
  filesDir.remove();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

describe('docxy warm', () => {
  it('warms both platforms of the multi-arch image into the cache, in plain lines when piped', async () => {
    const multi = image('multi');
    const r = await docxyCli([
      'warm',
      'multi:1',
      '--platform',
      'linux/amd64,linux/arm64',
      '--server',
      theDocxy().url,
    ]);
    assert.equal(r.code, 0, show(r));
    assert.ok(
      !r.stdout.includes(ESC) && !r.stdout.includes('\r'),
      'no escapes or carriage returns when not a TTY',
    );
    const blobs = new Set(children(multi).flatMap(blobsOf));
    const platforms = children(multi)
      .map((c) =>
        [c.platform.os, c.platform.architecture, c.platform.variant].filter((x) => x !== undefined).join('/'),
      )
      .join(',');
    assert.match(
      r.stdout,
      new RegExp(`^warm library/multi:1 ${platforms}: ${blobs.size} blobs, .+, [\\d.]+ s$`, 'm'),
      show(r),
    );
    assert.match(r.stdout, /^warmed 1\/1 images/m);
    assert.ok(existsSync(objectFile('manifests', multi.digest)), 'the index is cached');
    for (const c of children(multi)) {
      assert.ok(existsSync(objectFile('manifests', c.digest)), `${c.platform.architecture} manifest cached`);
      for (const d of blobsOf(c)) assert.ok(existsSync(objectFile('blobs', d)), `${d} cached`);
    }
  });

  it('draws bars and a total in place on a TTY (under script) and ends with the summary', async () => {
    const cmd = [
      process.execPath,
      '--import',
      'tsx',
      ENTRY,
      'warm',
      'tiny:1',
      'someuser/app:2',
      '--server',
      theDocxy().url,
    ]
      .map(shQuote)
      .join(' ');
    const r = await runCommand('script', ['-qfec', cmd, '/dev/null'], {
      env: cliEnv(),
      cwd: REPO_ROOT,
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, show(r));
    assert.ok(r.stdout.includes(`\r${ESC}[2K`), 'lines are cleared and rewritten');
    assert.match(r.stdout, new RegExp(`${ESC}\\[\\d+A`), 'the cursor moves back up to redraw');
    assert.match(r.stdout, /library\/tiny:1 +\[#+\] 100%/);
    assert.match(r.stdout, /someuser\/app:2 +\[#+\] 100%/);
    assert.match(r.stdout, /total +\[#+\] 100% .*\/s +ETA/);
    assert.match(r.stdout, /warmed 2\/2 images/);
  });

  it('exits 1 naming an image whose tag the upstream does not have', async () => {
    const r = await docxyCli(['warm', 'tiny:1', 'multi:nope', '--server', theDocxy().url]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /^failed: multi:nope: manifest nope: MANIFEST_UNKNOWN: /m, show(r));
    assert.match(r.stdout, /^warm library\/tiny:1: 2 blobs, /m, 'the other image still warmed');
    assert.match(r.stdout, /^warmed 1\/2 images/m);
  });

  it('rejects bad arguments with exit 2', async () => {
    for (const args of [
      ['warm'],
      ['warm', 'tiny:1', '--platform', 'linux'],
      ['warm', 'tiny:1', '--concurrency', '0'],
      ['warm', 'tiny:1', '--platform', 'linux/amd64', '--all-platforms'],
      ['warm', 'UPPER:1'],
      ['warm', 'tiny:1', '--no-such-flag'],
    ]) {
      const r = await docxyCli([...args, '--server', theDocxy().url]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${show(r)}`);
    }
  });
});

describe('docxy cache stats', () => {
  it("prints the server's /-/api/stats, as JSON with --json", async () => {
    const live = (await httpGet(`${theDocxy().url}/-/api/stats`)).json() as { requests: { total: number } };
    const r = await docxyCli(['cache', 'stats', '--server', theDocxy().url, '--json']);
    assert.equal(r.code, 0, show(r));
    const j = JSON.parse(r.stdout) as {
      source: string;
      stats: {
        requests: { total: number; misses: number };
        cache: { maxSizeBytes: number };
        upstreams: { name: string }[];
      };
    };
    assert.equal(j.source, 'server');
    assert.ok(j.stats.requests.total >= live.requests.total, 'the request count only grows');
    assert.ok(j.stats.requests.misses > 0, 'the warms were misses');
    assert.equal(j.stats.upstreams.length, 1);
    const text = await docxyCli(['cache', 'stats', '--server', theDocxy().url]);
    assert.equal(text.code, 0, show(text));
    assert.match(text.stdout, /^hit ratio +\d+\.\d %/m);
    assert.match(text.stdout, /^bytes saved /m);
    assert.match(text.stdout, /^upstream +\S+: last success \d{4}-/m);
  });

  it('reads the data directory with --offline, and when no server answers', async () => {
    const expectBlobs = readdirSync(join(dataDir.path, 'objects', 'blobs', 'sha256'))
      .flatMap((p) => readdirSync(join(dataDir.path, 'objects', 'blobs', 'sha256', p)))
      .filter((f) => /^[a-f0-9]{64}$/.test(f)).length;
    const r = await docxyCli(['cache', 'stats', '--config', configFile, '--offline', '--json']);
    assert.equal(r.code, 0, show(r));
    const j = JSON.parse(r.stdout) as {
      source: string;
      stats: { byKind: { blobs: { count: number }; tags: { count: number } }; sizeBytes: number };
    };
    assert.equal(j.source, 'data');
    assert.equal(j.stats.byKind.blobs.count, expectBlobs);
    assert.equal(j.stats.byKind.tags.count, 3, 'multi:1, tiny:1, app:2');
    assert.ok(j.stats.sizeBytes > 0);
    // A port nobody listens on: the command says so and falls back to the data directory.
    const gone = await docxyCli(['cache', 'stats', '--config', configFile, '--server', 'http://127.0.0.1:9']);
    assert.equal(gone.code, 0, show(gone));
    assert.match(gone.stderr, /no Docxy answering at http:\/\/127\.0\.0\.1:9/);
    assert.match(gone.stdout, /^blobs +\d+, /m);
    assert.match(gone.stdout, /^oldest access +\d{4}-/m);
  });
});

describe('after warming, with the upstream stopped', () => {
  let skopeo: Skopeo | undefined;
  let dockerd: Dockerd | undefined;
  before(async () => {
    await theHub().stop();
  });
  after(async () => {
    await Promise.allSettled([skopeo?.stop(), dockerd?.stop()]);
  });

  it('docker pulls the warmed image through Docxy as its registry mirror (its own platform, linux/amd64)', async () => {
    const multi = image('multi');
    const amd64 = children(multi).find((c) => c.platform.architecture === 'amd64');
    assert.ok(amd64 !== undefined, 'the seeded image has linux/amd64');
    const d = theDocxy();
    dockerd = await startDockerd({ mirrors: [d.url], insecureRegistries: [d.url.replace(/^http:\/\//, '')] });
    // A registry-mirrors pull of the short name: Docker asks the mirror for library/multi:1 and
    // cannot fall back to a Hub (its proxy is dead), so the image came from Docxy's cache.
    const r = await dockerd.pull('multi:1', { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `docker pull: ${show(r)}`);
    assert.equal(await dockerd.imageId('multi:1'), amd64.configDigest, 'the linux/amd64 image');
    assert.deepEqual(await dockerd.repoDigests('multi:1'), [`multi@${multi.digest}`]);
  });

  it('serves every platform of the warmed image: skopeo copies each, and every blob matches its digest', async () => {
    const multi = image('multi');
    const d = theDocxy();
    const token = await pullToken(`${d.url}/auth/token`, theHub().service, multi.repo);
    for (const c of children(multi)) {
      for (const digest of blobsOf(c)) {
        const res = await httpGet(`${d.url}/v2/${multi.repo}/blobs/${digest}`, {
          headers: { authorization: `Bearer ${token}` },
        });
        assert.equal(res.status, 200, `${digest}: ${res.body.toString().slice(0, 200)}`);
        assert.equal(`sha256:${createHash('sha256').update(res.body).digest('hex')}`, digest);
      }
    }
    skopeo = await startSkopeo();
    const host = d.url.replace(/^http:\/\//, '');
    for (const c of children(multi)) {
      const out = join(skopeo.dir, `out-${c.platform.architecture}`);
      const r = await skopeo.skopeo([
        '--override-os',
        c.platform.os,
        '--override-arch',
        c.platform.architecture,
        'copy',
        '--src-tls-verify=false',
        `docker://${host}/${multi.repo}:${multi.tag}`,
        `dir:${out}`,
      ]);
      assert.equal(r.code, 0, `skopeo ${c.platform.architecture}: ${show(r)}`);
      for (const digest of blobsOf(c)) {
        assert.ok(existsSync(join(out, digest.replace('sha256:', ''))), `${digest} copied`);
      }
    }
  });
});
