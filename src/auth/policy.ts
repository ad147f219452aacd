/**
 * Repository policy: who may pull which repositories of which upstream. No rules: everyone may pull
 * everything (the open mirror). With rules: a pull is allowed when a rule that applies to the
 * principal and upstream allows the repository and no rule that applies denies it. Globs: `*`
 * matches within one path component, `**` across components (`myorg/**` is everything under myorg).
 */

export type Principal = { readonly kind: 'anonymous' } | { readonly kind: 'user'; readonly name: string };

export interface PolicyRule {
  readonly upstream: string;
  readonly allow: readonly string[];
  readonly deny: readonly string[];
  readonly who: string | readonly string[];
}

export interface Policy {
  allows(principal: Principal, upstream: string, repository: string): boolean;
  /** Group names a user belongs to. */
  groupsOf(user: string): readonly string[];
}

export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] ?? '';
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * `anonymousByDefault`: without rules, may anonymous principals pull? Yes on the open mirror; no
 * when client authentication is on (then an explicit `who: anonymous` or `*` rule is needed).
 */
export function createPolicy(
  rules: readonly PolicyRule[],
  groups: Readonly<Record<string, readonly string[]>>,
  opts: { anonymousByDefault: boolean } = { anonymousByDefault: true },
): Policy {
  const compiled = rules.map((r) => ({
    upstream: r.upstream,
    who: typeof r.who === 'string' ? [r.who] : r.who,
    allow: r.allow.map(globToRegExp),
    deny: r.deny.map(globToRegExp),
  }));
  const groupsOf = (user: string): string[] =>
    Object.entries(groups)
      .filter(([, members]) => members.includes(user))
      .map(([g]) => g);

  function whoMatches(who: readonly string[], p: Principal): boolean {
    return who.some((w) => {
      if (w === '*') return true;
      if (w === 'anonymous') return p.kind === 'anonymous';
      if (p.kind === 'anonymous') return false;
      if (w === 'authenticated') return true;
      if (w.startsWith('group:')) return groupsOf(p.name).includes(w.slice('group:'.length));
      return w === p.name;
    });
  }

  return {
    groupsOf,
    allows(principal, upstream, repository) {
      if (compiled.length === 0) return principal.kind === 'user' || opts.anonymousByDefault;
      const applicable = compiled.filter(
        (r) => (r.upstream === '*' || r.upstream === upstream) && whoMatches(r.who, principal),
      );
      const allowed = applicable.some((r) => r.allow.some((g) => g.test(repository)));
      return allowed && !applicable.some((r) => r.deny.some((g) => g.test(repository)));
    },
  };
}
