/**
 * Isolation for content fetched with a client's own upstream credentials (the open mirror with
 * `docker login <mirror>` pass-through). Such an object is served only to a requester who proves,
 * upstream, that it may pull it: a HEAD of that manifest or blob in that repository with the
 * requester's own credentials (or Docxy's identity when it brings none) must succeed. A success is
 * remembered per credential, repository and object for a short while; a refusal is relayed.
 * Caches that skip this have handed private images to strangers (Spegel #167, nginx mirrors).
 */
import { createHash } from 'node:crypto';
import type { Records } from '../coordination/coordination.ts';
import { discard } from '../upstream/body.ts';
import type { UpstreamResponse } from '../upstream/registry-client.ts';

export interface AccessProofs {
  /**
   * True when the requester may pull `digest` of `name`; otherwise the upstream's refusal to relay.
   * `check` performs the HEAD with the requester's credentials.
   */
  prove(opts: {
    credential: string | undefined;
    upstream: string;
    name: string;
    digest: string;
    check: () => Promise<UpstreamResponse>;
  }): Promise<true | UpstreamResponse>;
}

/**
 * `shared` (Redis coordination) makes a proof made on one replica good on every replica: its key
 * there is a hash of (credential hash, upstream, name, digest), never the credential itself.
 */
export function createAccessProofs(
  ttlMs = 60_000,
  now: () => number = Date.now,
  shared?: Records,
): AccessProofs {
  const proven = new Map<string, number>();
  const sharedKey = (key: string): string => `proof:${createHash('sha256').update(key).digest('hex')}`;
  return {
    async prove({ credential, upstream, name, digest, check }) {
      // Credentials are never kept: only a hash identifies whose proof this is.
      const who = createHash('sha256')
        .update(credential ?? '')
        .digest('hex');
      const key = `${who} ${upstream} ${name} ${digest}`;
      const until = proven.get(key);
      if (until !== undefined && until > now()) return true;
      if (shared !== undefined && (await shared.has(sharedKey(key)))) return true;
      const res = await check();
      if (res.status !== 200) return res;
      discard(res.body);
      if (proven.size > 100_000) proven.clear(); // bounded: proofs are cheap to redo
      proven.set(key, now() + ttlMs);
      await shared?.put(sharedKey(key), ttlMs);
      return true;
    },
  };
}
