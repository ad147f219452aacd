/**
 * Where an upstream redirect may lead. Registries redirect blob downloads to CDNs on the public
 * internet; a redirect to loopback, link-local (cloud metadata at 169.254.169.254), private or
 * other special addresses would let a hostile or compromised upstream make Docxy reach into its
 * own network. Such redirects are refused unless the upstream itself lives on such an address or
 * the configuration allows them.
 *
 * Checking a name and then letting the HTTP client resolve it again is not enough: a hostile DNS
 * server answers the check with a public address and the connection with 127.0.0.1 (DNS
 * rebinding). So the guard is also the `lookup` of every direct connection (dispatcher.ts): the
 * addresses checked are the addresses dialled.
 */
import type { LookupAddress, LookupOptions } from 'node:dns';
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

const special = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 3],
] as const) {
  special.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 127],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  special.addSubnet(net, bits, 'ipv6');
}

export function isSpecialAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped?.[1] !== undefined) return special.check(mapped[1], 'ipv4');
    return special.check(address, 'ipv6');
  }
  return special.check(address, 'ipv4');
}

/** Every address a name resolves to (the system resolver, or a test's). */
export type Resolve = (hostname: string) => Promise<readonly LookupAddress[]>;

export const systemResolve: Resolve = (hostname) => lookup(hostname, { all: true });

/** Whether a host name is, or resolves to, a special address. */
export async function resolvesToSpecial(
  hostname: string,
  resolve: Resolve = systemResolve,
): Promise<boolean> {
  const h = hostname.replace(/^\[|\]$/g, '');
  if (isIP(h) !== 0) return isSpecialAddress(h);
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  try {
    const addrs = await resolve(h);
    return addrs.some((a) => isSpecialAddress(a.address));
  } catch {
    return false; // unresolvable: the request itself will fail as unreachable
  }
}

/** The error code of a connection the guard refused (registry-client.ts reports it as such). */
export const refusedAddressCode = 'ERR_DOCXY_PRIVATE_ADDRESS';

/** `net.connect`'s `lookup` option (node:net's LookupFunction). */
export type ConnectLookup = (
  hostname: string,
  options: LookupOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => void;

export interface AddressGuard {
  /** Whether special addresses may be reached: configured, or the upstream itself lives on one. */
  privateAllowed(): Promise<boolean>;
  /** True when requests to `hostname` must be refused before any connection (a clear early answer). */
  refuses(hostname: string): Promise<boolean>;
  /**
   * Resolves a name for a connection and refuses it when an address is special and that is not
   * allowed; the addresses it checked are the ones the socket dials. The upstream's own configured
   * hosts (URL and mirrors) are the operator's choice and are not checked.
   */
  readonly lookup: ConnectLookup;
}

export function createAddressGuard(opts: {
  /** The upstream's URL and its mirrors' URLs. */
  readonly configured: readonly string[];
  /** `limits.allow_private_redirects`; undefined: allowed when the upstream's own host is special. */
  readonly allowPrivate?: boolean;
  readonly resolve?: Resolve;
}): AddressGuard {
  const resolve = opts.resolve ?? systemResolve;
  const [primary = ''] = opts.configured;
  const trusted = new Set(opts.configured.map((u) => new URL(u).hostname.toLowerCase()));
  let allowed: Promise<boolean> | undefined;
  const privateAllowed = (): Promise<boolean> =>
    (allowed ??=
      opts.allowPrivate !== undefined
        ? Promise.resolve(opts.allowPrivate)
        : resolvesToSpecial(new URL(primary).hostname, resolve));

  async function connectAddresses(hostname: string, family: number | undefined): Promise<LookupAddress[]> {
    const all = (await resolve(hostname)).filter(
      (a) => family === undefined || family === 0 || a.family === family,
    );
    if (all.length === 0)
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname });
    if (trusted.has(hostname.toLowerCase()) || (await privateAllowed())) return all;
    const special = all.find((a) => isSpecialAddress(a.address));
    if (special !== undefined)
      throw Object.assign(
        new Error(
          `upstream named a private or loopback address (${hostname} is ${special.address}); refused`,
        ),
        { code: refusedAddressCode },
      );
    return all;
  }

  return {
    privateAllowed,
    async refuses(hostname) {
      return !(await privateAllowed()) && (await resolvesToSpecial(hostname, resolve));
    },
    lookup(hostname, options, callback) {
      connectAddresses(
        hostname,
        options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family,
      ).then(
        (addrs) => {
          const first = addrs[0];
          if (options.all === true) callback(null, addrs);
          else callback(null, first?.address ?? '', first?.family);
        },
        (err: unknown) => {
          callback(err as NodeJS.ErrnoException, '');
        },
      );
    },
  };
}
