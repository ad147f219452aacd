/**
 * The `docxy` command line, run as its own process from source (`node --import tsx
 * test/helpers/docxy-entry.ts …`), against a data directory that an in-process Docxy filled by
 * pulling from the fake Hub:
 *
 *   cache ls      -- one row per cached tag: upstream, repository, tag, digest prefix, size
 *   cache rm      -- removes a tag, its manifest and the blobs only it used; blobs another cached
 *                    tag still uses stay; an unknown name exits 1
 *   cache gc      -- evicts down to a (small) cache.max_size, leaving the cache consistent
 *   config check  -- ok for config.example.yaml; a bad file exits 1 naming each bad key path
 *   --version     -- the package version
 *   serve         -- a bad configuration exits non-zero with the key path on stderr
 *
 * The Docxy that filled the cache keeps running throughout (the CLI works on the storage directly,
 * next to a running instance); CLI processes are run asynchronously, with DOCXY_* variables
 * removed from their environment so only the files and flags given here count.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';

import { formatSize } from '../../src/config/units.ts';
import { need } from '../helpers/client-steps.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  MediaType,
  TINY,
  pushImage,
  seedImages,
  sha256,
  type BlobContent,
  type DefaultImageName,
  type ImageDescriptor,
  type TestImage,
} from '../helpers/images.ts';
import { makeTmpDir } from '../helpers/tmp.ts';
import { docxyCli, REPO_ROOT, showCmd } from '../helpers/docxy-cli.ts';
import { waitFor } from '../helpers/process.ts';

let hub: FakeHub | undefined;
let docxy: TestDocxy | undefined;
let images: Record<DefaultImageName, ImageDescriptor> | undefined;
/** library/tiny:2: TINY's layer under another config, so the two tags share a blob. */
let tiny2: ImageDescriptor | undefined;
const dataDir = makeTmpDir('cli-data');
const filesDir = makeTmpDir('cli-files');
/** A configuration naming the fake Hub and the data directory. */
const configFile = join(filesDir.path, 'config.yaml');

const theHub = (): FakeHub => need(hub, 'the fake hub');
const theDocxy = (): TestDocxy => need(docxy, 'docxy');
const image = (name: DefaultImageName): ImageDescriptor => need(images, 'the seeded images')[name];
const theTiny2 = (): ImageDescriptor => need(tiny2, 'library/tiny:2');

/** TINY's layer with a config of its own, pushed as library/tiny:2. */
function tinySibling(): TestImage {
  const layer = TINY.blobs.find((b) => b.digest === TINY.layers[0]?.digest);
  const layerDesc = TINY.layers[0];
  if (layer === undefined || layerDesc === undefined) throw new Error("TINY's layer is missing");
  const configBytes = Buffer.from(
    JSON.stringify(
      {
        architecture: 'amd64',
        os: 'linux',
        created: '2024-01-01T00:00:00Z',
        config: { Cmd: ['/bin/sh'], Labels: { 'org.opencontainers.image.title': 'library/tiny:2' } },
        rootfs: { type: 'layers', diff_ids: [layerDesc.diffId] },
      },
      null,
      3,
    ),
  );
  const config: BlobContent = {
    mediaType: MediaType.dockerConfig,
    digest: sha256(configBytes),
    size: configBytes.length,
    bytes: configBytes,
  };
  const ref = (b: BlobContent): { mediaType: string; digest: string; size: number } => ({
    mediaType: b.mediaType,
    digest: b.digest,
    size: b.size,
  });
  const manifestBytes = Buffer.from(
    JSON.stringify(
      { schemaVersion: 2, mediaType: MediaType.dockerManifest, config: ref(config), layers: [ref(layer)] },
      null,
      3,
    ),
  );
  const digest = sha256(manifestBytes);
  return {
    repo: 'library/tiny',
    tag: '2',
    mediaType: MediaType.dockerManifest,
    digest,
    size: manifestBytes.length,
    configDigest: config.digest,
    layers: [layerDesc],
    blobs: [config, layer],
    manifests: [{ reference: '2', mediaType: MediaType.dockerManifest, digest, bytes: manifestBytes }],
  };
}

