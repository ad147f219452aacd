/**
 * `/auth/token`: Docxy's realm. Forwards to the upstream's real token service (discovered from its
 * challenge), mapping one-component repository names in `scope` to `library/…`, with the client's
 * own `Authorization` so a `docker login` account's pull limit applies. The upstream's JSON comes
 * back unchanged. POST carries Docker's OAuth2 form (refresh tokens after `docker login`).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../../registry/errors.ts';
import { mapScopeNames } from '../../routing/library-prefix.ts';
import { parseScopes } from '../../auth/scopes.ts';
import { remoteNameFor } from '../../auth/access-controller.ts';
import { isEmptyBasic } from '../../auth/basic-credentials.ts';
import { discard, readCapped } from '../../upstream/body.ts';
import type { StandInTokens } from '../../auth/stand-in-tokens.ts';
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
  /** Signs the stand-in tokens, so `/v2/` recognises them (stand-in-tokens.ts). */
  readonly standIns: StandInTokens;
}

/** Token JSON is small; anything larger is not a token response. */
const maxTokenResponse = 1024 * 1024;

/** The first repository name a token request asks about (it decides the upstream). */
function firstScopeName(params: URLSearchParams): string | undefined {
  return parseScopes(params.getAll('scope')).find((s) => s.type === 'repository')?.name;
}

function mapParams(
  params: URLSearchParams,
  up: UpstreamRuntime,
  service: string | undefined,
): URLSearchParams {
  const out = new URLSearchParams();
  for (const [k, v] of params) {
    // Scope names as the client used them (`quay.io/org/img`, `alpine`) become the upstream's.
    if (k === 'scope')
      out.append(
        k,
        mapScopeNames(v, (name) => remoteNameFor(up, name)),
      );
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
function standInToken(
  standIns: StandInTokens,
  up: UpstreamRuntime,
  request: FastifyRequest,
  reply: FastifyReply,
  why: string,
  stale = true,
): FastifyReply {
  if (stale) {
    request.ctx.cache = 'stale';
    request.log.warn(
      { why },
      'upstream token service unavailable; issuing a stand-in token for cached content',
    );
  }
  const { token, expiresIn } = standIns.issue(up.name);
  return reply
    .code(200)
    .type('application/json')
    .send({ token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString() });
}

export function registerTokenRoute(app: FastifyInstance, deps: TokenRouteDeps): void {
  async function handle(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const named = (request.params as { upstream?: string }).upstream;
    const q = request.url.indexOf('?');
    const query = new URLSearchParams(q < 0 ? '' : request.url.slice(q + 1));
    const form =
      request.method === 'POST' && typeof request.body === 'string'
        ? new URLSearchParams(request.body)
        : undefined;
    // Without an upstream in the path, the scope decides (`repository:quay.io/org/img:pull` is
    // quay's), like the /v2 request the token is for: a token never comes from another registry.
    const scopeName = firstScopeName(query) ?? (form === undefined ? undefined : firstScopeName(form));
    const up =
      named !== undefined
        ? deps.router.byName(named)
        : scopeName !== undefined
          ? deps.router.route(request.headers.host, undefined, scopeName).upstream
          : deps.router.upstreamFor(request.headers.host, undefined);
    if (up === undefined)
      throw new RegistryError('NAME_UNKNOWN', {
        message: `no upstream is configured for registry ${named ?? ''}`,
      });
    request.ctx.upstream = up.name;
    if (deps.access.authenticated) {
      return reply.type('application/json').send(await deps.access.issueToken(request, up, query));
    }
    let realm;
    try {
      realm = await up.realms.get();
    } catch (err) {
      if (deps.staleTokens && err instanceof RegistryError && err.status >= 502)
        return standInToken(deps.standIns, up, request, reply, err.message);
      throw err;
    }
    if (realm.kind !== 'bearer' || realm.realm === undefined) {
      // A client sent here by another upstream's challenge (path prefix routing) asks for a token
      // this registry does not issue (Basic or anonymous): Docxy's stand-in serves, and Docxy's own
      // identity fetches. Without it the client could not pull at all.
      return standInToken(
        deps.standIns,
        up,
        request,
        reply,
        `upstream ${up.name} has no token service`,
        false,
      );
    }
    const headers: Record<string, string> = { 'user-agent': `docxy/${version}`, accept: 'application/json' };
    const auth = request.headers.authorization;
    // The client's credentials go only to a token service of the registry's own domain; an empty
    // Basic pair is no credential at all (basic-credentials.ts): the request stays anonymous.
    const trusted = realmTrusted(realm.realm, up.config.url, up.config.authHosts);
    if (auth !== undefined && trusted && !isEmptyBasic(auth)) headers.authorization = auth;

    const target = new URL(realm.realm);
    for (const [k, v] of mapParams(query, up, realm.service)) target.searchParams.append(k, v);

    let body: string | undefined;
    if (request.method === 'POST') {
      // The OAuth2 form carries passwords or refresh tokens: never to a realm outside the registry's
      // domain. 404 makes containerd and docker fall back to a GET, which carries no credentials.
      if (!trusted)
        throw new RegistryError('NOT_FOUND', {
          message: 'the upstream token service does not take this form',
        });
      body = mapParams(form ?? new URLSearchParams(), up, realm.service).toString();
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
        return standInToken(deps.standIns, up, request, reply, err.message);
      throw err;
    }
    if (deps.staleTokens && (res.status >= 500 || res.status === 429)) {
      discard(res.body);
      return standInToken(deps.standIns, up, request, reply, `token service answered ${res.status}`);
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
