/**
 * Docxy's own upstream identity: anonymous, or the credentials in its configuration. The cache
 * fills and revalidates with it, so no client's token is needed (or kept) to fetch what is public.
 * Tokens are cached per scope until shortly before they expire, and fetched once for all concurrent
 * requests of that scope (CNCF Distribution fetches about one token per upstream operation).
 */
import { RegistryError } from '../registry/errors.ts';
import { readCapped } from './body.ts';
import type { RegistryClient, UpstreamRequest, UpstreamResponse } from './registry-client.ts';
import type { TokenRealmCache } from './token-realm.ts';

export interface UpstreamCredentials {
  readonly username: string;
  readonly password: string;
}

export interface UpstreamAuth {
  /** Sends `req` authorised for `scope` (e.g. `repository:library/alpine:pull`); retries once on a 401 with a fresh token. */
  request(req: UpstreamRequest, scope: string): Promise<UpstreamResponse>;
}

/** Tokens are renewed this long before they expire, so none expires in flight. */
const renewBeforeMs = 30_000;
/** Docker's token spec: a token without `expires_in` lasts 60 seconds. */
const defaultExpiresSec = 60;

interface CachedToken {
  readonly token: string;
  readonly until: number;
}

export function createUpstreamAuth(opts: {
  client: RegistryClient;
  realms: TokenRealmCache;
  credentials?: UpstreamCredentials;
  /** Whether a token realm may receive the credentials (realm-trust.ts). */
  trusted: (realm: string) => boolean;
}): UpstreamAuth {
  const tokens = new Map<string, CachedToken>();
  const inflight = new Map<string, Promise<CachedToken>>();
  const basic =
    opts.credentials === undefined
      ? undefined
      : `Basic ${Buffer.from(`${opts.credentials.username}:${opts.credentials.password}`).toString('base64')}`;

  async function fetchToken(realm: string, service: string | undefined, scope: string): Promise<CachedToken> {
    const url = new URL(realm);
    if (service !== undefined) url.searchParams.set('service', service);
    url.searchParams.set('scope', scope);
    const headers: Record<string, string> = { accept: 'application/json' };
    // Credentials go only to a realm of the registry's own domain; elsewhere Docxy asks anonymously.
    if (basic !== undefined && opts.trusted(realm)) headers.authorization = basic;
    const res = await opts.client.request({ method: 'GET', url: url.href, headers });
    const body = await readCapped(res.body, 1024 * 1024, 'token response');
    if (res.status !== 200) {
      throw new RegistryError(res.status === 401 ? 'UNAUTHORIZED' : 'UNAVAILABLE', {
        status: res.status === 401 || res.status === 403 ? res.status : 502,
        message: `upstream token service answered ${res.status}`,
      });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      parsed = undefined;
    }
    if (typeof parsed !== 'object' || parsed === null) {
      throw new RegistryError('UNAVAILABLE', { status: 502, message: 'upstream token service sent no JSON' });
    }
    const json = parsed as { token?: unknown; access_token?: unknown; expires_in?: unknown };
    const token =
      typeof json.token === 'string'
        ? json.token
        : typeof json.access_token === 'string'
          ? json.access_token
          : undefined;
    if (token === undefined)
      throw new RegistryError('UNAVAILABLE', {
        status: 502,
        message: 'upstream token service sent no token',
      });
    const expires =
      typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : defaultExpiresSec;
    return { token, until: Date.now() + Math.max(expires * 1000 - renewBeforeMs, expires * 500) };
  }

  async function tokenFor(scope: string, fresh: boolean): Promise<string | undefined> {
    const realm = await opts.realms.get();
    if (realm.kind === 'none') return undefined;
    if (realm.kind === 'basic' || realm.realm === undefined) return basic;
    const cached = tokens.get(scope);
    if (!fresh && cached !== undefined && cached.until > Date.now()) return `Bearer ${cached.token}`;
    let p = inflight.get(scope);
    if (p === undefined) {
      p = fetchToken(realm.realm, realm.service, scope).finally(() => inflight.delete(scope));
      inflight.set(scope, p);
    }
    const t = await p;
    tokens.set(scope, t);
    return `Bearer ${t.token}`;
  }

  return {
    async request(req, scope) {
      for (let attempt = 0; ; attempt++) {
        const auth = await tokenFor(scope, attempt > 0);
        const headers = { ...req.headers };
        if (auth !== undefined) headers.authorization = auth;
        const res = await opts.client.request({ ...req, headers });
        if (res.status !== 401 || attempt > 0 || auth === undefined || !auth.startsWith('Bearer '))
          return res;
        res.body.resume();
        tokens.delete(scope);
      }
    },
  };
}
