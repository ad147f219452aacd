/**
 * `tags/list` and `referrers/<digest>` answers through the cache, with the tag policy's TTL and
 * serve-stale (tag-policy.ts): within the TTL the stored answer is served with no upstream
 * request; past it the answer is fetched again (a list has no digest to revalidate with a HEAD);
 * when the upstream fails the stored answer is served stale. Each answer is stored per query
 * (`n`/`last`, `artifactType`) as its exact bytes plus the headers that give them meaning.
 *
 * Only what Docxy's own upstream identity fetched is stored (`shared`). A repository Docxy may not
 * list is refused; the route then asks again with the client's own credentials (`fetch`), and that
 * answer is neither read from nor written to the store: it reaches only the client that fetched it.
 *
 * An upstream without the referrers API (Distribution 2.8 answers 404) is answered here as the
 * spec's clients would fall back: from the index at the Referrers Tag, fetched through the
 * manifest cache (registry/referrers.ts).
 */
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { maxManifestBytes, mediaTypes } from '../registry/media-types.ts';
import type { Digest } from '../registry/reference.ts';
import { emptyReferrers, referrersFromIndex, referrersTag } from '../registry/referrers.ts';
import type { StorageDriver } from '../storage/driver.ts';
import { paths } from '../storage/paths.ts';
import { discard, readCapped, readUpTo } from '../upstream/body.ts';
import { headerValue, type UpstreamResponse } from '../upstream/registry-client.ts';
import type { ManifestService, UpstreamManifestFetch } from './manifest-service.ts';
import type { CacheReply, CacheResult } from './reply.ts';
import { isFailureError, isUpstreamFailure, type Checked, type TagPolicy } from './tag-policy.ts';

/** Answers above this are passed through, not stored (the cap registries put on manifests). */
export const maxListingBytes = 4 * 1024 * 1024;

/** The response headers a listing answer is stored and served with (pagination, filters). */
const keptHeaders = ['content-type', 'link', 'oci-filters-applied'] as const;

export interface ListingRequest {
  readonly method: 'GET' | 'HEAD';
  /** Repository name at the upstream (library/ already added). */
  readonly name: string;
  /** The query forwarded upstream, without `?` (`n=10&last=b`, `artifactType=…`), or ''. */
  readonly query: string;
  /** The subject of a referrers request; absent for tags/list. */
  readonly subject?: Digest;
  /** The client's own credentials (a private repository): fetched fresh, never stored, relayed. */
  readonly fetch?: ClientListingFetch;
}

export interface ClientListingFetch {
  readonly listing: UpstreamListingFetch;
  readonly manifest: UpstreamManifestFetch;
}

/** GETs a listing path (with query) from the upstream with Docxy's own identity. */
export type UpstreamListingFetch = (req: { url: string; name: string }) => Promise<UpstreamResponse>;

export interface ListingService {
  /** The answer: local (hit, miss, revalidated, stale), or the upstream's non-200 to relay as it is. */
  get(req: ListingRequest): Promise<CacheReply>;
}

export interface ListingServiceDeps {
  readonly storage: StorageDriver;
  readonly upstream: string;
  readonly fetch: UpstreamListingFetch;
  /** The manifest cache, for the Referrers Tag fallback and the tags it knows. */
  readonly manifests: ManifestService;
  readonly policy: TagPolicy;
  readonly log: Logger;
  readonly now?: () => number;
}

