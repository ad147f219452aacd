/**
 * Coordination shared through Redis (ioredis). Leases are `SET NX PX` plus Lua compare-and-renew and
 * compare-and-delete on the owner id; counters are local counts flushed every `flushIntervalMs`
 * with INCRBY + PEXPIRE, whose answers bring back the fleet's totals (the request path never waits
 * on Redis); records are `SET PX` / `EXISTS`, kept locally as well; stamps are one hash, raised by a
 * Lua max per field and read with HMGET; pins are a hash per key (owner -> expiry on Redis's clock)
 * beside a claim key, both tested and set in one script each, so a pin and a claim never both win.
 *
 * Degrade, never corrupt: the offline queue is off and commands have a timeout, so a call fails
 * fast while Redis is unreachable and is answered from the in-process implementation instead
 * (each replica then coordinates alone: duplicate fills are possible, wrong bytes are not). The
 * client reconnects by itself; the first success after an outage shares again.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Coordination, Counters, LeaseGrant, Leases, Pins, Records, Stamps } from '../coordination.ts';
import { createMemoryCoordination, trimOldest, windowOf } from '../memory/memory-coordination.ts';
import { createRedisHealth, type CoordinationMetrics, type RedisHealth } from './redis-health.ts';

export interface RedisCoordinationOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`). */
  readonly url: string;
  readonly log: Logger;
  readonly metrics?: CoordinationMetrics;
  /** How often local counts are flushed and the fleet's totals read back (the limits' lag). */
  readonly flushIntervalMs?: number;
  /** Per-command timeout: a hung Redis costs a call at most this long before it falls back. */
  readonly commandTimeoutMs?: number;
  /** Prefix of every key, so several fleets can share one Redis database. */
  readonly keyPrefix?: string;
}

// A lease's value is `<owner id>\n<owner address>`: the scripts compare the id part.
const ownedBy =
  "local v = redis.call('GET', KEYS[1]) if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '\\n' then ";
const acquireScript =
  "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end return redis.call('GET', KEYS[1])";
const renewScript = `${ownedBy}redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end return 0`;
const releaseScript = `${ownedBy}redis.call('DEL', KEYS[1]) return 1 end return 0`;

function redisLeases(redis: Redis, prefix: string, health: RedisHealth, local: Leases): Leases {
  const k = (key: string): string => `${prefix}lease:${key}`;
  return {
    acquire: (key, owner, ttlMs) =>
      health.call<LeaseGrant>(
        'lease',
        async () => {
          const r = (await redis.eval(acquireScript, 1, k(key), `${owner.id}\n${owner.address}`, ttlMs)) as
            number | string | null;
          if (r === 1) return { granted: true };
          // The key expired between SET and GET cannot happen (one script), but a null stays safe.
          const v = typeof r === 'string' ? r : '\n';
          const nl = v.indexOf('\n');
          return { granted: false, holder: { id: v.slice(0, nl), address: v.slice(nl + 1) } };
        },
        () => local.acquire(key, owner, ttlMs),
      ),
    renew: (key, ownerId, ttlMs) =>
      health.call(
        'lease',
        async () => (await redis.eval(renewScript, 1, k(key), ownerId, ttlMs)) === 1,
        // A lease granted by Redis is not in the local table: renewing it while Redis is away
        // reports it lost, so long work stops rather than overlap a taker it cannot see.
        () => local.renew(key, ownerId, ttlMs),
      ),
    release: (key, ownerId) =>
      health.call(
        'lease',
        async () => (await redis.eval(releaseScript, 1, k(key), ownerId)) === 1,
        () => local.release(key, ownerId),
      ),
  };
}

/**
 * Counters used (added to or read) this recently are refreshed on every flush, so a busy client's
 * limit sees the other replicas' counts within one flush; idle ones are not sent at all.
 */
const activeMs = 10_000;

interface Pending {
  readonly redisKey: string;
  readonly index: number;
  readonly windowMs: number;
  /** Added here and not yet flushed. */
  pending: number;
  /** The fleet's total at the last flush (this process's flushed adds included). */
  fleet: number;
  /** When this process last added to or read it: only recently used counters are refreshed. */
  touched: number;
}

