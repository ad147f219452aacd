/**
 * What warming an image means, whoever fetches the manifests: the top manifest, then for an index
 * the chosen platforms' manifests, then every blob (config and layers) they name. The CLI fetches
 * over HTTP (cli/warm-client.ts), the server's schedule through its own caches (warm/local-source.ts).
 */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string | undefined;
}

export interface WarmTarget {
  /** The repository name as a client names it to Docxy (a prefix such as `ghcr.io/` routes it). */
  readonly name: string;
  /** Tag or digest. */
  readonly reference: string;
}

export interface BlobPlan {
  readonly digest: string;
  readonly size: number;
}

export interface WarmPlan {
  readonly platforms: string[];
  readonly blobs: BlobPlan[];
}

/** The fields of an image manifest or index that warming reads. */
export interface ManifestDoc {
  mediaType?: string;
  manifests?: { digest: string; platform?: Platform }[];
  config?: BlobPlan;
  layers?: BlobPlan[];
}

/** The reason a warm failed, in the registry's words (`MANIFEST_UNKNOWN: manifest unknown`). */
export class WarmError extends Error {}

/** A registry's refusal in its own words (`MANIFEST_UNKNOWN: manifest unknown`), else its status. */
export function refusalError(what: string, status: number, body: string): WarmError {
  try {
    const e = (JSON.parse(body) as { errors?: { code?: string; message?: string }[] }).errors?.[0];
    if (e !== undefined) return new WarmError(`${what}: ${e.code ?? status}: ${e.message ?? ''}`);
  } catch {
    // not an OCI error body; the status says enough
  }
  return new WarmError(`${what}: HTTP ${status}`);
}

export function platformString(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant === undefined ? '' : `/${p.variant}`}`;
}

export function parsePlatform(s: string): Platform | undefined {
  const [os, architecture, variant, ...rest] = s.split('/');
  if (os === undefined || os === '' || architecture === undefined || architecture === '') return undefined;
  if (rest.length > 0 || variant === '') return undefined;
  return { os, architecture, variant };
}

function matches(want: Platform, have: Platform): boolean {
  return (
    want.os === have.os &&
    want.architecture === have.architecture &&
    (want.variant === undefined || want.variant === have.variant)
  );
}

/** Resolves `target` into its blobs; `manifest` fetches one manifest by tag or digest (and caches it). */
export async function planImage(
  manifest: (reference: string) => Promise<ManifestDoc>,
  target: WarmTarget,
  platforms: readonly Platform[] | 'all',
): Promise<WarmPlan> {
  const top = await manifest(target.reference);
  const blobs = new Map<string, BlobPlan>();
  const addImage = (m: ManifestDoc): void => {
    for (const b of [m.config, ...(m.layers ?? [])]) {
      if (b !== undefined) blobs.set(b.digest, { digest: b.digest, size: b.size });
    }
  };
  if (top.manifests === undefined) {
    addImage(top);
    return { platforms: [], blobs: [...blobs.values()] };
  }
  // Attestation entries (`unknown/unknown`) are not platforms anyone pulls.
  const entries = top.manifests.filter((e) => e.platform !== undefined && e.platform.os !== 'unknown');
  const chosen =
    platforms === 'all'
      ? entries
      : platforms.map((want) => {
          const e = entries.find((x) => x.platform !== undefined && matches(want, x.platform));
          if (e === undefined) throw new WarmError(`no ${platformString(want)} in the index`);
          return e;
        });
  const names: string[] = [];
  for (const e of chosen) {
    addImage(await manifest(e.digest));
    if (e.platform !== undefined) names.push(platformString(e.platform));
  }
  return { platforms: names, blobs: [...blobs.values()] };
}

/** Runs `work` on every item, at most `concurrency` at a time; `stop` ends the queue early. */
export async function eachLimited<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
  stop: () => boolean = () => false,
): Promise<void> {
  const pending = [...items];
  const workers = Array.from({ length: Math.min(concurrency, pending.length) }, async () => {
    for (let item = pending.shift(); item !== undefined && !stop(); item = pending.shift()) await work(item);
  });
  await Promise.all(workers);
}
