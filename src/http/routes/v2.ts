/**
 * The registry API (`/v2/…`), relayed to the upstream. Each request is parsed against the OCI
 * grammar first (invalid input never leaves Docxy), the name is mapped (library/ prefix), the
 * client's own credentials and content negotiation are forwarded, and the answer is relayed.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../../registry/errors.ts';
import { maxManifestBytes } from '../../registry/media-types.ts';
import { parseDigest, parseV2Path, type V2Route } from '../../registry/reference.ts';
import type { Router } from '../../routing/router.ts';
import type { UpstreamRuntime } from '../../upstream/runtime.ts';
import { discard, readCapped } from '../../upstream/body.ts';
import type { BlobService, UpstreamBlobFetch } from '../../cache/blob-service.ts';
import { canonicalAccept, type UpstreamManifestFetch } from '../../cache/manifest-service.ts';
import type { AccessProofs } from '../../auth/access-proofs.ts';
import type { RepositoryLinks } from '../../cache/links.ts';
import { rewriteRealm } from '../../upstream/auth-challenge.ts';
import type { CacheReply } from '../../cache/reply.ts';
import type { ClientListingFetch } from '../../cache/listing-service.ts';
import { createAcceptCache } from '../../cache/tag-policy.ts';
import { pipeline } from 'node:stream/promises';
import { headerValue, type RegistryClient, type UpstreamResponse } from '../../upstream/registry-client.ts';
import { version } from '../../version.ts';
import { countBytes, relay, rewriteLink } from '../relay.ts';
import { discardBody, sendBody } from '../response-sink.ts';
import { isBodySource } from '../../cache/body-source.ts';
import type { AccessController } from '../../auth/access-controller.ts';
import type { RateLimiter } from '../../auth/rate-limit.ts';
import { ownTokenPrefix, type StandInTokens } from '../../auth/stand-in-tokens.ts';

export interface V2RouteDeps {
  readonly router: Router<UpstreamRuntime>;
  /** The public base URL (known once the listener is bound when not configured). */
  readonly publicUrl: () => string;
  /** The blob cache; absent when `cache.enabled` is false (plain relay). */
  readonly blobs?: BlobService;
  readonly access: AccessController;
  readonly limiter: RateLimiter;
  readonly proofs: AccessProofs;
  /** Which cached digests were seen in which repository (absent without a cache). */
  readonly links?: RepositoryLinks;
  /** Recognises the stand-in tokens Docxy's realm issued (stand-in-tokens.ts). */
  readonly standIns?: StandInTokens;
}

/**
 * Every Accept header value, in order. HTTP/1.1 keeps repeated headers apart in rawHeaders (Docker
 * sends six; FACTS.md); HTTP/2's compatibility request lists its values there too, or one joined
 * with commas, which means the same. Read from rawHeaders rather than headersDistinct, which
 * builds an object of every header on first use (a cost on each warm manifest request).
 */
function acceptHeaderValues(request: FastifyRequest): string[] | undefined {
  const raw = request.raw.rawHeaders;
  let out: string[] | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i];
    if (name?.length === 6 && name.toLowerCase() === 'accept') (out ??= []).push(raw[i + 1] ?? '');
  }
  return out;
}

/** Request headers forwarded upstream: credentials, content negotiation and conditional/range GETs. */
const forwardHeaders = ['authorization', 'range', 'if-range', 'if-none-match'] as const;

function upstreamHeaders(request: FastifyRequest): Record<string, string> {
  const out: Record<string, string> = { 'user-agent': `docxy/${version}` };
  for (const name of forwardHeaders) {
    const v = request.headers[name];
    if (typeof v === 'string') out[name] = v;
  }
  // Docker sends six separate Accept headers (FACTS.md); every value must reach the upstream, or it
  // may answer a different manifest type for the same tag.
  const accept = acceptHeaderValues(request);
  if (accept !== undefined && accept.length > 0) out.accept = accept.join(', ');
  return out;
}

/** Query parameters that mean something to the upstream; anything else (e.g. containerd's ns) stays here. */
function forwardQuery(rawUrl: string, allowed: readonly string[]): string {
  const q = rawUrl.indexOf('?');
  if (q < 0) return '';
  const params = new URLSearchParams(rawUrl.slice(q + 1));
  const out = new URLSearchParams();
  for (const [k, v] of params) if (allowed.includes(k)) out.append(k, v);
  const s = out.toString();
  return s === '' ? '' : `?${s}`;
}

