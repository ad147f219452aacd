/**
 * Last-access times for the S3 driver. S3 has no atime and rewriting an object to move its
 * LastModified would copy it on every read, so reads are recorded here instead, and an object
 * never touched falls back to its LastModified. This local index is a map kept in memory and
 * flushed as JSON to one file under the data folder now and then; with Redis the same records
 * are shared by the fleet (createSharedAccessIndex).
 */
import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Stamps } from '../../coordination/coordination.ts';

export interface AccessIndex {
  /** The last recorded access of `key` (ms since the epoch), undefined when never recorded. */
  get(key: string): number | undefined;
  /** Records an access of `key` at `ms`. */
  set(key: string, ms: number): void;
  /** Forgets `key` (after a delete). */
  delete(key: string): void;
  /** Writes what is in memory to durable storage (no-op for an index without one). */
  flush(): Promise<void>;
  /** Brings in what the fleet recorded for `keys` (a shared index), before they are listed. */
  load?(keys: readonly string[]): Promise<void>;
}

/**
 * An index whose records are also shared with the fleet through `stamps` (Redis), so the replica
 * that evicts orders objects by every replica's reads. Reads stay local and synchronous; accesses
 * and deletes are sent on `flush()`, the fleet's stamps are fetched by `load()`. `namespace` (the
 * bucket and prefix) keeps fleets on different buckets apart in one Redis.
 */
export function createSharedAccessIndex(local: AccessIndex, stamps: Stamps, namespace: string): AccessIndex {
  let raised = new Map<string, number>();
  let forgotten = new Set<string>();
  const field = (key: string): string => `${namespace}${key}`;
  return {
    get: (key) => local.get(key),
    set(key, ms) {
      local.set(key, ms);
      raised.set(field(key), Math.max(ms, raised.get(field(key)) ?? 0));
      forgotten.delete(field(key));
    },
    delete(key) {
      local.delete(key);
      raised.delete(field(key));
      forgotten.add(field(key));
    },
    async flush() {
      const up = raised;
      const gone = forgotten;
      raised = new Map();
      forgotten = new Set();
      await local.flush();
      if (up.size > 0) await stamps.raise(up);
      if (gone.size > 0) await stamps.forget([...gone]);
    },
    async load(keys) {
      const fleet = await stamps.get(keys.map(field));
      for (const key of keys) {
        const ms = fleet.get(field(key));
        if (ms !== undefined) local.set(key, ms);
      }
    },
  };
}

/** An index in memory only (tests, or a cache that can live with LastModified after a restart). */
export function createMemoryAccessIndex(): AccessIndex {
  const times = new Map<string, number>();
  return {
    get: (key) => times.get(key),
    set: (key, ms) => {
      if ((times.get(key) ?? 0) < ms) times.set(key, ms);
    },
    delete: (key) => {
      times.delete(key);
    },
    flush: () => Promise.resolve(),
  };
}

/**
 * An index in memory, loaded from and flushed to `file` (a JSON object key → ms). Writes go to a
 * temporary file renamed into place, so a crash leaves the previous snapshot; losing recent
 * accesses only makes eviction slightly less accurate.
 */
export function createFileAccessIndex(file: string): AccessIndex {
  const times = new Map<string, number>();
  try {
    // Read once at start, before serving: synchronous keeps the app's construction synchronous.
    const saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    for (const [k, v] of Object.entries(saved)) if (typeof v === 'number') times.set(k, v);
  } catch {
    // Absent or unreadable: start empty, LastModified stands in.
  }
  let dirty = false;
  return {
    get: (key) => times.get(key),
    set: (key, ms) => {
      if ((times.get(key) ?? 0) >= ms) return;
      times.set(key, ms);
      dirty = true;
    },
    delete: (key) => {
      dirty = times.delete(key) || dirty;
    },
    async flush() {
      if (!dirty) return;
      dirty = false;
      await mkdir(dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(Object.fromEntries(times)));
      await rename(tmp, file);
    },
  };
}
