/**
 * `Authorization: Basic` as a token realm receives it. An empty user with an empty password
 * (`Basic Og==`, base64 of ":") is what the OCI distribution-spec conformance suite and several
 * SDKs send when they have no account: it asks for an anonymous token, never names an identity,
 * so it is neither checked against the users nor relayed to an upstream token service (which
 * would refuse it as a wrong password and fail every pull).
 */

export interface BasicCredentials {
  readonly user: string;
  readonly password: string;
}

/** The credentials of a Basic header; undefined for another scheme, a malformed value or an empty pair. */
export function basicCredentials(header: string | undefined): BasicCredentials | undefined {
  if (header?.toLowerCase().startsWith('basic ') !== true) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return undefined;
  return nonEmpty({ user: decoded.slice(0, i), password: decoded.slice(i + 1) });
}

/** The pair itself, or undefined when both halves are empty (an anonymous request). */
export function nonEmpty(creds: BasicCredentials): BasicCredentials | undefined {
  return creds.user === '' && creds.password === '' ? undefined : creds;
}

/** True for `Basic` with an empty user and password: the request is anonymous. */
export function isEmptyBasic(header: string | undefined): boolean {
  if (header?.toLowerCase().startsWith('basic ') !== true) return false;
  return Buffer.from(header.slice(6).trim(), 'base64').toString('utf8') === ':';
}
