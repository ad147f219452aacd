/**
 * The benchmark's registry client: what a pulling daemon does, minus unpacking. It answers a Bearer
 * challenge by fetching an anonymous pull token from the realm the challenge names (Docxy's, or
 * the hub's when the contestant passes the challenge through), follows redirects itself without
 * carrying `Authorization` to another origin, and streams every body through sha256, checking the
 * digest and the size. Nothing is buffered but manifests.
 */
import { createHash } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { ACCEPT_ALL_MANIFESTS, type TestImage } from '../test/helpers/images.ts';

export interface Transfer {
  /** Body bytes received (verified). */
  readonly bytes: number;
  readonly ms: number;
}

const MAX_REDIRECTS = 5;

function header(res: Dispatcher.ResponseData, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** `Bearer realm="…",service="…",scope="…"` -> its parameters (lower-cased names). */
export function parseBearer(challenge: string): Map<string, string> | undefined {
  const m = /^\s*Bearer\s+(.*)$/i.exec(challenge);
  if (m?.[1] === undefined) return undefined;
  const params = new Map<string, string>();
  for (const p of m[1].matchAll(/([A-Za-z_]+)\s*=\s*"((?:[^"\\]|\\.)*)"/g)) {
    const [, k, v] = p;
    if (k !== undefined && v !== undefined) params.set(k.toLowerCase(), v);
  }
  return params;
}

export class PullClient {
  /** Pull tokens by repository. */
  private readonly tokens = new Map<string, string>();
  /** Token requests this client made. */
  tokenFetches = 0;

  constructor(
    readonly baseUrl: string,
    private readonly dispatcher: Dispatcher,
    private readonly signal: AbortSignal,
  ) {}

  /** The pull token held for `repo`, if a challenge asked for one. */
  tokenFor(repo: string): string | undefined {
    return this.tokens.get(repo);
  }

  /** GET `path` for `repo`, answering one Bearer challenge; the caller consumes the body. */
  async get(path: string, repo: string, accept?: string): Promise<Dispatcher.ResponseData> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const headers: Record<string, string> = { 'user-agent': 'docxy-bench' };
      const token = this.tokens.get(repo);
      if (token !== undefined) headers.authorization = `Bearer ${token}`;
      if (accept !== undefined) headers.accept = accept;
      const res = await this.follow(new URL(path, this.baseUrl), headers);
      if (res.statusCode !== 401 || attempt > 0) return res;
      const challenge = header(res, 'www-authenticate');
      await res.body.dump();
      const params = challenge === undefined ? undefined : parseBearer(challenge);
      const realm = params?.get('realm');
      if (params === undefined || realm === undefined) {
        throw new Error(`GET ${path}: 401 without a Bearer challenge (${String(challenge)})`);
      }
      this.tokens.set(repo, await this.fetchToken(realm, params.get('service'), repo));
    }
    throw new Error('unreachable');
  }

  private async fetchToken(realm: string, service: string | undefined, repo: string): Promise<string> {
    const url = new URL(realm);
    if (service !== undefined) url.searchParams.set('service', service);
    url.searchParams.set('scope', `repository:${repo}:pull`);
    this.tokenFetches++;
    const res = await this.dispatcher.request({
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers: { 'user-agent': 'docxy-bench' },
      signal: this.signal,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`token from ${realm}: HTTP ${res.statusCode} ${text}`);
    const json = JSON.parse(text) as { token?: unknown };
    if (typeof json.token !== 'string') throw new Error(`token from ${realm}: no token`);
    return json.token;
  }

  private async follow(start: URL, headers: Record<string, string>): Promise<Dispatcher.ResponseData> {
    let url = start;
    let hdrs = headers;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const res = await this.dispatcher.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers: hdrs,
        signal: this.signal,
      });
      const location = header(res, 'location');
      if (res.statusCode < 300 || res.statusCode > 399 || location === undefined) return res;
      await res.body.dump();
      const next = new URL(location, url);
      if (next.origin !== url.origin) {
        hdrs = Object.fromEntries(Object.entries(hdrs).filter(([k]) => k !== 'authorization'));
      }
      url = next;
    }
    throw new Error(`GET ${start.href}: more than ${MAX_REDIRECTS} redirects`);
  }

  /** Pulls one blob, hashing the stream; throws unless it is exactly `size` bytes of `digest`. */
  async pullBlob(repo: string, digest: string, size: number): Promise<Transfer> {
    const t0 = performance.now();
    const res = await this.get(`/v2/${repo}/blobs/${digest}`, repo);
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      throw new Error(`${this.baseUrl} blob ${digest}: HTTP ${res.statusCode} ${text.slice(0, 300)}`);
    }
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of res.body) {
      const buf = chunk as Buffer;
      hash.update(buf);
      bytes += buf.length;
    }
    const got = `sha256:${hash.digest('hex')}`;
    if (bytes !== size || got !== digest) {
      throw new Error(
        `${this.baseUrl} blob ${digest}: got ${bytes} bytes hashing to ${got}, expected ${size}`,
      );
    }
    return { bytes, ms: performance.now() - t0 };
  }

  /** Fetches a manifest and checks the bytes hash to `digest`; returns its size. */
  async pullManifest(repo: string, reference: string, digest: string): Promise<number> {
    const res = await this.get(`/v2/${repo}/manifests/${reference}`, repo, ACCEPT_ALL_MANIFESTS);
    const body = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200) {
      throw new Error(
        `${this.baseUrl} manifest ${repo}:${reference}: HTTP ${res.statusCode} ${body.toString()}`,
      );
    }
    const got = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (got !== digest)
      throw new Error(`${this.baseUrl} manifest ${repo}:${reference}: digest ${got}, expected ${digest}`);
    return body.length;
  }

  /** A whole single-platform pull: tag manifest, then every blob (config, layers) one after another. */
  async pullImage(image: TestImage): Promise<Transfer> {
    const t0 = performance.now();
    let bytes = await this.pullManifest(image.repo, image.tag, image.digest);
    for (const blob of image.blobs) bytes += (await this.pullBlob(image.repo, blob.digest, blob.size)).bytes;
    return { bytes, ms: performance.now() - t0 };
  }
}
