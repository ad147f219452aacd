/**
 * The dashboard's read model (`GET /-/api/stats`, shape in docs/dashboard.md): totals since start,
 * a bytes-over-time series, top repositories, per-upstream state and recent errors. Everything is
 * bounded: the series, the repository table and the error ring have fixed maximum sizes.
 */
import type { ActiveFill } from '../cache/blob-service.ts';
import type { FinishedRequest } from '../http/server.ts';

export interface UpstreamState {
  name: string;
  lastSuccess: string | undefined;
  lastError: string | undefined;
  lastErrorMessage: string | undefined;
  /** Response time of the last upstream request, in ms. */
  latencyMs: number | undefined;
  /** Docker Hub's ratelimit-remaining, when the upstream sends it. */
  ratelimitRemaining: number | undefined;
  ratelimitLimit: number | undefined;
}

export interface StatsSnapshot {
  startedAt: string;
  now: string;
  requests: {
    total: number;
    hits: number;
    misses: number;
    coalesced: number;
    stale: number;
    hitRatio: number;
  };
  bytes: { fromCache: number; fromUpstream: number; saved: number };
  /** [unix ms, cumulative bytes served from cache, cumulative bytes fetched upstream] */
  series: [number, number, number][];
  fills: ActiveFill[];
  topRepositories: { name: string; bytes: number; requests: number }[];
  cache: { sizeBytes: number | undefined; objects: number | undefined; maxSizeBytes: number };
  upstreams: UpstreamState[];
  recentErrors: {
    time: string;
    status: number;
    route: string;
    upstream: string | undefined;
    message: string;
  }[];
}

export interface Stats {
  request(done: FinishedRequest): void;
  upstreamResponse(upstream: string, status: number, ms: number, error?: string): void;
  rateLimit(upstream: string, remaining: number, limit: number | undefined): void;
  cacheScanned(sizeBytes: number, objects: number): void;
  snapshot(): StatsSnapshot;
}

export interface StatsOptions {
  readonly upstreams: readonly string[];
  readonly maxSizeBytes: number;
  readonly activeFills: () => ActiveFill[];
  readonly now?: () => number;
  /** Series resolution (default 5 s) and length (default 720 points). */
  readonly sampleMs?: number;
  readonly samples?: number;
}

const topN = 10;
/** Repositories tracked at most; the smallest are dropped beyond this. */
const maxRepositories = 500;
const maxErrors = 50;

export function createStats(opts: StatsOptions): Stats {
  const now = opts.now ?? Date.now;
  const startedAt = now();
  const sampleMs = opts.sampleMs ?? 5000;
  const samples = opts.samples ?? 720;
  const totals = { total: 0, hits: 0, misses: 0, coalesced: 0, stale: 0, fromCache: 0, fromUpstream: 0 };
  const series: [number, number, number][] = [[startedAt, 0, 0]];
  const repos = new Map<string, { bytes: number; requests: number }>();
  const errors: StatsSnapshot['recentErrors'] = [];
  const cache: StatsSnapshot['cache'] = {
    sizeBytes: undefined,
    objects: undefined,
    maxSizeBytes: opts.maxSizeBytes,
  };
  const upstreams = new Map<string, UpstreamState>(
    opts.upstreams.map((name) => [
      name,
      {
        name,
        lastSuccess: undefined,
        lastError: undefined,
        lastErrorMessage: undefined,
        latencyMs: undefined,
        ratelimitRemaining: undefined,
        ratelimitLimit: undefined,
      },
    ]),
  );

  /** Extends the series to now: one point per interval, the last one moving with the totals. */
  function sample(): void {
    const t = now();
    const last = series[series.length - 1];
    const before = series[series.length - 2];
    if (last !== undefined && before !== undefined && t - before[0] < sampleMs) {
      last[0] = t;
      last[1] = totals.fromCache;
      last[2] = totals.fromUpstream;
      return;
    }
    series.push([t, totals.fromCache, totals.fromUpstream]);
    if (series.length > samples) series.splice(0, series.length - samples);
  }

  return {
    request(done) {
      const c = done.ctx.cache;
      if (done.ctx.route !== 'blob' && done.ctx.route !== 'manifest') {
        if (done.status >= 500) pushError(done);
        return;
      }
      totals.total++;
      if (c === 'hit' || c === 'revalidated') totals.hits++;
      else if (c === 'miss') totals.misses++;
      else if (c === 'coalesced') totals.coalesced++;
      else if (c === 'stale') totals.stale++;
      const fromCache = c === 'hit' || c === 'stale' || c === 'revalidated';
      if (fromCache) totals.fromCache += done.bytes;
      else totals.fromUpstream += done.bytes;
      const name = done.ctx.repository;
      if (name !== undefined) {
        let r = repos.get(name);
        if (r === undefined) {
          if (repos.size >= maxRepositories) dropSmallest();
          repos.set(name, (r = { bytes: 0, requests: 0 }));
        }
        r.bytes += done.bytes;
        r.requests++;
      }
      if (done.status >= 500 || done.ctx.error !== undefined) pushError(done);
      sample();
    },
    upstreamResponse(upstream, status, ms, error) {
      const u = upstreams.get(upstream);
      if (u === undefined) return;
      const t = new Date(now()).toISOString();
      u.latencyMs = Math.round(ms * 10) / 10;
      if (status > 0 && status < 500 && status !== 429) u.lastSuccess = t;
      else {
        u.lastError = t;
        u.lastErrorMessage = error ?? (status === 0 ? 'no response' : `answered ${status}`);
      }
    },
    rateLimit(upstream, remaining, limit) {
      const u = upstreams.get(upstream);
      if (u === undefined) return;
      u.ratelimitRemaining = remaining;
      u.ratelimitLimit = limit;
    },
    cacheScanned(sizeBytes, objects) {
      cache.sizeBytes = sizeBytes;
      cache.objects = objects;
    },
    snapshot() {
      sample();
      const served = totals.hits + totals.misses + totals.coalesced + totals.stale;
      return {
        startedAt: new Date(startedAt).toISOString(),
        now: new Date(now()).toISOString(),
        requests: {
          total: totals.total,
          hits: totals.hits,
          misses: totals.misses,
          coalesced: totals.coalesced,
          stale: totals.stale,
          hitRatio: served === 0 ? 0 : (totals.hits + totals.stale) / served,
        },
        bytes: { fromCache: totals.fromCache, fromUpstream: totals.fromUpstream, saved: totals.fromCache },
        series: series.map((p) => [p[0], p[1], p[2]]),
        fills: opts.activeFills(),
        topRepositories: [...repos]
          .map(([name, r]) => ({ name, bytes: r.bytes, requests: r.requests }))
          .sort((a, b) => b.bytes - a.bytes)
          .slice(0, topN),
        cache: { ...cache },
        upstreams: [...upstreams.values()].map((u) => ({ ...u })),
        recentErrors: [...errors].reverse(),
      };
    },
  };

  function dropSmallest(): void {
    let smallest: string | undefined;
    let min = Infinity;
    for (const [name, r] of repos)
      if (r.bytes < min) {
        min = r.bytes;
        smallest = name;
      }
    if (smallest !== undefined) repos.delete(smallest);
  }

  function pushError(done: FinishedRequest): void {
    errors.push({
      time: new Date(now()).toISOString(),
      status: done.status,
      route: done.ctx.route ?? done.routeUrl ?? 'other',
      upstream: done.ctx.upstream,
      message: done.ctx.error ?? `answered ${done.status}`,
    });
    if (errors.length > maxErrors) errors.shift();
  }
}
