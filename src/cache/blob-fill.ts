/**
 * One upstream download of one blob into storage, shared by every client that wants that blob
 * while it runs (DESIGN.md "The way a pull flows"). The fill writes to a temporary object, hashes
 * as it goes, resumes with an upstream `Range` request when the connection drops, and commits only
 * after size and digest check out; any failure cancels, so nothing partial is ever visible.
 *
 * Clients never slow the fill down and never cancel it. Each follower sends, at its own pace, what
 * the fill has received: straight from the fill's recent chunks in memory while it keeps up (no
 * copy, no wait for the disk), and from the temporary object through a shared positional reader
 * and pooled buffers when it has fallen behind them. Any offset works (a `Range` on an in-flight
 * blob is answered as soon as its bytes arrive). If storage fails (disk full), followers switch to
 * their own upstream `Range` request from where they are, so they still get every byte.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { RegistryError } from '../registry/errors.ts';
import type { Digest } from '../registry/reference.ts';
import type { ObjectWriter, PartialReader } from '../storage/driver.ts';
import {
  ClientGoneError,
  sendPositional,
  type BodySource,
  type BufferPool,
  type ByteSink,
} from './body-source.ts';
import { discard } from '../upstream/body.ts';
import type { Visibility } from './reply.ts';
import { headerValue, type UpstreamResponse } from '../upstream/registry-client.ts';

/** Received bytes waiting for the disk, at most (then receiving pauses: backpressure upstream). */
const writeQueueBytes = 4 * 1024 * 1024;
/**
 * Received bytes kept in memory for followers that keep up (one window per fill). Bytes not yet on
 * disk always stay, so a follower finds every byte either here or in the temporary object.
 */
const recentMaxBytes = 8 * 1024 * 1024;
/** Followers waiting for more are woken once per this many received bytes (and on every write, and at the end). */
const wakeEveryBytes = 256 * 1024;
/** A follower sends at most this much of the window in one batch. */
const sendBatchBytes = 1024 * 1024;
/** A follower behind the window reads this much from storage before looking at the window again. */
const catchUpBytes = 4 * 1024 * 1024;

export type FillState = 'running' | 'complete' | 'failed' | 'detached';

/** Fetches the blob from the upstream with Docxy's own identity, from byte `start` on. */
export type BlobFetcher = (opts: { start: number; signal?: AbortSignal }) => Promise<UpstreamResponse>;

export interface FillOptions {
  readonly digest: Digest;
  /** Whose credentials fetched it, hence who may be served it. */
  readonly visibility: Visibility;
  readonly writer: ObjectWriter;
  readonly reader: PartialReader;
  /** Buffers for followers that read back from storage. */
  readonly pool: BufferPool;
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

const timeoutMessage = 'cache fill timed out';
const shutdownMessage = 'Docxy is shutting down';

export class BlobFill {
  readonly digest: Digest;
  /** Size announced by the upstream (Content-Length), if it did. */
  readonly size: number | undefined;
  readonly visibility: Visibility;
  #state: FillState = 'running';
  /** Bytes received and hashed (followers may send them). */
  #received = 0;
  /** Bytes on storage (followers behind the window read them there). */
  #written = 0;
  #error: unknown;
  #waiters: (() => void)[] = [];
  /** `#received` when followers were last woken. */
  #woken = 0;
  #refs = 0;
  #resumes = 0;
  #readerClosed = false;
  /** The recent chunks, contiguous, ending at `#received`. */
  #window: { start: number; buf: Buffer }[] = [];
  #windowBytes = 0;
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

  /** Bytes received from the upstream so far. */
  get received(): number {
    return this.#received;
  }

  /** Client bodies following this fill right now. */
  get followers(): number {
    return this.#refs;
  }

  /** Range requests that resumed the download after a break. */
  get resumes(): number {
    return this.#resumes;
  }

