/**
 * `/auth/token`: Docxy's realm. Forwards to the upstream's real token service (discovered from its
 * challenge), mapping one-component repository names in `scope` to `library/…`, with the client's
 * own `Authorization` so a `docker login` account's pull limit applies. The upstream's JSON comes
 * back unchanged. POST carries Docker's OAuth2 form (refresh tokens after `docker login`).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../../registry/errors.ts';
import { mapScope } from '../../routing/library-prefix.ts';
import { randomBytes } from 'node:crypto';
import { discard, readCapped } from '../../upstream/body.ts';
import { ownTokenPrefix } from './v2.ts';
import { headerValue } from '../../upstream/registry-client.ts';
import { realmTrusted } from '../../upstream/realm-trust.ts';
import type { UpstreamRuntime } from '../../upstream/runtime.ts';
import type { Router } from '../../routing/router.ts';
import type { AccessController } from '../../auth/access-controller.ts';
import { version } from '../../version.ts';

export interface TokenRouteDeps {
  readonly router: Router<UpstreamRuntime>;
  readonly access: AccessController;
  /** Issue stand-in tokens when the upstream token service fails (the cache is on). */
  readonly staleTokens: boolean;
}

/** Token JSON is small; anything larger is not a token response. */
const maxTokenResponse = 1024 * 1024;

function mapParams(
  params: URLSearchParams,
  libraryPrefix: boolean,
  service: string | undefined,
): URLSearchParams {
  const out = new URLSearchParams();
  for (const [k, v] of params) {
    if (k === 'scope') out.append(k, mapScope(v, libraryPrefix));
    else if (k === 'service' && service !== undefined) out.append(k, service);
    else out.append(k, v);
  }
  return out;
}

/**
 * While the upstream's token service cannot be reached, clients still need a token to ask for
 * what the cache holds. Docxy hands out its own: it is never sent upstream and grants only what
 * the cache serves anyway (public content fetched with Docxy's own identity).
 */
function standInToken(request: FastifyRequest, reply: FastifyReply, why: string): FastifyReply {
  request.ctx.cache = 'stale';
  request.log.warn(
    { why },
    'upstream token service unavailable; issuing a stand-in token for cached content',
  );
  const token = `${ownTokenPrefix}${randomBytes(24).toString('base64url')}`;
  return reply
    .code(200)
    .type('application/json')
    .send({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() });
}

export function registerTokenRoute(app: FastifyInstance, deps: TokenRouteDeps): void {
  async function handle(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const named = (request.params as { upstream?: string }).upstream;
    const up =
      named === undefined
        ? deps.router.upstreamFor(request.headers.host, undefined)
        : deps.router.byName(named);
    if (up === undefined)
      throw new RegistryError('NAME_UNKNOWN', {
        message: `no upstream is configured for registry ${named ?? ''}`,
      });
    request.ctx.upstream = up.name;
    if (deps.access.authenticated) {
      const q = request.url.indexOf('?');
      const params = new URLSearchParams(q < 0 ? '' : request.url.slice(q + 1));
      return reply.type('application/json').send(await deps.access.issueToken(request, up, params));
    }
    let realm;
    try {
      realm = await up.realms.get();
    } catch (err) {
      if (deps.staleTokens && err instanceof RegistryError && err.status >= 502)
        return standInToken(request, reply, err.message);
      throw err;
    }
    if (realm.kind !== 'bearer' || realm.realm === undefined) {
      throw new RegistryError('NOT_FOUND', { message: 'the upstream registry has no token service' });
    }
    const headers: Record<string, string> = { 'user-agent': `docxy/${version}`, accept: 'application/json' };
    const auth = request.headers.authorization;
    // The client's credentials go only to a token service of the registry's own domain.
    if (auth !== undefined && realmTrusted(realm.realm, up.config.url, up.config.authHosts))
      headers.authorization = auth;

    const target = new URL(realm.realm);
    const q = request.url.indexOf('?');
    const query = mapParams(
      new URLSearchParams(q < 0 ? '' : request.url.slice(q + 1)),
      up.config.libraryPrefix,
      realm.service,
    );
    for (const [k, v] of query) target.searchParams.append(k, v);

    let body: string | undefined;
    if (request.method === 'POST') {
      const form = typeof request.body === 'string' ? request.body : '';
      body = mapParams(new URLSearchParams(form), up.config.libraryPrefix, realm.service).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    let res;
    try {
      res = await up.client.request({
        method: request.method === 'POST' ? 'POST' : 'GET',
        url: target.href,
        headers,
        body,
      });
    } catch (err) {
      if (deps.staleTokens && err instanceof RegistryError && err.status >= 502)
        return standInToken(request, reply, err.message);
      throw err;
    }
    if (deps.staleTokens && (res.status >= 500 || res.status === 429)) {
      discard(res.body);
      return standInToken(request, reply, `token service answered ${res.status}`);
    }
    const bytes = await readCapped(res.body, maxTokenResponse, 'token response');
    const type = headerValue(res.headers, 'content-type') ?? 'application/json';
    const out = reply.code(res.status).type(type);
    const retryAfter = headerValue(res.headers, 'retry-after');
    if (retryAfter !== undefined) out.header('retry-after', retryAfter);
    return out.send(bytes);
  }

  app.get('/auth/token', handle);
  app.post('/auth/token', handle);
  // Per-upstream realms: the challenge of each upstream names its own (`/auth/token/ghcr.io`).
  app.get('/auth/token/:upstream', handle);
  app.post('/auth/token/:upstream', handle);
}
