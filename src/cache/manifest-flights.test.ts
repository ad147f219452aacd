import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { createMemoryLeases } from '../coordination/memory/memory-coordination.ts';
import { createManifestFlights } from './manifest-flights.ts';

/** A cache in front of an upstream that takes `ms` per request and counts them. */
function cachedUpstream(ms: number): {
  fetches: () => number;
  lookups: boolean[];
  lookup: (afterPeer: boolean) => Promise<string>;
} {
  let n = 0;
  let stored = false;
  const lookups: boolean[] = [];
  return {
    fetches: () => n,
    lookups,
    lookup: async (afterPeer) => {
      lookups.push(afterPeer);
      if (stored) return 'from the cache';
      n++;
      await sleep(ms);
      stored = true;
      return 'fetched';
    },
  };
}

describe('manifest flights', () => {
  it('concurrent requests of one manifest in one process make one upstream request', async () => {
    const flights = createManifestFlights();
    const u = cachedUpstream(50);
    const results = await Promise.all(
      Array.from({ length: 5 }, () => flights.run('hub library/node@22', u.lookup)),
    );
    assert.equal(u.fetches(), 1);
    assert.deepEqual(results.sort(), ['fetched', ...Array<string>(4).fill('from the cache')]);
    assert.deepEqual(u.lookups, Array<boolean>(5).fill(false));
    // A request whose own first lookup missed just before the flight ended: it looks again, no fetch.
    assert.equal(await flights.run('hub library/node@22', u.lookup), 'from the cache');
    assert.equal(u.fetches(), 1);
    // Other keys do not wait.
    const other = cachedUpstream(1);
    assert.equal(await flights.run('hub library/node@20', other.lookup), 'fetched');
  });

  it("a replica waits for another replica's request, then reads what it stored", async () => {
    const leases = createMemoryLeases();
    const a = createManifestFlights({ leases, owner: { id: 'a', address: '' }, ttlMs: 2000 });
    const b = createManifestFlights({ leases, owner: { id: 'b', address: '' }, ttlMs: 2000 });
    const u = cachedUpstream(100);
    const first = a.run('k', u.lookup);
    await sleep(10);
    const t0 = Date.now();
    const second = b.run('k', u.lookup);
    assert.deepEqual(await Promise.all([first, second]), ['fetched', 'from the cache']);
    assert.ok(Date.now() - t0 >= 50, 'b waited for a');
    assert.equal(u.fetches(), 1);
    assert.deepEqual(u.lookups, [true, true], 'both re-read shared records');
    assert.deepEqual(await leases.acquire('manifest:k', { id: 'c', address: '' }, 100), { granted: true });
  });

  it("a crashed holder's lease expires, and the waiting replica goes on", async () => {
    const leases = createMemoryLeases();
    // A holder that never renews nor releases: its lease ends after its TTL.
    await leases.acquire('manifest:k', { id: 'dead', address: '' }, 200);
    const b = createManifestFlights({ leases, owner: { id: 'b', address: '' }, ttlMs: 200 });
    const t0 = Date.now();
    assert.equal(await b.run('k', cachedUpstream(1).lookup), 'fetched');
    const waited = Date.now() - t0;
    assert.ok(waited >= 150 && waited < 1000, `waited ${String(waited)} ms`);
  });
});
