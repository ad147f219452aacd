/**
 * The storage layout, the only place keys are built. Inputs are already validated against the OCI
 * grammar (registry/reference.ts), so no key can escape its folder.
 *
 *   blobs/<algorithm>/<first two hex>/<hex>               blob bytes (content-addressed, shared)
 *   manifests/<algorithm>/<first two hex>/<hex>           manifest bytes, metadata: media type
 *   tags/<upstream>/<repository name>/_tag/<tag>          tag record JSON: digest, media type, checked time
 *   links/<upstream>/<repository name>/_link/<alg>/<hex>  empty: the digest was seen in that repository
 *   listings/<upstream>/<repository name>/_tags/<q>       a tags/list answer (header line + body)
 *   listings/<upstream>/<repository name>/_referrers/<alg>/<hex>/<q>   a referrers answer, likewise
 *
 * `<q>` is the sha256 hex of the answer's query (n, last, artifactType): any query, one safe name.
 */
import { createHash } from 'node:crypto';
import { parseDigest } from '../registry/reference.ts';

function queryKey(query: string): string {
  return createHash('sha256').update(query).digest('hex');
}

function digestPath(kind: 'blobs' | 'manifests', digest: string): string {
  const d = parseDigest(digest);
  if (!d) throw new Error(`not a digest: ${digest}`);
  return `${kind}/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}`;
}

export const paths = {
  blob: (digest: string): string => digestPath('blobs', digest),
  manifest: (digest: string): string => digestPath('manifests', digest),
  /** `_tag` cannot be a name component (components start with [a-z0-9]), so names and tags never collide. */
  tag: (upstream: string, name: string, tag: string): string => `tags/${upstream}/${name}/_tag/${tag}`,
  tagsOf: (upstream: string, name?: string): string =>
    name === undefined ? `tags/${upstream}/` : `tags/${upstream}/${name}/_tag/`,
  link(upstream: string, name: string, digest: string): string {
    const d = parseDigest(digest);
    if (!d) throw new Error(`not a digest: ${digest}`);
    return `links/${upstream}/${name}/_link/${d.algorithm}/${d.hex}`;
  },
  /** `_tags` and `_referrers`, like `_tag`, cannot be name components. */
  tagList: (upstream: string, name: string, query: string): string =>
    `listings/${upstream}/${name}/_tags/${queryKey(query)}`,
  referrers(upstream: string, name: string, subject: string, query: string): string {
    const d = parseDigest(subject);
    if (!d) throw new Error(`not a digest: ${subject}`);
    return `listings/${upstream}/${name}/_referrers/${d.algorithm}/${d.hex}/${queryKey(query)}`;
  },
  /** Parses a blob or manifest key back to its digest. */
  digestOf(key: string): string | undefined {
    const m = /^(?:blobs|manifests)\/(sha256|sha512)\/[0-9a-f]{2}\/([0-9a-f]+)$/.exec(key);
    return m ? `${m[1] ?? ''}:${m[2] ?? ''}` : undefined;
  },
  /** Parses a tag key back to upstream, name and tag. */
  tagOf(key: string): { upstream: string; name: string; tag: string } | undefined {
    const m = /^tags\/([^/]+)\/(.+)\/_tag\/([^/]+)$/.exec(key);
    return m?.[1] !== undefined && m[2] !== undefined && m[3] !== undefined
      ? { upstream: m[1], name: m[2], tag: m[3] }
      : undefined;
  },
};
