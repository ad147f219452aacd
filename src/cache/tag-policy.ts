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
 * Whether a client's Accept values admit a manifest media type. No Accept at all, or `*\/*`
 * (containerd appends it), admits anything.
 */
export function acceptable(mediaType: string, accept: readonly string[]): boolean {
  if (accept.length === 0) return true;
  return accept.some((a) => {
    const t = a.split(';')[0]?.trim().toLowerCase();
    return t === '*/*' || t === mediaType;
  });
}

/** Splits Accept header values (several headers, comma-joined lists) into media ranges. */
export function acceptList(values: readonly string[] | undefined): string[] {
  if (values === undefined) return [];
  return values
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
}
