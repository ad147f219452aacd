import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getHeapStatistics } from 'node:v8';
import { startHeapGovernor } from './heap-governor.ts';
import { createLogger } from './observability/logger.ts';

test('a heap above the target gets a full collection, and what was garbage is gone', async () => {
  const used0 = getHeapStatistics().used_heap_size;
  const governor = startHeapGovernor({
    targetBytes: used0 + 16 * 1024 * 1024,
    checkIntervalMs: 10,
    minIntervalMs: 10,
    log: createLogger('silent'),
  });
  try {
    // ~40 MiB of short-lived objects that survive long enough to reach the old generation.
    let keep: unknown[] = [];
    for (let round = 0; round < 20; round++) {
      keep = Array.from({ length: 20_000 }, (_, i) => ({ i, s: `x${i}${round}`.repeat(4) }));
      await new Promise((r) => setTimeout(r, 15));
    }
    assert.ok(keep.length > 0);
    keep = [];
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(governor.collections > 0, 'the governor collected');
    assert.ok(
      getHeapStatistics().used_heap_size < used0 + 24 * 1024 * 1024,
      `used heap ${getHeapStatistics().used_heap_size} stays near the target`,
    );
  } finally {
    governor.stop();
  }
});

test('below the target nothing is collected', async () => {
  const governor = startHeapGovernor({
    targetBytes: getHeapStatistics().used_heap_size + 512 * 1024 * 1024,
    checkIntervalMs: 5,
    log: createLogger('silent'),
  });
  await new Promise((r) => setTimeout(r, 60));
  governor.stop();
  assert.equal(governor.collections, 0);
});
