/**
 * A scan of what the cache holds: blobs, manifests with what they refer to, and tag records. The
 * eviction and the `docxy cache` commands work from it; it is read from storage, so it is correct
 * after restarts and across processes sharing a store.
 */
import { manifestRefs } from '../registry/manifest.ts';
import type { StorageDriver } from '../storage/driver.ts';
import { paths } from '../storage/paths.ts';
import type { TagRecord } from './tag-policy.ts';

export interface IndexedObject {
  readonly key: string;
  readonly digest: string;
  readonly size: number;
  readonly lastAccess: Date;
}

export interface IndexedManifest extends IndexedObject {
  readonly blobs: readonly string[];
  readonly manifests: readonly string[];
}

export interface IndexedTag {
  readonly key: string;
  readonly upstream: string;
  readonly name: string;
  readonly tag: string;
  readonly record: TagRecord;
  readonly lastAccess: Date;
}

export interface CacheIndex {
  readonly blobs: ReadonlyMap<string, IndexedObject>;
  readonly manifests: ReadonlyMap<string, IndexedManifest>;
  readonly tags: readonly IndexedTag[];
  /** Bytes held by blobs and manifests. */
  readonly totalSize: number;
}

export async function scanCache(storage: StorageDriver): Promise<CacheIndex> {
  const blobs = new Map<string, IndexedObject>();
  const manifests = new Map<string, IndexedManifest>();
  const tags: IndexedTag[] = [];
  let totalSize = 0;
  for await (const e of storage.list('blobs/')) {
    const digest = paths.digestOf(e.key);
    if (digest === undefined) continue;
    blobs.set(digest, { key: e.key, digest, size: e.size, lastAccess: e.lastAccess });
    totalSize += e.size;
  }
  for await (const e of storage.list('manifests/')) {
    const digest = paths.digestOf(e.key);
    if (digest === undefined) continue;
    const bytes = await storage.getBytes(e.key);
    if (bytes === undefined) continue;
    manifests.set(digest, {
      key: e.key,
      digest,
      size: e.size,
      lastAccess: e.lastAccess,
      ...manifestRefs(bytes),
    });
    totalSize += e.size;
  }
  for await (const e of storage.list('tags/')) {
    const t = paths.tagOf(e.key);
    const bytes = t === undefined ? undefined : await storage.getBytes(e.key);
    if (t === undefined || bytes === undefined) continue;
    try {
      tags.push({
        key: e.key,
        ...t,
        record: JSON.parse(bytes.toString('utf8')) as TagRecord,
        lastAccess: e.lastAccess,
      });
    } catch {
      /* a damaged record is skipped; the next pull rewrites it */
    }
  }
  return { blobs, manifests, tags, totalSize };
}

/** Bytes an image takes: the manifest, its children and every blob they refer to, each once. */
export function imageSize(index: CacheIndex, digest: string): number {
  const seen = new Set<string>();
  let size = 0;
  const visit = (d: string): void => {
    if (seen.has(d)) return;
    seen.add(d);
    const m = index.manifests.get(d);
    if (m === undefined) return;
    size += m.size;
    for (const b of m.blobs) {
      if (seen.has(b)) continue;
      seen.add(b);
      size += index.blobs.get(b)?.size ?? 0;
    }
    for (const c of m.manifests) visit(c);
  };
  visit(digest);
  return size;
}