/**
 * Docker 29 checks that a manifest HEAD carries the exact Content-Length (FACTS.md); some
 * registries omit it, or the digest, on HEAD. Then the HEAD is answered from an upstream GET, with
 * the digest computed from the bytes when the upstream did not send it.
 */
async function headFromGet(
  client: RegistryClient,
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<UpstreamResponse> {
  const res = await client.request({ method: 'GET', url, headers, signal });
  if (res.status !== 200) return res;
  const bytes = await readCapped(res.body, maxManifestBytes, 'manifest');
  const digest =
    headerValue(res.headers, 'docker-content-digest') ??
    `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  return {
    status: 200,
    url: res.url,
    headers: { ...res.headers, 'content-length': String(bytes.length), 'docker-content-digest': digest },
    body: Readable.from([]),
  };
}

/** Docxy's own identity was refused by the upstream (private or unknown to it). */
function refused(answer: CacheReply | 'bypass'): answer is Extract<CacheReply, { kind: 'upstream' }> {
  return (
    answer !== 'bypass' &&
    answer.kind === 'upstream' &&
    (answer.response.status === 401 || answer.response.status === 403)
  );
}

/** Fetchers that carry the client's own upstream credentials (for private content). */
function clientManifestFetch(up: UpstreamRuntime, credential: string): UpstreamManifestFetch {
  return ({ method, name, reference }) =>
    up.client.request({
      method,
      url: `/v2/${name}/manifests/${reference}`,
      headers: { authorization: credential, accept: canonicalAccept },
    });
}

function clientListingFetch(up: UpstreamRuntime, credential: string): ClientListingFetch {
  return {
    listing: ({ url }) => up.client.request({ method: 'GET', url, headers: { authorization: credential } }),
    manifest: clientManifestFetch(up, credential),
  };
}

function clientBlobFetch(up: UpstreamRuntime, credential: string): UpstreamBlobFetch {
  return ({ method, name, digest, start, signal }) =>
    up.client.request({
      method,
      url: `/v2/${name}/blobs/${digest}`,
      headers: start
        ? { authorization: credential, range: `bytes=${start}-` }
        : { authorization: credential },
      signal,
    });
}

/** Docxy's own stand-in tokens (issued while the upstream's token service is down) are never sent upstream. */

function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function clientCredentials(request: FastifyRequest): string | undefined {
  if (request.ctx.stripAuthorization === true) return undefined;
  const auth = request.headers.authorization;
  if (auth === undefined || auth.startsWith(`Bearer ${ownTokenPrefix}`)) return undefined;
  return auth;
}

/** The query parameter containerd adds to every mirror request: the registry the image is from. */
export function nsParam(rawUrl: string): string | undefined {
  const q = rawUrl.indexOf('?');
  if (q < 0) return undefined;
  return new URLSearchParams(rawUrl.slice(q + 1)).get('ns') ?? undefined;
}

export function registerV2Routes(app: FastifyInstance, deps: V2RouteDeps): void {
  const acceptOf = createAcceptCache();
  function relayOptions(up: UpstreamRuntime, abort: AbortController): Parameters<typeof relay>[3] {
    const publicUrl = deps.publicUrl();
    return {
      realm: `${publicUrl}${up.tokenPath}`,
      publicUrl,
      upstreamOrigin: new URL(up.client.baseUrl).origin,
      abort,
    };
  }

  function abortOnClose(reply: FastifyReply): AbortController {
    const abort = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) abort.abort();
    });
    return abort;
  }

  /** The seed's relay: the client's own credentials and Accept, the upstream's answer as it is. */
  async function passThrough(
    up: UpstreamRuntime,
    request: FastifyRequest,
    reply: FastifyReply,
    route: V2Route,
    url: string,
    abort: AbortController,
  ): Promise<void> {
    const method = request.method === 'HEAD' ? 'HEAD' : 'GET';
    const headers = upstreamHeaders(request);
    if (
      request.ctx.stripAuthorization === true ||
      headers.authorization?.startsWith(`Bearer ${ownTokenPrefix}`) === true
    ) {
      delete headers.authorization;
    }
    let res = await up.client.request({ method, url, headers, signal: abort.signal });
    if (
      route.kind === 'manifest' &&
      method === 'HEAD' &&
      res.status === 200 &&
      (headerValue(res.headers, 'content-length') === undefined ||
        headerValue(res.headers, 'docker-content-digest') === undefined)
    ) {
      discard(res.body);
      res = await headFromGet(up.client, url, headers, abort.signal);
    }
    if (res.status === 401) up.realms.observe(headerValue(res.headers, 'www-authenticate'));
    await relay(request, reply, res, relayOptions(up, abort));
  }

  /** `/v2/` while the upstream is down: the challenge it gave last, or an anonymous welcome. */
  function staleBase(up: UpstreamRuntime, reply: FastifyReply): FastifyReply {
    const realm = up.realms.known();
    const out = reply.header('docker-distribution-api-version', 'registry/2.0').type('application/json');
    if (realm?.kind === 'bearer') {
      const service = realm.service === undefined ? '' : `,service="${realm.service}"`;
      return out
        .code(401)
        .header('www-authenticate', `Bearer realm="${deps.publicUrl()}${up.tokenPath}"${service}`)
        .send(new RegistryError('UNAUTHORIZED').toBody());
    }
    return out.code(200).send({});
  }

  /** An OCI error for an upstream refusal of a private object (the client proved nothing). */
  function refusal(up: UpstreamRuntime, res: UpstreamResponse, kind: 'manifest' | 'blob'): RegistryError {
    discard(res.body);
    if (res.status === 401) {
      const challenge = headerValue(res.headers, 'www-authenticate');
      const headers: Record<string, string> = {};
      if (challenge !== undefined)
        headers['www-authenticate'] = rewriteRealm(challenge, `${deps.publicUrl()}${up.tokenPath}`);
      return new RegistryError('UNAUTHORIZED', { headers });
    }
    if (res.status === 403) return new RegistryError('DENIED');
    if (res.status === 404)
      return new RegistryError(kind === 'manifest' ? 'MANIFEST_UNKNOWN' : 'BLOB_UNKNOWN');
    return new RegistryError('UNAVAILABLE', {
      status: 502,
      message: `upstream answered ${res.status} to an access check`,
    });
  }

  /**
   * A private object (fetched with some client's credentials) goes only to a requester who proves
   * upstream, with its own credentials, that it may pull it. Throws the refusal otherwise.
   */
  async function proveAccess(
    up: UpstreamRuntime,
    request: FastifyRequest,
    kind: 'manifest' | 'blob',
    name: string,
    digest: string,
  ): Promise<void> {
    const credential = clientCredentials(request);
    const proof = await deps.proofs.prove({
      credential,
      upstream: up.name,
      name,
      digest,
      check: () => {
        if (credential === undefined) {
          return kind === 'manifest'
            ? up.fetchManifest({ method: 'HEAD', name, reference: digest })
            : up.fetchBlob({ method: 'HEAD', name, digest });
        }
        const path = kind === 'manifest' ? 'manifests' : 'blobs';
        return up.client.request({
          method: 'HEAD',
          url: `/v2/${name}/${path}/${digest}`,
          headers: { authorization: credential, accept: canonicalAccept },
        });
      },
    });
    if (proof !== true) {
      request.log.warn(
        {
          audit: true,
          event: 'denied',
          ip: request.ip,
          upstream: up.name,
          repository: name,
          reason: 'private object, access not proven',
        },
        'audit',
      );
      throw refusal(up, proof, kind);
    }
  }

  /**
   * A shared object is served for a repository only if it was seen there: a fill under this name
   * (a miss) or a tag of this repository links it now; a hit or a join for an unlinked name is
   * first confirmed with an upstream HEAD under that name (Docxy's identity).
   */
  async function ensureLinked(
    up: UpstreamRuntime,
    links: RepositoryLinks,
    result: string,
    check: { kind: 'manifest' | 'blob'; name: string; byTag?: boolean },
    digest: string,
  ): Promise<void> {
    if (result === 'miss' || check.byTag === true) {
      await links.add(up.name, check.name, digest);
      return;
    }
    if (await links.has(up.name, check.name, digest)) return;
    const res =
      check.kind === 'manifest'
        ? await up.fetchManifest({ method: 'HEAD', name: check.name, reference: digest })
        : await up.fetchBlob({ method: 'HEAD', name: check.name, digest });
    if (res.status !== 200) throw refusal(up, res, check.kind);
    discard(res.body);
    await links.add(up.name, check.name, digest);
  }

  async function writeCacheReply(
    up: UpstreamRuntime,
    request: FastifyRequest,
    reply: FastifyReply,
    answer: CacheReply,
    abort: AbortController,
    check: { kind: 'manifest' | 'blob'; name: string; digest?: string; byTag?: boolean },
  ): Promise<void> {
    if (answer.kind === 'upstream') {
      if (answer.response.status === 401)
        up.realms.observe(headerValue(answer.response.headers, 'www-authenticate'));
      await relay(request, reply, answer.response, relayOptions(up, abort));
      return;
    }
    if (answer.visibility === 'shared' && deps.links !== undefined) {
      const digest = check.digest ?? answer.headers['docker-content-digest'];
      try {
        if (digest !== undefined) await ensureLinked(up, deps.links, answer.cache, check, digest);
      } catch (err) {
        discardBody(answer.body);
        throw err;
      }
    }
    if (answer.visibility === 'private') {
      const digest = check.digest ?? answer.headers['docker-content-digest'];
      try {
        if (digest === undefined) throw new RegistryError('DENIED');
        await proveAccess(up, request, check.kind, check.name, digest);
      } catch (err) {
        discardBody(answer.body);
        throw err;
      }
    }
    request.ctx.cache = answer.cache;
    reply.hijack();
    const raw = reply.raw;
    const { link } = answer.headers; // a stored tags/list page may point at the next one
    raw.writeHead(answer.status, {
      ...answer.headers,
      ...(link === undefined ? {} : { link: rewriteLink(link, relayOptions(up, abort)) }),
      'docker-distribution-api-version': 'registry/2.0',
    });
    const body = answer.body;
    if (body === undefined || request.method === 'HEAD') {
      discardBody(body);
      raw.end();
      return;
    }
    if (Buffer.isBuffer(body)) {
      request.ctx.bytes = body.length;
      request.ctx.budget?.(body.length);
      raw.end(body);
      return;
    }
    if (isBodySource(body)) {
      await sendBody(request, raw, body, abort.signal);
      return;
    }
    countBytes(request.ctx, body, raw);
    try {
      await pipeline(body, raw, { signal: abort.signal });
    } catch (err) {
      request.ctx.error = err instanceof Error ? err.message : String(err);
      raw.destroy();
    }
  }

  async function handle(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const path = request.url.split('?')[0] ?? '';
    const route = parseV2Path(path);
    const ns = nsParam(request.url);
    const routed = 'name' in route ? deps.router.route(request.headers.host, ns, route.name) : undefined;
    const up = routed?.upstream ?? deps.router.upstreamFor(request.headers.host, ns);
    request.ctx.upstream = up.name;
    request.ctx.route = route.kind;
    if (routed !== undefined) request.ctx.repository = routed.name;
    const principal = await deps.access.authorize(request, up, 'name' in route ? route.name : undefined);
    const user = principal.kind === 'user' ? principal.name : undefined;
    if (user !== undefined) request.ctx.user = user;
    request.ctx.budget = (n) => deps.limiter.bytes(request.ip, user, n);
    // With client authentication on, the client's Authorization is Docxy's own token: never upstream.
    if (deps.access.authenticated) request.ctx.stripAuthorization = true;
    const method = request.method === 'HEAD' ? 'HEAD' : 'GET';
    const name = routed?.name ?? '';
    let url: string;
    switch (route.kind) {
      case 'base':
        url = '/v2/';
        break;
      case 'manifest':
        url = `/v2/${name}/manifests/${route.reference}`;
        break;
      case 'blob':
        url = `/v2/${name}/blobs/${route.digest}`;
        break;
      case 'tags':
        url = `/v2/${name}/tags/list${forwardQuery(request.url, ['n', 'last'])}`;
        break;
      case 'referrers':
        url = `/v2/${name}/referrers/${route.digest}${forwardQuery(request.url, ['artifactType'])}`;
        break;
      case 'upload':
      case 'catalog':
        throw new RegistryError('UNSUPPORTED', {
          message: 'Docxy is a read-only pull-through mirror; this endpoint is not supported',
        });
    }
    const presented = request.headers.authorization;
    const standIn =
      presented?.startsWith(`Bearer ${ownTokenPrefix}`) === true &&
      deps.standIns?.valid(presented.slice(7).trim(), up.name) === true;
    if (route.kind === 'base' && (deps.access.authenticated || standIn)) {
      // The client holds a Docxy token (verified by authorize, or a stand-in this process signed):
      // the upstream's challenge is not its business, and it is welcome whether or not the upstream answers.
      reply.header('docker-distribution-api-version', 'registry/2.0').type('application/json').send({});
      return;
    }
    if (
      route.kind === 'base' &&
      up.config.credentials !== undefined &&
      clientCredentials(request) === undefined &&
      (await up.realms.get().catch(() => up.realms.known()))?.kind === 'basic'
    ) {
      // Docxy pulls with its own account from this Basic-auth registry: an anonymous client needs
      // no login, while a relayed Basic challenge would demand one (docker fails with "no basic
      // auth credentials"). A client that sends credentials still reaches the registry.
      reply.header('docker-distribution-api-version', 'registry/2.0').type('application/json').send({});
      return;
    }
    const abort = abortOnClose(reply);
    const blobs = deps.blobs;
    const manifests = up.manifests;
    if (blobs === undefined || manifests === undefined) {
      await passThrough(up, request, reply, route, url, abort);
      return;
    }
    const fallback = (): Promise<void> => passThrough(up, request, reply, route, url, abort);

    switch (route.kind) {
      case 'manifest': {
        const base = {
          method,
          name,
          reference: route.reference,
          referenceIsDigest: route.referenceIsDigest,
          accept: acceptOf(acceptHeaderValues(request)),
        } as const;
        let answer = await manifests.get(base);
        // Docxy's identity was refused (a private repository): the client's own credentials may do,
        // and what they fetch is cached as private.
        const credential = clientCredentials(request);
        if (refused(answer) && credential !== undefined) {
          discard(answer.response.body);
          answer = await manifests.get({ ...base, fetch: clientManifestFetch(up, credential) });
        }
        if (answer === 'bypass') {
          request.ctx.cache = 'bypass';
          await fallback();
          return;
        }
        await writeCacheReply(up, request, reply, answer, abort, {
          kind: 'manifest',
          name,
          byTag: !route.referenceIsDigest,
        });
        return;
      }
      case 'blob': {
        const digest = parseDigest(route.digest);
        if (digest === undefined) throw new RegistryError('DIGEST_INVALID');
        const base = {
          method,
          name,
          digest,
          range: request.headers.range,
          ifRange: headerString(request.headers['if-range']),
          ifNoneMatch: request.headers['if-none-match'],
        } as const;
        let answer = await blobs.get({ ...base, fetch: up.fetchBlob, visibility: 'shared' });
        const credential = clientCredentials(request);
        if (refused(answer) && credential !== undefined) {
          discard(answer.response.body);
          answer = await blobs.get({
            ...base,
            fetch: clientBlobFetch(up, credential),
            visibility: 'private',
          });
        }
        await writeCacheReply(up, request, reply, answer, abort, {
          kind: 'blob',
          name,
          digest: digest.value,
        });
        return;
      }
      case 'tags':
      case 'referrers': {
        const subject = route.kind === 'referrers' ? parseDigest(route.digest) : undefined;
        if (route.kind === 'referrers' && subject === undefined) throw new RegistryError('DIGEST_INVALID');
        const listings = up.listings;
        if (listings === undefined) return fallback();
        const query = forwardQuery(request.url, route.kind === 'tags' ? ['n', 'last'] : ['artifactType']);
        const listing = { method, name, query: query.slice(1), subject } as const;
        let answer = await listings.get(listing);
        // Not Docxy's to list (a private repository): the client's own answer, never stored.
        const credential = clientCredentials(request);
        if (refused(answer) && credential !== undefined) {
          discard(answer.response.body);
          request.ctx.cache = 'bypass';
          answer = await listings.get({ ...listing, fetch: clientListingFetch(up, credential) });
        }
        await writeCacheReply(up, request, reply, answer, abort, { kind: 'manifest', name });
        return;
      }
      case 'base':
        try {
          await fallback();
        } catch (err) {
          if (!(err instanceof RegistryError) || err.status < 502 || reply.sent) throw err;
          request.ctx.cache = 'stale';
          staleBase(up, reply);
        }
        return;
    }
  }

  app.route({
    method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    url: '/v2',
    exposeHeadRoute: false,
    handler: handle,
  });
  app.route({
    method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    url: '/v2/*',
    exposeHeadRoute: false,
    handler: handle,
  });
}
