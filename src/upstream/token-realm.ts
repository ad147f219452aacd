/**
 * Discovers the upstream's token service from its own `/v2/` challenge (never hard-coded: Docker
 * Hub's realm is auth.docker.io, other registries differ) and caches it for a while.
 */
import { RegistryError } from '../registry/errors.ts';
import { parseChallenge } from './auth-challenge.ts';
import { headerValue, type RegistryClient } from './registry-client.ts';

export interface TokenRealm {
  /** `bearer`: a token service at `realm`; `basic`: the registry takes Basic credentials; `none`: anonymous. */
  readonly kind: 'bearer' | 'basic' | 'none';
  readonly realm?: string;
  readonly service?: string;
}

export interface TokenRealmCache {
  /** The upstream's token service, discovered once and kept for `ttlMs`. */
  get(): Promise<TokenRealm>;
  /** The last discovered answer, however old, without asking the upstream. */
  known(): TokenRealm | undefined;
  /** Records a challenge seen on any upstream response, so discovery needs no extra request. */
  observe(header: string | undefined): void;
}

export function createTokenRealmCache(client: RegistryClient, ttlMs = 3_600_000): TokenRealmCache {
  let cached: { value: TokenRealm; until: number } | undefined;
  let inflight: Promise<TokenRealm> | undefined;

  function fromHeader(header: string | undefined): TokenRealm {
    const c = header === undefined ? undefined : parseChallenge(header);
    if (c?.scheme === 'bearer' && c.params.realm !== undefined) {
      return { kind: 'bearer', realm: c.params.realm, service: c.params.service };
    }
    if (c?.scheme === 'basic') return { kind: 'basic' };
    return { kind: 'none' };
  }

  async function discover(): Promise<TokenRealm> {
    const res = await client.request({ method: 'GET', url: '/v2/' });
    res.body.resume();
    if (res.status !== 200 && res.status !== 401) {
      throw new RegistryError('UNAVAILABLE', {
        status: 502,
        message: `upstream /v2/ answered ${res.status}`,
      });
    }
    return fromHeader(res.status === 401 ? headerValue(res.headers, 'www-authenticate') : undefined);
  }

  return {
    async get() {
      if (cached && cached.until > Date.now()) return cached.value;
      inflight ??= discover().finally(() => {
        inflight = undefined;
      });
      try {
        const value = await inflight;
        cached = { value, until: Date.now() + ttlMs };
        return value;
      } catch (err) {
        // The upstream is down: what it said last is still the best answer (serve-stale).
        if (cached) return cached.value;
        throw err;
      }
    },
    known: () => cached?.value,
    observe(header) {
      if (header === undefined) return;
      const value = fromHeader(header);
      if (value.kind === 'bearer') cached = { value, until: Date.now() + ttlMs };
    },
  };
}
