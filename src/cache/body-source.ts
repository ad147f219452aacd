/**
 * Blob bodies that write themselves into the client's connection. A blob can be gigabytes, so the
 * way its bytes travel decides both throughput and memory: bytes read from storage go through a few
 * buffers per transfer, reused once the connection has taken them (no allocation per chunk, which
 * would keep the garbage collector busy and the process's memory growing with the blob size), and
 * bytes a fill has just received go to every follower as they are, without a copy.
 */
import type { PositionalReader } from '../storage/driver.ts';

/** Where a body goes: the client's connection (`http/response-sink.ts`). */
export interface ByteSink {
  /**
   * Sends `buf`. `release` runs once the sink no longer needs `buf` (the caller may then reuse it);
   * it always runs, also when the client is gone. Returns false when the caller should wait for
   * `drained()` before writing more.
   */
  write(buf: Buffer, release?: () => void): boolean;
  /** Sends buffers nobody will change, in one go (one system call where the connection allows). */
  writeAll(bufs: readonly Buffer[]): boolean;
  /** Resolves when the sink wants more; rejects once the client is gone. */
  drained(): Promise<void>;
  /** The client has gone (disconnected, or the transfer was cut). */
  readonly closed: boolean;
}

/** A body that writes itself into a sink (see the file comment for why not a Readable). */
export interface BodySource {
  /** Writes the whole body into `sink`; rejects when the body fails or the client goes. Call once. */
  pipeTo(sink: ByteSink): Promise<void>;
  /** Releases what the body holds without sending it (HEAD, an error before sending). Safe after pipeTo. */
  cancel(): void;
}

export function isBodySource(body: unknown): body is BodySource {
  return typeof body === 'object' && body !== null && 'pipeTo' in body && 'cancel' in body;
}

/** Buffers reused across transfers (see createBufferPool). */
export interface BufferPool {
  /** The usual buffer size; a read of less than this gets a buffer of its own size instead. */
  readonly chunkSize: number;
  /** A buffer of at least `chunkSize` bytes; hand it back with `give` once the connection is done with it. */
  take(): Buffer;
  give(buf: Buffer): void;
}

/**
 * Buffers of `chunkSize`, at most `keep` idle ones kept. With `large`, up to `large.max` buffers
 * of `large.size` are handed out first: a lone big transfer then reads and writes in fewer, larger
 * steps (a warm 1 GiB blob: 1 MiB chunks took ~10-25 % less of Docxy's CPU than 256 KiB, issue
 * 14), while many concurrent transfers fall back to `chunkSize`, so memory stays bounded by
 * `large.max * large.size` plus two `chunkSize` buffers per transfer.
 */
export function createBufferPool(
  chunkSize: number,
  keep: number,
  large?: { readonly size: number; readonly max: number },
): BufferPool {
  if (large !== undefined && large.size <= chunkSize)
    throw new Error(`large buffers (${large.size}) must be larger than the chunk size (${chunkSize})`);
  const idle: Buffer[] = [];
  const idleLarge: Buffer[] = [];
  let largeOut = 0;
  return {
    chunkSize,
    take() {
      if (large !== undefined && largeOut < large.max) {
        largeOut++;
        return idleLarge.pop() ?? Buffer.allocUnsafeSlow(large.size);
      }
      return idle.pop() ?? Buffer.allocUnsafeSlow(chunkSize);
    },
    give(buf) {
      if (large !== undefined && buf.length === large.size) {
        largeOut--;
        idleLarge.push(buf);
        return;
      }
      if (idle.length < keep && buf.length === chunkSize) idle.push(buf);
    },
  };
}

/** The client went away: the transfer ends without an error worth logging as a failure. */
export class ClientGoneError extends Error {
  constructor() {
    super('client closed the connection');
  }
}

/**
 * Sends bytes [start, end) of `reader` into `sink` through pooled buffers, reading the next chunk
 * while the connection is still taking the previous one (at most `depth` buffers in flight: a
 * 256 KiB write fills a socket's buffer, so a third would only wait).
 */
export async function sendPositional(
  reader: PositionalReader,
  start: number,
  end: number,
  sink: ByteSink,
  pool: BufferPool,
  depth = 2,
): Promise<void> {
  let pos = start;
  let inFlight = 0;
  let full = false;
  let wake: (() => void) | undefined;
  const released = (): void => {
    inFlight--;
    const w = wake;
    wake = undefined;
    w?.();
  };
  while (pos < end) {
    if (sink.closed) throw new ClientGoneError();
    if (inFlight >= depth) {
      await new Promise<void>((resolve) => (wake = resolve));
      continue;
    }
    // A small object (or tail) gets a buffer of its own size: taking a pooled 256 KiB buffer for a
    // 300-byte config made hundreds of concurrent small transfers allocate 256 KiB each once the
    // pool ran dry (measured: 18 MiB of buffers live, and the external-memory GCs they force, at
    // 1000 connections).
    const left = end - pos;
    const buf = left < pool.chunkSize ? Buffer.allocUnsafe(left) : pool.take();
    let n: number;
    try {
      n = await reader.readInto(buf, 0, Math.min(buf.length, end - pos), pos);
    } catch (err) {
      pool.give(buf);
      throw err;
    }
    if (n <= 0) {
      pool.give(buf);
      throw new Error(`unexpected end of object at ${pos} (wanted up to ${end})`);
    }
    // Wait for the connection only now, after the read: the disk works while the socket drains.
    if (full) await sink.drained();
    pos += n;
    inFlight++;
    full = !sink.write(n === buf.length ? buf : buf.subarray(0, n), () => {
      pool.give(buf);
      released();
    });
  }
}

/** A committed object's bytes [start, end) as a body; `onEnd` runs once, when sent or cancelled. */
export function positionalBody(
  reader: PositionalReader,
  start: number,
  end: number,
  pool: BufferPool,
  onEnd?: () => void,
): BodySource {
  let ended = false;
  const finish = (): void => {
    if (ended) return;
    ended = true;
    void reader.close();
    onEnd?.();
  };
  return {
    async pipeTo(sink) {
      try {
        await sendPositional(reader, start, end, sink, pool);
      } finally {
        finish();
      }
    },
    cancel: finish,
  };
}
