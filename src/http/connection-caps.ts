/**
 * `rate_limit.per_ip.connections`: concurrent connections per client address.
 *
 * A client that connects directly is counted per socket, and a socket over the cap is closed at
 * once. A reverse proxy listed in `trust_proxy` is not one client: it carries many clients over a
 * few keep-alive connections (nginx: `keepalive 16`), so capping its sockets would refuse everyone
 * behind it once it opens one too many. Its sockets are therefore not capped; instead each request
 * it forwards counts, while it is in flight, for the client address it names (X-Forwarded-For, as
 * `request.ip` resolves it), and a request over that client's cap is a 429 (the shared socket
 * stays open). That is what a mirror operator expects from "connections per client": the same
 * budget whether or not nginx is in front. Without `trust_proxy`, the proxy's address is the
 * client and its connections share one cap.
 */
import type { FastifyInstance } from 'fastify';
import { BlockList, isIP, type Socket } from 'node:net';
import type { RateLimiter } from '../auth/rate-limit.ts';
import type { Logger } from '../observability/logger.ts';
import { RegistryError } from '../registry/errors.ts';

/** The named ranges `trust_proxy` shares with fastify's (proxy-addr's) syntax. */
const named: Record<string, readonly [string, number, 'ipv4' | 'ipv6'][]> = {
  loopback: [
    ['127.0.0.0', 8, 'ipv4'],
    ['::1', 128, 'ipv6'],
  ],
  linklocal: [
    ['169.254.0.0', 16, 'ipv4'],
    ['fe80::', 10, 'ipv6'],
  ],
  uniquelocal: [
    ['10.0.0.0', 8, 'ipv4'],
    ['172.16.0.0', 12, 'ipv4'],
    ['192.168.0.0', 16, 'ipv4'],
    ['fc00::', 7, 'ipv6'],
  ],
};

const unmapped = (address: string): string => /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] ?? address;

/** Whether a socket address is one of the `trust_proxy` entries (addresses, CIDRs, named ranges). */
export function createProxyTrust(entries: readonly string[]): (address: string | undefined) => boolean {
  const list = new BlockList();
  let any = false;
  for (const entry of entries) {
    const ranges = named[entry];
    if (ranges !== undefined) {
      for (const [net, bits, family] of ranges) list.addSubnet(net, bits, family);
      any = true;
      continue;
    }
    const [net = '', bits] = entry.split('/');
    const family = isIP(net);
    if (family === 0) continue;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(net, type);
    else list.addSubnet(net, Number(bits), type);
    any = true;
  }
  return (address) => {
    if (!any || address === undefined) return false;
    const a = unmapped(address);
    const family = isIP(a);
    return family !== 0 && list.check(a, family === 4 ? 'ipv4' : 'ipv6');
  };
}

export function registerConnectionCaps(
  app: FastifyInstance,
  deps: {
    readonly limiter: RateLimiter;
    readonly trusted: (address: string | undefined) => boolean;
    /** Whether `per_ip.connections` is set: only then do forwarded requests need counting. */
    readonly capped: boolean;
    readonly log: Logger;
    /** Told of each refused connection or forwarded request (metrics). */
    readonly onRefuse?: () => void;
  },
): void {
  const refused = (ip: string, via?: string): void => {
    deps.onRefuse?.();
    deps.log.warn(
      { audit: true, event: 'connection_refused', ip, via, reason: 'too many connections' },
      'audit',
    );
  };
  app.server.on('connection', (socket: Socket) => {
    const ip = socket.remoteAddress ?? '';
    if (deps.trusted(ip)) return; // counted per forwarded request below
    if (!deps.limiter.opened(ip)) {
      refused(ip);
      socket.destroy();
    }
    socket.once('close', () => {
      deps.limiter.closed(ip);
    });
  });
  if (!deps.capped) return;
  app.addHook('onRequest', async (request, reply) => {
    const proxy = request.socket.remoteAddress;
    if (!deps.trusted(proxy)) return;
    const ip = request.ip;
    if (!deps.limiter.opened(ip)) {
      deps.limiter.closed(ip);
      refused(ip, proxy);
      throw new RegistryError('TOOMANYREQUESTS', {
        message: 'rate limit exceeded: concurrent connections for this address',
        headers: { 'retry-after': '1' },
      });
    }
    reply.raw.once('close', () => {
      deps.limiter.closed(ip);
    });
  });
}
