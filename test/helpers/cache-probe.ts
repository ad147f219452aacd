/**
 * Probes for cache tests: a GET that hashes its body while it streams (64 MiB bodies are never
 * held in memory) and reports a body that broke midway instead of throwing, and exact counts of
 * what the fake hub's registry, token server and CDN have answered.
 */
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import type { CdnRequest } from './cdn-server.ts';
import type { FakeHub, RegistryRequest } from './fake-hub.ts';
import type { TokenRequest } from './token-server.ts';

export interface StreamedResponse {
  /** 0 when no response arrived at all. */
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  /** Body bytes that arrived. */
  readonly bytes: number;
  /** `sha256:<hex>` of the bytes that arrived. */
  readonly digest: string;
  /** Set when the request or its body failed (connection closed before the whole body). */
  readonly error: Error | undefined;
  header(name: string): string | undefined;
}

/**
 * GETs `url`, hashing the body as it arrives. Never throws for transport failures: see `error`.
 * `onBytes` hears the running byte count after each chunk (to act at some point of a transfer).
 */
export async function streamGet(
  url: string,
  headers: Record<string, string> = {},
  onBytes?: (received: number) => void,
): Promise<StreamedResponse> {
  const hash = createHash('sha256');
  let bytes = 0;
  let status = 0;
  let resHeaders: Record<string, string | string[] | undefined> = {};
  let error: Error | undefined;
  try {
    const res = await request(url, { headers });
    status = res.statusCode;
    resHeaders = res.headers;
    for await (const chunk of res.body) {
      const buf = chunk as Buffer;
      hash.update(buf);
      bytes += buf.length;
      onBytes?.(bytes);
    }
  } catch (err) {
    error = err instanceof Error ? err : new Error(String(err));
  }
  return {
    status,
    headers: resHeaders,
    bytes,
    digest: `sha256:${hash.digest('hex')}`,
    error,
    header(name) {
      const v = resHeaders[name.toLowerCase()];
      return Array.isArray(v) ? v[0] : v;
    },
  };
}

/** A point in the fake hub's request history. */
export interface UpstreamMark {
  readonly registry: number;
  readonly cdn: number;
  readonly token: number;
}

/** What the hub answered after a mark. */
export interface UpstreamSince {
  readonly registry: RegistryRequest[];
  readonly cdn: CdnRequest[];
  readonly token: TokenRequest[];
}

export async function markUpstream(hub: FakeHub): Promise<UpstreamMark> {
  return {
    registry: (await hub.registryRequests()).length,
    cdn: hub.cdn?.requests.length ?? 0,
    token: hub.token.requests.length,
  };
}

export async function upstreamSince(hub: FakeHub, mark: UpstreamMark): Promise<UpstreamSince> {
  return {
    registry: (await hub.registryRequests()).slice(mark.registry),
    cdn: (hub.cdn?.requests ?? []).slice(mark.cdn),
    token: hub.token.requests.slice(mark.token),
  };
}

/** The CDN path suffix of a blob (Distribution's `…/blobs/sha256/ab/<hex>/data`). */
export function cdnBlobSuffix(digest: string): string {
  return `/${digest.slice('sha256:'.length)}/data`;
}

/** Every regular file under `dir` (relative paths), or none when it does not exist. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, prefix: string): void => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p, `${prefix}${n}/`);
      else out.push(`${prefix}${n}`);
    }
  };
  walk(dir, '');
  return out;
}
