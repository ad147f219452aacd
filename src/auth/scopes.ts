/** Docker token-spec scopes: `repository:<name>:<actions>` (several joined by spaces or repeated). */
export interface Scope {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
}

export function parseScopes(values: readonly string[]): Scope[] {
  const out: Scope[] = [];
  for (const one of values.flatMap((v) => v.split(' '))) {
    const first = one.indexOf(':');
    const last = one.lastIndexOf(':');
    if (first < 0 || last === first) continue;
    const type = one.slice(0, first);
    out.push({
      type: type.startsWith('repository(') ? 'repository' : type,
      name: one.slice(first + 1, last),
      actions: one
        .slice(last + 1)
        .split(',')
        .filter((a) => a !== ''),
    });
  }
  return out;
}
