/**
 * The composition root: the only place that calls the factories and wires their dependencies.
 */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config/schema.ts';
import { createServer } from './http/server.ts';
import { registerHealthRoute } from './http/routes/health.ts';
import { registerTokenRoute } from './http/routes/token.ts';
import { registerV2Routes } from './http/routes/v2.ts';
import type { Logger } from './observability/logger.ts';
import { createRegistryClient } from './upstream/registry-client.ts';
import { createTokenRealmCache } from './upstream/token-realm.ts';
import { createUpstreamAuth } from './upstream/upstream-auth.ts';
import { createFilesystemDriver } from './storage/filesystem/filesystem-driver.ts';
import type { StorageDriver } from './storage/driver.ts';
import { createFlights } from './coordination/single-flight.ts';
import { createBlobService } from './cache/blob-service.ts';
import { canonicalAccept, createManifestService } from './cache/manifest-service.ts';
import { createTagPolicy } from './cache/tag-policy.ts';
import type { BlobFill } from './cache/blob-fill.ts';
import { createEvictor, type Evictor } from './cache/eviction.ts';
import type { UpstreamResponse } from './upstream/registry-client.ts';

export interface App {
  readonly server: FastifyInstance;
  /** Binds the listener; returns the public URL in force. */
  listen(): Promise<string>;
  /** The background eviction, when the cache is on. */
  evictor(): Evictor | undefined;
  /** The public base URL (the configured one, or derived from the bound address). */
  publicUrl(): string;
  close(): Promise<void>;
}

function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) };
}

/** `http://<listen address>`; a wildcard address is no address a client can use, so loopback stands in. */
export function defaultPublicUrl(address: AddressInfo): string {
  const wildcard = address.address === '0.0.0.0' || address.address === '::';
  const host = wildcard ? '127.0.0.1' : address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

export function createApp(config: Config, log: Logger): App {
  const server = createServer({ log });
  const upstreamName = new URL(config.upstream.url).host;
  const client = createRegistryClient({ baseUrl: config.upstream.url, timeouts: config.upstream.timeouts });
  const realms = createTokenRealmCache(client);
  let publicUrl = config.public_url;

  const publicUrlOf = (): string => {
    if (publicUrl === undefined) throw new Error('public URL is not known before listen()');
    return publicUrl;
  };

  const cacheOn = config.cache.enabled;
  const storage: StorageDriver | undefined = cacheOn ? createFilesystemDriver(config.data) : undefined;
  let cache: Parameters<typeof registerV2Routes>[1]['cache'];
  let evictor: Evictor | undefined;
  if (storage !== undefined) {
    const auth = createUpstreamAuth({ client, realms, credentials: config.upstream.credentials });
    const scope = (name: string): string => `repository:${name}:pull`;
    const blobs = createBlobService({
      storage,
      flights: createFlights<Promise<BlobFill | UpstreamResponse>>(),
      fetch: ({ method, name, digest, start, signal }) =>
        auth.request(
          {
            method,
            url: `/v2/${name}/blobs/${digest}`,
            headers: start ? { range: `bytes=${start}-` } : {},
            signal,
          },
          scope(name),
        ),
      log: log.child({ module: 'blobs' }),
      fillTimeoutMs: config.cache.fill_timeout,
      resumeRetries: config.cache.resume_retries,
      resumeBackoffMs: config.cache.resume_backoff,
      onFillEnd: () => evictor?.trigger(),
    });
    const manifests = createManifestService({
      storage,
      upstream: upstreamName,
      fetch: ({ method, name, reference }) =>
        auth.request(
          { method, url: `/v2/${name}/manifests/${reference}`, headers: { accept: canonicalAccept } },
          scope(name),
        ),
      policy: createTagPolicy({ ttlMs: config.upstream.tag_ttl, maxStaleMs: config.cache.max_stale }),
      log: log.child({ module: 'manifests' }),
    });
    cache = { blobs, manifests };
    evictor = createEvictor({
      storage,
      maxSize: config.cache.max_size,
      inUse: (key) => blobs.inUse(key),
      onEvictManifest: (digest) => {
        manifests.forget(digest);
      },
      log: log.child({ module: 'eviction' }),
      intervalMs: 60_000,
    });
  }

  registerHealthRoute(server);
  registerTokenRoute(server, {
    client,
    realms,
    upstreamName,
    libraryPrefix: config.upstream.library_prefix,
    staleTokens: cacheOn,
  });
  registerV2Routes(server, {
    client,
    realms,
    upstreamName,
    libraryPrefix: config.upstream.library_prefix,
    publicUrl: publicUrlOf,
    cache,
  });

  return {
    server,
    publicUrl: publicUrlOf,
    async listen() {
      if (storage !== undefined) {
        // Leftovers of a crash mid-fill were never committed: remove them before serving.
        const removed = await storage.cleanupTemporary();
        if (removed > 0) log.info({ removed }, 'removed unfinished cache writes from a previous run');
        evictor?.trigger();
      }
      const { host, port } = splitHostPort(config.listen);
      await server.listen({ host, port });
      const address = server.server.address() as AddressInfo;
      if (publicUrl === undefined) {
        publicUrl = defaultPublicUrl(address);
        if (address.address === '0.0.0.0' || address.address === '::') {
          log.warn(
            { publicUrl },
            'public_url is not set: token realms point at loopback; set --public-url for remote clients',
          );
        }
      }
      log.info(
        { listen: `${address.address}:${address.port}`, publicUrl, upstream: config.upstream.url },
        'docxy listening',
      );
      return publicUrl;
    },
    evictor: () => evictor,
    async close() {
      evictor?.stop();
      await server.close();
      await cache?.blobs.close();
      await client.close();
    },
  };
}
