/**
 * The periodic summary line: what the cache did since the last line (hits, misses, coalesced,
 * stale, bytes served from cache and fetched upstream) and how full it is. It reads the dashboard's
 * read model, so the line and `/-/api/stats` never disagree; only blob and manifest answers count,
 * as there. The per-request lines stay as they are.
 */
import type { Stats, StatsSnapshot } from '../dashboard/stats.ts';
import type { Logger } from './logger.ts';

export interface SummaryLog {
  /** Logs one line now (also what the timer calls). */
  flush(): void;
  /** Stops the timer. */
  close(): void;
}

type Counts = StatsSnapshot['requests'] & StatsSnapshot['bytes'];

function countsOf(s: StatsSnapshot): Counts {
  return { ...s.requests, ...s.bytes };
}

export function createSummaryLog(opts: { stats: Stats; log: Logger; intervalMs: number }): SummaryLog {
  let previous = countsOf(opts.stats.snapshot());
  let since = Date.now();

  function flush(): void {
    const snap = opts.stats.snapshot();
    const now = countsOf(snap);
    const d = (k: keyof Counts): number => now[k] - previous[k];
    const t = Date.now();
    opts.log.info(
      {
        summary: {
          seconds: Math.round((t - since) / 100) / 10,
          requests: d('total'),
          hits: d('hits'),
          misses: d('misses'),
          coalesced: d('coalesced'),
          stale: d('stale'),
          bytesFromCache: d('fromCache'),
          bytesFromUpstream: d('fromUpstream'),
          bytesSaved: d('saved'),
          cacheSizeBytes: snap.cache.sizeBytes ?? null,
          cacheObjects: snap.cache.objects ?? null,
          cacheMaxSizeBytes: snap.cache.maxSizeBytes,
        },
      },
      'cache summary',
    );
    previous = now;
    since = t;
  }

  const timer = opts.intervalMs > 0 ? setInterval(flush, opts.intervalMs) : undefined;
  // A summary is never a reason to keep the process alive.
  timer?.unref();
  return {
    flush,
    close() {
      if (timer !== undefined) clearInterval(timer);
    },
  };
}