/** Pulls an image over HTTP through Docxy (every platform of a list), checking every digest. */
async function pull(desc: ImageDescriptor): Promise<void> {
  const d = theDocxy();
  const token = await pullToken(`${d.url}/auth/token`, theHub().service, desc.repo);
  const auth = { authorization: `Bearer ${token}` };
  const getManifest = async (reference: string, digest: string): Promise<void> => {
    const res = await httpGet(`${d.url}/v2/${desc.repo}/manifests/${reference}`, {
      headers: { ...auth, accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(res.status, 200, `${desc.repo}:${reference}: ${res.body.toString()}`);
    assert.equal(sha256(res.body), digest, `${desc.repo}:${reference} manifest bytes`);
  };
  const getBlob = async (digest: string): Promise<void> => {
    const res = await httpGet(`${d.url}/v2/${desc.repo}/blobs/${digest}`, { headers: auth });
    assert.equal(res.status, 200, `${desc.repo} blob ${digest}`);
    assert.equal(sha256(res.body), digest, `${desc.repo} blob ${digest} bytes`);
  };
  await getManifest(desc.tag, desc.digest);
  const platforms = desc.children ?? [desc];
  for (const p of platforms) {
    if (desc.children !== undefined) await getManifest(p.digest, p.digest);
    await getBlob(p.configDigest);
    for (const l of p.layers) await getBlob(l.digest);
  }
}

/** Every manifest and blob digest an image consists of. */
function digestsOf(desc: ImageDescriptor): string[] {
  const platforms = desc.children ?? [desc];
  return [
    desc.digest,
    ...(desc.children ?? []).map((c) => c.digest),
    ...platforms.flatMap((p) => [p.configDigest, ...p.layers.map((l) => l.digest)]),
  ];
}

/** Bytes of an image in the cache: its manifests and blobs, each once (what `cache ls` adds up). */
function sizeOf(desc: ImageDescriptor): number {
  const sizes = new Map<string, number>([[desc.digest, desc.size]]);
  for (const c of desc.children ?? []) sizes.set(c.digest, c.size);
  for (const d of digestsOf(desc)) {
    if (!sizes.has(d)) sizes.set(d, statSync(objectFile('blobs', d)).size);
  }
  return [...sizes.values()].reduce((a, b) => a + b, 0);
}

// ---------------------------------------------------------------------------------------------
// The data directory, read directly

const objects = (): string => join(dataDir.path, 'objects');

function objectFile(kind: 'blobs' | 'manifests', digest: string): string {
  const [alg, hex] = digest.split(':');
  if (alg === undefined || hex === undefined) throw new Error(`bad digest ${digest}`);
  return join(objects(), kind, alg, hex.slice(0, 2), hex);
}

/**
 * The upstream's name in the cache: the one directory under objects/tags (Docxy names it after
 * the upstream URL's host:port), which `cache ls` must print as UPSTREAM.
 */
function upstreamHost(): string {
  const names = readdirSync(join(objects(), 'tags'));
  assert.equal(names.length, 1, `one upstream in the cache: ${names.join(', ')}`);
  return names[0] ?? '';
}
const tagFile = (repo: string, tag: string): string =>
  join(objects(), 'tags', upstreamHost(), repo, '_tag', tag);
const blobCached = (digest: string): boolean => existsSync(objectFile('blobs', digest));
const manifestCached = (digest: string): boolean => existsSync(objectFile('manifests', digest));

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

function cachedBytes(): number {
  return [...filesUnder(join(objects(), 'blobs')), ...filesUnder(join(objects(), 'manifests'))]
    .map((f) => statSync(f).size)
    .reduce((a, b) => a + b, 0);
}

/** Every cached manifest's blobs and children are cached; every tag record's manifest is. */
function assertConsistent(what: string): void {
  const problems: string[] = [];
  const digests = (v: unknown): string[] =>
    (Array.isArray(v) ? v : [v]).flatMap((d: unknown) =>
      typeof d === 'object' && d !== null && 'digest' in d && typeof d.digest === 'string' ? [d.digest] : [],
    );
  for (const file of filesUnder(join(objects(), 'manifests'))) {
    const m: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (typeof m !== 'object' || m === null) continue;
    const blobs = [...('config' in m ? digests(m.config) : []), ...('layers' in m ? digests(m.layers) : [])];
    for (const b of blobs) if (!blobCached(b)) problems.push(`${file} refers to missing blob ${b}`);
    for (const c of 'manifests' in m ? digests(m.manifests) : [])
      if (!manifestCached(c)) problems.push(`${file} refers to missing manifest ${c}`);
  }
  for (const file of filesUnder(join(objects(), 'tags'))) {
    const [digest] = digests(JSON.parse(readFileSync(file, 'utf8')));
    if (digest === undefined || !manifestCached(digest))
      problems.push(`tag ${file} -> missing ${String(digest)}`);
  }
  assert.deepEqual(problems, [], `${what}: the cache is consistent`);
}

// ---------------------------------------------------------------------------------------------
// Running the CLI

/** The test's environment without DOCXY_* variables, which would override the files given. */
const show = showCmd;

/** `cache ls` rows as `{upstream, repository, tag, digest, size}`, header and summary left out. */
function lsRows(
  stdout: string,
): { upstream: string; repository: string; tag: string; digest: string; size: string }[] {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  assert.match(lines[0] ?? '', /^UPSTREAM\s+REPOSITORY\s+TAG\s+DIGEST\s+SIZE\s+LAST ACCESS$/, stdout);
  return lines
    .slice(1)
    .filter((l) => !/^\d+ tags, /.test(l))
    .map((l) => {
      const [upstream = '', repository = '', tag = '', digest = '', n = '', unit = ''] = l
        .trim()
        .split(/\s+/);
      return { upstream, repository, tag, digest, size: `${n} ${unit}` };
    });
}

function writeConfig(file: string, cache: Record<string, unknown> = {}): void {
  writeFileSync(
    file,
    stringify({
      log_level: 'warn',
      data: dataDir.path,
      upstream: { url: theHub().registryUrl },
      ...(Object.keys(cache).length === 0 ? {} : { cache }),
    }),
  );
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  hub = await startFakeHub();
  images = await seedImages(hub);
  tiny2 = await pushImage(hub, tinySibling());
  docxy = await startDocxy({ upstream: { url: hub.registryUrl }, data: dataDir.path });
  for (const desc of [image('tiny'), theTiny2(), image('app'), image('multi')]) await pull(desc);
  writeConfig(configFile);
});

after(async () => {
  const results = await Promise.allSettled([docxy?.stop(), hub?.stop()]);
  dataDir.remove();
  filesDir.remove();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

describe('docxy cache', () => {
  it('cache ls lists upstream, repository, tag, digest prefix and size of every cached tag', async () => {
    const r = await docxyCli(['cache', 'ls', '--config', configFile]);
    assert.equal(r.code, 0, show(r));
    const rows = lsRows(r.stdout);
    const expected = [image('multi'), image('tiny'), theTiny2(), image('app')].map((desc) => ({
      upstream: upstreamHost(),
      repository: desc.repo,
      tag: desc.tag,
      digest: desc.digest.slice(0, 19),
      size: formatSize(sizeOf(desc)),
    }));
    const key = (x: { repository: string; tag: string }): string => `${x.repository}:${x.tag}`;
    assert.deepEqual(
      [...rows].sort((a, b) => key(a).localeCompare(key(b))),
      [...expected].sort((a, b) => key(a).localeCompare(key(b))),
      show(r),
    );
    assert.match(r.stdout, /^4 tags, \d+ manifests, \d+ blobs, /m, show(r));

    // --data alone names the same directory.
    const byData = await docxyCli(['cache', 'ls', '--data', dataDir.path]);
    assert.equal(byData.code, 0, show(byData));
    assert.deepEqual(lsRows(byData.stdout), rows);
  });

  it('cache rm tiny:1 removes the tag, its manifest and config, and keeps the layer tiny:2 shares', async () => {
    const tiny = image('tiny');
    const sibling = theTiny2();
    const shared = tiny.layers[0]?.digest ?? '';
    assert.equal(sibling.layers[0]?.digest, shared, 'tiny:1 and tiny:2 share their layer');
    const others = [sibling, image('app'), image('multi')];
    assert.ok(
      existsSync(tagFile('library/tiny', '1')) &&
        manifestCached(tiny.digest) &&
        blobCached(tiny.configDigest),
    );

    const r = await docxyCli(['cache', 'rm', 'tiny:1', '--config', configFile]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /removed 1 tag\(s\) of library\/tiny/, show(r));
    assert.ok(!existsSync(tagFile('library/tiny', '1')), 'the tag record is gone');
    assert.ok(!manifestCached(tiny.digest), "tiny:1's manifest is gone");
    assert.ok(!blobCached(tiny.configDigest), "tiny:1's config is gone");
    assert.ok(blobCached(shared), 'the layer tiny:2 still uses stays');
    assert.ok(existsSync(tagFile('library/tiny', '2')), 'the tag tiny:2 stays');
    for (const desc of others) {
      for (const d of digestsOf(desc)) {
        assert.ok(manifestCached(d) || blobCached(d), `${desc.repo}:${desc.tag}'s ${d} stays`);
      }
    }
    assertConsistent('after cache rm tiny:1');

    const ls = await docxyCli(['cache', 'ls', '--config', configFile]);
    assert.equal(ls.code, 0, show(ls));
    assert.deepEqual(
      lsRows(ls.stdout)
        .map((x) => `${x.repository}:${x.tag}`)
        .sort(),
      ['library/multi:1', 'library/tiny:2', 'someuser/app:2'],
      show(ls),
    );
  });

  it('cache rm of a name or tag that is not cached exits 1', async () => {
    const refs = ['nosuch', 'nosuch:1', 'tiny:1', 'someuser/app:3'];
    const results = await Promise.all(
      refs.map((ref) => docxyCli(['cache', 'rm', ref, '--config', configFile])),
    );
    refs.forEach((ref, i) => {
      const r = need(results[i], `the result for ${ref}`);
      assert.equal(r.code, 1, `${ref}: ${show(r)}`);
      assert.match(r.stdout, /not in the cache/, `${ref}: ${show(r)}`);
    });
  });

  it('the running docxy still serves tiny:1 after cache rm, fetching what was removed again', async () => {
    const tiny = image('tiny');
    const cdn = need(theHub().cdn, 'the CDN stand-in');
    const mark = cdn.requests.length;
    await pull(tiny);
    const hex = tiny.configDigest.slice('sha256:'.length);
    assert.ok(
      cdn.requests.slice(mark).some((r) => r.path.endsWith(`/${hex}/data`)),
      "tiny:1's config came from the upstream again",
    );
    // The commit (a flush to disk) follows the client's last byte, so it may land a moment later.
    await waitFor('the config to be cached again', () => blobCached(tiny.configDigest), 5000);
  });

  it('cache gc evicts down to a small max_size', async () => {
    const total = cachedBytes();
    const maxSize = Math.floor(total / 2);
    const small = join(filesDir.path, 'small.yaml');
    writeConfig(small, { max_size: maxSize });
    const r = await docxyCli(['cache', 'gc', '--config', small]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /removed [1-9]\d* objects/, show(r));
    const left = cachedBytes();
    assert.ok(left <= maxSize, `${left} bytes left of ${total}, max_size ${maxSize}\n${show(r)}`);
    assert.ok(left > 0, 'gc evicts down to max_size, not everything');
    assertConsistent('after cache gc');

    // Within max_size already: nothing more to do.
    const again = await docxyCli(['cache', 'gc', '--config', small]);
    assert.equal(again.code, 0, show(again));
    assert.match(again.stdout, /removed 0 objects/, show(again));
    assert.equal(cachedBytes(), left);
  });
});

describe('docxy config, --version and serve', { concurrency: true }, () => {
  const badFile = (): string => {
    const file = join(filesDir.path, 'bad.yaml');
    writeFileSync(file, 'upstream: { url: ftp://x }\nlisten: nope\n');
    return file;
  };

  it('config check config.example.yaml exits 0 and says ok', async () => {
    const r = await docxyCli(['config', 'check', join(REPO_ROOT, 'config.example.yaml')]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /config\.example\.yaml: ok$/m, show(r));
  });

  it('config check of a bad file exits 1 and names upstream.url and listen', async () => {
    const r = await docxyCli(['config', 'check', badFile()]);
    assert.equal(r.code, 1, show(r));
    const out = r.stdout + r.stderr;
    assert.match(out, /upstream\.url: /, show(r));
    assert.match(out, /^\s*listen: /m, show(r));
    assert.doesNotMatch(out, /: ok$/m, show(r));
  });

  it('--version prints the package version', async () => {
    const pkg: unknown = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));
    const version = typeof pkg === 'object' && pkg !== null && 'version' in pkg ? pkg.version : undefined;
    assert.equal(typeof version, 'string');
    const r = await docxyCli(['--version']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout.trim(), version, show(r));
  });

  it('serve with a bad configuration exits non-zero with the key paths on stderr', async () => {
    const r = await docxyCli(['serve', '--config', badFile()]);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /upstream\.url: /, show(r));
    assert.match(r.stderr, /^\s*listen: /m, show(r));
  });
});
