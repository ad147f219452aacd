/**
 * Deterministic test images, built in code, and the push client that seeds them into a registry.
 *
 * Every byte is a function of the image's definition: tar entries have fixed owners, modes and
 * mtimes; gzip runs with a fixed level (Node's gzip header carries mtime 0); "random" payloads are
 * an AES-256-CTR keystream from a key derived from a fixed seed. Digests are therefore identical
 * across runs on the same Node version. They are computed, never hard-coded, so a different
 * bundled zlib would change them consistently rather than break the tests.
 *
 * The small images are built when this module is imported (a few milliseconds) and exported as
 * constants, so a test can write `TINY.digest` or `MULTI.children[1].configDigest`. The 200 MB
 * `big` image is built on demand by `bigImage()` and cached on disk across runs.
 */
import { createCipheriv, createHash, type Hash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, gzipSync } from 'node:zlib';
import { pack as tarPack, type Header, type Pack } from 'tar-stream';

/** What `pack.entry` takes: any header fields, `name` required. */
type TarHeader = Partial<Header> & Pick<Header, 'name'>;

// ---------------------------------------------------------------------------------------------
// Media types

export const MediaType = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

/** Every manifest type, as an `Accept` header value a modern client would send. */
export const ACCEPT_ALL_MANIFESTS = [
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.ociIndex,
].join(', ');

export type ImageFormat = 'docker' | 'oci';

// ---------------------------------------------------------------------------------------------
// Descriptor types (what tests assert against)

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface BlobRef {
  digest: string;
  size: number;
  mediaType: string;
}

export interface LayerDescriptor extends BlobRef {
  /** sha256 of the uncompressed tar: the entry in the config's `rootfs.diff_ids`. */
  diffId: string;
}

/** One platform manifest of a manifest list / OCI index. */
export interface ChildDescriptor {
  platform: Platform;
  mediaType: string;
  /** Digest of the platform manifest. */
  digest: string;
  size: number;
  /** The platform image's Docker image ID (classic image store). */
  configDigest: string;
  layers: LayerDescriptor[];
}

export interface ImageDescriptor {
  /** Repository name in the registry, e.g. `library/tiny`. */
  repo: string;
  tag: string;
  /** Media type of the tagged manifest (a list/index for multi-arch images). */
  mediaType: string;
  /** Digest of the tagged manifest (`Docker-Content-Digest`, `RepoDigests`). */
  digest: string;
  /** Byte size of the tagged manifest. */
  size: number;
  /**
   * sha256 of the image config, i.e. the Docker image ID. For a multi-arch image: the linux/amd64
   * child's (what a classic-store `docker pull` on amd64 reports), as are `layers`.
   */
  configDigest: string;
  layers: LayerDescriptor[];
  /** Platform manifests, for manifest lists and OCI indexes. */
  children?: ChildDescriptor[];
}

/** A blob's content: in memory, or in a file (large layers are never held in memory). */
export type BlobContent = BlobRef &
  ({ bytes: Buffer; file?: undefined } | { file: string; bytes?: undefined });

/** A manifest as pushed: exact bytes (the digest is of these bytes). */
export interface ManifestContent {
  /** The reference it is pushed under: its digest for children, the tag for the top manifest. */
  reference: string;
  mediaType: string;
  digest: string;
  bytes: Buffer;
}

/** A test image: its descriptor plus everything needed to push it. */
export interface TestImage extends ImageDescriptor {
  /** Every blob the image references (configs and layers of all platforms), no duplicates. */
  blobs: BlobContent[];
  /** In push order: platform manifests by digest first, then the tagged manifest. */
  manifests: ManifestContent[];
}

// ---------------------------------------------------------------------------------------------
// Deterministic building blocks

/** Fixed timestamp for tar entries and image metadata. */
const CREATED = '2024-01-01T00:00:00Z';
const EPOCH = new Date(CREATED);
/** Fixed gzip level: the same input gives the same bytes on every run. */
const GZIP_LEVEL = 6;
/** Big layers use a fast level: their payload is incompressible anyway. */
const BIG_GZIP_LEVEL = 1;

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** `n` incompressible, reproducible bytes: AES-256-CTR keystream with a key derived from `seed`. */
export function deterministicBytes(seed: string, n: number): Buffer {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(n)), cipher.final()]);
}