export interface StoredListing extends Checked {
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/** The query with its parameters in a stable order, so `n=1&last=a` and `last=a&n=1` share one entry. */
export function canonicalQuery(query: string): string {
  const params = [...new URLSearchParams(query)];
  params.sort(([a, x], [b, y]) => (a === b ? (x < y ? -1 : x > y ? 1 : 0) : a < b ? -1 : 1));
  return new URLSearchParams(params).toString();
}

/**
 * One object per answer, so one atomic commit replaces header and body together: a JSON line
 * (`checkedAt`, headers; JSON.stringify writes no raw newline), then the body bytes unchanged.
 */
export function encodeListing(l: StoredListing): Buffer {
  const head = Buffer.from(`${JSON.stringify({ checkedAt: l.checkedAt, headers: l.headers })}\n`);
  return Buffer.concat([head, l.body]);
}

export function decodeListing(bytes: Buffer): StoredListing | undefined {
  const nl = bytes.indexOf(0x0a);
  if (nl < 0) return undefined;
  try {
    const head = JSON.parse(bytes.subarray(0, nl).toString('utf8')) as {
      checkedAt?: unknown;
      headers?: unknown;
    };
    if (typeof head.checkedAt !== 'number' || typeof head.headers !== 'object' || head.headers === null)
      return undefined;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(head.headers)) if (typeof v === 'string') headers[k] = v;
    return { checkedAt: head.checkedAt, headers, body: bytes.subarray(nl + 1) };
  } catch {
    return undefined;
  }
}

/** The upstream said "no such API" (Distribution 2.8: 404; others 400 or 405), not "no referrers". */
function noReferrersApi(status: number): boolean {
  return status === 404 || status === 400 || status === 405;
}

type Fetched = { readonly entry: StoredListing } | { readonly response: UpstreamResponse };

