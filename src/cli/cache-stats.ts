/**
 * `docxy cache stats`: what a running Docxy's `/-/api/stats` says (hit ratio, bytes saved, fill
 * against max_size, upstream state), or, with `--offline` or no server answering, what the data
 * directory holds (size, objects by kind, oldest and newest access).
 */
import { scanCache, type IndexedObject } from '../cache/cache-index.ts';
import type { Config } from '../config/load.ts';
import { formatSize } from '../config/units.ts';
import type { StatsSnapshot } from '../dashboard/stats.ts';
import { withStorage } from '../app-storage.ts';

type Out = (s: string) => void;

interface KindSummary {
  count: number;
  bytes: number;
}

export interface OfflineStats {
  data: string;
  sizeBytes: number;
  maxSizeBytes: number;
  objects: number;
  oldestAccess: string | undefined;
  newestAccess: string | undefined;
  byKind: { blobs: KindSummary; manifests: KindSummary; tags: { count: number } };
}

export async function offlineStats(config: Config): Promise<OfflineStats> {
  const index = await withStorage(config, scanCache);
  const summary = (m: ReadonlyMap<string, IndexedObject>): KindSummary => ({
    count: m.size,
    bytes: [...m.values()].reduce((a, o) => a + o.size, 0),
  });
  const times = [...index.blobs.values(), ...index.manifests.values()].map((o) => o.lastAccess.getTime());
  const iso = (t: number | undefined): string | undefined =>
    t === undefined ? undefined : new Date(t).toISOString();
  return {
    data: config.data,
    sizeBytes: index.totalSize,
    maxSizeBytes: config.cache.max_size,
    objects: index.blobs.size + index.manifests.size,
    oldestAccess: iso(times.length === 0 ? undefined : Math.min(...times)),
    newestAccess: iso(times.length === 0 ? undefined : Math.max(...times)),
    byKind: {
      blobs: summary(index.blobs),
      manifests: summary(index.manifests),
      tags: { count: index.tags.length },
    },
  };
}

function pct(n: number): string {
  return `${(n * 100).toFixed(1)} %`;
}

function printOnline(server: string, s: StatsSnapshot, out: Out): void {
  const r = s.requests;
  out(`server          ${server} (up since ${s.startedAt})\n`);
  out(
    `hit ratio       ${pct(r.hitRatio)} (${r.hits} hits, ${r.misses} misses, ${r.coalesced} coalesced, ${r.stale} stale of ${r.total})\n`,
  );
  out(
    `bytes saved     ${formatSize(s.bytes.saved)} (from cache ${formatSize(s.bytes.fromCache)}, from upstream ${formatSize(s.bytes.fromUpstream)})\n`,
  );
  const size = s.cache.sizeBytes === undefined ? 'not scanned yet' : formatSize(s.cache.sizeBytes);
  out(`cache           ${size} of ${formatSize(s.cache.maxSizeBytes)}, ${s.cache.objects ?? '?'} objects\n`);
  out(`fills           ${s.fills.length} in progress\n`);
  for (const u of s.upstreams) {
    const budget =
      u.ratelimitRemaining === undefined
        ? ''
        : `, pull budget ${u.ratelimitRemaining}${u.ratelimitLimit === undefined ? '' : `/${u.ratelimitLimit}`}`;
    const err = u.lastError === undefined ? '' : `, last error ${u.lastError} ${u.lastErrorMessage ?? ''}`;
    out(
      `upstream        ${u.name}: last success ${u.lastSuccess ?? 'never'}${u.latencyMs === undefined ? '' : `, ${u.latencyMs} ms`}${budget}${err}\n`,
    );
  }
}

function printOffline(s: OfflineStats, out: Out): void {
  out(`data            ${s.data} (offline: read from the data directory)\n`);
  out(`cache           ${formatSize(s.sizeBytes)} of ${formatSize(s.maxSizeBytes)}, ${s.objects} objects\n`);
  out(`blobs           ${s.byKind.blobs.count}, ${formatSize(s.byKind.blobs.bytes)}\n`);
  out(`manifests       ${s.byKind.manifests.count}, ${formatSize(s.byKind.manifests.bytes)}\n`);
  out(`tags            ${s.byKind.tags.count}\n`);
  out(`oldest access   ${s.oldestAccess ?? '-'}\n`);
  out(`newest access   ${s.newestAccess ?? '-'}\n`);
}

/** Returns the exit code. */
export async function cacheStats(
  config: Config,
  opts: { server: string; offline: boolean; json: boolean },
  out: Out,
  err: Out,
): Promise<number> {
  if (!opts.offline) {
    try {
      const res = await fetch(`${opts.server}/-/api/stats`, { signal: AbortSignal.timeout(5000) });
      if (res.ok) {
        const s = (await res.json()) as StatsSnapshot;
        if (opts.json) out(`${JSON.stringify({ source: 'server', server: opts.server, stats: s })}\n`);
        else printOnline(opts.server, s, out);
        return 0;
      }
      err(`${opts.server}/-/api/stats answered ${res.status}; showing the data directory instead\n`);
    } catch (e) {
      err(
        `no Docxy answering at ${opts.server} (${(e as Error).message}); showing the data directory instead\n`,
      );
    }
  }
  const s = await offlineStats(config);
  if (opts.json) out(`${JSON.stringify({ source: 'data', stats: s })}\n`);
  else printOffline(s, out);
  return 0;
}
