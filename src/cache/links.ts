/**
 * Which repository a cached object was seen in. Objects are stored once by digest, but a digest
 * is served for a repository only if the upstream showed it there (a fill or a tag under that
 * name, or a HEAD under that name): otherwise anyone allowed to pull one repository could read
 * any cached object by naming its digest under that repository (Distribution keeps the same
 * kind of repository links for the same reason).
 */
import type { StorageDriver } from '../storage/driver.ts';
import { paths } from '../storage/paths.ts';

export interface RepositoryLinks {
  has(upstream: string, name: string, digest: string): Promise<boolean>;
  add(upstream: string, name: string, digest: string): Promise<void>;
}

/** Links kept in memory before falling back to storage (one entry is ~150 bytes). */
const memoryMax = 200_000;

export function createRepositoryLinks(storage: StorageDriver): RepositoryLinks {
  /**
   * Keyed by the three parts as given (none holds a newline), not by the storage key: a warm
   * request then costs one string join and a lookup, no digest parsing. Only parts that made a
   * valid storage key are ever remembered.
   */
  const known = new Set<string>();
  const remember = (id: string): void => {
    if (known.size >= memoryMax) known.clear();
    known.add(id);
  };
  return {
    async has(upstream, name, digest) {
      const id = `${upstream}\n${name}\n${digest}`;
      if (known.has(id)) return true;
      if ((await storage.stat(paths.link(upstream, name, digest))) === undefined) return false;
      remember(id);
      return true;
    },
    async add(upstream, name, digest) {
      const id = `${upstream}\n${name}\n${digest}`;
      if (known.has(id)) return;
      const key = paths.link(upstream, name, digest);
      remember(id);
      const w = await storage.createWriter(key);
      try {
        await w.commit();
      } catch {
        await w.cancel();
      }
    },
  };
}
