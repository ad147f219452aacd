/**
 * The HTTP client for one upstream registry, on an undici Agent (keep-alive pools per origin,
 * streamed bodies with backpressure). It follows redirects itself — Docker Hub answers blob GETs
 * with 307 to a CDN that the mirror's clients may not reach — and never carries the registry's
 * `Authorization` to another origin. Transport failures are translated here into RegistryErrors:
 * unreachable -> 502, no response headers in time -> 504.
 */
import type { Readable } from 'node:stream';
import { errors as undiciErrors, type Dispatcher } from 'undici';
import { RegistryError } from '../registry/errors.ts';
import { refusedAddressCode, type AddressGuard } from './address-guard.ts';
import { discard } from './body.ts';
import type { UpstreamKind } from '../observability/metrics.ts';

export type Headers = Record<string, string | string[] | undefined>;

export interface UpstreamRequest {
  readonly method: 'GET' | 'HEAD' | 'POST';
  /** Absolute URL, or a path (with query) relative to the upstream's base URL. */
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  /** Aborts the request and its body (the client went away). */
  readonly signal?: AbortSignal;
}

export interface UpstreamResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Readable;
  /** The URL that produced this response, after redirects. */
  readonly url: string;
}

export interface RegistryClient {
  /** The upstream base URL, without trailing slash. */
  readonly baseUrl: string;
  /** Sends a request, following redirects for GET and HEAD. The caller must consume or destroy `body`. */
  request(req: UpstreamRequest): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

export interface RegistryClientOptions {
  readonly baseUrl: string;
  /** Alternate base URLs, tried in order when the primary fails to connect or answers 5xx or 429. */
  readonly mirrors?: readonly string[];
  /** The connection pools (TLS, egress proxy, connect timeout): see dispatcher.ts. */
  readonly dispatcher: Dispatcher;
  /**
   * Where redirects and absolute URLs may lead (no loopback, link-local or private addresses
   * unless allowed); its `lookup` should also be the dispatcher's (address-guard.ts).
   */
  readonly guard: AddressGuard;
  /** Sees every upstream response's headers (e.g. Docker Hub's ratelimit-remaining). */
  readonly observe?: (headers: Headers, url: URL) => void;
  /**
   * Sees the outcome of every request (after redirects and mirrors): its kind and status (0 when
   * no response came), and, once a body has been read to its end, its announced length.
   */
  readonly record?: {
    response(kind: UpstreamKind, status: number, ms: number): void;
    body(kind: UpstreamKind, bytes: number): void;
  };
  /** Header and idle timeouts, applied to every request (some proxy agents ignore pool options). */
  readonly timeouts: { readonly headers: number; readonly idle: number };
  /** Redirect hops followed before giving up (Distribution's client stops at 10; one is typical). */
  readonly maxRedirects?: number;
}

const redirectStatuses = new Set([301, 302, 303, 307, 308]);

/** First value of a response header. */
export function headerValue(h: Headers, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function transportError(err: unknown, url: URL): RegistryError | undefined {
  const host = url.host;
  if (err instanceof undiciErrors.HeadersTimeoutError) {
    return new RegistryError('UNAVAILABLE', {
      status: 504,
      message: `upstream ${host} sent no response in time`,
    });
  }
  if (err instanceof undiciErrors.ConnectTimeoutError) {
    return new RegistryError('UNAVAILABLE', {
      status: 502,
      message: `upstream ${host} did not accept a connection in time`,
    });
  }
  if (err instanceof undiciErrors.BodyTimeoutError) {
    return new RegistryError('UNAVAILABLE', { status: 504, message: `upstream ${host} stalled` });
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (code === refusedAddressCode) {
    return new RegistryError('UNAVAILABLE', { status: 502, message: (err as Error).message });
  }
  if (typeof code === 'string' && (code.startsWith('E') || code.startsWith('UND_ERR_SOCKET'))) {
    return new RegistryError('UNAVAILABLE', {
      status: 502,
      message: `upstream ${host} is unreachable (${code})`,
    });
  }
  return undefined;
}

/** What a request is for, from its method and path (a token realm is an absolute URL). */
export function upstreamKind(req: UpstreamRequest): UpstreamKind {
  if (req.method === 'HEAD') return 'head';
  if (req.method === 'POST' || /^https?:\/\//.test(req.url)) return 'token';
  if (req.url.includes('/manifests/')) return 'manifest';
  if (req.url.includes('/blobs/')) return 'blob';
  return 'other';
}

export function createRegistryClient(opts: RegistryClientOptions): RegistryClient {
  const baseUrl = opts.baseUrl.replace(/\/+$/, '');
  const maxRedirects = opts.maxRedirects ?? 5;
  const agent = opts.dispatcher;
  const { guard } = opts;
  const bases = [baseUrl, ...(opts.mirrors ?? []).map((m) => m.replace(/\/+$/, ''))];

  async function once(
    url: URL,
    req: UpstreamRequest,
    headers: Record<string, string>,
  ): Promise<Dispatcher.ResponseData> {
    try {
      return await agent.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: req.method,
        headers,
        body: req.body,
        signal: req.signal,
        headersTimeout: opts.timeouts.headers,
        bodyTimeout: opts.timeouts.idle,
      });
    } catch (err) {
      if (req.signal?.aborted) throw err;
      throw transportError(err, url) ?? err;
    }
  }

  async function requestFrom(base: string, req: UpstreamRequest): Promise<UpstreamResponse> {
    {
      let url = new URL(/^https?:\/\//.test(req.url) ? req.url : `${base}${req.url}`);
      // An absolute URL elsewhere (a token realm named by the upstream's challenge) gets the same
      // guard as a redirect: an upstream must not make Docxy fetch from its private network.
      if (url.origin !== new URL(base).origin && (await guard.refuses(url.hostname))) {
        throw new RegistryError('UNAVAILABLE', {
          status: 502,
          message: `upstream named a private or loopback address (${url.hostname}); refused`,
        });
      }
      const origin = url.origin;
      let headers: Record<string, string> = { ...req.headers };
      for (let hop = 0; ; hop++) {
        const res = await once(url, req, headers);
        opts.observe?.(res.headers, url);
        const location = headerValue(res.headers, 'location');
        if (!redirectStatuses.has(res.statusCode) || location === undefined || req.method === 'POST') {
          return { status: res.statusCode, headers: res.headers, body: res.body, url: url.href };
        }
        discard(res.body);
        if (hop >= maxRedirects) {
          throw new RegistryError('UNAVAILABLE', {
            status: 502,
            message: `upstream redirected more than ${maxRedirects} times`,
          });
        }
        const next = new URL(location, url);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          throw new RegistryError('UNAVAILABLE', {
            status: 502,
            message: 'upstream redirected to a non-HTTP URL',
          });
        }
        if (await guard.refuses(next.hostname)) {
          throw new RegistryError('UNAVAILABLE', {
            status: 502,
            message: `upstream redirected to a private or loopback address (${next.hostname}); refused`,
          });
        }
        // The registry's token is for the registry only: a CDN gets a signed URL and no credentials.
        if (next.origin !== origin) {
          headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k !== 'authorization'));
        }
        url = next;
      }
    }
  }

