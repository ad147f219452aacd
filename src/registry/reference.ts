/**
 * The OCI distribution-spec grammar for repository names, tags and digests (spec.md, "Pulling
 * manifests"), and the parser for `/v2/...` paths. Nothing that fails these checks is ever sent
 * upstream or used as a storage key.
 */
import { RegistryError } from './errors.ts';

const component = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const nameRe = new RegExp(`^${component}(?:/${component})*$`);
const tagRe = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** Algorithms we can verify, with the length of their hex encoding. */
const digestAlgorithms: Readonly<Record<string, number>> = { sha256: 64, sha512: 128 };
const digestRe = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

/** Distribution caps names at 255 characters (reference.NameTotalLengthMax). */
export const maxNameLength = 255;

export function isValidName(name: string): boolean {
  return name.length <= maxNameLength && nameRe.test(name);
}

export function isValidTag(tag: string): boolean {
  return tagRe.test(tag);
}

export interface Digest {
  readonly algorithm: 'sha256' | 'sha512';
  readonly hex: string;
  readonly value: string;
}

/** Parses `algorithm:hex`; only sha256 and sha512 are accepted since only they can be verified. */
export function parseDigest(s: string): Digest | undefined {
  const m = digestRe.exec(s);
  if (!m) return undefined;
  const algorithm = m[1];
  const hex = m[2];
  if (algorithm === undefined || hex === undefined) return undefined;
  const len = digestAlgorithms[algorithm];
  if (len === undefined || hex.length !== len || !/^[a-f0-9]+$/.test(hex)) return undefined;
  return { algorithm: algorithm as Digest['algorithm'], hex, value: s };
}

export function isDigest(s: string): boolean {
  return parseDigest(s) !== undefined;
}

export type V2Route =
  | { kind: 'base' }
  | { kind: 'manifest'; name: string; reference: string; referenceIsDigest: boolean }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string }
  | { kind: 'upload'; name: string }
  | { kind: 'catalog' };

function checkName(name: string): string {
  if (!isValidName(name)) throw new RegistryError('NAME_INVALID', { detail: { name } });
  return name;
}

function checkDigest(digest: string): string {
  if (!isDigest(digest))
    throw new RegistryError('DIGEST_INVALID', { message: 'invalid digest', detail: { digest } });
  return digest;
}

/**
 * Parses the path of a `/v2/` request (without the query string, NOT percent-decoded: an encoded
 * character is never part of a valid name, tag or digest). Throws RegistryError for invalid names,
 * tags and digests, and NOT_FOUND for paths that are no registry endpoint.
 */
export function parseV2Path(path: string): V2Route {
  if (path === '/v2' || path === '/v2/') return { kind: 'base' };
  if (!path.startsWith('/v2/')) throw new RegistryError('NOT_FOUND');
  const rest = path.slice(4);
  if (rest === '_catalog') return { kind: 'catalog' };
  // The endpoint is identified from the end of the path since names contain slashes.
  let m = /^(.+)\/manifests\/([^/]+)$/.exec(rest);
  if (m?.[1] !== undefined && m[2] !== undefined) {
    const name = checkName(m[1]);
    const reference = m[2];
    if (reference.includes(':'))
      return { kind: 'manifest', name, reference: checkDigest(reference), referenceIsDigest: true };
    if (!isValidTag(reference))
      throw new RegistryError('TAG_INVALID', { message: 'invalid tag', detail: { tag: reference } });
    return { kind: 'manifest', name, reference, referenceIsDigest: false };
  }
  m = /^(.+)\/blobs\/uploads(?:\/.*)?$/.exec(rest);
  if (m?.[1] !== undefined) return { kind: 'upload', name: checkName(m[1]) };
  m = /^(.+)\/blobs\/([^/]+)$/.exec(rest);
  if (m?.[1] !== undefined && m[2] !== undefined)
    return { kind: 'blob', name: checkName(m[1]), digest: checkDigest(m[2]) };
  m = /^(.+)\/tags\/list$/.exec(rest);
  if (m?.[1] !== undefined) return { kind: 'tags', name: checkName(m[1]) };
  m = /^(.+)\/referrers\/([^/]+)$/.exec(rest);
  if (m?.[1] !== undefined && m[2] !== undefined)
    return { kind: 'referrers', name: checkName(m[1]), digest: checkDigest(m[2]) };
  throw new RegistryError('NOT_FOUND', { message: 'no such registry endpoint' });
}