/** The same keystream as `deterministicBytes`, produced in chunks so it never sits in memory. */
function* deterministicChunks(seed: string, n: number, chunkSize = 1 << 20): Generator<Buffer> {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  const zeros = Buffer.alloc(chunkSize);
  for (let left = n; left > 0; left -= chunkSize) {
    yield cipher.update(left >= chunkSize ? zeros : zeros.subarray(0, left));
  }
}

export interface TarFile {
  /** Path inside the layer; a trailing `/` makes a directory. */
  name: string;
  content?: Buffer | string;
}

/** Header fields shared by every entry: root-owned, fixed mtime, so the tar is reproducible. */
function tarHeader(name: string, size: number): TarHeader {
  const dir = name.endsWith('/');
  return {
    name,
    size: dir ? 0 : size,
    type: dir ? 'directory' : 'file',
    mode: dir ? 0o755 : 0o644,
    mtime: EPOCH,
    uid: 0,
    gid: 0,
    uname: 'root',
    gname: 'root',
  };
}

/** Adds small, in-memory entries to a tar stream (directories carry no content). */
function addEntries(pack: Pack, files: readonly TarFile[]): void {
  for (const f of files) {
    const content = Buffer.from(f.content ?? '');
    if (f.name.endsWith('/')) pack.entry(tarHeader(f.name, 0));
    else pack.entry(tarHeader(f.name, content.length), content);
  }
}

/** Builds a (small) tar in memory. */
export async function buildTar(files: readonly TarFile[]): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    // tar-stream is a streamx stream: its chunks are Buffers, typed as unknown.
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  addEntries(pack, files);
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A gzipped layer built in memory from its files. */
export async function buildLayer(
  files: readonly TarFile[],
  format: ImageFormat = 'docker',
): Promise<BlobContent & LayerDescriptor> {
  const tar = await buildTar(files);
  const gz = gzipSync(tar, { level: GZIP_LEVEL });
  return {
    mediaType: format === 'oci' ? MediaType.ociLayer : MediaType.dockerLayer,
    digest: sha256(gz),
    size: gz.length,
    diffId: sha256(tar),
    bytes: gz,
  };
}

/** Serialises a manifest or config. Three-space indentation is what `docker push` produces. */
function canonicalJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value, null, 3));
}

function configBlob(
  format: ImageFormat,
  platform: Platform,
  diffIds: readonly string[],
  label: string,
): BlobContent {
  const config = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant === undefined ? {} : { variant: platform.variant }),
    created: CREATED,
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['/bin/sh'],
      WorkingDir: '/',
      Labels: { 'org.opencontainers.image.title': label },
    },
    history: diffIds.map(() => ({ created: CREATED, created_by: `docxy test image ${label}` })),
    rootfs: { type: 'layers', diff_ids: diffIds },
  };
  const bytes = canonicalJson(config);
  return {
    mediaType: format === 'oci' ? MediaType.ociConfig : MediaType.dockerConfig,
    digest: sha256(bytes),
    size: bytes.length,
    bytes,
  };
}

function ref(b: BlobRef): BlobRef {
  return { mediaType: b.mediaType, digest: b.digest, size: b.size };
}

/** A platform image: config + layers + its manifest. */
interface PlatformImage {
  platform: Platform;
  config: BlobContent;
  layers: (BlobContent & LayerDescriptor)[];
  manifest: ManifestContent;
}

function platformImage(
  format: ImageFormat,
  platform: Platform,
  layers: (BlobContent & LayerDescriptor)[],
  label: string,
  reference: string | undefined,
): PlatformImage {
  const config = configBlob(
    format,
    platform,
    layers.map((l) => l.diffId),
    label,
  );
  const mediaType = format === 'oci' ? MediaType.ociManifest : MediaType.dockerManifest;
  const bytes = canonicalJson({
    schemaVersion: 2,
    mediaType,
    config: ref(config),
    layers: layers.map(ref),
  });
  const digest = sha256(bytes);
  return { platform, config, layers, manifest: { reference: reference ?? digest, mediaType, digest, bytes } };
}

