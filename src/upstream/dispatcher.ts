/**
 * The undici dispatcher for one upstream: keep-alive pools with its timeouts and TLS options, through
 * its egress proxy when it has one (`http://`, `https://` or `socks5://`), else through
 * `HTTPS_PROXY`/`HTTP_PROXY` with `NO_PROXY` when those are set (the seed's users often reach the
 * registry only through a proxy).
 *
 * Direct connections resolve names through the address guard's `lookup` (address-guard.ts), so a
 * name that passed the redirect check cannot be re-resolved to a private address when dialled.
 * Through a proxy the proxy resolves the target; only the early check applies there.
 */
import { Agent, EnvHttpProxyAgent, ProxyAgent, Socks5ProxyAgent, type Dispatcher } from 'undici';
import type { ResolvedUpstream } from '../config/upstreams.ts';
import type { ConnectLookup } from './address-guard.ts';

function envProxySet(env: NodeJS.ProcessEnv): boolean {
  return ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'].some((k) => (env[k] ?? '') !== '');
}

export function createDispatcher(
  u: Pick<ResolvedUpstream, 'timeouts' | 'tls' | 'proxy'>,
  env: NodeJS.ProcessEnv = process.env,
  lookup?: ConnectLookup,
): Dispatcher {
  const tls = { ca: u.tls.ca, rejectUnauthorized: !u.tls.insecure };
  const pool = {
    headersTimeout: u.timeouts.headers,
    bodyTimeout: u.timeouts.idle,
    keepAliveTimeout: 30_000,
  };
  const connect = { timeout: u.timeouts.connect, ...tls };
  if (u.proxy !== undefined) {
    if (new URL(u.proxy).protocol === 'socks5:') {
      // undici reads requestTls (TLS to the registry through the tunnel) though its types omit it.
      const socksOpts = { ...pool, requestTls: tls };
      return new Socks5ProxyAgent(u.proxy, socksOpts);
    }
    return new ProxyAgent({ uri: u.proxy, requestTls: tls, ...pool, connect });
  }
  if (envProxySet(env)) return new EnvHttpProxyAgent({ ...pool, connect });
  return new Agent({ ...pool, connect: lookup === undefined ? connect : { ...connect, lookup } });
}
