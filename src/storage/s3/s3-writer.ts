/**
 * One write to S3: ONE multipart upload to the final key, completed only by `commit()` (which the
 * cache calls after verifying size and digest) and aborted by `cancel()`, so nothing partial is
 * ever visible and nothing is renamed or copied. Parts are cut at a fixed size and at most
 * `queueSize` upload at once, so a 4 GiB blob holds only a few parts in memory. An object smaller
 * than one part never starts an upload: it is one PutObject at commit.
 *
 * S3 cannot read an unfinished upload, so every byte is also appended to a local spool file under
 * the data folder's tmp; partial readers (late joiners of a shared fill) read that. The spool is
 * unlinked at commit or cancel; readers that hold it open keep reading it (POSIX unlink semantics)
 * until they close.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { ObjectWriter, PartialReader } from '../driver.ts';
import { filePartialReader } from '../range-stream.ts';
import { toStorageError } from './s3-errors.ts';

export interface S3WriterOptions {
  readonly client: S3Client;
  readonly bucket: string;
  /** The full object key (prefix included). */
  readonly objectKey: string;
  /** Already encoded as S3 user metadata. */
  readonly metadata: Record<string, string>;
  /** Folder of the spool files. */
  readonly spoolDir: string;
  /** Bytes per part (S3 needs at least 5 MiB for every part but the last). */
  readonly partSize: number;
  /** Parts uploading at once, at most. */
  readonly queueSize: number;
  /** Called after a successful commit. */
  readonly onCommit: () => void;
}

async function writeFully(h: FileHandle, bufs: readonly Buffer[], position: number): Promise<void> {
  let pos = position;
  for (const b of bufs) {
    let off = 0;
    while (off < b.length) {
      const { bytesWritten } = await h.write(b, off, b.length - off, pos);
      off += bytesWritten;
      pos += bytesWritten;
    }
  }
}

export async function createS3Writer(o: S3WriterOptions): Promise<ObjectWriter> {
  await mkdir(o.spoolDir, { recursive: true });
  const spoolPath = join(o.spoolDir, randomUUID());
  const spool = await open(spoolPath, 'wx');
  let written = 0;
  /** Bytes not yet handed to a part (less than one part). */
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let uploadId: string | undefined;
  const parts: { PartNumber: number; ETag: string }[] = [];
  let nextPart = 1;
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let state: 'open' | 'committed' | 'cancelled' = 'open';
  let spoolClosed = false;

  const Bucket = o.bucket;
  const Key = o.objectKey;

  const closeSpool = async (): Promise<void> => {
    if (spoolClosed) return;
    spoolClosed = true;
    await spool.close().catch(() => undefined);
    await unlink(spoolPath).catch(() => undefined);
  };

  const startPart = (body: Buffer): void => {
    const PartNumber = nextPart++;
    const p = (async () => {
      uploadId ??= (
        await o.client.send(new CreateMultipartUploadCommand({ Bucket, Key, Metadata: o.metadata }))
      ).UploadId;
      const res = await o.client.send(
        new UploadPartCommand({ Bucket, Key, UploadId: uploadId, PartNumber, Body: body }),
      );
      if (res.ETag === undefined) throw new Error(`part ${PartNumber} of ${Key} has no ETag`);
      parts.push({ PartNumber, ETag: res.ETag });
    })().then(
      () => {
        inFlight.delete(p);
      },
      (err: unknown) => {
        inFlight.delete(p);
        failure ??= toStorageError('upload part', err);
      },
    );
    inFlight.add(p);
  };

  /** The first part creates the upload; later ones wait for its id (one upload per writer). */
  let first: Promise<void> | undefined;

  const throwIfFailed = (): void => {
    if (failure !== undefined) throw failure as Error;
  };

  const takePending = (): Buffer => {
    const [only] = pending;
    const b = pending.length === 1 && only !== undefined ? only : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return b;
  };

  const abort = async (): Promise<void> => {
    await Promise.allSettled([...inFlight]);
    if (uploadId === undefined) return;
    const id = uploadId;
    uploadId = undefined;
    await o.client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId: id }));
  };

  return {
    get written() {
      return written;
    },

    async write(chunk) {
      if (state !== 'open') throw new Error(`write after ${state}`);
      throwIfFailed();
      const bufs = Buffer.isBuffer(chunk) ? [chunk] : chunk;
      await writeFully(spool, bufs, written);
      for (const b of bufs) {
        if (b.length === 0) continue;
        // Copied: the caller may reuse its buffers once write resolves.
        pending.push(Buffer.from(b));
        pendingBytes += b.length;
        written += b.length;
      }
      while (pendingBytes >= o.partSize) {
        const all = takePending();
        const part = all.subarray(0, o.partSize);
        const rest = all.subarray(o.partSize);
        if (rest.length > 0) {
          pending = [rest];
          pendingBytes = rest.length;
        }
        if (first === undefined) {
          startPart(part);
          first = [...inFlight][0];
          await first;
        } else startPart(part);
        while (inFlight.size >= o.queueSize) await Promise.race(inFlight);
        throwIfFailed();
      }
    },

    async openPartialReader(): Promise<PartialReader> {
      return filePartialReader(await open(spoolPath, 'r'));
    },

    async commit() {
      if (state !== 'open') throw new Error(`commit after ${state}`);
      try {
        await Promise.all([...inFlight]);
        throwIfFailed();
        if (first === undefined) {
          // Under one part: a single PutObject, visible whole or not at all.
          const Body = takePending();
          await o.client.send(
            new PutObjectCommand({ Bucket, Key, Body, ContentLength: Body.length, Metadata: o.metadata }),
          );
        } else {
          if (pendingBytes > 0) startPart(takePending());
          await Promise.all([...inFlight]);
          throwIfFailed();
          parts.sort((a, b) => a.PartNumber - b.PartNumber);
          await o.client.send(
            new CompleteMultipartUploadCommand({
              Bucket,
              Key,
              UploadId: uploadId,
              MultipartUpload: { Parts: parts },
            }),
          );
          uploadId = undefined;
        }
        state = 'committed';
        o.onCommit();
      } catch (err) {
        throw toStorageError('commit', err);
      } finally {
        if (state === 'committed') await closeSpool();
      }
    },

    async cancel() {
      if (state === 'committed') return;
      state = 'cancelled';
      pending = [];
      pendingBytes = 0;
      await closeSpool();
      // Best effort: an upload left behind (store unreachable) is aborted by cleanupTemporary or
      // the bucket's AbortIncompleteMultipartUpload lifecycle rule.
      await abort().catch(() => undefined);
    },
  };
}
