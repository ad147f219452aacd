/**
 * Keeps the cache under `cache.max_size`: whole objects, least recently used first, never one
 * being read or filled (on any replica of a fleet: see `claims`), and never a blob or child
 * manifest before the manifests that refer to it (so a cached manifest never points at evicted
 * content). Tag records of an evicted manifest go with it. Runs in the background, one run at a
 * time.
 */
import type { Logger } from 'pino';
import type { CacheSizeMetrics } from '../observability/metrics.ts';
import type { StorageDriver } from '../storage/driver.ts';
import { scanCache, type IndexedObject } from './cache-index.ts';

export interface EvictionResult {
  readonly before: number;
  readonly after: number;
  readonly removed: number;
}

export interface EvictionDeps {
  readonly storage: StorageDriver;
  readonly maxSize: number;
  /** True for keys being read or filled right now. */
  readonly inUse: (key: string) => boolean;
  /**
   * With a fleet: each key is deleted only under a claim, which is refused while any replica's
   * read pin holds it (cache/read-pins.ts). Omitted: `inUse` knows every reader.
   */
  readonly claims?: EvictionClaims;
  /** Called for each evicted manifest, so in-memory copies go too. */
  readonly onEvictManifest?: (digest: string) => void;
  readonly log: Logger;
  /** Told the cache's size after every scan, and what each run evicted. */
  readonly metrics?: CacheSizeMetrics;
}

export interface EvictionClaims {
  /** True when `key` may be deleted now: no replica reads it, and none may pin it until unclaimed. */
  claim(key: string): Promise<boolean>;
  unclaim(key: string): Promise<void>;
}

export async function evictToSize(deps: EvictionDeps, maxSize = deps.maxSize): Promise<EvictionResult> {
  const { storage, log } = deps;
  const index = await scanCache(storage);
  let total = index.totalSize;
  const before = total;
  const objects = index.blobs.size + index.manifests.size;
  deps.metrics?.scanned(total, objects);
  if (total <= maxSize) return { before, after: total, removed: 0 };

  const parents = new Map<string, Set<string>>();
  const addParent = (child: string, parent: string): void => {
    let s = parents.get(child);
    if (s === undefined) parents.set(child, (s = new Set()));
    s.add(parent);
  };
  for (const m of index.manifests.values()) {
    for (const b of m.blobs) addParent(b, m.digest);
    for (const c of m.manifests) addParent(c, m.digest);
  }
  const tagsByDigest = new Map<string, string[]>();
  for (const t of index.tags)
    tagsByDigest.set(t.record.digest, [...(tagsByDigest.get(t.record.digest) ?? []), t.key]);

  const removed = new Set<string>();
  const objectOf = (digest: string): IndexedObject | undefined =>
    index.manifests.get(digest) ?? index.blobs.get(digest);

  async function remove(obj: IndexedObject): Promise<boolean> {
    if (removed.has(obj.digest)) return true;
    if (deps.inUse(obj.key)) return false;
    if (deps.claims !== undefined && !(await deps.claims.claim(obj.key))) return false;
    try {
      for (const p of parents.get(obj.digest) ?? []) {
        const parent = index.manifests.get(p);
        if (parent !== undefined && !(await remove(parent))) return false;
      }
      await storage.delete(obj.key);
    } finally {
      await deps.claims?.unclaim(obj.key);
    }
    removed.add(obj.digest);
    total -= obj.size;
    if (index.manifests.has(obj.digest)) {
      for (const key of tagsByDigest.get(obj.digest) ?? []) await storage.delete(key);
      deps.onEvictManifest?.(obj.digest);
    }
    return true;
  }

  const candidates = [...index.blobs.values(), ...index.manifests.values()].sort(
    (a, b) => a.lastAccess.getTime() - b.lastAccess.getTime(),
  );
  for (const c of candidates) {
    if (total <= maxSize) break;
    const obj = objectOf(c.digest);
    if (obj !== undefined) await remove(obj);
  }
  deps.metrics?.evicted(removed.size, before - total);
  deps.metrics?.scanned(total, objects - removed.size);
  log.info({ before, after: total, removed: removed.size, maxSize }, 'cache eviction');
  return { before, after: total, removed: removed.size };
}

export interface Evictor {
  /** Runs now (or joins the run in progress). */
  run(): Promise<EvictionResult>;
  /** Asks for a run soon (after a fill), coalescing bursts. */
  trigger(): void;
  stop(): void;
}

export function createEvictor(
  deps: EvictionDeps & {
    intervalMs: number;
    /**
     * Runs an eviction only while holding the fleet's eviction lease (one replica at a time);
     * undefined when another replica holds it. Omitted: this process is the only evictor.
     */
    exclusive?: (work: () => Promise<EvictionResult>) => Promise<EvictionResult | undefined>;
  },
): Evictor {
  const once = (): Promise<EvictionResult> =>
    deps.exclusive === undefined
      ? evictToSize(deps)
      : deps.exclusive(() => evictToSize(deps)).then((r) => r ?? { before: 0, after: 0, removed: 0 });
  let running: Promise<EvictionResult> | undefined;
  let soon: NodeJS.Timeout | undefined;
  const run = (): Promise<EvictionResult> => {
    running ??= once()
      .catch((err: unknown) => {
        deps.log.error({ err }, 'cache eviction failed');
        return { before: 0, after: 0, removed: 0 };
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const timer = setInterval(() => void run(), deps.intervalMs);
  timer.unref();
  return {
    run,
    trigger() {
      if (soon !== undefined) return;
      soon = setTimeout(() => {
        soon = undefined;
        void run();
      }, 1000);
      soon.unref();
    },
    stop() {
      clearInterval(timer);
      if (soon !== undefined) clearTimeout(soon);
    },
  };
}