  const record = opts.record;
  async function recorded(req: UpstreamRequest): Promise<UpstreamResponse> {
    if (record === undefined) return routed(req);
    const kind = upstreamKind(req);
    let res: UpstreamResponse;
    const t0 = performance.now();
    try {
      res = await routed(req);
    } catch (err) {
      record.response(kind, 0, performance.now() - t0);
      throw err;
    }
    record.response(kind, res.status, performance.now() - t0);
    const len = headerValue(res.headers, 'content-length');
    // Listening for 'end' leaves the stream paused; only a body read to its end counts.
    if (len !== undefined && req.method !== 'HEAD')
      res.body.once('end', () => {
        record.body(kind, Number(len));
      });
    return res;
  }

  async function routed(req: UpstreamRequest): Promise<UpstreamResponse> {
    {
      // Absolute URLs (token realms, CDN locations) have no mirrors.
      if (/^https?:\/\//.test(req.url) || bases.length === 1) return requestFrom(baseUrl, req);
      let lastError: unknown;
      for (const [i, base] of bases.entries()) {
        const last = i === bases.length - 1;
        try {
          const res = await requestFrom(base, req);
          if (last || (res.status < 500 && res.status !== 429)) return res;
          discard(res.body);
          lastError = new RegistryError(res.status === 429 ? 'TOOMANYREQUESTS' : 'UNAVAILABLE', {
            status: res.status === 429 ? 429 : 502,
            message: `upstream ${new URL(base).host} answered ${res.status}`,
          });
        } catch (err) {
          if (req.signal?.aborted === true || !(err instanceof RegistryError) || last) throw err;
          lastError = err;
        }
      }
      throw lastError;
    }
  }

  return {
    baseUrl,
    request: recorded,
    close: () => agent.close(),
  };
}
