/**
 * Warming inside the server, through the same caches a client request goes through: the router
 * picks the upstream, the manifest service answers tags by its TTL and revalidates them upstream
 * after it (so a moved tag is fetched anew), and the blob service fills what is missing, coalesced
 * with any client pulling the same blob. No HTTP and no client authentication are involved, so it
 * works the same with `auth.anonymous: false`.
 */
import type { Readable } from 'node:stream';
import type { BlobService } from '../cache/blob-service.ts';
import type { BodySource, ByteSink } from '../cache/body-source.ts';
import { isBodySource } from '../cache/body-source.ts';
import type { RepositoryLinks } from '../cache/links.ts';
import type { CacheReply } from '../cache/reply.ts';
import { discardBody } from '../http/response-sink.ts';
import { parseDigest } from '../registry/reference.ts';
import type { Router } from '../routing/router.ts';
import { discard, readCapped } from '../upstream/body.ts';
import type { UpstreamResponse } from '../upstream/registry-client.ts';
import type { UpstreamRuntime } from '../upstream/runtime.ts';
import {
  planImage,
  refusalError,
  WarmError,
  type ManifestDoc,
  type Platform,
  type WarmTarget,
} from './warm-plan.ts';

export interface LocalWarmDeps {
  readonly router: Router<UpstreamRuntime>;
  readonly blobs: BlobService;
  readonly links: RepositoryLinks;
}

export interface WarmedImage {
  readonly platforms: string[];
  /** Blobs the image's platforms name. */
  readonly blobs: number;
  /** Blobs that were not in the cache and were fetched now. */
  readonly fetched: number;
  /** Bytes of the fetched blobs. */
  readonly bytes: number;
}

export interface LocalWarmer {
  /** Warms one image; throws a WarmError (or the router's RegistryError) naming why it could not. */
  warm(target: WarmTarget, platforms: readonly Platform[] | 'all', signal: AbortSignal): Promise<WarmedImage>;
}

/** Resolves with `p`, or rejects as soon as `signal` aborts; a late result is handed to `late`. */
function abortable<T>(p: Promise<T>, signal: AbortSignal, late: (v: T) => void): Promise<T> {
  if (signal.aborted) {
    p.then(late, () => undefined);
    return Promise.reject(new WarmError('aborted'));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      p.then(late, () => undefined);
      reject(new WarmError('aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

async function refusal(res: UpstreamResponse, what: string): Promise<WarmError> {
  const body = await readCapped(res.body, 64 * 1024, 'error body').catch(() => Buffer.alloc(0));
  return refusalError(what, res.status, body.toString('utf8'));
}

/** A sink that only counts: the bytes are in the cache once the fill commits them. */
function countingSink(signal: AbortSignal): ByteSink & { readonly count: number } {
  let count = 0;
  return {
    get count() {
      return count;
    },
    get closed() {
      return signal.aborted;
    },
    write(buf, release) {
      count += buf.length;
      release?.();
      return true;
    },
    writeAll(bufs) {
      for (const b of bufs) count += b.length;
      return true;
    },
    drained: () => (signal.aborted ? Promise.reject(new WarmError('aborted')) : Promise.resolve()),
  };
}

async function drain(body: Readable | BodySource, signal: AbortSignal): Promise<number> {
  if (isBodySource(body)) {
    const sink = countingSink(signal);
    await abortable(body.pipeTo(sink), signal, () => undefined).catch((err: unknown) => {
      body.cancel();
      throw err;
    });
    return sink.count;
  }
  let n = 0;
  try {
    for await (const chunk of body) {
      if (signal.aborted) throw new WarmError('aborted');
      n += (chunk as Buffer).length;
    }
  } finally {
    body.destroy();
  }
  return n;
}

const lateReply = (a: CacheReply | 'bypass'): void => {
  if (a === 'bypass') return;
  if (a.kind === 'upstream') discard(a.response.body);
  else discardBody(a.body);
};

export function createLocalWarmer(deps: LocalWarmDeps): LocalWarmer {
  return {
    async warm(target, platforms, signal) {
      const { upstream: up, name } = deps.router.route(undefined, undefined, target.name);
      const manifests = up.manifests;
      if (manifests === undefined) throw new WarmError('the cache is off');

      const manifest = async (reference: string): Promise<ManifestDoc> => {
        const referenceIsDigest = parseDigest(reference) !== undefined;
        const what = `manifest ${reference}`;
        // No Accept: every media type is acceptable, so the cached answer is never bypassed for it.
        const answer = await abortable(
          manifests.get({ method: 'GET', name, reference, referenceIsDigest, accept: [], signal }),
          signal,
          lateReply,
        );
        if (answer === 'bypass') throw new WarmError(`${what}: the upstream no longer lets Docxy see it`);
        if (answer.kind === 'upstream') throw await refusal(answer.response, what);
        if (answer.cache === 'stale')
          throw new WarmError(`${what}: the upstream failed; the cached tag was kept, not refreshed`);
        const digest = answer.headers['docker-content-digest'];
        if (digest !== undefined) await deps.links.add(up.name, name, digest);
        if (!Buffer.isBuffer(answer.body)) throw new WarmError(`${what}: no manifest body`);
        return JSON.parse(answer.body.toString('utf8')) as ManifestDoc;
      };

      const plan = await planImage(manifest, target, platforms);
      let fetched = 0;
      let bytes = 0;
      for (const b of plan.blobs) {
        const digest = parseDigest(b.digest);
        if (digest === undefined) throw new WarmError(`blob ${b.digest}: not a digest`);
        const answer = await abortable(
          deps.blobs.get({ method: 'GET', name, digest, fetch: up.fetchBlob, visibility: 'shared' }),
          signal,
          lateReply,
        );
        const what = `blob ${b.digest.slice(0, 19)}`;
        if (answer.kind === 'upstream') throw await refusal(answer.response, what);
        await deps.links.add(up.name, name, b.digest);
        if (answer.cache === 'hit' || answer.body === undefined || Buffer.isBuffer(answer.body)) {
          // Already stored: nothing to read.
          discardBody(answer.body);
          continue;
        }
        bytes += await drain(answer.body, signal);
        fetched++;
      }
      return { platforms: plan.platforms, blobs: plan.blobs.length, fetched, bytes };
    },
  };
}