function layerDescriptors(layers: readonly LayerDescriptor[]): LayerDescriptor[] {
  return layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, diffId: l.diffId }));
}

function uniqueBlobs(blobs: readonly BlobContent[]): BlobContent[] {
  const seen = new Map<string, BlobContent>();
  for (const b of blobs) if (!seen.has(b.digest)) seen.set(b.digest, b);
  return [...seen.values()];
}

function singleArchImage(repo: string, tag: string, p: PlatformImage): TestImage {
  return {
    repo,
    tag,
    mediaType: p.manifest.mediaType,
    digest: p.manifest.digest,
    size: p.manifest.bytes.length,
    configDigest: p.config.digest,
    layers: layerDescriptors(p.layers),
    blobs: uniqueBlobs([p.config, ...p.layers]),
    manifests: [p.manifest],
  };
}

function multiArchImage(
  repo: string,
  tag: string,
  format: ImageFormat,
  children: readonly PlatformImage[],
): TestImage {
  const mediaType = format === 'oci' ? MediaType.ociIndex : MediaType.dockerManifestList;
  const bytes = canonicalJson({
    schemaVersion: 2,
    mediaType,
    manifests: children.map((c) => ({
      mediaType: c.manifest.mediaType,
      digest: c.manifest.digest,
      size: c.manifest.bytes.length,
      platform: c.platform,
    })),
  });
  const digest = sha256(bytes);
  const amd64 = children.find((c) => c.platform.architecture === 'amd64') ?? children[0];
  if (amd64 === undefined) throw new Error('a multi-arch image needs at least one platform');
  return {
    repo,
    tag,
    mediaType,
    digest,
    size: bytes.length,
    configDigest: amd64.config.digest,
    layers: layerDescriptors(amd64.layers),
    children: children.map((c) => ({
      platform: c.platform,
      mediaType: c.manifest.mediaType,
      digest: c.manifest.digest,
      size: c.manifest.bytes.length,
      configDigest: c.config.digest,
      layers: layerDescriptors(c.layers),
    })),
    blobs: uniqueBlobs(children.flatMap((c) => [c.config, ...c.layers])),
    manifests: [...children.map((c) => c.manifest), { reference: tag, mediaType, digest, bytes }],
  };
}

const AMD64: Platform = { os: 'linux', architecture: 'amd64' };
const ARM64: Platform = { os: 'linux', architecture: 'arm64', variant: 'v8' };

/** Files of a small layer; the image's identity is written into it so every image's layer differs. */
function smallLayerFiles(repo: string, tag: string, platform: Platform, extra?: TarFile): TarFile[] {
  const id = `${repo}:${tag} ${platform.os}/${platform.architecture}${platform.variant === undefined ? '' : `/${platform.variant}`}`;
  return [
    { name: 'etc/' },
    { name: 'etc/docxy-test-image', content: `${id}\n` },
    { name: 'hello.txt', content: `Hello from the docxy test image ${id}.\n` },
    ...(extra === undefined ? [] : [extra]),
  ];
}

export interface BuildImageOptions {
  repo: string;
  tag: string;
  /** Docker schema2 (default) or OCI media types. */
  format?: ImageFormat;
  /**
   * Size of an incompressible payload file added to the layer (the compressed layer is then a
   * little larger than this). Held in memory: fine for tens of MB (the 64 MB blob test).
   */
  layerSize?: number;
  /** Changes every byte of the image; push the same repo:tag with another seed to move the tag. */
  seed?: string;
  platform?: Platform;
}

/** Builds an ad-hoc single-arch image (tag moves, large blobs, extra repositories). */
export async function buildImage(opts: BuildImageOptions): Promise<TestImage> {
  const format = opts.format ?? 'docker';
  const platform = opts.platform ?? AMD64;
  const seed = opts.seed ?? '';
  const payload: TarFile | undefined =
    opts.layerSize === undefined || opts.layerSize <= 0
      ? undefined
      : {
          name: 'payload.bin',
          content: deterministicBytes(`${opts.repo}:${opts.tag}:${seed}`, opts.layerSize),
        };
  const files = smallLayerFiles(opts.repo, opts.tag, platform, payload);
  // The seed goes into a file too, so even a payload-less image changes with it.
  files.push({ name: 'etc/docxy-seed', content: `${seed}\n` });
  const layer = await buildLayer(files, format);
  const label = `${opts.repo}:${opts.tag}${seed === '' ? '' : ` (${seed})`}`;
  return singleArchImage(opts.repo, opts.tag, platformImage(format, platform, [layer], label, opts.tag));
}

