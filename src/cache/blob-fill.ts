/**
 * One upstream download of one blob into storage, shared by every client that wants that blob
 * while it runs (DESIGN.md "The way a pull flows"). The fill writes to a temporary object, hashes
 * as it goes, resumes with an upstream `Range` request when the connection drops, and commits only
 * after size and digest check out; any failure cancels, so nothing partial is ever visible.
 *
 * Clients never slow the fill down and never cancel it: each follows the temporary object at its
 * own pace through a shared positional reader, starting at any offset (a `Range` on an in-flight
 * blob is answered as soon as its bytes arrive). If storage fails (disk full), followers switch to
 * their own upstream `Range` request from where they are, so they still get every byte.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { RegistryError } from '../registry/errors.ts';
import type { Digest } from '../registry/reference.ts';
import type { ObjectWriter, PartialReader } from '../storage/driver.ts';
import { discard } from '../upstream/body.ts';
import type { Visibility } from './reply.ts';
import { headerValue, type UpstreamResponse } from '../upstream/registry-client.ts';

/** Received bytes waiting for the disk, at most (then receiving pauses: backpressure upstream). */
const writeQueueBytes = 4 * 1024 * 1024;
/** Recently written bytes kept in memory for followers that keep up (one per fill). */
const recentMaxBytes = 8 * 1024 * 1024;

export type FillState = 'running' | 'complete' | 'failed' | 'detached';

/** Fetches the blob from the upstream with Docxy's own identity, from byte `start` on. */
export type BlobFetcher = (opts: { start: number; signal?: AbortSignal }) => Promise<UpstreamResponse>;

export interface FillOptions {
  readonly digest: Digest;
  /** Whose credentials fetched it, hence who may be served it. */
  readonly visibility: Visibility;
  readonly writer: ObjectWriter;
  readonly reader: PartialReader;
  /** The first upstream response (status 200); its body is the start of the blob. */
  readonly response: UpstreamResponse;
  readonly fetch: BlobFetcher;
  readonly log: Logger;
  /** The whole fill, resumes included, must end within this. */
  readonly timeoutMs: number;
  readonly resumeRetries: number;
  readonly resumeBackoffMs: number;
  /** Called once when the fill has ended (any state but running). */
  readonly onEnd: (fill: BlobFill) => void;
}

/** Skips the first `n` bytes of a stream (an upstream that ignored our Range and sent all of it). */
async function* skipBytes(body: AsyncIterable<Buffer>, n: number): AsyncGenerator<Buffer> {
  let left = n;
  for await (const chunk of body) {
    if (left >= chunk.length) {
      left -= chunk.length;
      continue;
    }
    yield left > 0 ? chunk.subarray(left) : chunk;
    left = 0;
  }
}

/** The body of a response to a Range request from `start`, whether the upstream honoured it or not. */
function bodyFrom(res: UpstreamResponse, start: number): AsyncIterable<Buffer> {
  if (res.status === 206) {
    const m = /^bytes (\d+)-/.exec(headerValue(res.headers, 'content-range') ?? '');
    if (m?.[1] !== undefined && Number(m[1]) === start) return res.body;
    discard(res.body);
    throw new RegistryError('UNAVAILABLE', { status: 502, message: 'upstream answered the wrong range' });
  }
  if (res.status === 200) return skipBytes(res.body, start);
  discard(res.body);
  throw new RegistryError('UNAVAILABLE', {
    status: 502,
    message: `upstream answered ${res.status} to a resume request`,
  });
}

export class BlobFill {
  readonly digest: Digest;
  /** Size announced by the upstream (Content-Length), if it did. */
  readonly size: number | undefined;
  readonly visibility: Visibility;
  #state: FillState = 'running';
  #written = 0;
  #error: unknown;
  #waiters: (() => void)[] = [];
  #refs = 0;
  #readerClosed = false;
  #recent: { start: number; buf: Buffer }[] = [];
  #recentBytes = 0;
  /** Size and digest checked out (the commit may still be running). */
  #verified = false;
  readonly #opts: FillOptions;
  readonly #abort = new AbortController();

  constructor(opts: FillOptions) {
    this.#opts = opts;
    this.digest = opts.digest;
    this.visibility = opts.visibility;
    const len = headerValue(opts.response.headers, 'content-length');
    this.size = len === undefined ? undefined : Number(len);
    void this.#run();
  }

