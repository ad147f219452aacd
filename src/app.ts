/**
 * The composition root: the only place that calls the factories and wires their dependencies.
 */
import { splitHostPort } from './http/listen-address.ts';
import type { AddressInfo } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { createObservability, type Observability } from './app-observability.ts';
import { createReadiness } from './app-readiness.ts';
import { createAccessController } from './auth/access-controller.ts';
import { buildCoordination } from './app-coordination.ts';
import { buildFleet } from './app-cluster.ts';
import { createManifestFlights, type ManifestFleet } from './cache/manifest-flights.ts';
import { createReadPins, evictionClaims } from './cache/read-pins.ts';
import { buildStorage } from './app-storage.ts';
import { createAccessProofs } from './auth/access-proofs.ts';
import { createUserStore } from './auth/htpasswd.ts';
import { createPolicy } from './auth/policy.ts';
import { createRateLimiter } from './auth/rate-limit.ts';
import { createStandInTokens } from './auth/stand-in-tokens.ts';
import { createTokenService, loadOrCreateKey } from './auth/token-service.ts';
import type { FastifyInstance } from 'fastify';
import { createBlobService, type BlobFlight, type BlobService } from './cache/blob-service.ts';
import { createEvictor, type Evictor } from './cache/eviction.ts';
import { createRepositoryLinks } from './cache/links.ts';
import {
  canonicalAccept,
  createManifestMemory,
  createManifestService,
  type ManifestMemory,
  type UpstreamManifestFetch,
} from './cache/manifest-service.ts';
import { createTagPolicy } from './cache/tag-policy.ts';
import { createListingService } from './cache/listing-service.ts';
import { buildWarmSchedule } from './app-warm.ts';
import type { Config } from './config/load.ts';
import type { ResolvedUpstream } from './config/upstreams.ts';
import { withLease } from './coordination/coordination.ts';
import { createFlights } from './coordination/single-flight.ts';
import { createProxyTrust, registerConnectionCaps } from './http/connection-caps.ts';
import { registerHealthRoute } from './http/routes/health.ts';
import { registerTokenRoute } from './http/routes/token.ts';
import { registerV2Routes } from './http/routes/v2.ts';
import { createDocxyServer } from './http/server.ts';
import { createAcmeManager, type AcmeManager } from './http/acme.ts';
import { createRedirectListener } from './http/redirect-listener.ts';
import { daysLeft, loadTlsFiles, type TlsMaterial } from './http/tls.ts';
import { watch, type FSWatcher } from 'node:fs';
import type { Server } from 'node:http';
import type { Logger } from './observability/logger.ts';
import { createRouter } from './routing/router.ts';
import type { StorageDriver } from './storage/driver.ts';
import { createAddressGuard, type Resolve } from './upstream/address-guard.ts';
import { createDispatcher } from './upstream/dispatcher.ts';
import { realmTrusted } from './upstream/realm-trust.ts';
import { createRegistryClient, headerValue, type Headers } from './upstream/registry-client.ts';
import type { UpstreamRuntime } from './upstream/runtime.ts';
import { createTokenRealmCache } from './upstream/token-realm.ts';
import { createUpstreamAuth } from './upstream/upstream-auth.ts';

export interface App {
  readonly server: FastifyInstance;
  /** Re-reads the certificate and key files (file change, SIGHUP); keeps the old ones if the new are bad. */
  reloadTls(): void;
  /** The ACME manager, when certificates come from ACME. */
  acme(): AcmeManager | undefined;
  /** The plain HTTP redirect/ACME listener, when there is one. */
  redirectServer(): Server | undefined;
  /** Binds the listener; returns the public URL in force. */
  listen(): Promise<string>;
  /** The public base URL (the configured one, or derived from the bound address). */
  publicUrl(): string;
  /** The background eviction, when the cache is on. */
  evictor(): Evictor | undefined;
  close(): Promise<void>;
}

