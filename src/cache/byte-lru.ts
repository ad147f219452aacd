/**
 * A least-recently-used map bounded by the bytes of its values, for hot content-addressed objects
 * (manifests): a key always names the same bytes, so a copy in memory is never stale, only evicted.
 * A Map keeps insertion order and a hit re-inserts, so its first key is the least recently used.
 */

export interface ByteLru<V> {
  /** The value for `key` (marked most recently used), or undefined. */
  get(key: string): V | undefined;
  /**
   * Keeps `value` (replacing any value under `key`) and evicts the least recently used entries
   * until the total fits `maxBytes`. A value larger than `maxBytes / 4` is not kept, so one huge
   * object cannot flush every hot one; with `maxBytes` 0 nothing is kept.
   */
  set(key: string, value: V): void;
  delete(key: string): void;
  /** Sum of the sizes of the values kept. */
  readonly bytes: number;
  readonly size: number;
}

export function createByteLru<V>(opts: { maxBytes: number; sizeOf: (value: V) => number }): ByteLru<V> {
  const { maxBytes, sizeOf } = opts;
  const entries = new Map<string, V>();
  let bytes = 0;

  const remove = (key: string): void => {
    const had = entries.get(key);
    if (had === undefined) return;
    entries.delete(key);
    bytes -= sizeOf(had);
  };

  return {
    get(key) {
      const v = entries.get(key);
      if (v === undefined) return undefined;
      entries.delete(key);
      entries.set(key, v);
      return v;
    },
    set(key, value) {
      remove(key);
      const n = sizeOf(value);
      if (maxBytes <= 0 || n > maxBytes / 4) return;
      entries.set(key, value);
      bytes += n;
      for (const [k, old] of entries) {
        if (bytes <= maxBytes) break;
        entries.delete(k);
        bytes -= sizeOf(old);
      }
    },
    delete: remove,
    get bytes() {
      return bytes;
    },
    get size() {
      return entries.size;
    },
  };
}
