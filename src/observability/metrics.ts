/**
 * Every Prometheus metric Docxy exports, named here and nowhere else (docs/metrics.md documents
 * them). Each app gets its own Registry, so several apps in one process (tests) never collide.
 * Label values are bounded sets: never a repository name, digest or user name.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Cache results a request can have; `none` for requests the cache has no say in. */
export type CacheLabel = 'hit' | 'miss' | 'coalesced' | 'revalidated' | 'stale' | 'bypass' | 'none';
/** What an upstream request was for. */
export type UpstreamKind = 'manifest' | 'blob' | 'token' | 'head' | 'other';
/** Why a cache fill failed. */
export type FillFailure = 'verify' | 'upstream' | 'timeout' | 'disk' | 'aborted';

export interface RequestSample {
  /** A bounded route name (manifest, blob, tags, token, …). */
  readonly route: string;
  readonly method: string;
  readonly status: number;
  readonly cache: CacheLabel;
  /** Body bytes sent to the client. */
  readonly bytes: number;
  readonly seconds: number;
}

export interface UpstreamSample {
  readonly upstream: string;
  readonly kind: UpstreamKind;
  /** HTTP status, or 0 when no response came (transport error). */
  readonly status: number;
}

/** What the cache counts about fills (blob-service.ts). */
export interface FillMetrics {
  started(): void;
  completed(): void;
  failed(reason: FillFailure): void;
  resumed(): void;
  coalesced(): void;
}

/** What the evictor reports after each scan (eviction.ts). */
export interface CacheSizeMetrics {
  scanned(sizeBytes: number, objects: number): void;
  evicted(objects: number, bytes: number): void;
}

/** How a scheduled warm run ended (app-warm.ts). */
export type WarmRunResult = 'ok' | 'failed' | 'skipped' | 'aborted';

/** What the `warm:` schedule counts. */
export interface WarmMetrics {
  run(result: WarmRunResult): void;
  /** Images of a run that could not be warmed. */
  imageFailures(n: number): void;
}

/** What Redis coordination reports (src/coordination/redis/redis-health.ts). */
export interface CoordinationMetrics {
  /** Redis answered (true) or failed (false). */
  redisUp(up: boolean): void;
  /** A call of `op` (`lease`, `counters`, `records`) was answered in-process instead. */
  fallback(op: string): void;
}

export interface Metrics {
  readonly registry: Registry;
  readonly coordination: CoordinationMetrics;
  readonly fills: FillMetrics;
  readonly warm: WarmMetrics;
  readonly cacheSize: CacheSizeMetrics;
  request(s: RequestSample): void;
  upstreamRequest(s: UpstreamSample): void;
  upstreamBytes(upstream: string, kind: UpstreamKind, bytes: number): void;
  rateLimitRemaining(upstream: string, remaining: number): void;
  /** A client was refused by Docxy's own rate limits (`requests`, `bytes`, `connections`, `logins`). */
  rateLimited(reason: string): void;
  /** The Prometheus text exposition of everything above. */
  scrape(): Promise<{ contentType: string; body: string }>;
}

export interface MetricsOptions {
  readonly maxSizeBytes: number;
  /** Collect the Node process metrics (CPU, memory, event loop lag, GC). */
  readonly processMetrics?: boolean;
}

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
const CACHE_LABELS: readonly CacheLabel[] = [
  'hit',
  'miss',
  'coalesced',
  'revalidated',
  'stale',
  'bypass',
  'none',
];
const CACHE_INDEX = new Map<string, number>(CACHE_LABELS.map((c, i) => [c, i]));

function statusClassIndex(status: number): number {
  if (status >= 500) return 4;
  if (status >= 400) return 3;
  if (status >= 300) return 2;
  if (status >= 200) return 1;
  return 0;
}

/** One (route, method, status class, cache) combination's request count. */
interface RequestCell {
  readonly labels: { route: string; method: string; status_class: string; cache: string };
  n: number;
}

/** What the request path keeps per route: plain numbers, handed to prom-client at scrape time. */
interface RouteCells {
  /** Per method: one cell slot per (status class, cache) pair. */
  readonly methods: Map<string, (RequestCell | undefined)[]>;
  readonly observe: (seconds: number) => void;
  stale: number;
}

