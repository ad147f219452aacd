/**
 * The HTTP side of `docxy warm`: talks to a running Docxy the way a client would (the /v2/ token
 * dance against Docxy's own realm, manifest, then every blob), so the cache, coalescing and policy
 * stay the server's. Blob bodies are read and discarded: only their byte counts matter here.
 */
import {
  planImage,
  refusalError,
  WarmError,
  type ManifestDoc,
  type Platform,
  type WarmPlan,
  type WarmTarget,
} from '../warm/warm-plan.ts';

export interface WarmClientOptions {
  readonly server: string;
  /** `Basic …` for the realm, when a user was given. */
  readonly basic: string | undefined;
}

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** `Bearer realm="…",service="…",scope="…"` -> its parameters. */
function challenge(header: string | null): Map<string, string> {
  const params = new Map<string, string>();
  if (header === null || !/^bearer\s/i.test(header)) return params;
  for (const m of header.matchAll(/(\w+)="([^"]*)"/g)) params.set((m[1] ?? '').toLowerCase(), m[2] ?? '');
  return params;
}

async function failure(res: Response, what: string): Promise<WarmError> {
  return refusalError(what, res.status, await res.text().catch(() => ''));
}

export interface WarmClient {
  /** Resolves the platforms' manifests (fetching them, so the server caches them) into blobs. */
  plan(target: WarmTarget, platforms: readonly Platform[] | 'all'): Promise<WarmPlan>;
  /** GETs one blob to the end; `progress` gets each chunk's size. Returns the bytes read. */
  blob(target: WarmTarget, digest: string, progress: (n: number) => void): Promise<number>;
}

export function createWarmClient(opts: WarmClientOptions): WarmClient {
  const tokens = new Map<string, string>();

  /** A GET that answers Docxy's 401 with a token from the realm it names, once. */
  async function get(name: string, path: string, accept?: string): Promise<Response> {
    const url = `${opts.server}/v2/${name}/${path}`;
    const headers = (): Record<string, string> => {
      const h: Record<string, string> = accept === undefined ? {} : { accept };
      const t = tokens.get(name);
      if (t !== undefined) h.authorization = `Bearer ${t}`;
      return h;
    };
    const res = await fetch(url, { headers: headers() });
    if (res.status !== 401) return res;
    const c = challenge(res.headers.get('www-authenticate'));
    await res.body?.cancel();
    const realm = c.get('realm');
    if (realm === undefined) throw new WarmError(`GET ${path}: 401 without a Bearer challenge`);
    const q = new URLSearchParams();
    if (c.has('service')) q.set('service', c.get('service') ?? '');
    q.set('scope', c.get('scope') ?? `repository:${name}:pull`);
    const tr = await fetch(`${realm}?${q.toString()}`, {
      headers: opts.basic === undefined ? {} : { authorization: opts.basic },
    });
    if (!tr.ok) throw await failure(tr, 'token');
    const body = (await tr.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (token === undefined) throw new WarmError('token: the realm answered without a token');
    tokens.set(name, token);
    return fetch(url, { headers: headers() });
  }

  async function manifest(target: WarmTarget, reference: string): Promise<ManifestDoc> {
    const res = await get(target.name, `manifests/${reference}`, ACCEPT);
    if (!res.ok) throw await failure(res, `manifest ${reference}`);
    return (await res.json()) as ManifestDoc;
  }

  return {
    plan: (target, platforms) => planImage((ref) => manifest(target, ref), target, platforms),

    async blob(target, digest, progress) {
      const res = await get(target.name, `blobs/${digest}`);
      if (!res.ok || res.body === null) throw await failure(res, `blob ${digest.slice(0, 19)}`);
      let n = 0;
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      for (let r = await reader.read(); !r.done; r = await reader.read()) {
        n += r.value.byteLength;
        progress(r.value.byteLength);
      }
      return n;
    },
  };
}
