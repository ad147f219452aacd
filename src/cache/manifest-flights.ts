/**
 * One upstream request per manifest at a time: concurrent cold (or expired) requests of one tag or
 * digest wait for the first one's upstream request and are then answered from the cache. Docker
 * Hub counts every manifest GET against the pull limit, so 50 CI jobs starting `FROM node:22` at
 * once must cost one GET, not 50. With a fleet (Redis coordination) the first request takes the
 * lease `manifest:<upstream> <name>@<reference>`; another replica's request waits until the lease
 * is released (or has expired: a crashed holder), then reads what the holder stored.
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
   * Runs `work` (the upstream request) as the one for `key`, or, when one is running here or on
   * another replica, waits for it to end and runs `again` instead: the cache lookup, now answered
   * by what that request stored (`afterPeer`: another replica stored it, re-read shared records).
   */
  run<T>(key: string, work: () => Promise<T>, again: (afterPeer: boolean) => Promise<T>): Promise<T>;
}

/** How often a replica waiting on another's manifest request asks whether it ended. */
const pollMs = 25;

export function createManifestFlights(fleet?: ManifestFleet): ManifestFlights {
  const running = new Map<string, Promise<unknown>>();

  async function fleetWide<T>(
    key: string,
    work: () => Promise<T>,
    again: (afterPeer: boolean) => Promise<T>,
  ): Promise<T> {
    if (fleet === undefined) return work();
    const leaseKey = `manifest:${key}`;
    // A holder renews its lease while it works, so its lease ends only when it is done or dead;
    // past twice the TTL something else is wrong (Redis flapping): fetch alone rather than hang.
    const deadline = Date.now() + 2 * fleet.ttlMs;
    let waited = false;
    for (;;) {
      const grant = await fleet.leases.acquire(leaseKey, fleet.owner, fleet.ttlMs);
      if (grant.granted) {
        const held = holdLease(fleet.leases, leaseKey, fleet.owner.id, fleet.ttlMs);
        try {
          return await (waited ? again(true) : work());
        } finally {
          await held.release();
        }
      }
      if (Date.now() > deadline) return work();
      waited = true;
      await sleep(pollMs);
    }
  }

  return {
    async run(key, work, again) {
      const current = running.get(key);
      if (current !== undefined) {
        await current.catch(() => undefined);
        return again(false);
      }
      const p = fleetWide(key, work, again);
      running.set(key, p);
      try {
        return await p;
      } finally {
        running.delete(key);
      }
    },
  };
}
