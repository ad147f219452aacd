/** Client address checks against a list of addresses and CIDRs (metrics.allow, dashboard.allow). */
import { BlockList, isIP } from 'node:net';

/** True when the address is in the list. */
export type AddressAllow = (ip: string) => boolean;

export function createAddressAllow(entries: readonly string[]): AddressAllow {
  const list = new BlockList();
  for (const e of entries) {
    const [net = '', bits] = e.split('/');
    const family = isIP(net) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(net, family);
    else list.addSubnet(net, Number(bits), family);
  }
  return (ip) => {
    // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
    const plain = ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
    const family = isIP(plain);
    if (family === 0) return false;
    return list.check(plain, family === 6 ? 'ipv6' : 'ipv4');
  };
}
