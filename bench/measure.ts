/**
 * What the benchmark measures besides wall time: memory and CPU of a contestant's process tree
 * (from /proc, sampled every 100 ms), and the upstream traffic a run caused (the fake hub's
 * registry access log, its token server and its CDN).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseRange } from '../test/helpers/cdn-server.ts';
import type { FakeHub } from '../test/helpers/fake-hub.ts';

const KIB = 1024;
const CLOCK_TICKS = ((): number => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** `VmRSS` and `VmHWM` of one process, in bytes (undefined once it is gone). */
export function memoryOf(pid: number): { rss: number; hwm: number } | undefined {
  const status = readText(`/proc/${pid}/status`);
  if (status === undefined) return undefined;
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    return m?.[1] === undefined ? 0 : Number(m[1]) * KIB;
  };
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

/** User + system CPU seconds of one process so far. */
function cpuOf(pid: number): number {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return 0;
  // Fields after the command name (which may hold spaces) start at field 3; utime/stime are 14/15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / CLOCK_TICKS;
}

/** `pid` and its descendants (nginx master -> workers), at most `limit` of them. */
export function processTree(pid: number, limit = 64): number[] {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0 && out.length < limit) {
    const p = queue.shift();
    if (p === undefined) break;
    out.push(p);
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const tid of tids.slice(0, 256)) {
      const children = readText(`/proc/${p}/task/${tid}/children`);
      for (const c of children?.trim().split(/\s+/) ?? []) if (c !== '') queue.push(Number(c));
    }
  }
  return out;
}

/** CPU seconds of a process tree (processes that exited in between are not counted). */
export function treeCpu(pids: readonly number[]): number {
  let total = 0;
  for (const root of pids) for (const p of processTree(root)) total += cpuOf(p);
  return total;
}

/** CPU seconds the whole machine has spent busy (not idle or iowait) since boot, over all cores. */
export function systemBusySeconds(): number {
  const line = readText('/proc/stat')?.split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS;
}

/**
 * Waits (at most `maxMs`) until the machine is nearly idle: under `threshold` of one core busy
 * over a `windowMs` window. Other work on a 2-core machine skews every number; this is best effort.
 * Returns the busy fraction of the last window.
 */
export async function waitForQuiet(maxMs: number, threshold = 0.2, windowMs = 2000): Promise<number> {
  const deadline = Date.now() + maxMs;
  let busy = Number.NaN;
  for (let i = 0; i < 1000; i++) {
    const b0 = systemBusySeconds();
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, windowMs));
    busy = (systemBusySeconds() - b0) / ((Date.now() - t0) / 1000);
    if (busy < threshold || Date.now() >= deadline) break;
  }
  return busy;
}

interface Sample {
  t: number;
  /** Sum of VmRSS over the tree. */
  rss: number;
}

/**
 * Samples the summed VmRSS of a process tree every 100 ms until stopped. At most `maxSamples` are
 * kept (the oldest are dropped), enough for an hour.
 */
export class RssSampler {
  private readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Highest summed RSS ever seen, and the root's VmHWM at the last sample. */
  peak = 0;
  rootHwm = 0;

  constructor(
    private readonly root: () => number | undefined,
    private readonly maxSamples = 36_000,
  ) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => {
      this.sample();
    }, 100);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Takes a sample now; returns the summed RSS (0 when the process is gone). */
  sample(): number {
    const root = this.root();
    if (root === undefined) return 0;
    let rss = 0;
    for (const p of processTree(root)) rss += memoryOf(p)?.rss ?? 0;
    const hwm = memoryOf(root)?.hwm;
    if (hwm !== undefined) this.rootHwm = hwm;
    this.samples.push({ t: performance.now(), rss });
    if (this.samples.length > this.maxSamples) this.samples.shift();
    if (rss > this.peak) this.peak = rss;
    return rss;
  }

  /** Highest sample taken in [from, to] (performance.now() times). */
  maxBetween(from: number, to: number): number {
    let max = 0;
    for (const s of this.samples) if (s.t >= from && s.t <= to && s.rss > max) max = s.rss;
    return max;
  }
}

/** Memory of one measured window: RSS right before, highest sample during, and the growth. */
export interface RssWindow {
  before: number;
  peak: number;
  growth: number;
  /** The root process's VmHWM (lifetime peak) at the end of the window. */
  hwm: number;
}

export function rssWindow(sampler: RssSampler, before: number, from: number, to: number): RssWindow {
  const after = sampler.sample();
  const peak = Math.max(sampler.maxBetween(from, to), after, before);
  return { before, peak, growth: peak - before, hwm: sampler.rootHwm };
}