async function buildMultiArch(repo: string, tag: string, format: ImageFormat): Promise<TestImage> {
  const children: PlatformImage[] = [];
  for (const platform of [AMD64, ARM64]) {
    const layer = await buildLayer(smallLayerFiles(repo, tag, platform), format);
    children.push(platformImage(format, platform, [layer], `${repo}:${tag}`, undefined));
  }
  return multiArchImage(repo, tag, format, children);
}

// ---------------------------------------------------------------------------------------------
// The standard images

/** library/tiny:1 — Docker schema2, linux/amd64, one small layer. */
export const TINY: TestImage = await buildImage({ repo: 'library/tiny', tag: '1' });
/** library/multi:1 — Docker manifest list, linux/amd64 + linux/arm64/v8. */
export const MULTI: TestImage = await buildMultiArch('library/multi', '1', 'docker');
/** library/ociindex:1 — OCI index, linux/amd64 + linux/arm64/v8, OCI manifests and media types. */
export const OCI_INDEX: TestImage = await buildMultiArch('library/ociindex', '1', 'oci');
/** library/ocimanifest:1 — a single OCI manifest. */
export const OCI_MANIFEST: TestImage = await buildImage({
  repo: 'library/ocimanifest',
  tag: '1',
  format: 'oci',
});
/** someuser/app:2 — a non-`library/` namespace, Docker schema2. */
export const SOMEUSER_APP: TestImage = await buildImage({ repo: 'someuser/app', tag: '2' });

const SMALL_IMAGES = {
  tiny: TINY,
  multi: MULTI,
  ociindex: OCI_INDEX,
  ocimanifest: OCI_MANIFEST,
  app: SOMEUSER_APP,
};

export type ImageName = keyof typeof SMALL_IMAGES | 'big';
/** What `seedImages` pushes by default: everything except `big`. */
export const DEFAULT_IMAGES: readonly ImageName[] = ['tiny', 'multi', 'ociindex', 'ocimanifest', 'app'];
export const ALL_IMAGES: readonly ImageName[] = [...DEFAULT_IMAGES, 'big'];

// ---------------------------------------------------------------------------------------------
// library/big:1 — a >= 200 MB layer, generated once into a cache file

/** Bump when the big image's recipe changes, so a stale cache file is never reused. */
const BIG_VERSION = 'v1';
/** Payload bytes; incompressible, so the compressed layer is a little larger. */
export const BIG_PAYLOAD_SIZE = 200 * 1024 * 1024;
export const BIG_CACHE_DIR = join(tmpdir(), 'docxy-testimages-cache');

interface BigLayerMeta {
  version: string;
  digest: string;
  diffId: string;
  size: number;
}

