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
import { parseV2Path } from '../../registry/reference.ts';
import { withLibraryPrefix } from '../../routing/library-prefix.ts';
import { readCapped } from '../../upstream/body.ts';
import { headerValue, type RegistryClient, type UpstreamResponse } from '../../upstream/registry-client.ts';
import type { TokenRealmCache } from '../../upstream/token-realm.ts';
import { version } from '../../version.ts';
import { relay } from '../relay.ts';

export interface V2RouteDeps {
  readonly client: RegistryClient;
  readonly realms: TokenRealmCache;
  /** Name of the upstream, for logs. */
  readonly upstreamName: string;
  readonly libraryPrefix: boolean;
  /** The public base URL (known once the listener is bound when not configured). */
  readonly publicUrl: () => string;
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
  const accept = request.raw.headersDistinct.accept;
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
  deps: V2RouteDeps,
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<UpstreamResponse> {
  const res = await deps.client.request({ method: 'GET', url, headers, signal });
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

export function registerV2Routes(app: FastifyInstance, deps: V2RouteDeps): void {
  const upstreamOrigin = new URL(deps.client.baseUrl).origin;

  async function handle(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const path = request.url.split('?')[0] ?? '';
    const route = parseV2Path(path);
    request.ctx.upstream = deps.upstreamName;
    const method = request.method === 'HEAD' ? 'HEAD' : 'GET';
    let url: string;
    switch (route.kind) {
      case 'base':
        url = '/v2/';
        break;
      case 'manifest':
        url = `/v2/${withLibraryPrefix(route.name, deps.libraryPrefix)}/manifests/${route.reference}`;
        break;
      case 'blob':
        url = `/v2/${withLibraryPrefix(route.name, deps.libraryPrefix)}/blobs/${route.digest}`;
        break;
      case 'tags':
        url = `/v2/${withLibraryPrefix(route.name, deps.libraryPrefix)}/tags/list${forwardQuery(request.url, ['n', 'last'])}`;
        break;
      case 'referrers':
        url = `/v2/${withLibraryPrefix(route.name, deps.libraryPrefix)}/referrers/${route.digest}${forwardQuery(request.url, ['artifactType'])}`;
        break;
      case 'upload':
      case 'catalog':
        throw new RegistryError('UNSUPPORTED', {
          message: 'Docxy is a read-only pull-through mirror; this endpoint is not supported',
        });
    }

    const abort = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) abort.abort();
    });
    const headers = upstreamHeaders(request);
    let res = await deps.client.request({ method, url, headers, signal: abort.signal });
    if (
      route.kind === 'manifest' &&
      method === 'HEAD' &&
      res.status === 200 &&
      (headerValue(res.headers, 'content-length') === undefined ||
        headerValue(res.headers, 'docker-content-digest') === undefined)
    ) {
      res.body.resume();
      res = await headFromGet(deps, url, headers, abort.signal);
    }
    if (res.status === 401) deps.realms.observe(headerValue(res.headers, 'www-authenticate'));
    const publicUrl = deps.publicUrl();
    await relay(request, reply, res, { realm: `${publicUrl}/auth/token`, publicUrl, upstreamOrigin, abort });
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