  /** Why a failed fill failed: its bytes did not verify, storage, its timeout, shutdown, or the upstream. */
  get failure(): 'verify' | 'upstream' | 'timeout' | 'disk' | 'aborted' | undefined {
    if (this.#state === 'detached') return 'disk';
    if (this.#state !== 'failed') return undefined;
    const err = this.#error;
    if (err instanceof RegistryError) {
      if (err.code === 'DIGEST_INVALID' || err.code === 'SIZE_INVALID') return 'verify';
      if (err.message === timeoutMessage) return 'timeout';
      if (err.message === shutdownMessage) return 'aborted';
    }
    return 'upstream';
  }

  #notify(): void {
    this.#woken = this.#received;
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

  /** A chunk was received and hashed: followers that keep up may send it right away. */
  #receive(chunk: Buffer): void {
    this.#window.push({ start: this.#received, buf: chunk });
    this.#windowBytes += chunk.length;
    this.#received += chunk.length;
    this.#trim();
    if (this.#received - this.#woken >= wakeEveryBytes) this.#notify();
  }

  /** Drops the oldest chunks beyond the window's size, once they are on storage. */
  #trim(): void {
    while (this.#windowBytes > recentMaxBytes) {
      const old = this.#window[0];
      if (old === undefined || old.start + old.buf.length > this.#written) return;
      this.#window.shift();
      this.#windowBytes -= old.buf.length;
    }
  }

  async #run(): Promise<void> {
    const { writer, digest, log } = this.#opts;
    const timer = setTimeout(() => {
      this.#abort.abort(new RegistryError('UNAVAILABLE', { status: 504, message: timeoutMessage }));
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
    // network never waits for the disk chunk by chunk.
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
          this.#notify();
          return;
        }
        this.#written += n;
        this.#trim();
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
            this.#receive(chunk);
            queue.push(chunk);
            queued += chunk.length;
            startPump();
            while (queued >= writeQueueBytes && writing !== undefined) await writing;
          }
          this.#notify();
          if (!(await drain())) return;
          break;
        } catch (err) {
          // What arrived before the break is good: keep it, and resume after it.
          if (!(await drain())) return;
          if (this.#abort.signal.aborted) throw this.#abort.signal.reason ?? err;
          if (attempt >= this.#opts.resumeRetries) throw err;
          attempt++;
          this.#resumes++;
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
      if (this.#state !== 'detached') {
        // Everything is on storage (or nothing is needed any more): followers read the rest there.
        this.#window = [];
        this.#windowBytes = 0;
      }
      clearTimeout(timer);
      this.#abort.signal.removeEventListener('abort', onAbort);
      this.#notify();
      this.#maybeCloseReader();
      this.#opts.onEnd(this);
    }
  }

  /** Stops the fill (shutdown): it fails and cancels, leaving nothing behind. */
  abort(): void {
    this.#abort.abort(new RegistryError('UNAVAILABLE', { message: shutdownMessage }));
  }

  /** Resolves once the fill has ended. */
  async done(): Promise<FillState> {
    while (this.#state === 'running') await this.#progress();
    return this.#state;
  }

  /**
   * The body of bytes [start, end) (to the end of the blob when `end` is undefined), following the
   * fill as it grows; `onEnd` runs once, when it has been sent or cancelled. Take it synchronously
   * when joining, so the shared reader stays open for it.
   */
  follow(start: number, end?: number, onEnd?: () => void): BodySource {
    this.#refs++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.#refs--;
      this.#maybeCloseReader();
      onEnd?.();
    };
    return {
      pipeTo: async (sink) => {
        try {
          await this.#send(start, end, sink);
        } finally {
          release();
        }
      },
      cancel: release,
    };
  }

  /** Index of the window chunk holding byte `pos` (which must be inside the window). */
  #chunkAt(pos: number): number {
    let lo = 0;
    let hi = this.#window.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      const c = this.#window[mid];
      if (c !== undefined && c.start <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Sends window bytes [pos, end) until done or the sink is full; returns the new position. */
  async #sendRecent(pos: number, end: number, sink: ByteSink): Promise<number> {
    // Everything available up to a batch's size goes out together: one system call for several
    // received chunks instead of one each.
    const stop = Math.min(end, pos + sendBatchBytes);
    const pieces: Buffer[] = [];
    for (let i = this.#chunkAt(pos); pos < stop; i++) {
      const c = this.#window[i];
      if (c === undefined) break;
      const from = pos - c.start;
      const to = Math.min(c.buf.length, stop - c.start);
      const piece = from === 0 && to === c.buf.length ? c.buf : c.buf.subarray(from, to);
      pieces.push(piece);
      pos += piece.length;
    }
    if (!sink.writeAll(pieces)) await sink.drained();
    return pos;
  }

  async #send(start: number, end: number | undefined, sink: ByteSink): Promise<void> {
    let pos = start;
    for (;;) {
      const limit =
        end ?? this.size ?? (this.#state === 'complete' ? this.#written : Number.POSITIVE_INFINITY);
      if (pos >= limit) return;
      if (sink.closed) throw new ClientGoneError();
      if (this.#state === 'failed') throw this.#error;
      // The blob's last byte is held back until the fill is verified: a client must never receive
      // a complete body whose digest turns out wrong. If verification fails, it gets a truncated
      // transfer (connection closed) and retries; Docker resumes with a Range.
      const hold =
        this.#state === 'running' && !this.#verified && this.size !== undefined && limit >= this.size ? 1 : 0;
      const top = limit - hold;
      const first = this.#window[0];
      if (first !== undefined && pos >= first.start && pos < Math.min(this.#received, top)) {
        pos = await this.#sendRecent(pos, Math.min(this.#received, top), sink);
        continue;
      }
      const onDisk = Math.min(this.#written, top);
      if (pos < onDisk) {
        // Behind the window: catch up from storage, a stretch at a time, then look again.
        const stop = Math.min(onDisk, pos + catchUpBytes);
        await sendPositional(this.#opts.reader, pos, stop, sink, this.#opts.pool);
        pos = stop;
        continue;
      }
      if (this.#state === 'detached') {
        await this.#sendFromUpstream(pos, limit, sink);
        return;
      }
      if (this.#state === 'complete') return;
      await this.#progress();
    }
  }

  /** Storage failed: this follower fetches the rest of its range from the upstream itself. */
  async #sendFromUpstream(start: number, limit: number, sink: ByteSink): Promise<void> {
    let pos = start;
    const res = await this.#opts.fetch({ start: pos });
    for await (const chunk of bodyFrom(res, pos)) {
      const take = Math.min(chunk.length, limit - pos);
      pos += take;
      if (!sink.write(take === chunk.length ? chunk : chunk.subarray(0, take))) await sink.drained();
      if (pos >= limit) return;
    }
    if (pos < limit && limit !== Number.POSITIVE_INFINITY) throw new Error('upstream ended early');
  }
}
