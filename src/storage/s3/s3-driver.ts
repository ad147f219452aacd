/**
 * The S3 driver: committed objects are S3 objects under `<prefix><key>` in one bucket; writes are
 * multipart uploads completed only on commit (s3-writer.ts). Reads are (ranged) GETs; `open()`
 * reads through a window of `readAhead` bytes fetched by one ranged GET, so positional reads of
 * 64 KiB do not cost a request each. Metadata travels as one `x-amz-meta-docxy` header holding the
 * URI-encoded JSON, because S3 lowercases user-metadata names and Docxy's are camelCase.
 * Last-access times come from an AccessIndex (touch never rewrites an object), else LastModified.
 */
import { join } from 'node:path';
import { readdir, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type GetObjectCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { ObjectHandle, ObjectInfo, StorageDriver } from '../driver.ts';
import type { AccessIndex } from './access-index.ts';
import { createS3Writer } from './s3-writer.ts';
import { isInvalidRange, isNotFound, isPreconditionFailed, toStorageError } from './s3-errors.ts';

export interface S3DriverOptions {
  readonly client: S3Client;
  readonly bucket: string;
  /** Prepended to every key (e.g. `docxy/`); '' for the bucket's root. */
  readonly prefix: string;
  /** Local folder for write spools (under the data folder's tmp). */
  readonly spoolDir: string;
  readonly accessIndex: AccessIndex;
  /** Bytes per multipart part; default 8 MiB. */
  readonly partSize?: number;
  /** Parts uploading at once per write; default 2. */
  readonly queueSize?: number;
  /** Bytes one ranged GET of an open handle fetches; default 4 MiB. */
  readonly readAhead?: number;
  /**
   * cleanupTemporary aborts multipart uploads started at least this long ago (default 6 h): other
   * replicas sharing the bucket may be uploading right now.
   */
  readonly abandonedUploadAgeMs?: number;
}

const MiB = 1024 * 1024;
const metaHeader = 'docxy';
/** A key is touched at most this often, so hot manifests do not cost an index write per request. */
const touchIntervalMs = 30_000;

function encodeMetadata(m: Record<string, string> | undefined): Record<string, string> {
  if (m === undefined || Object.keys(m).length === 0) return {};
  return { [metaHeader]: encodeURIComponent(JSON.stringify(m)) };
}

function decodeMetadata(m: Record<string, string> | undefined): Record<string, string> {
  const raw = m?.[metaHeader];
  if (raw === undefined) return {};
  try {
    return JSON.parse(decodeURIComponent(raw)) as Record<string, string>;
  } catch {
    return {};
  }
}

/** Total size from a `Content-Range: bytes a-b/total` header. */
function totalOf(contentRange: string | undefined): number | undefined {
  const m = /\/(\d+)$/.exec(contentRange ?? '');
  return m === null ? undefined : Number(m[1]);
}

async function bodyBytes(res: GetObjectCommandOutput): Promise<Buffer> {
  if (res.Body === undefined) return Buffer.alloc(0);
  return Buffer.from(await res.Body.transformToByteArray());
}

export function createS3Driver(o: S3DriverOptions): StorageDriver {
  const { client, bucket: Bucket, prefix, accessIndex } = o;
  const partSize = Math.max(5 * MiB, o.partSize ?? 8 * MiB);
  const queueSize = Math.max(1, o.queueSize ?? 2);
  const readAhead = Math.max(64 * 1024, o.readAhead ?? 4 * MiB);
  const abandonedAge = o.abandonedUploadAgeMs ?? 6 * 3600_000;
  const touched = new Map<string, number>();
  let lastFlush = 0;
  const full = (key: string): string => `${prefix}${key}`;

  const lastAccess = (key: string, modified: Date | undefined): Date =>
    new Date(Math.max(accessIndex.get(key) ?? 0, modified?.getTime() ?? 0));

  /** A ranged GET; undefined when the object is absent. */
  async function getRange(
    key: string,
    start: number,
    end: number,
    ifMatch?: string,
  ): Promise<GetObjectCommandOutput | undefined> {
    try {
      return await client.send(
        new GetObjectCommand({
          Bucket,
          Key: full(key),
          Range: `bytes=${start}-${end - 1}`,
          IfMatch: ifMatch,
        }),
      );
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw toStorageError('get', err);
    }
  }

  async function head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const r = await client.send(new HeadObjectCommand({ Bucket, Key: full(key) }));
      return {
        key,
        size: r.ContentLength ?? 0,
        lastAccess: lastAccess(key, r.LastModified),
        metadata: decodeMetadata(r.Metadata),
      };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw toStorageError('stat', err);
    }
  }

  return {
    name: 's3',

    createWriter(key, opts) {
      return createS3Writer({
        client,
        bucket: Bucket,
        objectKey: full(key),
        metadata: encodeMetadata(opts?.metadata),
        spoolDir: o.spoolDir,
        partSize,
        queueSize,
        onCommit: () => {
          accessIndex.set(key, Date.now());
          touched.set(key, Date.now());
        },
      });
    },

    async get(key, range) {
      if (range !== undefined && range.end <= range.start) {
        return (await head(key)) === undefined ? undefined : Readable.from([]);
      }
      let res: GetObjectCommandOutput;
      try {
        res = await client.send(
          new GetObjectCommand({
            Bucket,
            Key: full(key),
            Range: range === undefined ? undefined : `bytes=${range.start}-${range.end - 1}`,
          }),
        );
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw toStorageError('get', err);
      }
      const body = res.Body;
      if (body === undefined) return Readable.from([]);
      // In Node the body is the HTTP response itself, a Readable of Buffers.
      return body as unknown as Readable;
    },

    async open(key): Promise<ObjectHandle | undefined> {
      // The first window, with size, metadata and ETag, in one request.
      let res: GetObjectCommandOutput | undefined;
      try {
        res = await getRange(key, 0, readAhead);
      } catch (err) {
        if (!isInvalidRange((err as { cause?: unknown }).cause ?? err)) throw err;
        // Any range of an empty object is 416.
        const info = await head(key);
        if (info === undefined) return undefined;
        return {
          size: 0,
          metadata: info.metadata,
          readInto: () => Promise.resolve(0),
          close: () => Promise.resolve(),
        };
      }
      if (res === undefined) return undefined;
      const etag = res.ETag;
      const size = totalOf(res.ContentRange) ?? res.ContentLength ?? 0;
      const metadata = decodeMetadata(res.Metadata);
      let window = { start: 0, bytes: await bodyBytes(res) };
      let loading: Promise<{ start: number; bytes: Buffer }> | undefined;
      let closed = false;
      const load = async (start: number): Promise<{ start: number; bytes: Buffer }> => {
        let r: GetObjectCommandOutput | undefined;
        try {
          // If-Match: a replaced object fails loudly instead of mixing old and new bytes.
          r = await getRange(key, start, Math.min(size, start + readAhead), etag);
        } catch (err) {
          if (isPreconditionFailed((err as { cause?: unknown }).cause ?? err)) {
            throw new Error(`${key} changed while open`, { cause: err });
          }
          throw err;
        }
        if (r === undefined)
          throw new Error(`${key} was deleted while open beyond its first ${readAhead} bytes`);
        return { start, bytes: await bodyBytes(r) };
      };
      return {
        size,
        metadata,
        async readInto(buf, offset, length, position) {
          if (closed) throw new Error('handle closed');
          if (position >= size || length <= 0) return 0;
          let w = window;
          if (position < w.start || position >= w.start + w.bytes.length) {
            // Concurrent readers at the same place share one fetch.
            const l = loading ?? load(position);
            loading = l;
            try {
              w = await l;
            } finally {
              if (loading === l) loading = undefined;
            }
            if (position < w.start || position >= w.start + w.bytes.length) w = await load(position);
            window = w;
          }
          const from = position - w.start;
          const n = Math.min(length, w.bytes.length - from);
          w.bytes.copy(buf, offset, from, from + n);
          return n;
        },
        close() {
          closed = true;
          window = { start: 0, bytes: Buffer.alloc(0) };
          return Promise.resolve();
        },
      };
    },

    async getBytes(key) {
      try {
        return await bodyBytes(await client.send(new GetObjectCommand({ Bucket, Key: full(key) })));
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw toStorageError('get', err);
      }
    },

    stat: head,

    async delete(key) {
      try {
        await client.send(new DeleteObjectCommand({ Bucket, Key: full(key) }));
      } catch (err) {
        if (!isNotFound(err)) throw toStorageError('delete', err);
      }
      accessIndex.delete(key);
      touched.delete(key);
    },

    list(listPrefix) {
      return (async function* () {
        let ContinuationToken: string | undefined;
        do {
          let page;
          try {
            page = await client.send(
              new ListObjectsV2Command({ Bucket, Prefix: full(listPrefix), ContinuationToken }),
            );
          } catch (err) {
            throw toStorageError('list', err);
          }
          const entries = (page.Contents ?? []).filter(
            (c): c is typeof c & { Key: string } => c.Key?.startsWith(prefix) === true,
          );
          // Other replicas' reads of this page's objects (shared index), in one round trip.
          await accessIndex.load?.(entries.map((c) => c.Key.slice(prefix.length)));
          for (const c of entries) {
            const key = c.Key.slice(prefix.length);
            yield { key, size: c.Size ?? 0, lastAccess: lastAccess(key, c.LastModified) };
          }
          ContinuationToken = page.IsTruncated === true ? page.NextContinuationToken : undefined;
        } while (ContinuationToken !== undefined);
      })();
    },

    async touch(key) {
      const now = Date.now();
      const last = touched.get(key);
      if (last !== undefined && now - last < touchIntervalMs) return;
      touched.set(key, now);
      accessIndex.set(key, now);
      if (now - lastFlush < touchIntervalMs) return;
      lastFlush = now;
      await accessIndex.flush().catch(() => undefined);
    },

    async cleanupTemporary() {
      let removed = 0;
      // Local spools of writes that were in progress when the process died.
      try {
        const names = await readdir(o.spoolDir);
        await Promise.all(names.map((n) => rm(join(o.spoolDir, n), { force: true })));
        removed += names.length;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      const cutoff = Date.now() - abandonedAge;
      let KeyMarker: string | undefined;
      let UploadIdMarker: string | undefined;
      try {
        for (;;) {
          const page = await client.send(
            new ListMultipartUploadsCommand({ Bucket, Prefix: prefix, KeyMarker, UploadIdMarker }),
          );
          for (const u of page.Uploads ?? []) {
            if (u.Key === undefined || u.UploadId === undefined) continue;
            if ((u.Initiated?.getTime() ?? 0) > cutoff) continue;
            await client.send(new AbortMultipartUploadCommand({ Bucket, Key: u.Key, UploadId: u.UploadId }));
            removed++;
          }
          if (page.IsTruncated !== true) break;
          KeyMarker = page.NextKeyMarker;
          UploadIdMarker = page.NextUploadIdMarker;
        }
      } catch (err) {
        throw toStorageError('cleanup', err);
      }
      return removed;
    },
  };
}
