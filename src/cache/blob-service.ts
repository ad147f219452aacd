/**
 * Blobs through the cache: served from storage when present (Range, ETag; blob-plan.ts), otherwise
 * fetched from the upstream once for every concurrent client (BlobFill), with Docxy's own identity
 * — once for the whole fleet with `cluster:` (fleet-fill.ts).
 */
import type { Logger } from 'pino';
import type { Flights } from '../coordination/single-flight.ts';
import type { FillMetrics } from '../observability/metrics.ts';
import type { Digest } from '../registry/reference.ts';
import type { ObjectWriter, PartialReader, StorageDriver } from '../storage/driver.ts';
import { isStorageUnavailable } from '../storage/errors.ts';
import { paths } from '../storage/paths.ts';
import { discard } from '../upstream/body.ts';
import { headerValue, type UpstreamResponse } from '../upstream/registry-client.ts';
import { BlobFill, type BlobFetcher } from './blob-fill.ts';
import { blobHeaders, plan } from './blob-plan.ts';
import { createBufferPool, positionalBody, type BodySource } from './body-source.ts';
import type { FleetFills } from './fleet-fill.ts';
import type { ReadPins } from './read-pins.ts';
import type { CacheReply, Visibility } from './reply.ts';

export interface BlobRequest {
  readonly method: 'GET' | 'HEAD';
  /** The repository name at the upstream (library/ already added). */
  readonly name: string;
  readonly digest: Digest;
  readonly range?: string;
  readonly ifRange?: string;
  readonly ifNoneMatch?: string;
  /** The upstream fetcher: Docxy's own identity, or the client's credentials for private content. */
  readonly fetch: UpstreamBlobFetch;
  /** What a fill made with `fetch` may be served to. */
  readonly visibility: Visibility;
}

/** Fetches a blob from the upstream with Docxy's own identity. */
export type UpstreamBlobFetch = (req: {
  method: 'GET' | 'HEAD';
  name: string;
  digest: string;
  start?: number;
  signal?: AbortSignal;
}) => Promise<UpstreamResponse>;

/**
 * A blob's flight on this replica: its fill, the upstream's answer when none could start, or
 * `stored` when another replica of the fleet stored it meanwhile.
 */
export type BlobFlight = Promise<BlobFill | UpstreamResponse | 'stored'>;

/** A fill running here, followed from some offset (the cluster endpoint serves it to peers). */
export interface InFlightBlob {
  readonly size: number;
  readonly visibility: Visibility;
  readonly body: BodySource;
}

export interface BlobService {
  get(req: BlobRequest): Promise<CacheReply>;
  /** The fill of `digest` running here, followed from `start`; undefined when none runs. */
  inFlight(digest: string, start: number): Promise<InFlightBlob | undefined>;
  /** Aborts running fills and waits for them to clean up (shutdown). */
  close(): Promise<void>;
  /** Whether a storage key is being read or filled right now (eviction leaves it alone). */
  inUse(key: string): boolean;
  /** The fills running now (the dashboard's progress bars). */
  activeFills(): ActiveFill[];
}

export interface ActiveFill {
  readonly digest: string;
  /** Bytes received from the upstream so far. */
  readonly received: number;
  /** The size the upstream announced, if it did. */
  readonly size: number | undefined;
  /** Client bodies following the fill right now. */
  readonly followers: number;
  readonly startedAt: number;
}

export interface BlobServiceDeps {
  /** The fleet's read pins (with shared coordination): what a replica reads is not evicted. */
  readonly pins?: ReadPins;
  readonly storage: StorageDriver;
  readonly flights: Flights<BlobFlight>;
  /** With a fleet: one download per blob across replicas (fleet-fill.ts). */
  readonly fleet?: FleetFills;
  readonly log: Logger;
  readonly fillTimeoutMs: number;
  readonly resumeRetries: number;
  readonly resumeBackoffMs: number;
  /** Called when a fill has ended (eviction may be due). */
  readonly onFillEnd?: () => void;
  readonly metrics?: FillMetrics;
}