/** Local counts, flushed in one pipeline per tick; answers are local + the last fleet total. */
function redisCounters(
  redis: Redis,
  prefix: string,
  health: RedisHealth,
  now: () => number,
  maxEntries: number,
): Counters & { flush(): Promise<void> } {
  const entries = new Map<string, Pending>();
  let flushing: Promise<void> | undefined;
  async function flushOnce(): Promise<void> {
    const t = now();
    const batch: Pending[] = [];
    for (const [k, e] of entries) {
      if (windowOf(t, e.windowMs).index !== e.index && e.pending === 0) {
        entries.delete(k); // a past window with nothing left to send
        continue;
      }
      if (e.pending > 0 || t - e.touched < activeMs) batch.push(e);
    }
    if (batch.length === 0) return;
    const sent = batch.map((e) => e.pending);
    await health.call(
      'counters',
      async () => {
        const p = redis.pipeline();
        for (const e of batch) {
          p.incrby(e.redisKey, e.pending);
          // Kept a window past its end, so replicas with a little clock skew still meet there.
          p.pexpire(e.redisKey, Math.max(1000, (e.index + 2) * e.windowMs - t));
        }
        const results = (await p.exec()) ?? [];
        batch.forEach((e, i) => {
          const [err, total] = results[i * 2] ?? [new Error('no reply'), 0];
          if (err !== null) throw err;
          e.pending -= sent[i] ?? 0;
          e.fleet = Number(total);
        });
      },
      // Unreachable: the counts stay pending (they keep counting locally) and go with a later flush.
      () => Promise.resolve(),
    );
  }
  return {
    add(key, windowMs, n) {
      const { index } = windowOf(now(), windowMs);
      const k = `${String(windowMs)} ${key}`;
      let e = entries.get(k);
      if (e?.index !== index) {
        if (e !== undefined && e.pending > 0) entries.set(`${k} ${String(e.index)}`, e); // still to flush
        entries.delete(k);
        e = {
          redisKey: `${prefix}count:${String(windowMs)}:${String(index)}:${key}`,
          index,
          windowMs,
          pending: 0,
          fleet: 0,
          touched: 0,
        };
        entries.set(k, e);
        trimOldest(entries, maxEntries);
      }
      e.pending += n;
      e.touched = now();
      return e.fleet + e.pending;
    },
    remaining: (windowMs) => windowOf(now(), windowMs).left,
    flush() {
      flushing ??= flushOnce().finally(() => {
        flushing = undefined;
      });
      return flushing;
    },
  };
}

function redisRecords(redis: Redis, prefix: string, health: RedisHealth, local: Records): Records {
  const k = (key: string): string => `${prefix}rec:${key}`;
  return {
    async has(key) {
      if (await local.has(key)) return true;
      return health.call(
        'records',
        async () => (await redis.exists(k(key))) === 1,
        () => Promise.resolve(false),
      );
    },
    async put(key, ttlMs) {
      await local.put(key, ttlMs);
      await health.call(
        'records',
        async () => {
          await redis.set(k(key), '1', 'PX', ttlMs);
        },
        () => Promise.resolve(),
      );
    },
  };
}

// Sets each field to the larger of its value and the given one: ARGV is field, ms, field, ms...
const raiseScript =
  "for i = 1, #ARGV, 2 do local c = redis.call('HGET', KEYS[1], ARGV[i]) " +
  "if (not c) or tonumber(c) < tonumber(ARGV[i + 1]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end end return 1";
/** Fields per command, so one call never blocks Redis for long. */
const stampBatch = 500;

function batches<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += stampBatch) out.push(items.slice(i, i + stampBatch));
  return out;
}

/** Stamps in Redis; while it is unreachable they are raised and read in-process instead. */
function redisStamps(redis: Redis, prefix: string, health: RedisHealth, local: Stamps): Stamps {
  const hash = `${prefix}stamps`;
  return {
    raise: (entries) =>
      health.call(
        'stamps',
        async () => {
          for (const batch of batches([...entries])) {
            await redis.eval(raiseScript, 1, hash, ...batch.flatMap(([k, ms]) => [k, String(ms)]));
          }
        },
        () => local.raise(entries),
      ),
    get: (keys) =>
      health.call(
        'stamps',
        async () => {
          const out = new Map<string, number>();
          for (const batch of batches(keys)) {
            const values = await redis.hmget(hash, ...batch);
            batch.forEach((k, i) => {
              const v = Number(values[i] ?? Number.NaN);
              if (Number.isFinite(v)) out.set(k, v);
            });
          }
          return out;
        },
        () => local.get(keys),
      ),
    async forget(keys) {
      await local.forget(keys);
      await health.call(
        'stamps',
        async () => {
          for (const batch of batches(keys)) await redis.hdel(hash, ...batch);
        },
        () => Promise.resolve(),
      );
    },
  };
}

