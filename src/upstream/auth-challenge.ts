/**
 * `WWW-Authenticate` challenges (RFC 7235 auth-params; Docker's token spec: `Bearer
 * realm="…",service="…",scope="…"`), parsed and re-rendered so Docxy can point clients at its own
 * token endpoint while keeping the upstream's service and scope.
 */

export interface Challenge {
  /** Lower-cased scheme: `bearer` or `basic`. */
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

/** Parses the first challenge of a header value. Quoted strings may contain commas and `\"`. */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?:\s+|$)/.exec(header);
  if (!m?.[1]) return undefined;
  const params: Record<string, string> = {};
  const re = /\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)/gy;
  re.lastIndex = m[0].length;
  let p: RegExpExecArray | null;
  while (re.lastIndex < header.length && (p = re.exec(header)) !== null) {
    const key = p[1];
    if (key === undefined) break;
    params[key.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme: m[1].toLowerCase(), params };
}

function quote(v: string): string {
  return `"${v.replace(/["\\]/g, '\\$&')}"`;
}

/** Renders a challenge; `Bearer` and `Basic` keep their usual capitalisation. */
export function formatChallenge(c: Challenge): string {
  const scheme = c.scheme === 'bearer' ? 'Bearer' : c.scheme === 'basic' ? 'Basic' : c.scheme;
  const order = ['realm', 'service', 'scope', 'error'];
  const keys = Object.keys(c.params).sort((a, b) => {
    const ia = order.indexOf(a);
    const ib = order.indexOf(b);
    return (ia < 0 ? order.length : ia) - (ib < 0 ? order.length : ib);
  });
  const params = keys.map((k) => `${k}=${quote(c.params[k] ?? '')}`).join(',');
  return params === '' ? scheme : `${scheme} ${params}`;
}

/**
 * Rewrites a Bearer challenge so its realm is Docxy's token endpoint. Built only from the
 * configured public URL, never from the request (docxy CVE-2025-63761). Other schemes pass as they
 * are: with Basic auth the client sends its credentials to Docxy, which forwards them.
 */
export function rewriteRealm(header: string, realm: string): string {
  const c = parseChallenge(header);
  if (c?.scheme !== 'bearer') return header;
  return formatChallenge({ scheme: c.scheme, params: { ...c.params, realm } });
}
