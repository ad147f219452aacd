/**
 * Fetches a blob that another replica is filling, from that replica's internal endpoint
 * (cluster-server.ts), with the fleet's shared secret. The answer looks like an upstream response,
 * so a fill can take its bytes from a peer exactly as it would from the registry.
 */
import { Agent } from 'undici';
import type { UpstreamResponse } from '../upstream/registry-client.ts';

export interface PeerClient {
  /** GETs `digest` from the replica at `address` from byte `start` on (a Range when start > 0). */
  fetch(address: string, digest: string, start: number, signal?: AbortSignal): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

/** The internal endpoint's path of a blob. */
export const peerBlobPath = (digest: string): string => `/cluster/v1/blobs/${digest}`;

export function createPeerClient(opts: {
  readonly secret: string;
  /**
   * A peer that sends nothing for this long is taken as gone (a machine that died without closing
   * its connections). Longer than a peer's own upstream idle timeout, so a peer waiting on a slow
   * upstream is not given up on while it resumes.
   */
  readonly idleMs: number;
}): PeerClient {
  // A dead peer refuses at once (SIGKILL closes its sockets); a vanished host must not hold a fill.
  const agent = new Agent({ connect: { timeout: 2000 }, keepAliveTimeout: 10_000 });
  return {
    async fetch(address, digest, start, signal) {
      const url = new URL(peerBlobPath(digest), address);
      const res = await agent.request({
        origin: url.origin,
        path: url.pathname,
        method: 'GET',
        headers: {
          authorization: `Bearer ${opts.secret}`,
          ...(start > 0 ? { range: `bytes=${String(start)}-` } : {}),
        },
        signal,
        headersTimeout: 10_000,
        bodyTimeout: opts.idleMs,
      });
      return { status: res.statusCode, headers: res.headers, body: res.body, url: url.href };
    },
    close: () => agent.close(),
  };
}
