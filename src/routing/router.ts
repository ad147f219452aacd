/**
 * Which upstream a request is for, in this order (FACTS.md "Clients"): the request's host name
 * against each upstream's `hosts`; containerd's `?ns=<registry>` against upstream names; a path
 * prefix (`/v2/ghcr.io/owner/image/…`) against upstream prefixes; else the default upstream. An
 * `ns` or a host-like prefix that names no configured upstream is NAME_UNKNOWN: Docxy never dials a
 * host a request names (no open relay).
 */
import { RegistryError } from '../registry/errors.ts';
import { withLibraryPrefix } from './library-prefix.ts';

export interface Routable {
  readonly name: string;
  readonly config: {
    readonly hosts: readonly string[];
    readonly prefix: string;
    readonly libraryPrefix: boolean;
  };
}

export interface Routed<U> {
  readonly upstream: U;
  /** The repository name at the upstream: prefix removed, library/ added where configured. */
  readonly name: string;
}

export interface Router<U extends Routable> {
  /** The upstream for a request, without a repository (`/v2/`, token requests). */
  upstreamFor(host: string | undefined, ns: string | undefined): U;
  /** The upstream and upstream-side name for a repository request. */
  route(host: string | undefined, ns: string | undefined, name: string): Routed<U>;
  byName(name: string): U | undefined;
  readonly defaultUpstream: U;
}

/** `Host` header -> lower-case host name without port (`[::1]:5000` -> `::1`). */
export function hostName(host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined;
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') < 0 ? undefined : h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

/** Docker's rule for "this first component is a registry host": it has a dot or a port, or is localhost. */
function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

export function createRouter<U extends Routable>(upstreams: readonly U[], defaultName: string): Router<U> {
  const byName = new Map(upstreams.map((u) => [u.name, u]));
  const byPrefix = new Map(upstreams.map((u) => [u.config.prefix, u]));
  const byHost = new Map<string, U>();
  for (const u of upstreams) for (const h of u.config.hosts) byHost.set(h, u);
  const fallback = byName.get(defaultName) ?? upstreams[0];
  if (fallback === undefined) throw new Error('no upstream configured');

  function upstreamFor(host: string | undefined, ns: string | undefined): U {
    const h = hostName(host);
    const viaHost = h === undefined ? undefined : byHost.get(h);
    if (viaHost !== undefined) return viaHost;
    if (ns !== undefined && ns !== '') {
      const viaNs = byName.get(ns.toLowerCase());
      if (viaNs === undefined)
        throw new RegistryError('NAME_UNKNOWN', { message: `no upstream is configured for registry ${ns}` });
      return viaNs;
    }
    return fallback as U;
  }

  return {
    defaultUpstream: fallback,
    byName: (name) => byName.get(name),
    upstreamFor,
    route(host, ns, name) {
      const h = hostName(host);
      let upstream: U | undefined = h === undefined ? undefined : byHost.get(h);
      let rest = name;
      if (upstream === undefined && (ns === undefined || ns === '')) {
        const slash = name.indexOf('/');
        const first = slash < 0 ? undefined : name.slice(0, slash);
        if (first !== undefined) {
          const viaPrefix = byPrefix.get(first);
          if (viaPrefix !== undefined) {
            upstream = viaPrefix;
            rest = name.slice(slash + 1);
          } else if (looksLikeHost(first)) {
            throw new RegistryError('NAME_UNKNOWN', {
              message: `no upstream is configured for registry ${first}`,
            });
          }
        }
      }
      upstream ??= upstreamFor(host, ns);
      return { upstream, name: withLibraryPrefix(rest, upstream.config.libraryPrefix) };
    },
  };
}
