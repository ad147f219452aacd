/**
 * The response plan of a blob of known size: its headers (digest, ETag, immutable caching) and what
 * Range, If-Range and If-None-Match make of the request (200, 206, 304 or 416).
 */
import { contentRange, parseRange } from '../http/range.ts';
import { RegistryError } from '../registry/errors.ts';
import type { Digest } from '../registry/reference.ts';

/** What of a blob request decides its plan. */
export interface BlobConditions {
  readonly digest: Digest;
  readonly range?: string;
  readonly ifRange?: string;
  readonly ifNoneMatch?: string;
}

export function blobHeaders(digest: string): Record<string, string> {
  return {
    'content-type': 'application/octet-stream',
    'docker-content-digest': digest,
    etag: `"${digest}"`,
    'accept-ranges': 'bytes',
    // A blob never changes: its name is its digest (Distribution sends the same).
    'cache-control': 'max-age=31536000',
  };
}

function etagMatches(header: string | undefined, digest: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((t) => {
    const v = t.trim().replace(/^W\//, '');
    return v === '*' || v === `"${digest}"`;
  });
}

/** Applies Range / If-Range / If-None-Match to a blob of known size. */
export function plan(
  req: BlobConditions,
  size: number,
): { status: number; start: number; end: number; headers: Record<string, string> } {
  const digest = req.digest.value;
  const headers = blobHeaders(digest);
  if (etagMatches(req.ifNoneMatch, digest)) return { status: 304, start: 0, end: 0, headers };
  const rangeHeader = req.ifRange === undefined || req.ifRange === `"${digest}"` ? req.range : undefined;
  const r = parseRange(rangeHeader, size);
  if (r.kind === 'unsatisfiable') {
    throw new RegistryError('RANGE_INVALID', { headers: { 'content-range': `bytes */${size}` } });
  }
  if (r.kind === 'partial') {
    return {
      status: 206,
      start: r.start,
      end: r.end,
      headers: {
        ...headers,
        'content-range': contentRange(r.start, r.end, size),
        'content-length': String(r.end - r.start),
      },
    };
  }
  return { status: 200, start: 0, end: size, headers: { ...headers, 'content-length': String(size) } };
}