/** `http://<listen address>`; a wildcard address is no address a client can use, so loopback stands in. */
export function defaultPublicUrl(address: AddressInfo, tls = false): string {
  const wildcard = address.address === '0.0.0.0' || address.address === '::';
  const host = wildcard ? '127.0.0.1' : address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${tls ? 'https' : 'http'}://${host}:${address.port}`;
}

/**
 * Logs Docker Hub's pull budget (`ratelimit-remaining: 76;w=21600`) when it changes, so operators
 * see a mirror running out before clients get 429s.
 */
function rateLimitObserver(upstream: string, log: Logger, obs: Observability): (headers: Headers) => void {
  let last: string | undefined;
  return (headers) => {
    const remaining = headerValue(headers, 'ratelimit-remaining');
    if (remaining === undefined || remaining === last) return;
    last = remaining;
    const left = Number.parseInt(remaining, 10);
    const limit = Number.parseInt(headerValue(headers, 'ratelimit-limit') ?? '', 10);
    if (Number.isFinite(left))
      obs.rateLimitRemaining(upstream, left, Number.isFinite(limit) ? limit : undefined);
    log[left <= 5 ? 'warn' : 'info'](
      { upstream, ratelimitRemaining: remaining, ratelimitLimit: headerValue(headers, 'ratelimit-limit') },
      'upstream pull budget',
    );
  };
}

function createUpstream(
  u: ResolvedUpstream,
  isDefault: boolean,
  storage: StorageDriver | undefined,
  config: Config,
  log: Logger,
  overrides: AppOverrides,
  obs: Observability,
  manifestMemory: ManifestMemory,
  manifestFleet: ManifestFleet | undefined,
): UpstreamRuntime {
  const guard = createAddressGuard({
    configured: [u.url, ...u.mirrors],
    allowPrivate: config.limits.allow_private_redirects,
    resolve: overrides.resolve,
  });
  const client = createRegistryClient({
    baseUrl: u.url,
    mirrors: u.mirrors,
    dispatcher: createDispatcher(u, process.env, guard.lookup),
    timeouts: u.timeouts,
    observe: rateLimitObserver(u.name, log, obs),
    record: obs.upstreamRecord(u.name),
    guard,
  });
  const realms = createTokenRealmCache(client);
  const auth = createUpstreamAuth({
    client,
    realms,
    credentials: u.credentials,
    trusted: (realm) => realmTrusted(realm, u.url, u.authHosts),
  });
  const scope = (name: string): string => `repository:${name}:pull`;
  const fetchManifest: UpstreamManifestFetch = ({ method, name, reference, signal }) =>
    auth.request(
      { method, url: `/v2/${name}/manifests/${reference}`, headers: { accept: canonicalAccept }, signal },
      scope(name),
    );
  const policy = createTagPolicy({ ttlMs: u.tagTtlMs, maxStaleMs: config.cache.max_stale });
  const manifests =
    storage === undefined
      ? undefined
      : createManifestService({
          storage,
          upstream: u.name,
          fetch: fetchManifest,
          policy,
          log: log.child({ module: 'manifests', upstream: u.name }),
          memory: manifestMemory,
          flights: createManifestFlights(manifestFleet),
        });
  const listings =
    storage === undefined || manifests === undefined
      ? undefined
      : createListingService({
          storage,
          upstream: u.name,
          fetch: ({ url, name }) => auth.request({ method: 'GET', url }, scope(name)),
          manifests,
          policy,
          log: log.child({ module: 'listings', upstream: u.name }),
        });
  return {
    name: u.name,
    config: u,
    client,
    realms,
    tokenPath: isDefault ? '/auth/token' : `/auth/token/${u.name}`,
    manifests,
    listings,
    fetchManifest,
    fetchBlob: ({ method, name, digest, start, signal }) =>
      auth.request(
        {
          method,
          url: `/v2/${name}/blobs/${digest}`,
          headers: start ? { range: `bytes=${start}-` } : {},
          signal,
        },
        scope(name),
      ),
    close: () => client.close(),
  };
}

