/**
 * When a cached tag may be answered without the upstream, and when a failing upstream still lets
 * Docxy answer from the cache (serve-stale).
 */
import { RegistryError } from '../registry/errors.ts';

export interface TagRecord {
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
  /** When the upstream last confirmed this tag -> digest (ms since the epoch). */
  readonly checkedAt: number;
}

/** What the policy judges: anything the upstream last confirmed at `checkedAt` (tags, tag lists, referrers). */
export type Checked = Pick<TagRecord, 'checkedAt'>;

export interface TagPolicy {
  /** Within the TTL: answer with zero upstream requests. */
  isFresh(rec: Checked, now: number): boolean;
  /** Past the TTL but within max_stale (0 = no limit): may be served while the upstream fails. */
  mayServeStale(rec: Checked, now: number): boolean;
}

export function createTagPolicy(opts: { ttlMs: number; maxStaleMs: number }): TagPolicy {
  return {
    isFresh: (rec, now) => now - rec.checkedAt < opts.ttlMs,
    mayServeStale: (rec, now) => opts.maxStaleMs === 0 || now - rec.checkedAt <= opts.ttlMs + opts.maxStaleMs,
  };
}

/** An upstream answer that means "the upstream is failing", not "the answer is no". */
export function isUpstreamFailure(status: number): boolean {
  return status >= 500 || status === 429;
}

/** A thrown upstream failure (unreachable 502, 503, timeout 504: upstream/registry-client.ts), not a refusal. */
export function isFailureError(err: unknown): boolean {
  return err instanceof RegistryError && (err.status === 502 || err.status === 504 || err.status === 503);
}

/**
 * Whether a client's Accept media ranges (as `acceptList` gives them) admit a manifest media type.
 * No Accept at all, or `*\/*` (containerd appends it), admits anything.
 */
export function acceptable(mediaType: string, accept: readonly string[]): boolean {
  return accept.length === 0 || accept.includes('*/*') || accept.includes(mediaType);
}

/**
 * Splits Accept header values (several headers, comma-joined lists) into media ranges, lowercased
 * and without parameters (`;q=0.5`), which is all `acceptable` compares.
 */
export function acceptList(values: readonly string[] | undefined): string[] {
  if (values === undefined) return [];
  const out: string[] = [];
  for (const v of values)
    for (const part of v.split(',')) {
      const t = (part.split(';')[0] ?? '').trim().toLowerCase();
      if (t !== '') out.push(t);
    }
  return out;
}

/** Distinct Accept header sets remembered by `createAcceptCache` (clients send a handful). */
const acceptCacheMax = 256;

/**
 * `acceptList` remembered by the raw header text: every docker, containerd or podman of one
 * version sends the same Accept values, so a warm manifest request need not split them again. The
 * lists it returns are shared and frozen.
 */
export function createAcceptCache(): (values: readonly string[] | undefined) => readonly string[] {
  const known = new Map<string, readonly string[]>();
  const none: readonly string[] = Object.freeze([]);
  return (values) => {
    if (values === undefined || values.length === 0) return none;
    // A comma between header values means what a comma inside one does (RFC 9110 section 5.3).
    const raw = values.length === 1 ? (values[0] ?? '') : values.join(',');
    const hit = known.get(raw);
    if (hit !== undefined) return hit;
    const list = Object.freeze(acceptList([raw]));
    if (known.size >= acceptCacheMax) known.clear();
    known.set(raw, list);
    return list;
  };
}