  get state(): FillState {
    return this.#state;
  }

  get written(): number {
    return this.#written;
  }

  #notify(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const r of w) r();
  }

  #progress(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #maybeCloseReader(): void {
    if (this.#state === 'running' || this.#refs > 0 || this.#readerClosed) return;
    this.#readerClosed = true;
    void this.#opts.reader.close();
  }

  async #run(): Promise<void> {
    const { writer, digest, log } = this.#opts;
    const timer = setTimeout(() => {
      this.#abort.abort(new RegistryError('UNAVAILABLE', { status: 504, message: 'cache fill timed out' }));
    }, this.#opts.timeoutMs);
    const hash = createHash(digest.algorithm);
    // The first response was fetched before the fill existed, so the abort signal does not reach
    // it: destroy its body on abort (timeout, shutdown). Resumes are fetched with the signal.
    const first = this.#opts.response.body;
    const onAbort = (): void => {
      first.destroy(this.#abort.signal.reason instanceof Error ? this.#abort.signal.reason : undefined);
    };
    this.#abort.signal.addEventListener('abort', onAbort, { once: true });
    let body: AsyncIterable<Buffer> = first;
    let attempt = 0;
    // Receiving and writing overlap: received chunks queue up (at most writeQueueBytes) while the
    // previous batch is being written, and each write takes everything queued so far — so the
    // network never waits for the disk chunk by chunk, and followers wake once per batch.
    let queue: Buffer[] = [];
    let queued = 0;
    let storageFailed = false;
    let writing: Promise<void> | undefined;
    const pump = async (): Promise<void> => {
      while (queued > 0 && !storageFailed) {
        const bufs = queue;
        const n = queued;
        queue = [];
        queued = 0;
        try {
          await writer.write(bufs);
        } catch (err) {
          // Disk full or similar: stop caching, let every follower fetch the rest itself.
          log.warn(
            { digest: digest.value, err: (err as Error).message },
            'cache write failed; relaying without caching',
          );
          storageFailed = true;
          this.#state = 'detached';
          this.#abort.abort();
          await writer.cancel();
          return;
        }
        let at = this.#written;
        for (const b of bufs) {
          this.#remember(at, b);
          at += b.length;
        }
        this.#written += n;
        this.#notify();
      }
    };
    const startPump = (): void => {
      writing ??= pump().finally(() => {
        writing = undefined;
      });
    };
    /** Waits until everything received is written; false when storage failed. */
    const drain = async (): Promise<boolean> => {
      startPump();
      while (writing !== undefined) await writing;
      return !storageFailed;
    };
    try {
      for (;;) {
        try {
          for await (const chunk of body) {
            if (this.state === 'detached') return;
            hash.update(chunk);
            queue.push(chunk);
            queued += chunk.length;
            startPump();
            while (queued >= writeQueueBytes && writing !== undefined) await writing;
          }
          if (!(await drain())) return;
          break;
        } catch (err) {
          // What arrived before the break is good: keep it, and resume after it.
          if (!(await drain())) return;
          if (this.#abort.signal.aborted) throw this.#abort.signal.reason ?? err;
          if (attempt >= this.#opts.resumeRetries) throw err;
          attempt++;
          log.warn(
            { digest: digest.value, at: this.#written, attempt, err: (err as Error).message },
            'upstream body broke; resuming',
          );
          await sleep(this.#opts.resumeBackoffMs * 2 ** (attempt - 1), undefined, {
            signal: this.#abort.signal,
          });
          const res = await this.#opts.fetch({ start: this.#written, signal: this.#abort.signal });
          body = bodyFrom(res, this.#written);
        }
      }
      if (this.size !== undefined && this.#written !== this.size) {
        throw new RegistryError('SIZE_INVALID', {
          status: 502,
          message: `upstream sent ${this.#written} of ${this.size} bytes`,
        });
      }
      const actual = hash.digest('hex');
      if (actual !== digest.hex) {
        throw new RegistryError('DIGEST_INVALID', {
          status: 502,
          message: `upstream content does not match ${digest.value}`,
        });
      }
      // Verified: followers may have the last byte now; the commit (a flush to disk) need not
      // hold up any client.
      this.#verified = true;
      this.#notify();
      try {
        await writer.commit();
      } catch (err) {
        // Every byte is verified and readable by followers; only the cache entry is lost.
        log.warn({ digest: digest.value, err: (err as Error).message }, 'cache commit failed');
        await writer.cancel();
      }
      this.#state = 'complete';
    } catch (err) {
      this.#state = 'failed';
      this.#error = err;
      log.warn(
        { digest: digest.value, written: this.#written, err: (err as Error).message },
        'cache fill failed',
      );
      await writer.cancel();
    } finally {
      this.#recent = []; // followers still behind read the rest from storage
      this.#recentBytes = 0;
      clearTimeout(timer);
      this.#abort.signal.removeEventListener('abort', onAbort);
      this.#notify();
      this.#maybeCloseReader();
      this.#opts.onEnd(this);
    }
  }

  /** Stops the fill (shutdown): it fails and cancels, leaving nothing behind. */
  abort(): void {
    this.#abort.abort(new RegistryError('UNAVAILABLE', { message: 'Docxy is shutting down' }));
  }

  /**
   * Keeps the most recently written batches in memory: followers that keep up with the fill (the
   * usual case) take their bytes from here instead of reading them back from the file.
   */
  #remember(start: number, buf: Buffer): void {
    this.#recent.push({ start, buf });
    this.#recentBytes += buf.length;
    while (this.#recentBytes > recentMaxBytes && this.#recent.length > 1) {
      const old = this.#recent.shift();
      if (old !== undefined) this.#recentBytes -= old.buf.length;
    }
  }

  /** Bytes [pos, end) from the recent batches, as far as one batch covers them. */
  #fromRecent(pos: number, end: number): Buffer | undefined {
    // Newest first: a follower that keeps up wants the last few chunks.
    for (let i = this.#recent.length - 1; i >= 0; i--) {
      const seg = this.#recent[i];
      if (seg === undefined) continue;
      if (pos >= seg.start && pos < seg.start + seg.buf.length) {
        return seg.buf.subarray(pos - seg.start, Math.min(seg.buf.length, end - seg.start));
      }
    }
    return undefined;
  }

  /** Resolves once the fill has ended. */
  async done(): Promise<FillState> {
    while (this.#state === 'running') await this.#progress();
    return this.#state;
  }

  /**
   * A stream of bytes [start, end) (to the end of the blob when `end` is undefined), following the
   * fill as it grows. Take it synchronously when joining, so the shared reader stays open for it.
   */
  follow(start: number, end?: number): Readable {
    this.#refs++;
    const gen = this.#generate(start, end);
    const stream = Readable.from(gen, { objectMode: false, highWaterMark: 256 * 1024 });
    stream.once('close', () => {
      this.#refs--;
      this.#maybeCloseReader();
    });
    return stream;
  }

  async *#generate(start: number, end: number | undefined): AsyncGenerator<Buffer> {
    let pos = start;
    for (;;) {
      const limit =
        end ?? this.size ?? (this.#state === 'complete' ? this.#written : Number.POSITIVE_INFINITY);
      if (pos >= limit) return;
      if (this.#state === 'failed') throw this.#error;
      // The blob's last byte is held back until the fill is verified: a client must never receive
      // a complete body whose digest turns out wrong. If verification fails, it gets a truncated
      // transfer (connection closed) and retries; Docker resumes with a Range.
      const hold =
        this.#state === 'running' && !this.#verified && this.size !== undefined && limit >= this.size ? 1 : 0;
      const avail = Math.min(this.#written, limit - hold);
      if (pos < avail) {
        const recent = this.#fromRecent(pos, avail);
        if (recent !== undefined) {
          pos += recent.length;
          yield recent;
          continue;
        }
        for await (const chunk of this.#opts.reader.read(pos, avail)) {
          pos += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        continue;
      }
      if (this.#state === 'detached') {
        const res = await this.#opts.fetch({ start: pos });
        for await (const chunk of bodyFrom(res, pos)) {
          const take = Math.min(chunk.length, limit - pos);
          pos += take;
          yield take === chunk.length ? chunk : chunk.subarray(0, take);
          if (pos >= limit) return;
        }
        if (pos < limit && limit !== Number.POSITIVE_INFINITY) throw new Error('upstream ended early');
        return;
      }
      if (this.#state === 'complete') return;
      await this.#progress();
    }
  }
}
