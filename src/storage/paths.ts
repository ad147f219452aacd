/**
 * The storage layout, the only place keys are built. Inputs are already validated against the OCI
 * grammar (registry/reference.ts), so no key can escape its folder.
 *
 *   blobs/<algorithm>/<first two hex>/<hex>               blob bytes (content-addressed, shared)
 *   manifests/<algorithm>/<first two hex>/<hex>           manifest bytes, metadata: media type
 *   tags/<upstream>/<repository name>/_tag/<tag>          tag record JSON: digest, media type, checked time
 *   links/<upstream>/<repository name>/_link/<alg>/<hex>  empty: the digest was seen in that repository
 */
import { parseDigest } from '../registry/reference.ts';

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
