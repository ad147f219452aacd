/**
 * The composition root: the only place that calls the factories and wires their dependencies.
 */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config/schema.ts';
import { createServer } from './http/server.ts';
import { registerHealthRoute } from './http/routes/health.ts';
import { registerTokenRoute } from './http/routes/token.ts';
import { registerV2Routes } from './http/routes/v2.ts';
import type { Logger } from './observability/logger.ts';
import { createRegistryClient } from './upstream/registry-client.ts';
import { createTokenRealmCache } from './upstream/token-realm.ts';

export interface App {
  readonly server: FastifyInstance;
  /** Binds the listener; returns the public URL in force. */
  listen(): Promise<string>;
  /** The public base URL (the configured one, or derived from the bound address). */
  publicUrl(): string;
  close(): Promise<void>;
}

function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) };
}

/** `http://<listen address>`; a wildcard address is no address a client can use, so loopback stands in. */
export function defaultPublicUrl(address: AddressInfo): string {
  const wildcard = address.address === '0.0.0.0' || address.address === '::';
  const host = wildcard ? '127.0.0.1' : address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

export function createApp(config: Config, log: Logger): App {
  const server = createServer({ log });
  const upstreamName = new URL(config.upstream.url).host;
  const client = createRegistryClient({ baseUrl: config.upstream.url, timeouts: config.upstream.timeouts });
  const realms = createTokenRealmCache(client);
  let publicUrl = config.public_url;

  const publicUrlOf = (): string => {
    if (publicUrl === undefined) throw new Error('public URL is not known before listen()');
    return publicUrl;
  };

  registerHealthRoute(server);
  registerTokenRoute(server, { client, realms, upstreamName, libraryPrefix: config.upstream.library_prefix });
  registerV2Routes(server, {
    client,
    realms,
    upstreamName,
    libraryPrefix: config.upstream.library_prefix,
    publicUrl: publicUrlOf,
  });

  return {
    server,
    publicUrl: publicUrlOf,
    async listen() {
      const { host, port } = splitHostPort(config.listen);
      await server.listen({ host, port });
      const address = server.server.address() as AddressInfo;
      if (publicUrl === undefined) {
        publicUrl = defaultPublicUrl(address);
        if (address.address === '0.0.0.0' || address.address === '::') {
          log.warn(
            { publicUrl },
            'public_url is not set: token realms point at loopback; set --public-url for remote clients',
          );
        }
      }
      log.info(
        { listen: `${address.address}:${address.port}`, publicUrl, upstream: config.upstream.url },
        'docxy listening',
      );
      return publicUrl;
    },
    async close() {
      await server.close();
      await client.close();
    },
  };
}