/** A pass-through stream that hashes what flows through it. */
class HashTap extends Transform {
  readonly hash: Hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

/** Writes the big layer (tar -> gzip -> file), hashing both sides on the way; never buffers it. */
async function writeBigLayer(file: string): Promise<BigLayerMeta> {
  const pack = tarPack();
  const feed = async (): Promise<void> => {
    addEntries(pack, smallLayerFiles('library/big', '1', AMD64));
    await new Promise<void>((resolve, reject) => {
      // The callback fires once the whole entry has gone into the tar stream.
      const entry = pack.entry(tarHeader('payload.bin', BIG_PAYLOAD_SIZE), (err) => {
        if (err) reject(err);
        else resolve();
      });
      const write = async (): Promise<void> => {
        // Respect backpressure: the keystream is made only as fast as gzip and the disk take it.
        for (const chunk of deterministicChunks(`library/big:1:${BIG_VERSION}`, BIG_PAYLOAD_SIZE)) {
          if (!entry.write(chunk)) {
            await new Promise<void>((drained) => {
              entry.once('drain', () => {
                drained();
              });
            });
          }
        }
        // streamx's typings want an argument; null adds no data, it only ends the entry.
        entry.end(null);
      };
      write().catch(reject);
    });
    pack.finalize();
  };
  const tarTap = new HashTap();
  const gzTap = new HashTap();
  await Promise.all([
    feed(),
    pipeline(
      Readable.from(pack),
      tarTap,
      createGzip({ level: BIG_GZIP_LEVEL }),
      gzTap,
      createWriteStream(file),
    ),
  ]);
  return {
    version: BIG_VERSION,
    digest: `sha256:${gzTap.hash.digest('hex')}`,
    diffId: `sha256:${tarTap.hash.digest('hex')}`,
    size: gzTap.bytes,
  };
}

function readBigMeta(metaFile: string, layerFile: string): BigLayerMeta | undefined {
  if (!existsSync(metaFile) || !existsSync(layerFile)) return undefined;
  try {
    const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as Partial<BigLayerMeta>;
    if (meta.version !== BIG_VERSION || typeof meta.digest !== 'string' || typeof meta.diffId !== 'string')
      return undefined;
    if (typeof meta.size !== 'number') return undefined;
    return { version: meta.version, digest: meta.digest, diffId: meta.diffId, size: meta.size };
  } catch {
    return undefined;
  }
}

let bigImagePromise: Promise<TestImage> | undefined;

/**
 * library/big:1 — Docker schema2 whose single layer is > 200 MB compressed. The layer lives in
 * `BIG_CACHE_DIR`, keyed by `BIG_VERSION`; the first call writes it (a few seconds), later calls
 * and later runs reuse it. The meta file is written last, and both are renamed into place, so an
 * interrupted build is never mistaken for a finished one.
 */
export function bigImage(): Promise<TestImage> {
  bigImagePromise ??= (async () => {
    mkdirSync(BIG_CACHE_DIR, { recursive: true });
    const layerFile = join(BIG_CACHE_DIR, `big-layer-${BIG_VERSION}.tar.gz`);
    const metaFile = join(BIG_CACHE_DIR, `big-layer-${BIG_VERSION}.json`);
    let meta = readBigMeta(metaFile, layerFile);
    if (meta === undefined) {
      const tmpLayer = `${layerFile}.${process.pid}.tmp`;
      try {
        meta = await writeBigLayer(tmpLayer);
        renameSync(tmpLayer, layerFile);
      } finally {
        rmSync(tmpLayer, { force: true });
      }
      const tmpMeta = `${metaFile}.${process.pid}.tmp`;
      writeFileAtomic(tmpMeta, metaFile, JSON.stringify(meta));
    }
    const layer: BlobContent & LayerDescriptor = {
      mediaType: MediaType.dockerLayer,
      digest: meta.digest,
      size: meta.size,
      diffId: meta.diffId,
      file: layerFile,
    };
    return singleArchImage('library/big', '1', platformImage('docker', AMD64, [layer], 'library/big:1', '1'));
  })();
  // A failed build must not poison later calls.
  bigImagePromise.catch(() => {
    bigImagePromise = undefined;
  });
  return bigImagePromise;
}

/** Writes a small file via a temporary name, so readers see either nothing or all of it. */
function writeFileAtomic(tmp: string, dest: string, text: string): void {
  writeFileSync(tmp, text);
  renameSync(tmp, dest);
}

// ---------------------------------------------------------------------------------------------
// Pushing (plain registry HTTP API; token auth for the hub, Basic or none for plain registries)

/** What the push client needs from a registry; a `FakeHub` is one. */
export interface PushTarget {
  readonly registryUrl: string;
  readonly realm: string;
  readonly service: string;
  readonly pushUser: { readonly username: string; readonly password: string };
}

/**
 * The `Authorization` header value every push request carries (`Bearer …`, `Basic …`), or
 * undefined for a registry that takes anonymous pushes.
 */
export type PushAuthorization = string | undefined;

function authHeader(authorization: PushAuthorization): Record<string, string> {
  return authorization === undefined ? {} : { authorization };
}

/** `Basic base64(user:password)`, for registries with htpasswd auth. */
export function basicAuthorization(user: { readonly username: string; readonly password: string }): string {
  return `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`;
}

/** Fetches a `pull,push` token for `repo` from the realm, authenticating as the push user. */
export async function pushToken(target: PushTarget, repo: string): Promise<string> {
  const url = new URL(target.realm);
  url.searchParams.set('service', target.service);
  url.searchParams.set('scope', `repository:${repo}:pull,push`);
  const res = await fetch(url, { headers: { authorization: basicAuthorization(target.pushUser) } });
  await expectStatus(res, 200, `push token for ${repo}`);
  const body = (await res.json()) as { token?: unknown };
  if (typeof body.token !== 'string') throw new Error(`push token for ${repo}: no token in the answer`);
  return body.token;
}

async function expectStatus(res: Response, expected: number, what: string): Promise<void> {
  if (res.status === expected) return;
  const text = await res.text().catch(() => '');
  throw new Error(`${what}: HTTP ${res.status} (expected ${expected}) ${text}`);
}

/**
 * Whether the registry already has the blob in `repo`. With the CDN redirect on, Distribution
 * answers an existing blob's HEAD with a 307 too, hence `redirect: 'manual'`.
 */
async function blobExists(
  registryUrl: string,
  repo: string,
  authorization: PushAuthorization,
  digest: string,
): Promise<boolean> {
  const res = await fetch(`${registryUrl}/v2/${repo}/blobs/${digest}`, {
    method: 'HEAD',
    redirect: 'manual',
    headers: authHeader(authorization),
  });
  await res.body?.cancel();
  return res.status === 200 || res.status === 307;
}

/** PUTs a file with an exact Content-Length, streaming it (fetch would send it chunked). */
async function putFile(
  url: URL,
  authorization: PushAuthorization,
  file: string,
  size: number,
): Promise<{ status: number; digest: string | undefined; body: string }> {
  const req = httpRequest(url, {
    method: 'PUT',
    headers: {
      ...authHeader(authorization),
      'content-type': 'application/octet-stream',
      'content-length': size,
    },
  });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  await pipeline(createReadStream(file), req);
  const res = await response;
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  const digest = res.headers['docker-content-digest'];
  return {
    status: res.statusCode ?? 0,
    digest: typeof digest === 'string' ? digest : undefined,
    body: Buffer.concat(chunks).toString('utf8'),
  };
}

/** Monolithic upload: `POST …/blobs/uploads/`, then one `PUT <location>&digest=…` with the content. */
async function uploadBlob(
  registryUrl: string,
  repo: string,
  authorization: PushAuthorization,
  blob: BlobContent,
): Promise<void> {
  const what = `upload ${blob.digest} to ${repo}`;
  const start = await fetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, {
    method: 'POST',
    headers: authHeader(authorization),
  });
  await expectStatus(start, 202, what);
  await start.body?.cancel();
  const location = start.headers.get('location');
  if (location === null) throw new Error(`${what}: no Location on 202`);
  // Location may be absolute or relative; it already carries the signed `_state` query.
  const url = new URL(location, registryUrl);
  url.searchParams.set('digest', blob.digest);

