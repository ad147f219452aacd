/**
 * Coordination for one process: plain maps. Also what the Redis implementation answers from while
 * Redis is unreachable. Every table is bounded, so a flood of addresses or keys cannot grow it.
 */
import type { Coordination, Counters, LeaseOwner, Leases, Pins, Records, Stamps } from '../coordination.ts';

/** Entries kept at most per table (each about 100 bytes). */
const defaultMaxEntries = 100_000;

export interface MemoryOptions {
  readonly now?: () => number;
  readonly maxEntries?: number;
}

/** Deletes the oldest entries (a Map iterates in insertion order) until `map` fits `max`. */
export function trimOldest(map: Map<string, unknown>, max: number): void {
  while (map.size > max) {
    const oldest = map.keys().next();
    if (oldest.done === true) return;
    map.delete(oldest.value);
  }
}

export function createMemoryLeases(now: () => number = Date.now, max = defaultMaxEntries): Leases {
  const held = new Map<string, { owner: LeaseOwner; until: number }>();
  const current = (key: string): { owner: LeaseOwner; until: number } | undefined => {
    const l = held.get(key);
    if (l !== undefined && l.until <= now()) {
      held.delete(key);
      return undefined;
    }
    return l;
  };
  return {
    acquire(key, owner, ttlMs) {
      const l = current(key);
      if (l !== undefined) return Promise.resolve({ granted: false, holder: l.owner });
      held.set(key, { owner, until: now() + ttlMs });
      trimOldest(held, max);
      return Promise.resolve({ granted: true });
    },
    renew(key, ownerId, ttlMs) {
      const l = current(key);
      if (l?.owner.id !== ownerId) return Promise.resolve(false);
      l.until = now() + ttlMs;
      return Promise.resolve(true);
    },
    release(key, ownerId) {
      const l = current(key);
      if (l?.owner.id !== ownerId) return Promise.resolve(false);
      held.delete(key);
      return Promise.resolve(true);
    },
  };
}

/** The window index of `t` and the milliseconds left in it. */
export function windowOf(t: number, windowMs: number): { index: number; left: number } {
  const index = Math.floor(t / windowMs);
  return { index, left: (index + 1) * windowMs - t };
}

export function createMemoryCounters(now: () => number = Date.now, max = defaultMaxEntries): Counters {
  const counts = new Map<string, { index: number; n: number }>();
  return {
    add(key, windowMs, n) {
      const { index } = windowOf(now(), windowMs);
      const k = `${String(windowMs)} ${key}`;
      let c = counts.get(k);
      if (c?.index !== index) {
        // A new window: re-insert so the map's order stays "least recently started first".
        counts.delete(k);
        counts.set(k, (c = { index, n: 0 }));
        trimOldest(counts, max);
      }
      c.n += n;
      return c.n;
    },
    remaining: (windowMs) => windowOf(now(), windowMs).left,
  };
}

export function createMemoryRecords(now: () => number = Date.now, max = defaultMaxEntries): Records {
  const until = new Map<string, number>();
  return {
    has(key) {
      const u = until.get(key);
      if (u !== undefined && u <= now()) until.delete(key);
      return Promise.resolve(u !== undefined && u > now());
    },
    put(key, ttlMs) {
      until.delete(key);
      until.set(key, now() + ttlMs);
      trimOldest(until, max);
      return Promise.resolve();
    },
  };
}

export function createMemoryStamps(max = defaultMaxEntries): Stamps {
  const stamps = new Map<string, number>();
  return {
    raise(entries) {
      for (const [k, ms] of entries) {
        const cur = stamps.get(k);
        if (cur !== undefined && cur >= ms) continue;
        stamps.delete(k);
        stamps.set(k, ms);
      }
      trimOldest(stamps, max);
      return Promise.resolve();
    },
    get(keys) {
      const out = new Map<string, number>();
      for (const k of keys) {
        const v = stamps.get(k);
        if (v !== undefined) out.set(k, v);
      }
      return Promise.resolve(out);
    },
    forget(keys) {
      for (const k of keys) stamps.delete(k);
      return Promise.resolve();
    },
  };
}

export function createMemoryPins(now: () => number = Date.now, max = defaultMaxEntries): Pins {
  /** Per key: each owner's pin expiry. */
  const pins = new Map<string, Map<string, number>>();
  /** Per key: the claimer and its claim's expiry. */
  const claims = new Map<string, { owner: string; until: number }>();
  const claimOf = (key: string): { owner: string; until: number } | undefined => {
    const c = claims.get(key);
    if (c === undefined || c.until > now()) return c;
    claims.delete(key);
    return undefined;
  };
  const livePins = (key: string): number => {
    const p = pins.get(key);
    if (p === undefined) return 0;
    for (const [o, until] of p) if (until <= now()) p.delete(o);
    if (p.size === 0) pins.delete(key);
    return p.size;
  };
  return {
    pin(key, ownerId, ttlMs) {
      if (claimOf(key) !== undefined) return Promise.resolve(false);
      let p = pins.get(key);
      if (p === undefined) {
        pins.set(key, (p = new Map<string, number>()));
        trimOldest(pins, max);
      }
      p.set(ownerId, now() + ttlMs);
      return Promise.resolve(true);
    },
    unpin(key, ownerId) {
      pins.get(key)?.delete(ownerId);
      livePins(key);
      return Promise.resolve();
    },
    claim(key, ownerId, ttlMs) {
      const c = claimOf(key);
      if ((c !== undefined && c.owner !== ownerId) || livePins(key) > 0) return Promise.resolve(false);
      claims.set(key, { owner: ownerId, until: now() + ttlMs });
      trimOldest(claims, max);
      return Promise.resolve(true);
    },
    unclaim(key, ownerId) {
      if (claimOf(key)?.owner === ownerId) claims.delete(key);
      return Promise.resolve();
    },
  };
}

export function createMemoryCoordination(opts: MemoryOptions = {}): Coordination {
  const now = opts.now ?? Date.now;
  const max = opts.maxEntries ?? defaultMaxEntries;
  return {
    kind: 'memory',
    leases: createMemoryLeases(now, max),
    counters: createMemoryCounters(now, max),
    records: createMemoryRecords(now, max),
    stamps: createMemoryStamps(max),
    pins: createMemoryPins(now, max),
    connected: () => Promise.resolve(true),
    close: () => Promise.resolve(),
  };
}
