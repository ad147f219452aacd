/**
 * What a manifest refers to: an image manifest its config and layers (blobs), an index or manifest
 * list its child manifests (OCI image-spec; Docker manifest v2 schema 2). Used to keep a
 * manifest's blobs in the cache at least as long as the manifest.
 */
export interface ManifestRefs {
  readonly blobs: readonly string[];
  readonly manifests: readonly string[];
}

interface Descriptor {
  digest?: unknown;
}

function digests(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  return list.map((d: Descriptor) => d.digest).filter((d): d is string => typeof d === 'string');
}

export function manifestRefs(bytes: Buffer): ManifestRefs {
  let doc: { config?: Descriptor; layers?: unknown; manifests?: unknown; subject?: Descriptor };
  try {
    doc = JSON.parse(bytes.toString('utf8')) as typeof doc;
  } catch {
    return { blobs: [], manifests: [] };
  }
  const blobs = digests(doc.layers);
  if (typeof doc.config?.digest === 'string') blobs.unshift(doc.config.digest);
  return { blobs, manifests: digests(doc.manifests) };
}