/**
 * Buffers for sending blobs from storage: 256 KiB reads (large enough for throughput; a transfer
 * holds at most two), and up to 32 idle ones kept (8 MiB) for the next transfers; the first four
 * buffers out are 1 MiB (at most 4 MiB), so one or two big transfers take fewer, larger steps.
 */
const poolChunk = 256 * 1024;
const poolKeep = 32;
const noop = (): void => undefined;
const poolLarge = { size: 1024 * 1024, max: 4 };

export function createBlobService(deps: BlobServiceDeps): BlobService {
  const { storage, flights, log } = deps;
  const pool = createBufferPool(poolChunk, poolKeep, poolLarge);
  /** Open reads of committed blobs, per key. */
  const readers = new Map<string, number>();
  /** Fills whose bytes come from another replica (their first client is not a `miss`). */
  const peerFills = new WeakSet<BlobFill>();
  /** Fills running now, with when they started. */
  const active = new Map<BlobFill, number>();
  const metrics = deps.metrics;
  /** When the last "object store unavailable" warning was logged (one per 10 s, not per request). */
  let lastStoreWarning = 0;

  /** Counts a reader of `key` (eviction leaves it alone); call what it returns, once, when done. */
  function opened(key: string): () => void {
    readers.set(key, (readers.get(key) ?? 0) + 1);
    return () => {
      const n = (readers.get(key) ?? 1) - 1;
      if (n <= 0) readers.delete(key);
      else readers.set(key, n);
    };
  }

  async function fromStorage(req: BlobRequest, key: string): Promise<CacheReply | undefined> {
    // A body read pins the key for the fleet first; one being evicted reads as absent (a new fill).
    const unpin = req.method === 'HEAD' || deps.pins === undefined ? noop : await deps.pins.hold(key);
    if (unpin === undefined) return undefined;
    let handle;
    try {
      handle = await storage.open(key);
    } catch (err) {
      unpin();
      throw err;
    }
    if (handle === undefined) {
      unpin();
      return undefined;
    }
    const visibility: Visibility = handle.metadata.visibility === 'private' ? 'private' : 'shared';
    let p;
    try {
      p = plan(req, handle.size);
    } catch (err) {
      unpin();
      await handle.close();
      throw err;
    }
    void storage.touch(key);
    if (req.method === 'HEAD' || p.status === 304) {
      unpin();
      await handle.close();
      return { kind: 'local', status: p.status, headers: p.headers, cache: 'hit', visibility };
    }
    const closed = opened(key);
    return {
      kind: 'local',
      status: p.status,
      headers: p.headers,
      body: positionalBody(handle, p.start, p.end, pool, () => {
        closed();
        unpin();
      }),
      cache: 'hit',
      visibility,
    };
  }

  const upstreamOf =
    (req: BlobRequest): BlobFetcher =>
    ({ start, signal }) =>
      req.fetch({ method: 'GET', name: req.name, digest: req.digest.value, start, signal });

  async function startFill(req: BlobRequest, key: string, ended: () => void): BlobFlight {
    const fleet = deps.fleet;
    if (fleet === undefined) return fillFromUpstream(req, key, ended);
    const claim = await fleet.claim(req.digest, key);
    if (claim.kind === 'stored') return 'stored';
    if (claim.kind === 'alone') return fillFromUpstream(req, key, ended);
    if (claim.kind === 'peer') {
      const parts = await fleet.peerFill({
        digest: req.digest,
        key,
        holder: claim.holder,
        response: claim.response,
        upstream: upstreamOf(req),
      });
      log.info(
        { digest: req.digest.value, peer: claim.holder.address },
        'following the fill of another replica',
      );
      const fill = newFill(
        req,
        claim.response,
        {
          ...parts,
          ended: () => {
            parts.ended();
            ended();
          },
        },
        parts.tookOver,
      );
      peerFills.add(fill);
      return fill;
    }
    const { lease } = claim;
    try {
      const r = await fillFromUpstream(req, key, () => {
        void lease.release();
        ended();
      });
      if (!(r instanceof BlobFill) || r.state !== 'running') void lease.release();
      return r;
    } catch (err) {
      void lease.release();
      throw err;
    }
  }

  async function fillFromUpstream(
    req: BlobRequest,
    key: string,
    ended: () => void,
  ): Promise<BlobFill | UpstreamResponse> {
    const response = await req.fetch({ method: 'GET', name: req.name, digest: req.digest.value });
    if (response.status !== 200) return response;
    let writer;
    let reader;
    try {
      writer = await storage.createWriter(key, { metadata: { visibility: req.visibility } });
      reader = await writer.openPartialReader();
    } catch (err) {
      // Storage cannot take it (disk full): the client still gets the bytes, relayed.
      log.warn({ digest: req.digest.value, err: (err as Error).message }, 'cannot cache blob; relaying');
      await writer?.cancel();
      return response;
    }
    metrics?.started();
    return newFill(req, response, {
      writer,
      reader,
      visibility: req.visibility,
      fetch: upstreamOf(req),
      ended,
    });
  }

  /** A fill from `response` (the upstream's or a peer's), counted, shown and logged when it ends. */
  function newFill(
    req: BlobRequest,
    response: UpstreamResponse,
    parts: {
      readonly writer: ObjectWriter;
      readonly reader: PartialReader;
      readonly visibility: Visibility;
      readonly fetch: BlobFetcher;
      readonly ended: () => void;
    },
    /** For a fill that follows a peer: whether it took over from the upstream (then it counts). */
    tookOver?: () => boolean,
  ): BlobFill {
    const { ended } = parts;
    const fill = new BlobFill({
      digest: req.digest,
      visibility: parts.visibility,
      writer: parts.writer,
      reader: parts.reader,
      pool,
      response,
      fetch: parts.fetch,
      log,
      timeoutMs: deps.fillTimeoutMs,
      resumeRetries: deps.resumeRetries,
      resumeBackoffMs: deps.resumeBackoffMs,
      onEnd: (fill) => {
        ended();
        active.delete(fill);
        const counted = tookOver === undefined || tookOver();
        if (metrics !== undefined && counted) {
          for (let i = 0; i < fill.resumes; i++) metrics.resumed();
          const failure = fill.failure;
          if (failure === undefined) metrics.completed();
          else metrics.failed(failure);
        }
        deps.onFillEnd?.();
        log.info(
          {
            digest: req.digest.value,
            state: fill.state,
            bytes: fill.written,
            ...(tookOver === undefined ? {} : { from: tookOver() ? 'peer, then upstream' : 'peer' }),
          },
          'cache fill ended',
        );
      },
    });
    if (fill.state === 'running') active.set(fill, Date.now());
    return fill;
  }

  return {
    async close() {
      const running = [...flights.keys()].map((k) => flights.get(k));
      await Promise.all(
        running.map(async (p) => {
          const fill = await p?.catch(() => undefined);
          if (fill instanceof BlobFill) {
            fill.abort();
            await fill.done();
          }
        }),
      );
    },
    inUse: (key) => flights.get(key) !== undefined || readers.has(key),
    async inFlight(digest, start) {
      const key = paths.blob(digest);
      const started = await flights.get(key)?.catch(() => undefined);
      // Followed in the tick it is checked: a fill that has ended may have closed its reader.
      if (!(started instanceof BlobFill) || started.state !== 'running') return undefined;
      const size = started.size;
      if (size === undefined || start > size) return undefined;
      return { size, visibility: started.visibility, body: started.follow(start, size, opened(key)) };
    },
    activeFills: () =>
      [...active].map(([f, startedAt]) => ({
        digest: f.digest.value,
        received: f.received,
        size: f.size,
        followers: f.followers,
        startedAt,
      })),

    get: (req) => get(req, false),
  };

  /**
   * The store cannot say whether it holds the blob: relay it from the upstream, uncached and not
   * shared with other clients (a fill could not be committed anyway). When the upstream cannot be
   * reached either, the client gets the store's 503.
   */
  async function relayWithoutStore(req: BlobRequest, storeError: Error): Promise<CacheReply> {
    const now = Date.now();
    if (now - lastStoreWarning > 10_000) {
      lastStoreWarning = now;
      log.warn(
        { err: storeError.message, cause: String(storeError.cause) },
        'object store unavailable; relaying blobs',
      );
    }
    try {
      return {
        kind: 'upstream',
        response: await req.fetch({ method: req.method, name: req.name, digest: req.digest.value }),
      };
    } catch {
      throw storeError;
    }
  }

  async function get(req: BlobRequest, again: boolean): Promise<CacheReply> {
    const key = paths.blob(req.digest.value);
    let hit;
    try {
      hit = await fromStorage(req, key);
    } catch (err) {
      if (!isStorageUnavailable(err)) throw err;
      return relayWithoutStore(req, err);
    }
    if (hit !== undefined) return hit;

    const running = flights.get(key);
    if (req.method === 'HEAD' && running === undefined) {
      // A HEAD does not start a download; ask the upstream (clients rarely HEAD blobs).
      const res = await req.fetch({ method: 'HEAD', name: req.name, digest: req.digest.value });
      if (res.status !== 200) return { kind: 'upstream', response: res };
      discard(res.body);
      const len = headerValue(res.headers, 'content-length');
      const headers = blobHeaders(req.digest.value);
      if (len !== undefined) headers['content-length'] = len;
      return { kind: 'local', status: 200, headers, cache: 'miss', visibility: req.visibility };
    }

    const { value, joined } = flights.join(key, () => {
      // The flight ends in the same tick as the fill (so nobody joins a fill that has closed its
      // reader), or as soon as it could not start.
      const p: BlobFlight = startFill(req, key, () => {
        flights.end(key, p);
      });
      p.then(
        (r) => {
          if (!(r instanceof BlobFill)) flights.end(key, p);
        },
        () => {
          flights.end(key, p);
        },
      );
      return p;
    });
    if (joined) metrics?.coalesced();
    const started = await value;
    if (started === 'stored') {
      // Another replica stored it meanwhile: read it there (once; then ask the upstream).
      if (!again) return get(req, true);
      return {
        kind: 'upstream',
        response: await req.fetch({ method: req.method, name: req.name, digest: req.digest.value }),
      };
    }
    if (
      started instanceof BlobFill &&
      (started.state === 'complete' || started.state === 'failed') &&
      !again
    ) {
      // Joined while it ran, resumed after it ended: the blob is in storage now (or fetch anew).
      return get(req, true);
    }
    if (!(started instanceof BlobFill)) {
      // Only the starter may consume that response; a joiner asks on its own.
      if (!joined) return { kind: 'upstream', response: started };
      return {
        kind: 'upstream',
        response: await req.fetch({ method: req.method, name: req.name, digest: req.digest.value }),
      };
    }
    const fill = started;
    if (fill.size === undefined) {
      // No announced size: ranges and conditionals wait for nothing, the whole body follows.
      const headers = blobHeaders(req.digest.value);
      return {
        kind: 'local',
        status: 200,
        headers,
        body: req.method === 'HEAD' ? undefined : fill.follow(0, undefined, opened(key)),
        cache: joined || peerFills.has(fill) ? 'coalesced' : 'miss',
        visibility: fill.visibility,
      };
    }
    const p = plan(req, fill.size);
    // A fill that follows a peer did not ask the upstream under this name: like a join, it is
    // served for this repository only once the route has confirmed the link (a HEAD).
    const cache = joined || peerFills.has(fill) ? 'coalesced' : 'miss';
    if (req.method === 'HEAD' || p.status === 304)
      return { kind: 'local', status: p.status, headers: p.headers, cache, visibility: fill.visibility };
    return {
      kind: 'local',
      status: p.status,
      headers: p.headers,
      body: fill.follow(p.start, p.end, opened(key)),
      cache,
      visibility: fill.visibility,
    };
  }
}
