/**
 * Wiring for what operators see: the Prometheus metrics, the dashboard's read model, their routes
 * and the optional separate metrics listener. createApp calls `createObservability` once and hands
 * its hooks to the factories that count things.
 */
import { sendRawError } from './http/error-reply.ts';
import { splitHostPort } from './http/listen-address.ts';
import { createServer, type Server } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { UserStore } from './auth/htpasswd.ts';
import type { BlobService } from './cache/blob-service.ts';
import type { Config } from './config/load.ts';
import { createStats, type Stats } from './dashboard/stats.ts';
import { createAddressAllow } from './http/address-allow.ts';
import { registerDashboardRoutes } from './http/routes/dashboard.ts';
import { registerMetricsRoute } from './http/routes/metrics.ts';
import type { FinishedRequest } from './http/server.ts';
import type { Logger } from './observability/logger.ts';
import {
  createMetrics,
  type CacheLabel,
  type CacheSizeMetrics,
  type FillMetrics,
  type Metrics,
} from './observability/metrics.ts';
import { createSummaryLog, type SummaryLog } from './observability/summary-log.ts';
import { RegistryError } from './registry/errors.ts';
import type { RegistryClientOptions } from './upstream/registry-client.ts';

export interface Observability {
  readonly metrics: Metrics | undefined;
  readonly stats: Stats;
  /** For the server: every finished request. */
  onResponse(done: FinishedRequest): void;
  /** For one upstream's registry client. */
  upstreamRecord(upstream: string): RegistryClientOptions['record'];
  /** Docker Hub's pull budget, seen on an upstream response. */
  rateLimitRemaining(upstream: string, remaining: number, limit: number | undefined): void;
  rateLimited(reason: string): void;
  readonly fills: FillMetrics | undefined;
  readonly cacheSize: CacheSizeMetrics;
  /** Adds /metrics (unless it has its own listener) and the dashboard routes. */
  register(server: FastifyInstance, deps: { blobs: () => BlobService | undefined; users: UserStore }): void;
  /** Starts the summary log timer and the separate metrics listener, when `metrics.listen` is set. */
  listen(): Promise<void>;
  close(): Promise<void>;
}

const cacheLabels = new Set<string>(['hit', 'miss', 'coalesced', 'revalidated', 'stale', 'bypass']);

export function createObservability(config: Config, log: Logger): Observability {
  const metrics = config.metrics.enabled ? createMetrics({ maxSizeBytes: config.cache.max_size }) : undefined;
  let blobs: () => BlobService | undefined = () => undefined;
  const stats = createStats({
    upstreams: config.upstreams.map((u) => u.name),
    maxSizeBytes: config.cache.max_size,
    activeFills: () => blobs()?.activeFills() ?? [],
  });
  let metricsServer: Server | undefined;
  let summary: SummaryLog | undefined;

  return {
    metrics,
    stats,
    fills: metrics?.fills,
    cacheSize: {
      scanned(size, objects) {
        metrics?.cacheSize.scanned(size, objects);
        stats.cacheScanned(size, objects);
      },
      evicted(objects, bytes) {
        metrics?.cacheSize.evicted(objects, bytes);
      },
    },
    onResponse(done) {
      stats.request(done);
      if (metrics === undefined) return;
      const c = done.ctx.cache;
      metrics.request({
        route: done.ctx.route ?? done.routeUrl ?? 'unknown',
        method: done.method,
        status: done.status,
        cache: c !== undefined && cacheLabels.has(c) ? (c as CacheLabel) : 'none',
        bytes: done.bytes,
        seconds: done.seconds,
      });
    },
    upstreamRecord(upstream) {
      return {
        response(kind, status, ms) {
          metrics?.upstreamRequest({ upstream, kind, status });
          if (kind !== 'token') stats.upstreamResponse(upstream, status, ms);
        },
        body(kind, bytes) {
          metrics?.upstreamBytes(upstream, kind, bytes);
        },
      };
    },
    rateLimitRemaining(upstream, remaining, limit) {
      metrics?.rateLimitRemaining(upstream, remaining);
      stats.rateLimit(upstream, remaining, limit);
    },
    rateLimited: (reason) => metrics?.rateLimited(reason),
    register(server, deps) {
      blobs = deps.blobs;
      if (metrics !== undefined && config.metrics.listen === undefined)
        registerMetricsRoute(server, { metrics, allow: createAddressAllow(config.metrics.allow) });
      if (config.dashboard.enabled) {
        const byUser = !config.auth.anonymous || config.dashboard.users.length > 0;
        registerDashboardRoutes(server, {
          stats,
          access: {
            allow: createAddressAllow(config.dashboard.allow),
            users: byUser ? { store: deps.users, only: config.dashboard.users } : undefined,
          },
        });
      }
    },
    async listen() {
      summary ??= createSummaryLog({ stats, log, intervalMs: config.log.summary_interval });
      const listen = config.metrics.listen;
      if (metrics === undefined || listen === undefined) return;
      // Its own address: whoever reaches it may scrape (the operator chose where it listens).
      const s = createServer((req, res) => {
        if (req.url?.split('?')[0] !== '/metrics') {
          sendRawError(res, new RegistryError('NOT_FOUND', { message: 'only /metrics is served here' }));
          return;
        }
        metrics.scrape().then(
          ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
          (err: unknown) => {
            log.error({ err }, 'metrics scrape failed');
            res.writeHead(500).end();
          },
        );
      });
      const { host, port } = splitHostPort(listen);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, host, resolve);
      });
      metricsServer = s;
      log.info({ metricsListen: s.address() }, 'metrics listening');
    },
    async close() {
      summary?.close();
      const s = metricsServer;
      if (s !== undefined)
        await new Promise<void>((resolve) =>
          s.close(() => {
            resolve();
          }),
        );
    },
  };
}
