/**
 * The coordination builder createApp calls: Redis when `coordination.redis.url` is set (falling
 * back in-process per call while it is unreachable), else in-process. `owner` names this process
 * in leases.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Config } from './config/load.ts';
import type { Coordination, LeaseOwner } from './coordination/coordination.ts';
import { createMemoryCoordination } from './coordination/memory/memory-coordination.ts';
import { createRedisCoordination } from './coordination/redis/redis-coordination.ts';
import type { CoordinationMetrics } from './observability/metrics.ts';

export function buildCoordination(
  config: Config,
  log: Logger,
  metrics?: CoordinationMetrics,
): { coordination: Coordination; owner: LeaseOwner } {
  // The address is where peers stream this replica's fills from (cluster.advertise).
  const owner = { id: `${hostname()}-${randomUUID()}`, address: config.cluster?.advertise ?? '' };
  const url = config.coordination.redis?.url;
  const coordination =
    url === undefined
      ? createMemoryCoordination()
      : createRedisCoordination({
          url,
          log: log.child({ module: 'coordination' }),
          ...(metrics === undefined ? {} : { metrics }),
        });
  return { coordination, owner };
}
