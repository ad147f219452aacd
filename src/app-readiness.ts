/**
 * Readiness (`GET /health/ready`): is this replica fit to take traffic? Only storage decides: a
 * replica whose data directory cannot be written cannot fill its cache, so a load balancer should
 * take it out. A down upstream does NOT make it not-ready: a mirror serves what it has (stale tags,
 * cached blobs) and every replica shares the same upstream, so taking them all out helps nobody.
 * The per-upstream state is reported for the operator, from the dashboard's read model.
 */
import type { Config } from './config/load.ts';
import type { Stats, UpstreamState } from './dashboard/stats.ts';
import { createWritableProbe, type ProbeResult } from './storage/writable-probe.ts';
import { version } from './version.ts';

export interface ReadyUpstream {
  name: string;
  /** null until Docxy has talked to it; otherwise whether its latest answer was a success. */
  reachable: boolean | null;
  lastSuccess: string | null;
  lastError: string | null;
  lastErrorMessage: string | null;
}

export interface ReadyReport {
  status: 'ready' | 'not_ready';
  version: string;
  storage: ProbeResult;
  upstreams: ReadyUpstream[];
}

export interface Readiness {
  /** The HTTP status (200 or 503) and the JSON body, the same shape for both. */
  check(): Promise<{ status: 200 | 503; body: ReadyReport }>;
}

export function upstreamReadiness(u: UpstreamState): ReadyUpstream {
  const { lastSuccess, lastError } = u;
  // ISO timestamps from the same clock sort as strings.
  const reachable =
    lastSuccess === undefined && lastError === undefined
      ? null
      : lastError === undefined || (lastSuccess !== undefined && lastSuccess >= lastError);
  return {
    name: u.name,
    reachable,
    lastSuccess: lastSuccess ?? null,
    lastError: lastError ?? null,
    lastErrorMessage: u.lastErrorMessage ?? null,
  };
}

export function createReadiness(config: Config, stats: Stats): Readiness {
  const probe = createWritableProbe({ dir: config.data });
  return {
    async check() {
      const storage = await probe.check();
      const body: ReadyReport = {
        status: storage.writable ? 'ready' : 'not_ready',
        version,
        storage,
        upstreams: stats.snapshot().upstreams.map(upstreamReadiness),
      };
      return { status: storage.writable ? 200 : 503, body };
    },
  };
}
