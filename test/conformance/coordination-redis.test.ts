/**
 * Runs the Coordination conformance suite against Redis (two clients = two replicas, one real
 * redis-server per file), then what only the Redis implementation has: falling back in-process
 * while Redis is down, and sharing again by itself once it is back (measured: both agree again).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import type { Coordination } from '../../src/coordination/coordination.ts';
import { createRedisCoordination } from '../../src/coordination/redis/redis-coordination.ts';
import type { CoordinationMetrics } from '../../src/coordination/redis/redis-health.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { runCoordinationConformance, testClock } from './coordination-suite.ts';

const flushIntervalMs = 50;
const silent = pino({ level: 'silent' });

function replica(url: string, log = silent, metrics?: CoordinationMetrics): Coordination {
  // A prefix per run keeps files and reruns apart even on a shared server.
  return createRedisCoordination(
    { url, log, metrics, flushIntervalMs, commandTimeoutMs: 300, keyPrefix: 'test:' },
    testClock,
  );
}

/** True when a lease taken on X is seen held on Y: the two share Redis. */
async function shared(x: Coordination, y: Coordination): Promise<boolean> {
  const k = `agree-${randomUUID()}`;
  const o = { id: randomUUID(), address: '' };
  if (!(await x.leases.acquire(k, o, 2000)).granted) return false;
  const seen = await y.leases.acquire(k, { id: randomUUID(), address: '' }, 2000);
  await x.leases.release(k, o.id);
  return !seen.granted;
}

/** Waits until X and Y share Redis (the first calls after a start or outage fall back, by design). */
async function untilShared(x: Coordination, y: Coordination, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  while (!(await shared(x, y))) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`not shared after ${String(timeoutMs)} ms`);
    await sleep(50);
  }
  return Date.now() - t0;
}

runCoordinationConformance('redis', async () => {
  const server = await startRedis();
  const a = replica(server.url);
  const b = replica(server.url);
  await untilShared(a, b, 5000);
  return {
    a,
    b,
    settle: () => sleep(flushIntervalMs * 4),
    async cleanup() {
      await Promise.all([a.close(), b.close()]);
      await server.close();
    },
  };
});

describe('redis coordination: outage and recovery', () => {
  let server: RedisServer | undefined;
  let a: Coordination | undefined;
  let b: Coordination | undefined;
  const warnings: string[] = [];
  const events: string[] = [];
  before(async () => {
    server = await startRedis();
    const log = pino(
      { level: 'info' },
      {
        write: (line: string) => {
          const msg = (JSON.parse(line) as { msg: string; level: number }).msg;
          if (msg.startsWith('redis')) warnings.push(msg);
        },
      },
    );
    const metrics: CoordinationMetrics = {
      redisUp: (up) => events.push(up ? 'up' : 'down'),
      fallback: (op) => events.push(`fallback:${op}`),
    };
    a = replica(server.url, log, metrics);
    b = replica(server.url);
  });
  after(async () => {
    await Promise.allSettled([a?.close(), b?.close()]);
    await server?.close();
  });

  it('with Redis stopped every call falls back and succeeds; once back both replicas agree again', async () => {
    assert.ok(server !== undefined && a !== undefined && b !== undefined);
    await untilShared(a, b, 5000);
    const k = `count-${randomUUID()}`;
    a.counters.add(k, 60_000, 2);
    b.counters.add(k, 60_000, 3);
    await sleep(flushIntervalMs * 4);
    assert.equal(a.counters.add(k, 60_000, 0), 5);

    await server.stop();
    const started = Date.now();
    const lease = `lease-${randomUUID()}`;
    const o = { id: randomUUID(), address: '' };
    // Each replica coordinates alone: both are granted (duplicate work, never an error).
    assert.deepEqual(await a.leases.acquire(lease, o, 5000), { granted: true });
    assert.deepEqual(await b.leases.acquire(lease, { id: randomUUID(), address: '' }, 5000), {
      granted: true,
    });
    assert.equal(await a.leases.renew(lease, o.id, 5000), true);
    assert.equal(await a.leases.release(lease, o.id), true);
    const rec = `rec-${randomUUID()}`;
    await a.records.put(rec, 60_000);
    assert.equal(await a.records.has(rec), true, 'a record kept locally during the outage');
    assert.equal(await b.records.has(rec), false);
    // Counting goes on locally (fleet total known before the outage + local adds).
    assert.equal(a.counters.add(k, 60_000, 1), 6);
    await sleep(flushIntervalMs * 4);
    assert.ok(Date.now() - started < 3000, 'calls failed fast (no offline queue)');
    assert.equal(
      warnings.filter((w) => w.startsWith('redis unreachable')).length,
      1,
      'one warning per outage',
    );
    assert.ok(events.includes('down') && events.some((e) => e.startsWith('fallback:')));

    await server.start();
    const ms = await untilShared(a, b, 10_000);
    assert.ok(ms < 10_000);
    // The restarted Redis kept nothing (no persistence): the fleet's count starts again from what
    // was added during the outage, flushed once Redis came back, and both replicas agree on it.
    await sleep(flushIntervalMs * 4);
    assert.equal(a.counters.add(k, 60_000, 0), 1);
    assert.equal(b.counters.add(k, 60_000, 0), 1);
    assert.ok(warnings.includes('redis is back: coordination is shared again'));
    assert.equal(events.at(-1) === 'up' || events.includes('up'), true);
  });
});
