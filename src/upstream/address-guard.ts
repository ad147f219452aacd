/**
 * Where an upstream redirect may lead. Registries redirect blob downloads to CDNs on the public
 * internet; a redirect to loopback, link-local (cloud metadata at 169.254.169.254), private or
 * other special addresses would let a hostile or compromised upstream make Docxy reach into its
 * own network. Such redirects are refused unless the upstream itself lives on such an address or
 * the configuration allows them.
 */
import { BlockList, isIP } from 'node:net';
import { lookup } from 'node:dns/promises';

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

/** Whether a host name is, or resolves to, a special address. */
export async function resolvesToSpecial(hostname: string): Promise<boolean> {
  const h = hostname.replace(/^\[|\]$/g, '');
  if (isIP(h) !== 0) return isSpecialAddress(h);
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  try {
    const addrs = await lookup(h, { all: true });
    return addrs.some((a) => isSpecialAddress(a.address));
  } catch {
    return false; // unresolvable: the request itself will fail as unreachable
  }
}
