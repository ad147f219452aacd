/**
 * Manifests through the cache. By digest: once stored, never asked upstream again. By tag: the tag
 * -> digest record is answered locally within the TTL, revalidated with an upstream HEAD after it
 * (a HEAD does not count against Docker Hub's pull limit; FACTS.md) and fetched with a GET only
 * when the digest moved; when the upstream fails, the cached answer is served stale. Bytes are
 * stored unchanged with their media type, verified against their digest first.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { RegistryError } from '../registry/errors.ts';
import { maxManifestBytes, mediaTypes } from '../registry/media-types.ts';
import { parseDigest } from '../registry/reference.ts';
import type { StorageDriver } from '../storage/driver.ts';
import { isStorageUnavailable } from '../storage/errors.ts';
import { paths } from '../storage/paths.ts';
import { discard, readCapped } from '../upstream/body.ts';
import { headerValue, type UpstreamResponse } from '../upstream/registry-client.ts';
import { createByteLru, type ByteLru } from './byte-lru.ts';
import { createManifestFlights, type ManifestFlights } from './manifest-flights.ts';
import type { CacheReply, CacheResult, Visibility } from './reply.ts';
import {
  acceptable,
  isFailureError,
  isUpstreamFailure,
  type TagPolicy,
  type TagRecord,
} from './tag-policy.ts';

/**
 * What Docxy asks the upstream for, whatever the client sent: every manifest type, so a tag
 * resolves to the same digest for every client (Distribution converts or refuses manifests whose
 * type is missing from Accept) and the one cached answer serves them all.
 */
export const canonicalAccept = [
  mediaTypes.ociIndex,
  mediaTypes.dockerManifestList,
  mediaTypes.ociManifest,
  mediaTypes.dockerManifest,
].join(', ');

export interface ManifestRequest {
  readonly method: 'GET' | 'HEAD';
  /** Repository name at the upstream (library/ already added). */
  readonly name: string;
  readonly reference: string;
  readonly referenceIsDigest: boolean;
  /** The client's Accept media ranges. */
  readonly accept: readonly string[];
  /** Fetch with these credentials instead of Docxy's own (private content); the result is `private`. */
  readonly fetch?: UpstreamManifestFetch;
  /** Cuts the upstream request (a scheduled warm aborted by shutdown). */
  readonly signal?: AbortSignal;
}

export type UpstreamManifestFetch = (req: {
  method: 'GET' | 'HEAD';
  name: string;
  reference: string;
  signal?: AbortSignal | undefined;
}) => Promise<UpstreamResponse>;

export interface ManifestService {
  get(req: ManifestRequest): Promise<CacheReply | 'bypass'>;
  /** Drops the in-memory copy of an evicted manifest. */
  forget(digest: string): void;
  /** Tags of `name` known to the cache (for tags/list while the upstream is down). */
  cachedTags(name: string): Promise<string[]>;
}

export interface ManifestServiceDeps {
  readonly storage: StorageDriver;
  readonly upstream: string;
  readonly fetch: UpstreamManifestFetch;
  readonly policy: TagPolicy;
  readonly log: Logger;
  readonly now?: () => number;
  /**
   * Hot manifests kept in memory by digest (`cache.memory.manifest_bytes`), shared by every
   * upstream's service as storage is; a 16 MiB one of its own when absent.
   */
  readonly memory?: ManifestMemory;
  /** Concurrent upstream requests of one manifest become one (in-process, or fleet-wide). */
  readonly flights?: ManifestFlights;
}

/** A stored manifest as kept in memory: its bytes and the response headers every hit sends. */
export interface StoredManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly bytes: Buffer;
  readonly visibility: Visibility;
  /** Its storage key (`touch` on every hit would otherwise parse the digest again). */
  readonly key: string;
  /** Built once: the same for every answer with these bytes (never mutated by a reader). */
  readonly headers: Readonly<Record<string, string>>;
}

export type ManifestMemory = ByteLru<StoredManifest>;

/** The in-memory manifest cache, bounded by the manifests' bytes (0 keeps none). */
export function createManifestMemory(maxBytes: number): ManifestMemory {
  return createByteLru<StoredManifest>({ maxBytes, sizeOf: (m) => m.bytes.length });
}

