/**
 * The Coordination conformance suite: what src/coordination/coordination.ts promises, run against
 * every implementation. A fleet is two replicas' views: for the in-process implementation both are
 * the one instance (one process is the whole fleet), for Redis two clients (two replicas).
 * `settle` waits out the implementation's documented lag of shared counters.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { Coordination, LeaseOwner } from '../../src/coordination/coordination.ts';

export interface FleetUnderTest {
  readonly a: Coordination;
  readonly b: Coordination;
  /** Resolves once counts added before the call are visible to both replicas. */
  readonly settle: () => Promise<void>;
  readonly cleanup: () => Promise<void>;
}

/**
 * The clock the implementations under test run on: wall time shifted so this run starts 1 s into a
 * window of an hour (and so of every shorter window the tests use). An assertion that adds to a
 * 60 s or 1 h window and reads it back then never straddles a window's end by chance (it did once
 * in CI: a count read back as 0 after crossing a minute).
 */
const shift = (Date.now() % 3_600_000) - 1000;
export const testClock = (): number => Date.now() - shift;

const owner = (name: string): LeaseOwner => ({
  id: `${name}-${randomUUID()}`,
  address: `http://${name}:5100`,
});

export function runCoordinationConformance(name: string, open: () => Promise<FleetUnderTest>): void {
  describe(`coordination conformance: ${name}`, () => {
    let fleet: FleetUnderTest | undefined;
    // One fleet per file (a shared server is started once); keys are unique per test instead.
    before(async () => {
      fleet = await open();
    });
    after(async () => {
      await fleet?.cleanup();
    });
    const f = (): FleetUnderTest => {
      assert.ok(fleet !== undefined);
      return fleet;
    };
    const key = (what: string): string => `${what}-${randomUUID()}`;

    it('connected() resolves true once both replicas share coordination', async () => {
      const { a, b } = f();
      assert.equal(await a.connected(5000), true);
      assert.equal(await b.connected(5000), true);
    });

    it('of concurrent acquirers on both replicas exactly one gets the lease; the others learn who', async () => {
      const { a, b } = f();
      const k = key('lease');
      const owners = Array.from({ length: 10 }, (_, i) => owner(`o${String(i)}`));
      const grants = await Promise.all(
        owners.map((o, i) => (i % 2 === 0 ? a : b).leases.acquire(k, o, 5000)),
      );
      const winners = owners.filter((_, i) => grants[i]?.granted === true);
      assert.equal(winners.length, 1);
      const winner = winners[0];
      for (const g of grants) if (!g.granted) assert.deepEqual(g.holder, winner);
      const again = await a.leases.acquire(k, owner('late'), 5000);
      assert.deepEqual(again, { granted: false, holder: winner });
    });

    it('renew and release by another owner are refused and leave the lease to its owner', async () => {
      const { a, b } = f();
      const k = key('lease');
      const o = owner('a');
      assert.deepEqual(await a.leases.acquire(k, o, 5000), { granted: true });
      assert.equal(await b.leases.renew(k, 'someone-else', 5000), false);
      assert.equal(await b.leases.release(k, 'someone-else'), false);
      assert.deepEqual(await b.leases.acquire(k, owner('b'), 5000), { granted: false, holder: o });
      assert.equal(await a.leases.renew(k, o.id, 5000), true);
      assert.equal(await a.leases.release(k, o.id), true);
      assert.equal(await a.leases.release(k, o.id), false, 'a released lease is no longer held');
      const o2 = owner('b');
      assert.deepEqual(await b.leases.acquire(k, o2, 5000), { granted: true });
      assert.equal(await b.leases.release(k, o2.id), true);
    });

    it('an expired lease is taken over; its old owner can neither renew nor release it', async () => {
      const { a, b } = f();
      const k = key('lease');
      const old = owner('a');
      const taker = owner('b');
      assert.deepEqual(await a.leases.acquire(k, old, 150), { granted: true });
      await sleep(300);
      assert.deepEqual(await b.leases.acquire(k, taker, 5000), { granted: true });
      assert.equal(await a.leases.renew(k, old.id, 5000), false);
      assert.equal(await a.leases.release(k, old.id), false);
      assert.deepEqual(await a.leases.acquire(k, owner('c'), 5000), { granted: false, holder: taker });
      await b.leases.release(k, taker.id);
    });

    it('a renewed lease outlives its first expiry', async () => {
      const { a, b } = f();
      const k = key('lease');
      const o = owner('a');
      assert.deepEqual(await a.leases.acquire(k, o, 300), { granted: true });
      await sleep(150);
      assert.equal(await a.leases.renew(k, o.id, 1000), true);
      await sleep(300);
      assert.deepEqual(await b.leases.acquire(k, owner('b'), 1000), { granted: false, holder: o });
      await a.leases.release(k, o.id);
    });

    it("counters count one's own adds at once and the fleet's adds summed across replicas", async () => {
      const { a, b, settle } = f();
      const k = key('count');
      assert.equal(a.counters.add(k, 60_000, 3), 3);
      assert.ok(b.counters.add(k, 60_000, 4) >= 4);
      await settle();
      assert.equal(a.counters.add(k, 60_000, 0), 7);
      assert.equal(b.counters.add(k, 60_000, 0), 7);
      assert.equal(b.counters.add(k, 60_000, 1), 8);
      await settle();
      assert.equal(a.counters.add(k, 60_000, 0), 8);
    });

    it('counters of other keys and other window lengths are separate; remaining is within the window', async () => {
      const { a, b, settle } = f();
      const k = key('count');
      a.counters.add(k, 60_000, 5);
      b.counters.add(`${k}-other`, 60_000, 2);
      b.counters.add(k, 3_600_000, 9);
      // A replica learns the fleet's count of a key within the lag of its first use of it.
      b.counters.add(k, 60_000, 0);
      a.counters.add(`${k}-other`, 60_000, 0);
      a.counters.add(k, 3_600_000, 0);
      await settle();
      assert.equal(b.counters.add(k, 60_000, 0), 5);
      assert.equal(a.counters.add(`${k}-other`, 60_000, 0), 2);
      assert.equal(a.counters.add(k, 3_600_000, 0), 9);
      const left = a.counters.remaining(60_000);
      assert.ok(left > 0 && left <= 60_000, `remaining ${String(left)}`);
    });

    it('a counter starts again at zero in the next window', async () => {
      const { a, b, settle } = f();
      const k = key('count');
      const w = 400;
      await sleep(a.counters.remaining(w) + 5); // start of a window
      a.counters.add(k, w, 2);
      b.counters.add(k, w, 1);
      await sleep(a.counters.remaining(w) + 5);
      await settle();
      assert.equal(a.counters.add(k, w, 0), 0);
      assert.equal(b.counters.add(k, w, 0), 0);
    });

    it('a record put on one replica is seen on the other until it expires', async () => {
      const { a, b } = f();
      const k = key('rec');
      assert.equal(await b.records.has(k), false);
      await a.records.put(k, 300);
      assert.equal(await b.records.has(k), true);
      assert.equal(await a.records.has(k), true);
      assert.equal(await b.records.has(`${k}-other`), false);
      await sleep(450);
      assert.equal(await a.records.has(k), false);
      assert.equal(await b.records.has(k), false);
    });

    it('stamps are latest-wins across replicas, read for many keys at once, and forgotten', async () => {
      const { a, b } = f();
      const k = key('stamp');
      const keys = Array.from({ length: 1200 }, (_, i) => `${k}/${String(i)}`);
      await a.stamps.raise(new Map(keys.map((x, i) => [x, 1_000 + i])));
      // A later stamp from the other replica wins; an earlier one does not lower it.
      await b.stamps.raise(
        new Map([
          [keys[0] ?? '', 5_000],
          [keys[1] ?? '', 10],
        ]),
      );
      const seen = await b.stamps.get([...keys, `${k}/absent`]);
      assert.equal(seen.size, keys.length);
      assert.equal(seen.get(keys[0] ?? ''), 5_000);
      assert.equal(seen.get(keys[1] ?? ''), 1_001);
      assert.equal(seen.get(keys[1199] ?? ''), 2_199);
      assert.equal(seen.has(`${k}/absent`), false);
      assert.equal((await a.stamps.get([keys[0] ?? ''])).get(keys[0] ?? ''), 5_000);
      await a.stamps.forget(keys.slice(0, 2));
      const after = await b.stamps.get(keys.slice(0, 3));
      assert.deepEqual([...after.keys()], [keys[2]]);
    });

    it("a pin on one replica refuses the other's claim; unpinned, the claim wins and refuses pins", async () => {
      const { a, b } = f();
      const k = key('pin');
      assert.equal(await a.pins.pin(k, 'reader-a', 5000), true);
      assert.equal(await a.pins.pin(k, 'reader-a2', 5000), true);
      assert.equal(await b.pins.claim(k, 'evictor', 5000), false);
      await a.pins.unpin(k, 'reader-a');
      assert.equal(await b.pins.claim(k, 'evictor', 5000), false, 'one pin is still live');
      await b.pins.unpin(k, 'reader-a2');
      assert.equal(await b.pins.claim(k, 'evictor', 5000), true);
      assert.equal(await b.pins.claim(k, 'evictor', 5000), true, 'its own claim again');
      assert.equal(await a.pins.claim(k, 'other-evictor', 5000), false);
      assert.equal(await a.pins.pin(k, 'reader-a', 5000), false, 'claimed: no pin');
      await a.pins.unclaim(k, 'other-evictor');
      assert.equal(await a.pins.pin(k, 'reader-a', 5000), false, "another's unclaim is ignored");
      await b.pins.unclaim(k, 'evictor');
      assert.equal(await a.pins.pin(k, 'reader-a', 5000), true);
      await a.pins.unpin(k, 'reader-a');
    });

    it('pins and claims expire by themselves; a renewed pin outlives its first TTL', async () => {
      const { a, b } = f();
      const k = key('pin');
      assert.equal(await a.pins.pin(k, 'crashed', 150), true);
      assert.equal(await b.pins.claim(k, 'evictor', 150), false);
      await sleep(300);
      assert.equal(await b.pins.claim(k, 'evictor', 150), true, "a dead reader's pin expired");
      assert.equal(await a.pins.pin(k, 'reader', 1000), false);
      await sleep(300);
      assert.equal(await a.pins.pin(k, 'reader', 300), true, "a dead evictor's claim expired");
      await sleep(150);
      assert.equal(await a.pins.pin(k, 'reader', 1000), true);
      await sleep(300);
      assert.equal(await b.pins.claim(k, 'evictor', 1000), false, 'renewed');
      await a.pins.unpin(k, 'reader');
    });

    it('of concurrent claims and pins of one key, never a claim and a pin both', async () => {
      const { a, b } = f();
      for (let round = 0; round < 20; round++) {
        const k = key('race');
        const results = await Promise.all([
          a.pins.claim(k, 'evictor', 5000),
          b.pins.pin(k, 'reader-b', 5000),
          a.pins.pin(k, 'reader-a', 5000),
          b.pins.claim(k, 'evictor-2', 5000),
        ]);
        const claimed = results[0] || results[3];
        const pinned = results[1] || results[2];
        assert.ok(claimed !== pinned, `round ${String(round)}: ${JSON.stringify(results)}`);
        assert.ok(!(results[0] && results[3]), 'two claims');
      }
    });
  });
}
