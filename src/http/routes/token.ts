/**
 * `/auth/token`: Docxy's realm. Forwards to the upstream's real token service (discovered from its
 * challenge), mapping one-component repository names in `scope` to `library/…`, with the client's
 * own `Authorization` so a `docker login` account's pull limit applies. The upstream's JSON comes
 * back unchanged. POST carries Docker's OAuth2 form (refresh tokens after `docker login`).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../../registry/errors.ts';
import { mapScope } from '../../routing/library-prefix.ts';
import { readCapped } from '../../upstream/body.ts';
import { headerValue, type RegistryClient } from '../../upstream/registry-client.ts';
import type { TokenRealmCache } from '../../upstream/token-realm.ts';
import { version } from '../../version.ts';

export interface TokenRouteDeps {
  readonly client: RegistryClient;
  readonly realms: TokenRealmCache;
  readonly upstreamName: string;
  readonly libraryPrefix: boolean;
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

export function registerTokenRoute(app: FastifyInstance, deps: TokenRouteDeps): void {
  async function handle(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    request.ctx.upstream = deps.upstreamName;
    const realm = await deps.realms.get();
    if (realm.kind !== 'bearer' || realm.realm === undefined) {
      throw new RegistryError('NOT_FOUND', { message: 'the upstream registry has no token service' });
    }
    const headers: Record<string, string> = { 'user-agent': `docxy/${version}`, accept: 'application/json' };
    const auth = request.headers.authorization;
    if (auth !== undefined) headers.authorization = auth;

    const target = new URL(realm.realm);
    const q = request.url.indexOf('?');
    const query = mapParams(
      new URLSearchParams(q < 0 ? '' : request.url.slice(q + 1)),
      deps.libraryPrefix,
      realm.service,
    );
    for (const [k, v] of query) target.searchParams.append(k, v);

    let body: string | undefined;
    if (request.method === 'POST') {
      const form = typeof request.body === 'string' ? request.body : '';
      body = mapParams(new URLSearchParams(form), deps.libraryPrefix, realm.service).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await deps.client.request({
      method: request.method === 'POST' ? 'POST' : 'GET',
      url: target.href,
      headers,
      body,
    });
    const bytes = await readCapped(res.body, maxTokenResponse, 'token response');
    const type = headerValue(res.headers, 'content-type') ?? 'application/json';
    const out = reply.code(res.status).type(type);
    const retryAfter = headerValue(res.headers, 'retry-after');
    if (retryAfter !== undefined) out.header('retry-after', retryAfter);
    return out.send(bytes);
  }

  app.get('/auth/token', handle);
  app.post('/auth/token', handle);
}
