import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import pino from 'pino';
import { createMemoryPins } from '../coordination/memory/memory-coordination.ts';
import { createReadPins, evictionClaims } from './read-pins.ts';

const log = pino({ level: 'silent' });

describe('read pins', () => {
  it("keep a key from the evictor's claim while any reader holds it, and a while after", async () => {
    const pins = createMemoryPins();
    const reads = createReadPins({ pins, ownerId: 'replica-a', namespace: 'bucket/p/', ttlMs: 300, log });
    const evictor = evictionClaims(pins, 'replica-b', 'bucket/p/');
    try {
      const first = await reads.hold('blobs/x');
      const second = await reads.hold('blobs/x');
      assert.ok(first !== undefined && second !== undefined);
      assert.equal(await evictor.claim('blobs/x'), false);
      assert.equal(
        await evictionClaims(pins, 'replica-b', 'other/').claim('blobs/x'),
        true,
        'namespaces apart',
      );
      first();
      first(); // a second call of the same release counts once
      // Past the TTL (renewed while the second reader holds it), and midway between renewal ticks.
      await sleep(350);
      assert.equal(await evictor.claim('blobs/x'), false, 'renewed while read');
      second();
      // Dropped at the next renewal tick (a third of the TTL), not at once.
      assert.equal(await evictor.claim('blobs/x'), false, 'kept until the next tick');
      await sleep(150);
      assert.equal(await evictor.claim('blobs/x'), true, 'unpinned once no read holds it');
      assert.equal(await reads.hold('blobs/x'), undefined, 'a claimed key reads as absent');
      await evictor.unclaim('blobs/x');
      const third = await reads.hold('blobs/x');
      assert.ok(third !== undefined, 'readable again after the claim ends');
      third();
    } finally {
      await reads.close();
    }
    assert.equal(await evictor.claim('blobs/x'), true, 'close() unpins');
  });
});
