/** What a cache service answers: the route writes it to the client. */
import type { Readable } from 'node:stream';
import type { BodySource } from './body-source.ts';
import type { UpstreamResponse } from '../upstream/registry-client.ts';

/**
 * Who may be served a cached object: `shared` was fetched with Docxy's own upstream identity, so
 * every client the policy admits may have it; `private` was fetched with a client's own
 * credentials, so each client must first prove upstream that it may pull it (auth/access-proofs.ts).
 */
export type Visibility = 'shared' | 'private';

/** How a request was served, for the request log (DESIGN.md convention 10). */
export type CacheResult = 'hit' | 'miss' | 'coalesced' | 'revalidated' | 'stale' | 'bypass';

export type CacheReply =
  | {
      readonly kind: 'local';
      readonly status: number;
      readonly headers: Readonly<Record<string, string>>;
      /** Absent for HEAD, 304 and errors without a body; blobs are BodySources (body-source.ts). */
      readonly body?: Readable | Buffer | BodySource;
      readonly cache: CacheResult;
      readonly visibility: Visibility;
    }
  /** The upstream refused Docxy's own identity (private, unknown, rate-limited): relay it, or retry with the client's credentials. */
  | { readonly kind: 'upstream'; readonly response: UpstreamResponse };
