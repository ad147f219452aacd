/** Streams over byte ranges of an open file, by positional reads (safe on a shared handle). */
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { PartialReader, PositionalReader } from './driver.ts';

/** Reads of one chunk; large enough for throughput, small enough to keep memory flat. */
export const readChunk = 1024 * 1024;
/**
 * Chunks of a partial reader's stream (`read()`), which may run many at once on one in-flight
 * object; smaller than whole-object reads to keep that flat. (Docxy's own followers read with
 * `readInto` into pooled buffers instead.)
 */
export const partialReadChunk = 256 * 1024;

/** A Readable over [start, end) of an open file, by positional reads (safe on a shared handle). */
export function rangeStream(
  handle: FileHandle,
  start: number,
  end: number,
  onEnd?: () => void,
  chunk = readChunk,
  readAhead = readChunk,
): Readable {
  let pos = start;
  return new Readable({
    highWaterMark: readAhead,
    read() {
      const n = Math.min(chunk, end - pos);
      if (n <= 0) {
        this.push(null);
        return;
      }
      const buf = Buffer.allocUnsafe(n);
      handle.read(buf, 0, n, pos).then(
        ({ bytesRead }) => {
          if (bytesRead === 0) {
            this.destroy(new Error(`unexpected end of file at ${pos} (wanted up to ${end})`));
            return;
          }
          pos += bytesRead;
          this.push(bytesRead === n ? buf : buf.subarray(0, bytesRead));
        },
        (err: unknown) => {
          this.destroy(err as Error);
        },
      );
    },
    destroy(err, cb) {
      onEnd?.();
      cb(err);
    },
  });
}

/** Positional reads of an open local file; closing closes `handle`, once. */
export function filePositionalReader(handle: FileHandle): PositionalReader {
  let closed = false;
  return {
    readInto: async (buf, offset, length, position) =>
      (await handle.read(buf, offset, length, position)).bytesRead,
    async close() {
      if (closed) return;
      closed = true;
      await handle.close();
    },
  };
}

/** A PartialReader over a local file that a writer is still appending to (the filesystem driver's
 * temporary file, the S3 writer's spool). */
export function filePartialReader(handle: FileHandle): PartialReader {
  return {
    ...filePositionalReader(handle),
    read: (start, end) =>
      end <= start
        ? Readable.from([])
        : rangeStream(handle, start, end, undefined, partialReadChunk, partialReadChunk),
  };
}