// Redis's own clock in ms, so replicas with skewed clocks agree when a pin expires.
const redisNow =
  "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) ";
// KEYS: pins hash, claim key. ARGV: owner, ttl ms.
const pinScript =
  `if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end ${redisNow}` +
  "redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2])) " +
  "if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 1";
const claimScript =
  "local c = redis.call('GET', KEYS[2]) if c and c ~= ARGV[1] then return 0 end " +
  `${redisNow}local v = redis.call('HGETALL', KEYS[1]) ` +
  'for i = 2, #v, 2 do if tonumber(v[i]) > now then return 0 end end ' +
  "redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) return 1";
const unclaimScript = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1";

/** Pins in Redis; while it is unreachable, in-process (each replica then guards only its own reads). */
function redisPins(redis: Redis, prefix: string, health: RedisHealth, local: Pins): Pins {
  // One hash tag per key, so both keys of a script live on one Redis Cluster slot.
  const keys = (key: string): [string, string] => [`${prefix}pin:{${key}}`, `${prefix}claim:{${key}}`];
  // Sent before anything awaits, so a pin or claim sent after it (same connection) is never undone.
  const drop = async (shared: () => Promise<unknown>, inProcess: () => Promise<void>): Promise<void> => {
    const sent = health.call(
      'pins',
      async () => {
        await shared();
      },
      () => Promise.resolve(),
    );
    await inProcess();
    await sent;
  };
  return {
    pin: (key, ownerId, ttlMs) =>
      health.call(
        'pins',
        async () => (await redis.eval(pinScript, 2, ...keys(key), ownerId, ttlMs)) === 1,
        () => local.pin(key, ownerId, ttlMs),
      ),
    unpin: (key, ownerId) =>
      drop(
        () => redis.hdel(keys(key)[0], ownerId),
        () => local.unpin(key, ownerId),
      ),
    claim: (key, ownerId, ttlMs) =>
      health.call(
        'pins',
        async () => (await redis.eval(claimScript, 2, ...keys(key), ownerId, ttlMs)) === 1,
        () => local.claim(key, ownerId, ttlMs),
      ),
    unclaim: (key, ownerId) =>
      drop(
        () => redis.eval(unclaimScript, 1, keys(key)[1], ownerId),
        () => local.unclaim(key, ownerId),
      ),
  };
}

export function createRedisCoordination(
  opts: RedisCoordinationOptions,
  now: () => number = Date.now,
): Coordination {
  const prefix = opts.keyPrefix ?? 'docxy:';
  const redis = new Redis(opts.url, {
    // Fail fast while disconnected (the fallback answers) instead of queueing the request path.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeoutMs ?? 500,
    connectTimeout: 1000,
    // Reconnect quickly and forever: recovery needs no restart.
    retryStrategy: (times) => Math.min(times * 100, 1000),
    lazyConnect: false,
  });
  const health = createRedisHealth(redis, opts.log, opts.metrics);
  const local = createMemoryCoordination({ now });
  const counters = redisCounters(redis, prefix, health, now, 100_000);
  const timer = setInterval(() => void counters.flush(), opts.flushIntervalMs ?? 250);
  timer.unref();
  return {
    kind: 'redis',
    leases: redisLeases(redis, prefix, health, local.leases),
    counters,
    records: redisRecords(redis, prefix, health, local.records),
    stamps: redisStamps(redis, prefix, health, local.stamps),
    pins: redisPins(redis, prefix, health, local.pins),
    connected(timeoutMs) {
      if (redis.status === 'ready') return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = (ok: boolean): void => {
          clearTimeout(t);
          redis.off('ready', onReady);
          resolve(ok);
        };
        const onReady = (): void => {
          done(true);
        };
        const t = setTimeout(() => {
          done(false);
        }, timeoutMs);
        redis.once('ready', onReady);
      });
    },
    async close() {
      clearInterval(timer);
      await counters.flush();
      health.close();
      await redis.quit().catch(() => {
        redis.disconnect();
      });
    },
  };
}