// ---------------------------------------------------------------------------------------------
// Upstream traffic

export interface UpstreamMark {
  readonly registry: number;
  readonly token: number;
  readonly cdn: number;
}

export interface UpstreamStats {
  /** Every request the registry answered. */
  requests: number;
  /** Of those, refused with a 4xx (401 challenges before the client has a token). */
  refused: number;
  /** Blob GETs the registry served (200/206, or 307 to the CDN); 401 challenges not included. */
  blobGets: number;
  blobHeads: number;
  /** Manifest GETs and HEADs the registry answered with 200. */
  manifestGets: number;
  manifestHeads: number;
  /** Requests to the token server. */
  tokens: number;
  /** Blob GETs the CDN served (0 without a CDN). */
  cdnGets: number;
  /** Response body bytes the registry and the CDN sent. */
  bytes: number;
}

export async function upstreamMark(hub: FakeHub): Promise<UpstreamMark> {
  const reqs = await hub.registryRequests();
  return { registry: reqs.length, token: hub.token.requests.length, cdn: hub.cdn?.requests.length ?? 0 };
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Upstream traffic since `from`. */
export async function upstreamSince(hub: FakeHub, from: UpstreamMark): Promise<UpstreamStats> {
  const reqs = (await hub.registryRequests()).slice(from.registry);
  const s: UpstreamStats = {
    requests: reqs.length,
    refused: 0,
    blobGets: 0,
    blobHeads: 0,
    manifestGets: 0,
    manifestHeads: 0,
    tokens: hub.token.requests.length - from.token,
    cdnGets: 0,
    bytes: 0,
  };
  for (const r of reqs) {
    s.bytes += r.bytes;
    if (r.status >= 400) {
      s.refused++;
      continue;
    }
    const path = r.uri.split('?')[0] ?? '';
    const blob = /\/blobs\/sha256:[0-9a-f]{64}$/.test(path);
    const manifest = /\/manifests\/[^/]+$/.test(path);
    if (blob && r.method === 'GET') s.blobGets++;
    else if (blob && r.method === 'HEAD') s.blobHeads++;
    else if (manifest && r.method === 'GET') s.manifestGets++;
    else if (manifest && r.method === 'HEAD') s.manifestHeads++;
  }
  const cdn = hub.cdn;
  if (cdn !== undefined) {
    for (const r of cdn.requests.slice(from.cdn)) {
      if (r.method !== 'GET' || (r.status !== 200 && r.status !== 206)) continue;
      s.cdnGets++;
      const size = fileSize(join(cdn.root, decodeURIComponent(r.path)));
      const range = r.status === 206 ? parseRange(r.range, size) : undefined;
      s.bytes += typeof range === 'object' ? range.end - range.start + 1 : size;
    }
  }
  return s;
}

/**
 * Waits until the upstream has been quiet (no new registry, token or CDN request) for `quietMs`,
 * so a contestant's background work (Distribution stores a proxied blob with its own second GET)
 * is counted in the run that caused it and does not overlap the next one.
 */
export async function settleUpstream(hub: FakeHub, quietMs = 1000, maxMs = 60_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  let last = await upstreamMark(hub);
  let quietSince = Date.now();
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const now = await upstreamMark(hub);
    if (now.registry !== last.registry || now.token !== last.token || now.cdn !== last.cdn) {
      last = now;
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= quietMs) {
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Formatting

export const MB = 1e6;
export const MiB = 1024 * 1024;

export function fmt(n: number | undefined, digits = 1): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  return n.toFixed(digits);
}

export function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

/** A plain-text table: first column left-aligned, the rest right-aligned. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/**
 * Writes `bytes` to a scratch file and deletes it, so the page cache that the next run's writes
 * use comes from memory this VM has touched recently. Measured here (dd of 1 GiB to /tmp, ext4):
 * 2.0-2.7 s of kernel time into memory the host has taken back, 0.25 s right after deleting
 * such a file — and the host takes freed memory back within seconds (0.48 s after 1 s, 0.76 s
 * after 3 s, 2.24 s after 8 s). A 10x swing that hits whichever contestant happens to write at
 * the wrong moment and drowns the differences between them. Called right before every run that
 * writes a cache, for every contestant alike (direct included); `--no-prefault` turns it off.
 */
export function prefaultPageCache(bytes: number): void {
  const file = join(tmpdir(), `docxy-bench-prefault-${process.pid}`);
  const chunk = Buffer.alloc(4 * MiB, 0x5a);
  const fd = openSync(file, 'w');
  try {
    for (let done = 0; done < bytes; done += chunk.length) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
    unlinkSync(file);
  }
}
