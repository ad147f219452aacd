/**
 * Large benchmark blobs: generated once into a file (never held in memory) and pushed to the fake
 * hub with a streamed, Content-Length-exact monolithic upload. `pushBlob` in test/helpers/images.ts
 * takes a Buffer, which is fine for tests but not for a 1 GiB blob.
 *
 * The content is the same AES-256-CTR keystream as `deterministicBytes(seed, size)`: incompressible
 * and identical on every run, so the file in `BENCH_CACHE_DIR` is reused across runs.
 */
import { createCipheriv, createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pushToken, type PushTarget } from '../test/helpers/images.ts';

export const BENCH_CACHE_DIR = join(tmpdir(), 'docxy-bench-cache');
/** Bump when the recipe changes so an old file is never reused. */
const RECIPE = 'v1';
const CHUNK = 1 << 20;

export interface BlobFile {
  readonly file: string;
  readonly digest: string;
  readonly size: number;
}

function* keystream(seed: string, size: number): Generator<Buffer> {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK);
  for (let left = size; left > 0; left -= CHUNK) {
    yield cipher.update(left >= CHUNK ? zeros : zeros.subarray(0, left));
  }
}

function readMeta(metaFile: string, file: string, size: number): BlobFile | undefined {
  try {
    const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as {
      recipe?: unknown;
      digest?: unknown;
      size?: unknown;
    };
    if (meta.recipe !== RECIPE || meta.size !== size || typeof meta.digest !== 'string') return undefined;
    if (statSync(file).size !== size) return undefined;
    return { file, digest: meta.digest, size };
  } catch {
    return undefined;
  }
}

/** The blob file for `(seed, size)`, written on first use (hashing it on the way) and reused after. */
export async function deterministicBlobFile(seed: string, size: number): Promise<BlobFile> {
  mkdirSync(BENCH_CACHE_DIR, { recursive: true });
  const id = createHash('sha256').update(`${RECIPE}\n${seed}\n${size}`).digest('hex').slice(0, 16);
  const file = join(BENCH_CACHE_DIR, `blob-${id}.bin`);
  const metaFile = join(BENCH_CACHE_DIR, `blob-${id}.json`);
  const cached = readMeta(metaFile, file, size);
  if (cached !== undefined) return cached;

  const tmp = `${file}.${process.pid}.tmp`;
  const hash = createHash('sha256');
  try {
    const source = Readable.from(
      (function* hashed(): Generator<Buffer> {
        for (const chunk of keystream(seed, size)) {
          hash.update(chunk);
          yield chunk;
        }
      })(),
    );
    await pipeline(source, createWriteStream(tmp));
    renameSync(tmp, file);
  } finally {
    rmSync(tmp, { force: true });
  }
  const blob: BlobFile = { file, digest: `sha256:${hash.digest('hex')}`, size };
  writeFileSync(`${metaFile}.tmp`, JSON.stringify({ recipe: RECIPE, digest: blob.digest, size }));
  renameSync(`${metaFile}.tmp`, metaFile);
  return blob;
}

async function readAll(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Pushes a blob file to `repo`: `POST …/blobs/uploads/`, then one `PUT <location>&digest=…` whose
 * body streams from the file with an exact Content-Length. Checks the digest the registry computed.
 */
export async function pushBlobFile(
  target: PushTarget,
  repo: string,
  blob: BlobFile,
  signal: AbortSignal,
): Promise<void> {
  const what = `push ${blob.digest} (${blob.size} bytes) to ${repo}`;
  const token = await pushToken(target, repo);
  const start = await fetch(`${target.registryUrl}/v2/${repo}/blobs/uploads/`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    signal,
  });
  await start.body?.cancel();
  const location = start.headers.get('location');
  if (start.status !== 202 || location === null) throw new Error(`${what}: POST answered ${start.status}`);
  const url = new URL(location, target.registryUrl);
  url.searchParams.set('digest', blob.digest);

  const req = httpRequest(url, {
    method: 'PUT',
    signal,
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/octet-stream',
      'content-length': blob.size,
    },
  });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  await pipeline(createReadStream(blob.file), req);
  const res = await response;
  const body = await readAll(res);
  const digest = res.headers['docker-content-digest'];
  if (res.statusCode !== 201) throw new Error(`${what}: PUT answered ${res.statusCode ?? 0} ${body}`);
  if (digest !== blob.digest) throw new Error(`${what}: registry computed ${String(digest)}`);
}
