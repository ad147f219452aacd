/**
 * Writes an upstream response to the client: status, the registry headers clients rely on
 * (allow-list; hop-by-hop and anything else upstream-internal is dropped), the Bearer realm
 * rewritten to Docxy's own token endpoint, and the body streamed with backpressure. A body that
 * fails midway (the upstream stalls past the idle timeout, or drops) destroys the client
 * connection: the client sees a truncated transfer, never a corrupt "complete" one.
 */
import { pipeline } from 'node:stream/promises';
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RequestContext } from './server.ts';
import { rewriteRealm } from '../upstream/auth-challenge.ts';
import type { UpstreamResponse } from '../upstream/registry-client.ts';

/** Response headers passed from the upstream to the client (OCI distribution-spec and Docker Hub's). */
const passHeaders = [
  'content-type',
  'content-length',
  'content-range',
  'accept-ranges',
  'docker-content-digest',
  'etag',
  'last-modified',
  'link',
  'retry-after',
  'ratelimit-limit',
  'ratelimit-remaining',
  'docker-ratelimit-source',
  'oci-filters-applied',
] as const;

export interface RelayOptions {
  /** Docxy's token endpoint, built from the configured public URL. */
  readonly realm: string;
  /** The public base URL, for rewriting absolute upstream `Link` URLs. */
  readonly publicUrl: string;
  /** The upstream's origin; absolute links into it are rewritten to the public URL. */
  readonly upstreamOrigin: string;
  /** Aborts the upstream body when the client goes away. */
  readonly abort: AbortController;
}

/** A pagination `Link` that points into the upstream points at Docxy instead (relative ones stay). */
export function rewriteLink(link: string, opts: Pick<RelayOptions, 'publicUrl' | 'upstreamOrigin'>): string {
  return link.split(`<${opts.upstreamOrigin}/`).join(`<${opts.publicUrl}/`);
}

export function responseHeaders(
  res: UpstreamResponse,
  opts: Pick<RelayOptions, 'realm' | 'publicUrl' | 'upstreamOrigin'>,
): Record<string, string> {
  const out: Record<string, string> = { 'docker-distribution-api-version': 'registry/2.0' };
  for (const name of passHeaders) {
    const v = res.headers[name];
    if (v === undefined) continue;
    out[name] = Array.isArray(v) ? v.join(', ') : v;
  }
  if (out.link !== undefined) out.link = rewriteLink(out.link, opts);
  // A 429 must tell the client when to come back (Docker Hub sends Retry-After; not every registry does).
  if (res.status === 429 && out['retry-after'] === undefined) out['retry-after'] = '60';
  const challenge = res.headers['www-authenticate'];
  if (challenge !== undefined) {
    const first = Array.isArray(challenge) ? challenge[0] : challenge;
    if (first !== undefined) out['www-authenticate'] = rewriteRealm(first, opts.realm);
  }
  return out;
}

/**
 * Counts body bytes as they pass (the log line, written when the response closes, has the total)
 * and cuts the transfer when the client's byte budget runs out (rate_limit bytes_per_hour).
 */
export function countBytes(ctx: RequestContext, body: Readable, raw: ServerResponse): void {
  ctx.bytes = 0;
  body.on('data', (chunk: Buffer) => {
    if (!chargeBytes(ctx, chunk.length)) {
      raw.destroy();
      body.destroy();
    }
  });
}

/**
 * Adds `n` body bytes to the request's count and charges them to its byte budget; false (with the
 * request's error set) when the budget is spent and the transfer must be cut.
 */
export function chargeBytes(ctx: RequestContext, n: number): boolean {
  ctx.bytes = (ctx.bytes ?? 0) + n;
  if (ctx.budget === undefined || ctx.budget(n)) return true;
  ctx.error = 'byte rate limit reached';
  return false;
}

export async function relay(
  request: FastifyRequest,
  reply: FastifyReply,
  res: UpstreamResponse,
  opts: RelayOptions,
): Promise<void> {
  const headers = responseHeaders(res, opts);
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(res.status, headers);
  if (request.method === 'HEAD' || res.status === 204 || res.status === 304) {
    res.body.resume();
    raw.end();
    return;
  }
  countBytes(request.ctx, res.body, raw);
  try {
    await pipeline(res.body, raw, { signal: opts.abort.signal });
  } catch (err) {
    request.ctx.error = err instanceof Error ? err.message : String(err);
    raw.destroy();
  }
}
