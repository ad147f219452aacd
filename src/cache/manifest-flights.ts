/**
 * One upstream request per manifest at a time: concurrent cold (or expired) requests of one tag or
 * digest wait for the first one's upstream request and are then answered from the cache. Docker
 * Hub counts every manifest GET against the pull limit, so 50 CI jobs starting `FROM node:22` at
 * once must cost one GET, not 50. With a fleet (Redis coordination) the first request takes the
 * lease `manifest:<upstream> <name>@<reference>`; another replica's request waits until the lease
 * is released (or has expired: a crashed holder), then reads what the holder stored. Whoever runs
 * looks in the cache again first, so a lookup that missed just before a flight ended costs nothing.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { holdLease, type LeaseOwner, type Leases } from '../coordination/coordination.ts';

export interface ManifestFleet {
  readonly leases: Leases;
  readonly owner: LeaseOwner;
  /** The lease's TTL: how long a crashed holder makes the others wait before they fetch. */
  readonly ttlMs: number;
}

export interface ManifestFlights {
  /**
   * Runs `lookup` (the cache lookup that goes upstream when the cache cannot answer) as the one
   * for `key`, or, when one is running here or on another replica, waits for it to end first; then
   * the cache answers. The one that runs first looks up again too: a request whose first lookup
   * missed just before another request's flight ended must not fetch a second time.
   * `afterPeer`: another replica may have stored the answer; re-read shared records.
   */
  run<T>(key: string, lookup: (afterPeer: boolean) => Promise<T>): Promise<T>;
}

/** How often a replica waiting on another's manifest request asks whether it ended. */
const pollMs = 25;

export function createManifestFlights(fleet?: ManifestFleet): ManifestFlights {
  const running = new Map<string, Promise<unknown>>();

  async function fleetWide<T>(key: string, lookup: (afterPeer: boolean) => Promise<T>): Promise<T> {
    if (fleet === undefined) return lookup(false);
    const leaseKey = `manifest:${key}`;
    // A holder renews its lease while it works, so its lease ends only when it is done or dead;
    // past twice the TTL something else is wrong (Redis flapping): go on alone rather than hang.
    const deadline = Date.now() + 2 * fleet.ttlMs;
    for (;;) {
      const grant = await fleet.leases.acquire(leaseKey, fleet.owner, fleet.ttlMs);
      if (grant.granted) {
        const held = holdLease(fleet.leases, leaseKey, fleet.owner.id, fleet.ttlMs);
        try {
          return await lookup(true);
        } finally {
          await held.release();
        }
      }
      if (Date.now() > deadline) return lookup(true);
      await sleep(pollMs);
    }
  }

  return {
    async run(key, lookup) {
      const current = running.get(key);
      if (current !== undefined) {
        await current.catch(() => undefined);
        return lookup(false);
      }
      const p = fleetWide(key, lookup);
      running.set(key, p);
      try {
        return await p;
      } finally {
        running.delete(key);
      }
    },
  };
}