function storedManifest(
  digest: string,
  mediaType: string,
  bytes: Buffer,
  visibility: Visibility,
): StoredManifest {
  return {
    digest,
    mediaType,
    bytes,
    visibility,
    key: paths.manifest(digest),
    headers: Object.freeze({
      'content-type': mediaType,
      'content-length': String(bytes.length),
      'docker-content-digest': digest,
      etag: `"${digest}"`,
    }),
  };
}

/** Media type from the response header, else from the manifest's own `mediaType` field. */
function mediaTypeOf(contentType: string | undefined, bytes: Buffer): string {
  const fromHeader = contentType?.split(';')[0]?.trim();
  if (
    fromHeader !== undefined &&
    fromHeader !== '' &&
    fromHeader !== 'application/json' &&
    fromHeader !== 'application/octet-stream'
  ) {
    return fromHeader;
  }
  try {
    const mt = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
    if (typeof mt === 'string') return mt;
  } catch {
    /* not JSON: fall through */
  }
  return fromHeader ?? 'application/octet-stream';
}

export function createManifestService(deps: ManifestServiceDeps): ManifestService {
  const { storage, log } = deps;
  const now = deps.now ?? Date.now;
  /**
   * Small, hot and immutable: kept in memory so warm manifest requests cost no disk read. Bounded
   * by bytes (manifests may be up to 4 MiB), least recently used dropped first.
   */
  const memory = deps.memory ?? createManifestMemory(16 * 1024 * 1024);
  /** Tag records, bounded by count (each is a few hundred bytes). */
  const tagMemory = new Map<string, TagRecord>();
  const tagMemoryMax = 20_000;
  const flights = deps.flights ?? createManifestFlights();

  function rememberTag(key: string, rec: TagRecord): void {
    tagMemory.delete(key);
    tagMemory.set(key, rec);
    if (tagMemory.size > tagMemoryMax) {
      const oldest = tagMemory.keys().next();
      if (oldest.done !== true) tagMemory.delete(oldest.value);
    }
  }

  async function loadManifest(digest: string): Promise<StoredManifest | undefined> {
    const hot = memory.get(digest);
    if (hot !== undefined) return hot;
    const key = paths.manifest(digest);
    const info = await unlessStoreDown(() => storage.stat(key));
    if (info === undefined) return undefined;
    const bytes = await unlessStoreDown(() => storage.getBytes(key));
    if (bytes === undefined) return undefined;
    const m = storedManifest(
      digest,
      info.metadata.mediaType ?? mediaTypeOf(undefined, bytes),
      bytes,
      info.metadata.visibility === 'private' ? 'private' : 'shared',
    );
    memory.set(digest, m);
    return m;
  }

  async function storeManifest(m: StoredManifest): Promise<void> {
    let w;
    try {
      w = await storage.createWriter(m.key, {
        metadata: { mediaType: m.mediaType, visibility: m.visibility },
      });
      await w.write(m.bytes);
      await w.commit();
      memory.set(m.digest, m);
    } catch (err) {
      await w?.cancel().catch(() => undefined);
      log.warn({ digest: m.digest, err: (err as Error).message }, 'cannot cache manifest');
    }
  }

  async function loadTag(name: string, tag: string): Promise<TagRecord | undefined> {
    const key = paths.tag(deps.upstream, name, tag);
    const hot = tagMemory.get(key);
    if (hot !== undefined) return hot;
    const bytes = await unlessStoreDown(() => storage.getBytes(key));
    if (bytes === undefined) return undefined;
    try {
      const rec = JSON.parse(bytes.toString('utf8')) as TagRecord;
      rememberTag(key, rec);
      return rec;
    } catch {
      return undefined;
    }
  }

  async function storeTag(name: string, tag: string, rec: TagRecord): Promise<void> {
    const key = paths.tag(deps.upstream, name, tag);
    rememberTag(key, rec);
    let w;
    try {
      w = await storage.createWriter(key);
      await w.write(Buffer.from(JSON.stringify(rec)));
      await w.commit();
    } catch (err) {
      await w?.cancel().catch(() => undefined);
      log.warn({ name, tag, err: (err as Error).message }, 'cannot cache tag');
    }
  }

  async function forgetTag(name: string, tag: string): Promise<void> {
    const key = paths.tag(deps.upstream, name, tag);
    tagMemory.delete(key);
    await unlessStoreDown(() => storage.delete(key));
  }

  /**
   * A read the store cannot answer counts as "not cached": the manifest is fetched from the
   * upstream and served (its store write fails and is logged), so an outage of the store costs
   * upstream requests, never a wrong answer.
   */
  async function unlessStoreDown<T>(read: () => Promise<T>): Promise<T | undefined> {
    try {
      return await read();
    } catch (err) {
      if (!isStorageUnavailable(err)) throw err;
      log.warn({ err: err.message }, 'object store unavailable; asking the upstream');
      return undefined;
    }
  }

  function serve(req: ManifestRequest, m: StoredManifest, cache: CacheResult): CacheReply | 'bypass' {
    if (!acceptable(m.mediaType, req.accept)) return 'bypass';
    void storage.touch(m.key);
    return {
      kind: 'local',
      status: 200,
      headers: m.headers,
      body: req.method === 'HEAD' ? undefined : m.bytes,
      cache,
      visibility: m.visibility,
    };
  }

  /** GETs a manifest from the upstream, verifies it and stores it. Non-200 answers come back as they are. */
  async function fetchAndStore(
    fetch: UpstreamManifestFetch,
    visibility: Visibility,
    name: string,
    reference: string,
    expectDigest: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<StoredManifest | UpstreamResponse> {
    const res = await fetch({ method: 'GET', name, reference, signal });
    if (res.status !== 200) return res;
    const bytes = await readCapped(res.body, maxManifestBytes, 'manifest');
    const announced = headerValue(res.headers, 'docker-content-digest');
    const want = parseDigest(expectDigest ?? announced ?? '') ?? {
      algorithm: 'sha256' as const,
      hex: '',
      value: '',
    };
    const digest = `${want.algorithm}:${createHash(want.algorithm).update(bytes).digest('hex')}`;
    if (
      (expectDigest !== undefined && digest !== expectDigest) ||
      (announced !== undefined &&
        parseDigest(announced)?.algorithm === want.algorithm &&
        announced !== digest)
    ) {
      throw new RegistryError('DIGEST_INVALID', {
        status: 502,
        message: `upstream manifest does not match its digest ${expectDigest ?? announced ?? ''}`,
      });
    }
    const m = storedManifest(
      digest,
      mediaTypeOf(headerValue(res.headers, 'content-type'), bytes),
      bytes,
      visibility,
    );
    await storeManifest(m);
    return m;
  }

  /**
   * `join`: a request that must go upstream joins the one running for the same manifest; `alone`:
   * it goes itself (a joiner's second look, or the client's own credentials, which are never
   * shared); `after-peer`: as alone, after another replica's request stored the answer.
   */
  type Mode = 'join' | 'alone' | 'after-peer';

  /**
   * The flight of a request that must go upstream: whoever runs it looks in the cache again first
   * (`again`, alone), so what another request stored meanwhile is served `coalesced`.
   */
  function upstreamOnce(
    req: ManifestRequest,
    mode: Mode,
    work: () => Promise<CacheReply | 'bypass'>,
    again: (mode: Mode) => Promise<CacheReply | 'bypass'>,
  ): Promise<CacheReply | 'bypass'> {
    if (mode !== 'join' || req.fetch !== undefined) return work();
    return flights.run(`${deps.upstream} ${req.name}@${req.reference}`, async (afterPeer) => {
      const r = await again(afterPeer ? 'after-peer' : 'alone');
      return r !== 'bypass' && r.kind === 'local' && r.cache === 'hit' ? { ...r, cache: 'coalesced' } : r;
    });
  }

  async function byDigest(req: ManifestRequest, mode: Mode = 'join'): Promise<CacheReply | 'bypass'> {
    const cached = await loadManifest(req.reference);
    if (cached !== undefined) return serve(req, cached, 'hit');
    return upstreamOnce(
      req,
      mode,
      async () => {
        const got = await fetchAndStore(
          req.fetch ?? deps.fetch,
          req.fetch === undefined ? 'shared' : 'private',
          req.name,
          req.reference,
          req.reference,
          req.signal,
        );
        if (!('bytes' in got)) return { kind: 'upstream', response: got };
        return serve(req, got, 'miss');
      },
      (m) => byDigest(req, m),
    );
  }

  async function byTag(req: ManifestRequest, mode: Mode = 'join'): Promise<CacheReply | 'bypass'> {
    const t = now();
    // Another replica just refreshed this tag in storage: this replica's copy in memory is older.
    if (mode === 'after-peer') tagMemory.delete(paths.tag(deps.upstream, req.name, req.reference));
    const rec = await loadTag(req.name, req.reference);
    const cached = rec === undefined ? undefined : await loadManifest(rec.digest);
    if (rec !== undefined && cached !== undefined && deps.policy.isFresh(rec, t))
      return serve(req, cached, 'hit');
    return upstreamOnce(
      req,
      mode,
      () => refreshTag(req, t, rec, cached),
      (m) => byTag(req, m),
    );
  }

  /** Revalidates (HEAD) or fetches (GET) a tag that is not cached or no longer fresh. */
  async function refreshTag(
    req: ManifestRequest,
    t: number,
    rec: TagRecord | undefined,
    cached: StoredManifest | undefined,
  ): Promise<CacheReply | 'bypass'> {
    if (rec !== undefined && cached !== undefined) {
      const stale = (why: string): CacheReply | 'bypass' => {
        if (!deps.policy.mayServeStale(rec, t)) {
          throw new RegistryError('UNAVAILABLE', {
            status: 502,
            message: `upstream failed (${why}) and the cached tag is older than max_stale`,
          });
        }
        log.warn({ name: req.name, tag: req.reference, why }, 'serving stale tag');
        return serve(req, cached, 'stale');
      };
      let head: UpstreamResponse;
      try {
        head = await (req.fetch ?? deps.fetch)({
          method: 'HEAD',
          name: req.name,
          reference: req.reference,
          signal: req.signal,
        });
      } catch (err) {
        if (isFailureError(err)) return stale((err as Error).message);
        throw err;
      }
      discard(head.body);
      if (isUpstreamFailure(head.status)) return stale(`upstream answered ${head.status}`);
      const digest = headerValue(head.headers, 'docker-content-digest');
      if (head.status === 200 && digest === rec.digest) {
        await storeTag(req.name, req.reference, { ...rec, checkedAt: t });
        return serve(req, cached, 'revalidated');
      }
      if (head.status === 404) await forgetTag(req.name, req.reference);
      else if (head.status !== 200) return 'bypass'; // 401/403: not Docxy's to see any more
    }
    let got: StoredManifest | UpstreamResponse;
    try {
      got = await fetchAndStore(
        req.fetch ?? deps.fetch,
        req.fetch === undefined ? 'shared' : 'private',
        req.name,
        req.reference,
        undefined,
        req.signal,
      );
    } catch (err) {
      if (
        rec !== undefined &&
        cached !== undefined &&
        isFailureError(err) &&
        deps.policy.mayServeStale(rec, t)
      )
        return serve(req, cached, 'stale');
      throw err;
    }
    if (!('bytes' in got)) return { kind: 'upstream', response: got };
    await storeTag(req.name, req.reference, {
      digest: got.digest,
      mediaType: got.mediaType,
      size: got.bytes.length,
      checkedAt: t,
    });
    return serve(req, got, rec === undefined ? 'miss' : 'revalidated');
  }

  return {
    get: (req) => (req.referenceIsDigest ? byDigest(req) : byTag(req)),
    forget(digest) {
      memory.delete(digest);
      for (const [k, rec] of tagMemory) if (rec.digest === digest) tagMemory.delete(k);
    },
    async cachedTags(name) {
      const out: string[] = [];
      for await (const e of storage.list(paths.tagsOf(deps.upstream, name))) {
        const t = paths.tagOf(e.key);
        if (t?.name === name) out.push(t.tag);
      }
      return out.sort();
    },
  };
}
