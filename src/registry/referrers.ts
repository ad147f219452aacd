/**
 * The referrers API as Docxy answers it for an upstream that lacks it (OCI distribution-spec 1.1,
 * "Listing Referrers" and "Backwards Compatibility / Referrers Tag Schema"): the referrers of a
 * subject live in an image index pushed to the tag `<alg>-<hex>`; Docxy reads that index and
 * answers it, filtered by `artifactType` when asked. Pure: no I/O.
 */
import { mediaTypes } from './media-types.ts';
import type { Digest } from './reference.ts';

/**
 * The Referrers Tag of a subject digest: the algorithm truncated to 32 characters, `-`, the encoded
 * part truncated to 64. Docxy's digests are sha256/sha512 hex only, so no other character needs
 * replacing (sha512's 128 hex are cut to 64, as the spec's table shows).
 */
export function referrersTag(subject: Digest): string {
  return `${subject.algorithm.slice(0, 32)}-${subject.hex.slice(0, 64)}`;
}

/** "If a query results in no matching referrers, an empty manifest list MUST be returned." */
export function emptyReferrers(): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: mediaTypes.ociIndex, manifests: [] }));
}

export interface ReferrersAnswer {
  readonly bytes: Buffer;
  /** Set when the artifactType filter was applied (the answer then carries `OCI-Filters-Applied`). */
  readonly filtered: boolean;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The referrers answer from the fallback tag's index bytes. Unfiltered, the index is answered as
 * it is (its bytes are what the pushing client wrote). With `artifactType`, only descriptors of
 * that type stay. Bytes that are not an image index (a foreign tag of that name) mean no referrers.
 */
export function referrersFromIndex(index: Buffer, artifactType: string | undefined): ReferrersAnswer {
  let parsed: unknown;
  try {
    parsed = JSON.parse(index.toString('utf8'));
  } catch {
    return { bytes: emptyReferrers(), filtered: artifactType !== undefined };
  }
  if (!isRecord(parsed) || !Array.isArray(parsed.manifests)) {
    return { bytes: emptyReferrers(), filtered: artifactType !== undefined };
  }
  if (artifactType === undefined) return { bytes: index, filtered: false };
  const manifests = parsed.manifests.filter((d) => isRecord(d) && d.artifactType === artifactType);
  return {
    bytes: Buffer.from(JSON.stringify({ ...parsed, mediaType: mediaTypes.ociIndex, manifests })),
    filtered: true,
  };
}