/** What tests may replace; production passes nothing. */
export interface AppOverrides {
  /** The DNS resolver of upstream connections and their address guard (DNS rebinding tests). */
  readonly resolve?: Resolve;
}

export function createApp(config: Config, log: Logger, overrides: AppOverrides = {}): App {
  // Certificates from files are checked before anything starts: a bad one fails the start.
  const tlsFiles =
    config.tls?.cert !== undefined && config.tls.key !== undefined
      ? { cert: config.tls.cert, key: config.tls.key }
      : undefined;
  const initialTls = tlsFiles === undefined ? undefined : loadTlsFiles(tlsFiles.cert, tlsFiles.key);
  const obs = createObservability(config, log);
  const docxyServer = createDocxyServer({
    log,
    onResponse: (done) => {
      obs.onResponse(done);
    },
    tls: config.tlsEnabled ? (initialTls ?? 'pending') : undefined,
    trustProxy: config.trust_proxy,
    limits: {
      urlLength: config.limits.url_length,
      headerBytes: config.limits.header_bytes,
      headersCount: config.limits.headers_count,
      requestTimeout: config.limits.request_timeout,
      headersTimeout: config.limits.headers_timeout,
    },
  });
  const server = docxyServer.app;
  const installTls = (m: TlsMaterial, why: string): void => {
    docxyServer.setTls(m);
    const days = daysLeft(m);
    const fields = { serial: m.serial, subject: m.subject, notAfter: m.notAfter.toISOString(), why };
    if (days < 14)
      log.warn(
        { ...fields, daysLeft: Math.floor(days) },
        days < 0 ? 'TLS certificate has EXPIRED' : 'TLS certificate expires soon',
      );
    else log.info(fields, 'TLS certificate in use');
  };
  const acmeManager =
    config.tls?.acme === undefined
      ? undefined
      : createAcmeManager({
          config: config.tls.acme,
          dir: join(config.data, 'acme'),
          log: log.child({ module: 'acme' }),
          onCertificate: (m) => {
            installTls(m, 'acme');
          },
        });
  const reloadTls = (): void => {
    if (tlsFiles === undefined) return;
    try {
      installTls(loadTlsFiles(tlsFiles.cert, tlsFiles.key), 'reload');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'TLS reload failed; keeping the certificate in use');
    }
  };
  const watchers: FSWatcher[] = [];
  let redirect: Server | undefined;
  const { coordination, owner } = buildCoordination(config, log, obs.metrics?.coordination);
  const builtStorage = config.cache.enabled ? buildStorage(config, coordination) : undefined;
  const storage: StorageDriver | undefined = builtStorage?.driver;
  const fleetFills = buildFleet(config, coordination, owner, storage, log);
  // One bound for the process: manifests are stored once by digest for every upstream, and so kept.
  const manifestMemory = createManifestMemory(config.cache.memory.manifest_bytes);
  // With Redis, one manifest request at a time for the whole fleet (it needs no cluster endpoint).
  const manifestFleet =
    coordination.kind === 'redis'
      ? { leases: coordination.leases, owner, ttlMs: config.cluster?.lease_ttl ?? 10_000 }
      : undefined;
  const upstreams = config.upstreams.map((u) =>
    createUpstream(
      u,
      u.name === config.defaultUpstream,
      storage,
      config,
      log,
      overrides,
      obs,
      manifestMemory,
      manifestFleet,
    ),
  );
  const router = createRouter(upstreams, config.defaultUpstream);
  let publicUrl = config.public_url;
  let evictor: Evictor | undefined;
  let blobs: BlobService | undefined;
  // In-process coordination would only double the limiter's own counts and the one evictor: it is
  // used only with a fleet.
  const fleet = coordination.kind === 'redis' ? coordination : undefined;

  // With a fleet, what any replica reads is pinned, and the evictor deletes only under a claim. A
  // pin outlives a crashed replica by at most its TTL (its objects stay unevictable meanwhile).
  const readPins =
    fleet === undefined || builtStorage === undefined
      ? undefined
      : createReadPins({
          pins: fleet.pins,
          ownerId: owner.id,
          namespace: builtStorage.namespace,
          ttlMs: 30_000,
          log: log.child({ module: 'pins' }),
        });
  const claims =
    fleet === undefined || builtStorage === undefined
      ? undefined
      : evictionClaims(fleet.pins, owner.id, builtStorage.namespace);
  if (storage !== undefined) {
    const service = createBlobService({
      storage,
      ...(readPins === undefined ? {} : { pins: readPins }),
      flights: createFlights<BlobFlight>(),
      ...(fleetFills === undefined ? {} : { fleet: fleetFills.fills }),
      log: log.child({ module: 'blobs' }),
      fillTimeoutMs: config.cache.fill_timeout,
      resumeRetries: config.cache.resume_retries,
      resumeBackoffMs: config.cache.resume_backoff,
      onFillEnd: () => evictor?.trigger(),
      metrics: obs.fills,
    });
    blobs = service;
    evictor = createEvictor({
      storage,
      maxSize: config.cache.max_size,
      inUse: (key) => service.inUse(key),
      ...(claims === undefined ? {} : { claims }),
      onEvictManifest: (digest) => {
        for (const u of upstreams) u.manifests?.forget(digest);
      },
      log: log.child({ module: 'eviction' }),
      metrics: obs.cacheSize,
      intervalMs: 60_000,
      exclusive:
        fleet === undefined
          ? undefined
          : (work) => withLease(fleet.leases, 'eviction', owner, 60_000, () => work()),
    });
  }

  const publicUrlOf = (): string => {
    if (publicUrl === undefined) throw new Error('public URL is not known before listen()');
    return publicUrl;
  };

  const limiter = createRateLimiter(
    config.rate_limit,
    Date.now,
    undefined,
    (reason) => {
      obs.rateLimited(reason);
    },
    fleet?.counters,
  );
  registerConnectionCaps(server, {
    limiter,
    trusted: createProxyTrust(config.trust_proxy),
    capped: config.rate_limit.per_ip.connections !== undefined,
    onRefuse: () => {
      obs.rateLimited('connections');
    },
    log,
  });
  const authenticated = !config.auth.anonymous;
  const users = createUserStore({ htpasswd: config.auth.htpasswd, users: config.auth.users });
  const tokens = authenticated
    ? createTokenService({
        keyPem: loadOrCreateKey(config.auth.token.key_file ?? join(config.data, 'token.key')),
        service: config.auth.service,
        ttlMs: config.auth.token.ttl,
      })
    : undefined;
  tokens?.catch(() => undefined); // surfaced by listen(); never an unhandled rejection
  const access = createAccessController({
    authenticated,
    service: config.auth.service,
    tokens,
    users,
    policy: createPolicy(config.policy, config.auth.groups, { anonymousByDefault: !authenticated }),
    limiter,
    publicUrl: publicUrlOf,
    log: log.child({ module: 'access' }),
  });

  const links = storage === undefined ? undefined : createRepositoryLinks(storage);
  const warmSchedule = buildWarmSchedule({
    config: config.warm,
    router,
    blobs,
    links,
    log: log.child({ module: 'warm' }),
    metrics: obs.metrics?.warm,
  });
  const readiness = createReadiness(config, obs.stats);
  registerHealthRoute(server, readiness);
  const standIns = createStandInTokens();
  obs.register(server, { blobs: () => blobs, users });
  registerTokenRoute(server, { router, access, staleTokens: storage !== undefined, standIns });
  registerV2Routes(server, {
    router,
    publicUrl: publicUrlOf,
    blobs,
    access,
    limiter,
    proofs: createAccessProofs(60_000, Date.now, fleet?.records),
    links,
    standIns,
  });

  return {
    server,
    publicUrl: publicUrlOf,
    evictor: () => evictor,
    reloadTls,
    acme: () => acmeManager,
    redirectServer: () => redirect,
    async listen() {
      await tokens; // a bad signing key fails the start, naming the file
      if (config.http_listen !== undefined) {
        const r = createRedirectListener({
          publicUrl: publicUrlOf,
          challenges: () => acmeManager?.challenges,
          ready: readiness,
        });
        const { host: rh, port: rp } = splitHostPort(config.http_listen);
        await new Promise<void>((resolve, reject) => {
          r.once('error', reject);
          r.listen(rp, rh, () => {
            resolve();
          });
        });
        redirect = r;
      }
      if (initialTls !== undefined) installTls(initialTls, 'start');
      if (acmeManager !== undefined) {
        // The HTTP listener is up, so HTTP-01 challenges can be answered before HTTPS starts.
        installTls(await acmeManager.ensure(), 'start');
        acmeManager.start();
      }
      if (tlsFiles !== undefined) {
        // Certificate renewals replace the files (often by rename): watch their folders.
        let pending: NodeJS.Timeout | undefined;
        for (const dir of new Set([dirname(tlsFiles.cert), dirname(tlsFiles.key)])) {
          const names = new Set([basename(tlsFiles.cert), basename(tlsFiles.key)]);
          const w = watch(dir, (_event, name) => {
            if (name !== null && !names.has(name)) return;
            if (pending !== undefined) clearTimeout(pending);
            pending = setTimeout(reloadTls, 200);
          });
          w.unref();
          watchers.push(w);
        }
      }
      if (storage !== undefined && builtStorage !== undefined) {
        // A missing bucket or refused keys stop the start here; an unreachable store does not:
        // Docxy relays meanwhile and answers 503 for what needs the store.
        if (await builtStorage.start()) {
          // Leftovers of a crash mid-fill were never committed: remove them before serving.
          const removed = await storage.cleanupTemporary();
          if (removed > 0) log.info({ removed }, 'removed unfinished cache writes from a previous run');
        } else {
          log.warn(
            { storage: builtStorage.location },
            'object store unreachable at start; serving without it until it answers',
          );
        }
        evictor?.trigger();
      }
      if (fleetFills !== undefined && blobs !== undefined) await fleetFills.start(blobs);
      const { host, port } = splitHostPort(config.listen);
      await obs.listen();
      await server.listen({ host, port });
      const address = server.server.address() as AddressInfo;
      if (publicUrl === undefined) {
        publicUrl = defaultPublicUrl(address, config.tlsEnabled);
        if (address.address === '0.0.0.0' || address.address === '::') {
          log.warn(
            { publicUrl },
            'public_url is not set: token realms point at loopback; set --public-url for remote clients',
          );
        }
      }
      log.info(
        {
          listen: `${address.address}:${address.port}`,
          publicUrl,
          upstreams: config.upstreams.map((u) => `${u.name}=${u.url}`),
          storage: builtStorage?.location ?? 'none (cache disabled)',
        },
        'docxy listening',
      );
      warmSchedule?.start();
      return publicUrl;
    },
    async close() {
      await warmSchedule?.close(); // aborts a running warm before the caches it uses close
      evictor?.stop();
      acmeManager?.stop();
      for (const w of watchers) w.close();
      const r = redirect;
      if (r !== undefined)
        await new Promise<void>((resolve) =>
          r.close(() => {
            resolve();
          }),
        );
      await server.close();
      await obs.close();
      await fleetFills?.close();
      await blobs?.close();
      await readPins?.close();
      await Promise.all(upstreams.map((u) => u.close()));
      await builtStorage?.close();
      await coordination.close();
    },
  };
}
