/**
 * What replicas of one Docxy fleet share, besides storage: leases (one fill or one eviction run at
 * a time), windowed counters (rate limits that hold across replicas) and short-lived records
 * (private-access proofs), latest-wins stamps (last access for LRU) and pins (what replicas are
 * reading, which the one evicting replica leaves alone). `memory/` answers for one process; `redis/` for a fleet, and falls back
 * to `memory/` per call while Redis is unreachable (duplicate work then, never wrong bytes).
 * Both run the one suite in test/conformance/coordination-suite.ts.
 */

/** Who holds a lease: a process id unique in the fleet, and where the other replicas reach it. */
export interface LeaseOwner {
  /** Unique per process (a random UUID at start); renew and release compare it. */
  readonly id: string;
  /** The owner's cluster address (followers stream from it); may be empty when it has none. */
  readonly address: string;
}

/** The answer to an acquire: granted to the caller, or held by someone else. */
export type LeaseGrant =
  { readonly granted: true } | { readonly granted: false; readonly holder: LeaseOwner };

export interface Leases {
  /**
   * Takes `key` for `owner` for `ttlMs`, unless another owner holds it unexpired (then its holder is
   * returned). Acquiring a key one already holds is refused like any other holder's (ask `renew`).
   */
  acquire(key: string, owner: LeaseOwner, ttlMs: number): Promise<LeaseGrant>;
  /** Extends the lease to `ttlMs` from now; false when `ownerId` no longer holds it (expired, taken). */
  renew(key: string, ownerId: string, ttlMs: number): Promise<boolean>;
  /** Ends the lease if `ownerId` holds it (true); someone else's lease is left alone (false). */
  release(key: string, ownerId: string): Promise<boolean>;
}

/**
 * Counters in fixed windows aligned to the clock (window n covers [n*w, (n+1)*w) of Unix time), so
 * every replica agrees which window a moment is in. Synchronous: the request path never waits on
 * the network. A shared implementation may lag the fleet's total by its flush interval.
 */
export interface Counters {
  /**
   * Adds `n` (0 to read) to `key` in the window of `windowMs` containing now, and returns the total
   * known for that window: this process's own adds at once, other replicas' within the lag (counted
   * from this process's first use of the key: a key it has not used lately answers its own count
   * until the next flush).
   */
  add(key: string, windowMs: number, n: number): number;
  /** Milliseconds until the current window of `windowMs` ends (for Retry-After). */
  remaining(windowMs: number): number;
}

/** Short-lived records shared by the fleet. Keys must not contain a credential (hash it). */
export interface Records {
  /** True when `key` was put and has not expired. */
  has(key: string): Promise<boolean>;
  /** Puts `key` for `ttlMs`. Never throws: a record that could not be shared stays local. */
  put(key: string, ttlMs: number): Promise<void>;
}

/**
 * Latest-wins timestamps per key, shared by the fleet: the last access of each cached object, so
 * the one replica that evicts orders by every replica's reads. Best effort: what cannot be shared
 * stays local; an object without a stamp counts from its LastModified.
 */
export interface Stamps {
  /** Raises each key's stamp to the given ms (a lower value never lowers a stamp). */
  raise(entries: ReadonlyMap<string, number>): Promise<void>;
  /** The stamps known for `keys`; keys without one are absent from the map. */
  get(keys: readonly string[]): Promise<Map<string, number>>;
  /** Forgets the keys' stamps (after their objects were deleted). */
  forget(keys: readonly string[]): Promise<void>;
}

/**
 * What the replicas are reading right now, so the replica that evicts leaves it alone. A reader pins
 * a key before it opens the object; the evictor claims a key before it deletes it. Pin and claim
 * exclude each other atomically: a pin is refused while a claim holds the key, and a claim is
 * refused while any owner's pin is live. Both expire by themselves (a crashed replica's pins and
 * claims go after their TTL); a holder renews a long read's pin by pinning again.
 */
export interface Pins {
  /** Pins `key` for `ownerId` for `ttlMs` (or renews its pin); false, pinning nothing, while claimed. */
  pin(key: string, ownerId: string, ttlMs: number): Promise<boolean>;
  /** Ends `ownerId`'s pin of `key` (others' pins stay). */
  unpin(key: string, ownerId: string): Promise<void>;
  /** Claims `key` for deletion for `ttlMs`: true unless some pin (or another claim) is live. */
  claim(key: string, ownerId: string, ttlMs: number): Promise<boolean>;
  /** Ends `ownerId`'s claim of `key` (after the delete, or when it gave up). */
  unclaim(key: string, ownerId: string): Promise<void>;
}

export interface Coordination {
  /** `memory` for one process; `redis` when shared (even while it falls back). */
  readonly kind: 'memory' | 'redis';
  readonly leases: Leases;
  readonly counters: Counters;
  readonly records: Records;
  readonly stamps: Stamps;
  readonly pins: Pins;
  /**
   * Resolves true once shared coordination answers (at once in-process), false after `timeoutMs`.
   * Until then every call falls back in-process: a short-lived command waits here first.
   */
  connected(timeoutMs: number): Promise<boolean>;
  /** Stops timers and connections (a last flush of counters is attempted). */
  close(): Promise<void>;
}

/** A lease this process holds until it releases it, renewed every third of its TTL meanwhile. */
export interface HeldLease {
  /** Aborted when a renewal finds the lease gone (expired, taken): work under it may stop early. */
  readonly lost: AbortSignal;
  /** Stops renewing and ends the lease; idempotent (every call gets the one release). */
  release(): Promise<void>;
}

/** Keeps a lease just granted to `ownerId` alive until `release()`. */
export function holdLease(leases: Leases, key: string, ownerId: string, ttlMs: number): HeldLease {
  const lost = new AbortController();
  const timer = setInterval(() => {
    void leases.renew(key, ownerId, ttlMs).then((ok) => {
      if (!ok) lost.abort(new Error(`lease ${key} lost`));
    });
  }, ttlMs / 3);
  timer.unref();
  let released: Promise<void> | undefined;
  return {
    lost: lost.signal,
    release() {
      clearInterval(timer);
      released ??= leases.release(key, ownerId).then(() => undefined);
      return released;
    },
  };
}

/**
 * Runs `work` while holding `key`, renewing it every third of `ttlMs`; undefined (work not run) when
 * another owner holds it. A renewal that fails aborts `signal` so the work can stop early.
 */
export async function withLease<T>(
  leases: Leases,
  key: string,
  owner: LeaseOwner,
  ttlMs: number,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T | undefined> {
  const grant = await leases.acquire(key, owner, ttlMs);
  if (!grant.granted) return undefined;
  const held = holdLease(leases, key, owner.id, ttlMs);
  try {
    return await work(held.lost);
  } finally {
    await held.release();
  }
}