  let digest: string | null | undefined;
  if (blob.bytes !== undefined) {
    const res = await fetch(url, {
      method: 'PUT',
      headers: { ...authHeader(authorization), 'content-type': 'application/octet-stream' },
      body: blob.bytes,
    });
    await expectStatus(res, 201, what);
    await res.body?.cancel();
    digest = res.headers.get('docker-content-digest');
  } else {
    const res = await putFile(url, authorization, blob.file, blob.size);
    if (res.status !== 201) throw new Error(`${what}: HTTP ${res.status} (expected 201) ${res.body}`);
    digest = res.digest;
  }
  if (digest !== blob.digest) throw new Error(`${what}: registry says digest ${String(digest)}`);
}

/** Pushes raw bytes as a blob of `repo`; returns its reference. */
export async function pushBlob(
  target: PushTarget,
  repo: string,
  bytes: Buffer,
  mediaType = 'application/octet-stream',
): Promise<BlobRef> {
  const blob: BlobContent = { mediaType, digest: sha256(bytes), size: bytes.length, bytes };
  await uploadBlob(target.registryUrl, repo, `Bearer ${await pushToken(target, repo)}`, blob);
  return ref(blob);
}

/** PUTs a manifest under its reference with its media type; checks the digest the registry computed. */
async function putManifest(
  registryUrl: string,
  repo: string,
  manifest: ManifestContent,
  authorization: PushAuthorization,
): Promise<void> {
  const res = await fetch(`${registryUrl}/v2/${repo}/manifests/${manifest.reference}`, {
    method: 'PUT',
    headers: { ...authHeader(authorization), 'content-type': manifest.mediaType },
    body: manifest.bytes,
  });
  const what = `push manifest ${repo}:${manifest.reference}`;
  await expectStatus(res, 201, what);
  await res.body?.cancel();
  const digest = res.headers.get('docker-content-digest');
  if (digest !== manifest.digest)
    throw new Error(`${what}: registry says digest ${String(digest)}, expected ${manifest.digest}`);
}

