/** Streams over byte ranges of an open file, by positional reads (safe on a shared handle). */
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';

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
