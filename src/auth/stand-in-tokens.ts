/**
 * Docxy's stand-in tokens: what the open mirror's realm hands out when the upstream's token
 * service cannot be reached (or the upstream has none). They are never sent upstream and grant
 * nothing by themselves (Docxy fetches with its own identity); they only let a client's auth
 * dance finish. Each is signed (HMAC-SHA256 with a key made at start) over its upstream and
 * expiry, so `GET /v2/` can recognise a token Docxy issued itself and welcome its holder whether
 * or not the upstream answers: `docker login` and several SDKs check `/v2/` with the token they
 * just got and stop on a 401. The key lives in memory only: after a restart, or on another
 * replica, a stand-in token is just unknown, and the client asks the realm again.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Every Docxy stand-in token starts with this (v2.ts never relays such a token upstream). */
export const ownTokenPrefix = 'docxy.';

export interface StandInTokens {
  /** A new token for `upstream`, valid for `ttlSec` seconds. */
  issue(upstream: string): { token: string; expiresIn: number };
  /** True when `token` is one this process issued for `upstream` and it has not expired. */
  valid(token: string, upstream: string): boolean;
}

export function createStandInTokens(
  opts: { ttlSec?: number; now?: () => number; key?: Buffer } = {},
): StandInTokens {
  const key = opts.key ?? randomBytes(32);
  const ttlSec = opts.ttlSec ?? 300;
  const now = opts.now ?? Date.now;
  const mac = (upstream: string, rest: string): Buffer =>
    createHmac('sha256', key).update(`${upstream}\n${rest}`).digest();

  return {
    issue(upstream) {
      const rest = `${Math.floor(now() / 1000) + ttlSec}.${randomBytes(18).toString('base64url')}`;
      return {
        token: `${ownTokenPrefix}${rest}.${mac(upstream, rest).toString('base64url')}`,
        expiresIn: ttlSec,
      };
    },
    valid(token, upstream) {
      if (!token.startsWith(ownTokenPrefix)) return false;
      const body = token.slice(ownTokenPrefix.length);
      const cut = body.lastIndexOf('.');
      if (cut < 0) return false;
      const rest = body.slice(0, cut);
      const expiry = Number(rest.slice(0, rest.indexOf('.')));
      const given = Buffer.from(body.slice(cut + 1), 'base64url');
      const expected = mac(upstream, rest);
      return (
        given.length === expected.length &&
        timingSafeEqual(given, expected) &&
        Number.isSafeInteger(expiry) &&
        expiry * 1000 > now()
      );
    },
  };
}
