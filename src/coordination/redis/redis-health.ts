/**
 * Whether Redis answers, and the fallback of each call when it does not: one warning per outage,
 * one info line when it is back, the `docxy_coordination_redis_up` gauge and the
 * `docxy_coordination_fallback_total` counter.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { CoordinationMetrics } from '../../observability/metrics.ts';

export type { CoordinationMetrics };

export interface RedisHealth {
  /** Runs `shared`; when it fails (Redis unreachable, timeout) runs `fallback` instead. */
  call<T>(op: string, shared: () => Promise<T>, fallback: () => Promise<T>): Promise<T>;
  close(): void;
}

export function createRedisHealth(redis: Redis, log: Logger, metrics?: CoordinationMetrics): RedisHealth {
  // Unknown until connected. Calls made while the first connection is still being set up fall
  // back quietly; a connection that fails (an `error` event) warns once, like a later outage.
  let up: boolean | undefined;
  const down = (err: unknown, connecting: boolean): void => {
    if (up === undefined && connecting) return;
    if (up !== false) {
      log.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'redis unreachable: coordinating in-process until it is back (duplicate upstream fetches possible)',
      );
      metrics?.redisUp(false);
    }
    up = false;
  };
  const ok = (): void => {
    if (up !== true) {
      if (up === false) log.info('redis is back: coordination is shared again');
      metrics?.redisUp(true);
    }
    up = true;
  };
  // ioredis emits connection errors as events; without a listener they would be printed raw.
  const onError = (err: Error): void => {
    down(err, false);
  };
  redis.on('error', onError);
  redis.on('ready', ok);
  return {
    async call(op, shared, fallback) {
      try {
        const r = await shared();
        ok();
        return r;
      } catch (err) {
        down(err, true);
        metrics?.fallback(op);
        return fallback();
      }
    },
    close() {
      redis.off('error', onError);
      redis.off('ready', ok);
      // Errors while quitting are not an outage worth a warning.
      redis.on('error', () => undefined);
    },
  };
}
