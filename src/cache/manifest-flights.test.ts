import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { createMemoryLeases } from '../coordination/memory/memory-coordination.ts';
import { createManifestFlights } from './manifest-flights.ts';

/** An upstream request that takes `ms` and counts itself. */
function slowWork(ms: number): { calls: () => number; work: () => Promise<string> } {
  let n = 0;
  return {
    calls: () => n,
    work: async () => {
      n++;
      await sleep(ms);
      return 'fetched';
    },
  };
}

describe('manifest flights', () => {
  it('concurrent requests of one manifest in one process make one upstream request', async () => {
    const flights = createManifestFlights();
    const w = slowWork(50);
    const seen: string[] = [];
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        flights.run('hub library/node@22', w.work, (afterPeer) => {
          seen.push(afterPeer ? 'peer' : 'local');
          return Promise.resolve('from the cache');
        }),
      ),
    );
    assert.equal(w.calls(), 1);
    assert.deepEqual(results.sort(), ['fetched', ...Array<string>(4).fill('from the cache')]);
    assert.deepEqual(seen, Array<string>(4).fill('local'));
    // Other keys do not wait; once ended, the next request is a flight of its own.
    const other = slowWork(1);
    assert.equal(await flights.run('hub library/node@20', other.work, () => Promise.resolve('x')), 'fetched');
    assert.equal(await flights.run('hub library/node@22', w.work, () => Promise.resolve('x')), 'fetched');
    assert.equal(w.calls(), 2);
  });

  it("a replica waits for another replica's request, then reads what it stored", async () => {
    const leases = createMemoryLeases();
    const a = createManifestFlights({ leases, owner: { id: 'a', address: '' }, ttlMs: 2000 });
    const b = createManifestFlights({ leases, owner: { id: 'b', address: '' }, ttlMs: 2000 });
    const w = slowWork(100);
    let ended = 0;
    const first = a.run(
      'k',
      async () => {
        const r = await w.work();
        ended = Date.now();
        return r;
      },
      () => Promise.resolve('unexpected'),
    );
    await sleep(10);
    const second = b.run('k', w.work, (afterPeer) => {
      assert.equal(afterPeer, true);
      assert.ok(ended > 0, 'after the holder ended');
      return Promise.resolve('from the cache');
    });
    assert.deepEqual(await Promise.all([first, second]), ['fetched', 'from the cache']);
    assert.equal(w.calls(), 1);
    assert.deepEqual(await leases.acquire('manifest:k', { id: 'c', address: '' }, 100), { granted: true });
  });

  it("a crashed holder's lease expires, and the waiting replica goes on", async () => {
    const leases = createMemoryLeases();
    // A holder that never renews nor releases: its lease ends after its TTL.
    await leases.acquire('manifest:k', { id: 'dead', address: '' }, 200);
    const b = createManifestFlights({ leases, owner: { id: 'b', address: '' }, ttlMs: 200 });
    const t0 = Date.now();
    const r = await b.run(
      'k',
      () => Promise.resolve('fetched'),
      (afterPeer) => Promise.resolve(afterPeer ? 'looked again' : 'unexpected'),
    );
    assert.equal(r, 'looked again');
    const waited = Date.now() - t0;
    assert.ok(waited >= 150 && waited < 1000, `waited ${String(waited)} ms`);
  });
});
