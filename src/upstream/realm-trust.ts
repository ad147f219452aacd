/**
 * Whether a token realm may receive credentials meant for an upstream: its host must be the
 * registry's own, share its registrable domain (auth.docker.io for registry-1.docker.io), or be
 * listed in `auth_hosts`. A realm comes from the upstream's challenge, so without this check a
 * compromised or hostile upstream could collect the credentials Docxy holds for it (CNCF
 * Distribution fixed exactly this leak in 2026).
 */
import { isIP } from 'node:net';

/**
 * The last two labels of a DNS name (`registry-1.docker.io` -> `docker.io`). Without the public
 * suffix list this over-trusts registries under shared suffixes such as `co.uk`; such upstreams
 * should list their token host in `auth_hosts` and get an exact-host match instead.
 */
export function registrableDomain(host: string): string {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (isIP(h) !== 0 || !h.includes('.')) return h;
  return h.split('.').slice(-2).join('.');
}

export function realmTrusted(realm: string, registryUrl: string, authHosts: readonly string[]): boolean {
  let realmHost: string;
  let registryHost: string;
  try {
    realmHost = new URL(realm).hostname.toLowerCase();
    registryHost = new URL(registryUrl).hostname.toLowerCase();
  } catch {
    return false;
  }
  if (authHosts.includes(realmHost) || realmHost === registryHost) return true;
  if (isIP(realmHost) !== 0 || isIP(registryHost) !== 0) return false;
  return registrableDomain(realmHost) === registrableDomain(registryHost);
}
