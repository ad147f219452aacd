/**
 * Docker Hub keeps official images under `library/`: `docker pull mirror/alpine` asks the mirror
 * for `/v2/alpine/…`, while the daemon's `registry-mirrors` asks for `/v2/library/alpine/…`
 * (FACTS.md, "Clients"). With `library_prefix` on, one-component names gain the prefix, in paths
 * and in token scopes alike.
 */

export function withLibraryPrefix(name: string, libraryPrefix: boolean): string {
  return libraryPrefix && !name.includes('/') ? `library/${name}` : name;
}

/**
 * Maps the repository names in a token scope (`repository:alpine:pull`,
 * `repository(plugin):name:pull,push`); other scope types (`registry:catalog:*`) pass unchanged.
 * Several scopes may be joined by spaces (Docker's token spec).
 */
export function mapScope(scope: string, libraryPrefix: boolean): string {
  return mapScopeNames(scope, (name) => withLibraryPrefix(name, libraryPrefix));
}

/** Applies `mapName` to every repository name in a scope string. */
export function mapScopeNames(scope: string, mapName: (name: string) => string): string {
  return scope
    .split(' ')
    .map((one) => {
      const first = one.indexOf(':');
      const last = one.lastIndexOf(':');
      if (first < 0 || last === first) return one;
      const type = one.slice(0, first);
      if (type !== 'repository' && !type.startsWith('repository(')) return one;
      const name = one.slice(first + 1, last);
      return `${type}:${mapName(name)}${one.slice(last)}`;
    })
    .join(' ');
}