/** PUTs a manifest under its reference with its media type; checks the digest the registry computed. */
export async function pushManifest(
  target: PushTarget,
  repo: string,
  manifest: ManifestContent,
  token?: string,
): Promise<void> {
  const bearer = token ?? (await pushToken(target, repo));
  await putManifest(target.registryUrl, repo, manifest, `Bearer ${bearer}`);
}

/** The descriptor part of a test image (without its content). */
export function descriptorOf(image: TestImage): ImageDescriptor {
  const { repo, tag, mediaType, digest, size, configDigest, layers, children } = image;
  // A deep copy, so a test that mutates what it got back cannot corrupt the shared constants.
  return structuredClone({
    repo,
    tag,
    mediaType,
    digest,
    size,
    configDigest,
    layers,
    ...(children === undefined ? {} : { children }),
  });
}

/**
 * Pushes an image to any registry, every request carrying `authorization` (or none): blobs, then
 * platform manifests by digest, then the tagged manifest (Distribution checks that everything a
 * manifest references already exists). Blobs in files are skipped when the registry already has
 * them, so re-seeding `big` is cheap.
 */
export async function pushImageWith(
  registryUrl: string,
  authorization: PushAuthorization,
  image: TestImage,
): Promise<ImageDescriptor> {
  for (const blob of image.blobs) {
    if (blob.file !== undefined && (await blobExists(registryUrl, image.repo, authorization, blob.digest)))
      continue;
    await uploadBlob(registryUrl, image.repo, authorization, blob);
  }
  for (const manifest of image.manifests) await putManifest(registryUrl, image.repo, manifest, authorization);
  return descriptorOf(image);
}

/** Pushes an image to a token-auth registry (the fake hub) as its push user. */
export async function pushImage(target: PushTarget, image: TestImage): Promise<ImageDescriptor> {
  const token = await pushToken(target, image.repo);
  return pushImageWith(target.registryUrl, `Bearer ${token}`, image);
}

export type DefaultImageName = Exclude<ImageName, 'big'>;

/** Looks up a standard image by name (`big` is built or read from the cache). */
export async function testImage(name: ImageName): Promise<TestImage> {
  return name === 'big' ? bigImage() : SMALL_IMAGES[name];
}

/**
 * Pushes the standard images to the hub. Without `which`: everything except `big` (which takes
 * seconds to build the first time and to upload). Returns their descriptors by name.
 */
export async function seedImages(target: PushTarget): Promise<Record<DefaultImageName, ImageDescriptor>>;
export async function seedImages<N extends ImageName>(
  target: PushTarget,
  which: readonly N[],
): Promise<Record<N, ImageDescriptor>>;
export async function seedImages(
  target: PushTarget,
  which: readonly ImageName[] = DEFAULT_IMAGES,
): Promise<Partial<Record<ImageName, ImageDescriptor>>> {
  const out: Partial<Record<ImageName, ImageDescriptor>> = {};
  for (const name of which) out[name] = await pushImage(target, await testImage(name));
  return out;
}