export function createListingService(deps: ListingServiceDeps): ListingService {
  const { storage, log } = deps;
  const now = deps.now ?? Date.now;

  async function load(key: string): Promise<StoredListing | undefined> {
    const bytes = await storage.getBytes(key);
    return bytes === undefined ? undefined : decodeListing(bytes);
  }

  async function store(key: string, l: StoredListing): Promise<void> {
    const w = await storage.createWriter(key);
    try {
      await w.write(encodeListing(l));
      await w.commit();
    } catch (err) {
      await w.cancel();
      log.warn({ key, err: (err as Error).message }, 'cannot cache listing');
    }
  }

  function serve(req: ListingRequest, l: StoredListing, cache: CacheResult): CacheReply {
    return {
      kind: 'local',
      status: 200,
      headers: { ...l.headers, 'content-length': String(l.body.length) },
      body: req.method === 'HEAD' ? undefined : l.body,
      cache,
      visibility: 'shared',
    };
  }

  /**
   * The Referrers Tag's manifest: its bytes when it is an OCI index, undefined when there is none
   * (404, or another kind of manifest), or the upstream's refusal. Docxy's identity goes through
   * the manifest cache (the tag is cached like any other); a client's credentials fetch it directly.
   */
  async function tagIndex(req: ListingRequest, tag: string): Promise<Buffer | UpstreamResponse | undefined> {
    if (req.fetch !== undefined) {
      const res = await req.fetch.manifest({ method: 'GET', name: req.name, reference: tag });
      if (res.status !== 200) {
        if (res.status !== 404) return res;
        discard(res.body);
        return undefined;
      }
      const bytes = await readCapped(res.body, maxManifestBytes, 'manifest');
      return headerValue(res.headers, 'content-type') === mediaTypes.ociIndex ? bytes : undefined;
    }
    const got = await deps.manifests.get({
      method: 'GET',
      name: req.name,
      reference: tag,
      referenceIsDigest: false,
      accept: [],
    });
    if (got === 'bypass') return undefined;
    if (got.kind === 'upstream') {
      if (got.response.status !== 404) return got.response;
      discard(got.response.body);
      return undefined;
    }
    return Buffer.isBuffer(got.body) && got.headers['content-type'] === mediaTypes.ociIndex
      ? got.body
      : undefined;
  }

  /** The referrers answer built from the Referrers Tag's index. */
  async function fromReferrersTag(req: ListingRequest, subject: Digest, checkedAt: number): Promise<Fetched> {
    const index = await tagIndex(req, referrersTag(subject));
    if (index !== undefined && !Buffer.isBuffer(index)) return { response: index };
    const artifactType = new URLSearchParams(req.query).get('artifactType') ?? '';
    const answer =
      index === undefined
        ? { bytes: emptyReferrers(), filtered: artifactType !== '' }
        : referrersFromIndex(index, artifactType === '' ? undefined : artifactType);
    const headers: Record<string, string> = { 'content-type': mediaTypes.ociIndex };
    if (answer.filtered) headers['oci-filters-applied'] = 'artifactType';
    return { entry: { checkedAt, headers, body: answer.bytes } };
  }

  async function fetchListing(req: ListingRequest, query: string, checkedAt: number): Promise<Fetched> {
    const q = query === '' ? '' : `?${query}`;
    const url =
      req.subject === undefined
        ? `/v2/${req.name}/tags/list${q}`
        : `/v2/${req.name}/referrers/${req.subject.value}${q}`;
    const res = await (req.fetch?.listing ?? deps.fetch)({ url, name: req.name });
    if (req.subject !== undefined && noReferrersApi(res.status)) {
      discard(res.body);
      return fromReferrersTag(req, req.subject, checkedAt);
    }
    if (res.status !== 200) return { response: res };
    const body: Buffer | Readable = await readUpTo(res.body, maxListingBytes);
    if (!Buffer.isBuffer(body)) return { response: { ...res, body } };
    const headers: Record<string, string> = {};
    for (const h of keptHeaders) {
      const v = headerValue(res.headers, h);
      if (v !== undefined) headers[h] = v;
    }
    return { entry: { checkedAt, headers, body } };
  }

  /** tags/list of a repository never listed, while the upstream is down: the tags the manifest cache knows. */
  async function knownTags(req: ListingRequest, query: string): Promise<CacheReply | undefined> {
    if (req.subject !== undefined || query !== '') return undefined;
    const tags = await deps.manifests.cachedTags(req.name);
    if (tags.length === 0) return undefined;
    const body = Buffer.from(JSON.stringify({ name: req.name, tags }));
    return serve(req, { checkedAt: 0, headers: { 'content-type': 'application/json' }, body }, 'stale');
  }

  /** A client's own answer, relayed like an upstream one (the route never stores or shares it). */
  async function relayed(req: ListingRequest, query: string): Promise<CacheReply> {
    const got = await fetchListing(req, query, now());
    if ('response' in got) return { kind: 'upstream', response: got.response };
    const { headers, body } = got.entry;
    return {
      kind: 'upstream',
      response: {
        status: 200,
        url: '',
        headers: { ...headers, 'content-length': String(body.length) },
        body: Readable.from([body]),
      },
    };
  }

  return {
    async get(req) {
      const query = canonicalQuery(req.query);
      if (req.fetch !== undefined) return relayed(req, query);
      const key =
        req.subject === undefined
          ? paths.tagList(deps.upstream, req.name, query)
          : paths.referrers(deps.upstream, req.name, req.subject.value, query);
      const t = now();
      const stored = await load(key);
      if (stored !== undefined && deps.policy.isFresh(stored, t)) return serve(req, stored, 'hit');
      const servable = stored !== undefined && deps.policy.mayServeStale(stored, t) ? stored : undefined;
      /** While the upstream fails: the stored answer if still servable, else the tags the cache knows. */
      const staleAnswer = async (why: string): Promise<CacheReply | undefined> => {
        const answer = servable === undefined ? await knownTags(req, query) : serve(req, servable, 'stale');
        if (answer !== undefined) log.warn({ name: req.name, key, why }, 'serving stale listing');
        return answer;
      };
      let fetched: Fetched;
      try {
        fetched = await fetchListing(req, query, t);
      } catch (err) {
        if (!isFailureError(err)) throw err;
        const answer = await staleAnswer((err as Error).message);
        if (answer === undefined) throw err;
        return answer;
      }
      if ('response' in fetched) {
        const { response } = fetched;
        const answer = isUpstreamFailure(response.status)
          ? await staleAnswer(`upstream answered ${response.status}`)
          : undefined;
        if (answer !== undefined) {
          discard(response.body);
          return answer;
        }
        // 404 and refusals are relayed and not stored: a repository pushed a moment later must list at once.
        return { kind: 'upstream', response };
      }
      await store(key, fetched.entry);
      return serve(req, fetched.entry, stored === undefined ? 'miss' : 'revalidated');
    },
  };
}