/** Label children by key, so hot paths skip prom-client's label hashing after the first time. */
function childCache<T>(make: (...values: string[]) => T): (key: string, ...values: string[]) => T {
  const children = new Map<string, T>();
  return (key, ...values) => {
    let c = children.get(key);
    if (c === undefined) children.set(key, (c = make(...values)));
    return c;
  };
}

export function createMetrics(opts: MetricsOptions): Metrics {
  const registry = new Registry();
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'docxy_' });
  const registers = [registry];

  // The per-request counters are plain numbers on the request path (no label hashing per
  // request); prom-client gets their totals when it is scraped (its collect() hook).
  const routes = new Map<string, RouteCells>();
  const sentBytes = { cache: 0, upstream: 0 };
  new Counter({
    name: 'docxy_http_requests_total',
    help: 'Client requests answered, by route, method, status class and cache result',
    labelNames: ['route', 'method', 'status_class', 'cache'] as const,
    registers,
    collect() {
      this.reset();
      for (const r of routes.values())
        for (const cells of r.methods.values())
          for (const c of cells) if (c !== undefined) this.inc(c.labels, c.n);
    },
  });
  const duration = new Histogram({
    name: 'docxy_http_request_duration_seconds',
    help: 'Time from request to the end of the response, by route',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers,
  });
  new Counter({
    name: 'docxy_http_response_bytes_total',
    help: 'Body bytes sent to clients, by source: cache (hit, stale, revalidated) or upstream (everything else)',
    labelNames: ['source'] as const,
    registers,
    collect() {
      this.reset();
      if (sentBytes.cache > 0) this.inc({ source: 'cache' }, sentBytes.cache);
      if (sentBytes.upstream > 0) this.inc({ source: 'upstream' }, sentBytes.upstream);
    },
  });
  new Counter({
    name: 'docxy_stale_responses_total',
    help: 'Answers served from the cache because the upstream failed (serve-stale)',
    labelNames: ['route'] as const,
    registers,
    collect() {
      this.reset();
      for (const [route, r] of routes) if (r.stale > 0) this.inc({ route }, r.stale);
    },
  });
  const upstreamRequests = new Counter({
    name: 'docxy_upstream_requests_total',
    help: 'Requests Docxy sent upstream (after redirects), by upstream, kind and status (0: no response)',
    labelNames: ['upstream', 'kind', 'status'] as const,
    registers,
  });
  const upstreamBytes = new Counter({
    name: 'docxy_upstream_response_bytes_total',
    help: 'Body bytes received from upstreams, by upstream and kind',
    labelNames: ['upstream', 'kind'] as const,
    registers,
  });
  const ratelimit = new Gauge({
    name: 'docxy_upstream_ratelimit_remaining',
    help: "The upstream's last ratelimit-remaining header (Docker Hub's pull budget left)",
    labelNames: ['upstream'] as const,
    registers,
  });
  const fillsStarted = new Counter({
    name: 'docxy_cache_fills_started_total',
    help: 'Blob downloads into the cache started',
    registers,
  });
  const fillsCompleted = new Counter({
    name: 'docxy_cache_fills_completed_total',
    help: 'Blob downloads into the cache that verified and committed',
    registers,
  });
  const fillsFailed = new Counter({
    name: 'docxy_cache_fills_failed_total',
    help: 'Blob downloads into the cache that failed, by reason (verify, upstream, timeout, disk, aborted)',
    labelNames: ['reason'] as const,
    registers,
  });
  const fillsResumed = new Counter({
    name: 'docxy_cache_fill_resumes_total',
    help: 'Range requests that resumed a broken upstream blob download',
    registers,
  });
  const coalesced = new Counter({
    name: 'docxy_cache_coalesced_total',
    help: 'Blob requests that joined a running fill instead of downloading again',
    registers,
  });
  const size = new Gauge({
    name: 'docxy_cache_size_bytes',
    help: 'Bytes in the cache at the last eviction scan',
    registers,
  });
  const objects = new Gauge({
    name: 'docxy_cache_objects',
    help: 'Blobs and manifests in the cache at the last eviction scan',
    registers,
  });
  new Gauge({ name: 'docxy_cache_max_size_bytes', help: 'cache.max_size', registers }).set(opts.maxSizeBytes);
  const evictedObjects = new Counter({
    name: 'docxy_cache_evicted_objects_total',
    help: 'Objects evicted to stay under cache.max_size',
    registers,
  });
  const evictedBytes = new Counter({
    name: 'docxy_cache_evicted_bytes_total',
    help: 'Bytes evicted to stay under cache.max_size',
    registers,
  });
  const refusals = new Counter({
    name: 'docxy_rate_limited_total',
    help: "Clients refused by Docxy's own rate limits, by reason (requests, bytes, connections, logins)",
    labelNames: ['reason'] as const,
    registers,
  });

  const warmRuns = new Counter({
    name: 'docxy_warm_runs_total',
    help: 'Scheduled warm runs (warm:), by result (ok, failed, skipped, aborted)',
    labelNames: ['result'] as const,
    registers,
  });
  const warmFailures = new Counter({
    name: 'docxy_warm_image_failures_total',
    help: 'Images a scheduled warm run could not warm',
    registers,
  });

  const redisUp = new Gauge({
    name: 'docxy_coordination_redis_up',
    help: 'Whether Redis coordination answered at its last call (1) or failed (0); absent without coordination.redis',
    registers,
  });
  const coordinationFallbacks = new Counter({
    name: 'docxy_coordination_fallback_total',
    help: 'Coordination calls answered in-process because Redis failed, by operation (lease, counters, records)',
    labelNames: ['op'] as const,
    registers,
  });

  const routeCells = (route: string): RouteCells => {
    let r = routes.get(route);
    if (r === undefined) {
      const child = duration.labels(route);
      r = {
        methods: new Map(),
        observe: (seconds) => {
          child.observe(seconds);
        },
        stale: 0,
      };
      routes.set(route, r);
    }
    return r;
  };
  const upstreamChild = childCache((...v: string[]) => upstreamRequests.labels(...v));
  const bytesChild = childCache((...v: string[]) => upstreamBytes.labels(...v));
  const failedChild = childCache((reason: string | undefined) => fillsFailed.labels(reason ?? ''));

  return {
    registry,
    coordination: {
      redisUp: (up) => {
        redisUp.set(up ? 1 : 0);
      },
      fallback: (op) => {
        coordinationFallbacks.labels(op).inc();
      },
    },
    fills: {
      started: () => {
        fillsStarted.inc();
      },
      completed: () => {
        fillsCompleted.inc();
      },
      failed: (reason) => {
        failedChild(reason, reason).inc();
      },
      resumed: () => {
        fillsResumed.inc();
      },
      coalesced: () => {
        coalesced.inc();
      },
    },
    warm: {
      run: (result) => {
        warmRuns.labels(result).inc();
      },
      imageFailures: (n) => {
        warmFailures.inc(n);
      },
    },
    cacheSize: {
      scanned(bytes, n) {
        size.set(bytes);
        objects.set(n);
      },
      evicted(n, bytes) {
        evictedObjects.inc(n);
        evictedBytes.inc(bytes);
      },
    },
    request(s) {
      const r = routeCells(s.route);
      let cells = r.methods.get(s.method);
      if (cells === undefined) r.methods.set(s.method, (cells = []));
      const cls = statusClassIndex(s.status);
      const cache = CACHE_INDEX.get(s.cache) ?? CACHE_LABELS.length - 1;
      const slot = cls * CACHE_LABELS.length + cache;
      const cell = (cells[slot] ??= {
        labels: {
          route: s.route,
          method: s.method,
          status_class: STATUS_CLASSES[cls] ?? '1xx',
          cache: CACHE_LABELS[cache] ?? 'none',
        },
        n: 0,
      });
      cell.n++;
      r.observe(s.seconds);
      if (s.cache === 'stale') r.stale++;
      if (s.bytes > 0) {
        const fromCache = s.cache === 'hit' || s.cache === 'stale' || s.cache === 'revalidated';
        if (fromCache) sentBytes.cache += s.bytes;
        else sentBytes.upstream += s.bytes;
      }
    },
    upstreamRequest(s) {
      const status = String(s.status);
      upstreamChild(`${s.upstream} ${s.kind} ${status}`, s.upstream, s.kind, status).inc();
    },
    upstreamBytes(upstream, kind, bytes) {
      bytesChild(`${upstream} ${kind}`, upstream, kind).inc(bytes);
    },
    rateLimitRemaining: (upstream, remaining) => {
      ratelimit.labels(upstream).set(remaining);
    },
    rateLimited: (reason) => {
      refusals.labels(reason).inc();
    },
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
