/**
 * The pull benchmark's shared runner: the result types, the parameters, and `measure()`, which
 * times one run against one contestant and records its CPU, RSS and upstream traffic. Every
 * scenario (scenario-*.ts) is built on it; pull-bench.ts is the command line.
 */
import { execFileSync } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { Agent } from 'undici';
import type { FakeHub } from '../../test/helpers/fake-hub.ts';
import type { Contestant, ContestantName } from '../contestants.ts';
import type { LinkSuite } from './scenario-e.ts';
import {
  fmt,
  MB,
  prefaultPageCache,
  rssWindow,
  settleUpstream,
  systemBusySeconds,
  treeCpu,
  upstreamMark,
  upstreamSince,
  waitForQuiet,
  type RssSampler,
  type RssWindow,
  type UpstreamStats,
} from '../measure.ts';

export type HubMode = 'plain' | 'cdn';

/** Sizes and counts of one run (full or `--quick`). */
export interface BenchParams {
  readonly quick: boolean;
  /** Prefault the page cache before every run that writes a cache (off with --no-prefault). */
  readonly prefault: boolean;
  readonly bBlobSize: number;
  readonly cClients: number;
  readonly cBlobSize: number;
  readonly dSeconds: number;
  readonly dConnections: number;
  /** Scenario D: how many different cached tag manifests the load cycles through. */
  readonly dManifests: number;
  /** Scenario A's layer size in --quick runs (0: the full run's library/big:1 image). */
  readonly aLayer: number;
  /** Scenario E (capped link): the link's rates in Mbit/s, one pass each. */
  readonly eRatesMbit: readonly number[];
  /** Scenario E: round-trip time added on the link (ms). */
  readonly eRttMs: number;
  /** Scenario E: the cold single-client blob, and the blob the concurrent clients pull. */
  readonly eBlobSize: number;
  readonly eClients: number;
  readonly eClientsBlobSize: number;
}

/** One measured run (one pull, or all concurrent clients of one contestant). */
export const STEP_LIMIT_MS = 10 * 60_000;
/** Before each measured run, wait at most this long for the machine to be quiet. */
const QUIET_WAIT_MS = 30_000;

export interface RunResult {
  scenario: 'A' | 'B' | 'C' | 'D' | 'E';
  contestant: ContestantName;
  /** `cold`, `warm`, or `` for single-pass scenarios; E: `cold@200M`, `clients@200M`, `one@200M`. */
  phase: string;
  /** Scenario E: the link's rate during the run (Mbit/s). */
  linkMbit?: number;
  ok: boolean;
  error?: string;
  wallMs: number;
  /** Verified body bytes the client(s) received. */
  bytes: number;
  /** Client-side throughput in MB/s (10^6 bytes). */
  mbps: number;
  clients?: { count: number; minMs: number; medianMs: number; maxMs: number };
  requests?: {
    count: number;
    rps: number;
    p50Ms: number;
    p99Ms: number;
    errors: number;
    /** What made the load (`wrk -t2 -c64`, or the undici fallback). */
    load?: string;
  };
  upstream: UpstreamStats;
  /**
   * CPU seconds used during the run: the contestant's process tree (undefined for direct), the
   * hub's registry process, and this process (the clients, plus the hub's token server and CDN,
   * which run in it), and `other`: what the whole machine spent busy minus those three (other
   * work on the machine, and kernel time not charged to them; high values mean a noisy run).
   */
  cpu: { server: number | undefined; hub: number; client: number; other: number; link?: number };
  /** The contestant's summed RSS (process tree) around the run. */
  rss?: RssWindow;
  /** Busy fraction of one core in the 1 s before the run (after waiting up to 30 s for quiet). */
  busyBefore: number;
  /** `other` CPU above a quarter of the wall time: other work ran alongside; the numbers are suspect. */
  disturbed: boolean;
}

export interface TargetResult {
  target: string;
  measured: string;
  pass: boolean | undefined;
}

export interface SuiteResult {
  hub: HubMode;
  /** Busy fraction of one core over 2 s right before the suite (other work on the machine). */
  busyBefore: number;
  loadAverageBefore: number[];
  contestants: { name: ContestantName; url: string; summary: string; config: string | undefined }[];
  skipped: { name: ContestantName; reason: string }[];
  runs: RunResult[];
  docxyMemory: { startRss: number; startHwm: number; peakRss: number; vmHwm: number } | undefined;
  memoryPeaks: Partial<Record<ContestantName, number>>;
  targets: TargetResult[];
  /** CPU seconds this process spends hashing the B blob with sha256 (what any verifying cache must spend). */
  sha256CpuS?: number;
  /** Scenario E's link and the contestant instances behind it, when E ran. */
  link?: LinkSuite;
  /** Why scenario E did not run, when it was asked for. */
  linkSkipped?: string;
}

/** bench/results/latest.json: one benchmark run, everything needed to regenerate bench/RESULTS.md. */
export interface BenchReport {
  generatedAt: string;
  finishedAt: string;
  durationS: number;
  argv: string[];
  quick: boolean;
  /** The scenarios and contestants asked for (--only, --contestants). */
  scenarios: string[];
  params: BenchParams & Record<string, unknown>;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryBytes: number;
    kernel: string;
    node: string;
    loadAverageStart: number[];
    loadAverageEnd: number[];
  };
  versions: { docxyCommit: string; docxySrcDirty: boolean; nginx: string; distribution: string };
  units: Record<string, string>;
  suites: SuiteResult[];
}

/** Many requests listen on one signal at once (50 clients, 32 connections): no leak warning. */
export function manyListeners(signal: AbortSignal): AbortSignal {
  setMaxListeners(10_000, signal);
  return signal;
}

export function stepSignal(global: AbortSignal, limitMs = STEP_LIMIT_MS): AbortSignal {
  return manyListeners(AbortSignal.any([global, AbortSignal.timeout(limitMs)]));
}

export function newAgent(): Agent {
  return new Agent({ headersTimeout: STEP_LIMIT_MS, bodyTimeout: 120_000, keepAliveTimeout: 10_000 });
}

/** Flushes dirty pages (a contestant's cache writes) so write-back does not land in the next run. */
export function syncDisks(): void {
  try {
    execFileSync('sync', { timeout: 120_000 });
  } catch {
    /* best effort */
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}

export function tryExec(cmd: string, argv: readonly string[]): string {
  try {
    return execFileSync(cmd, argv, {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  } catch (err) {
    const e = err as { stderr?: unknown };
    return typeof e.stderr === 'string' ? e.stderr.trim() : '';
  }
}

export function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

export interface SuiteContext {
  hub: FakeHub;
  params: BenchParams;
  global: AbortSignal;
  samplers: Map<ContestantName, RssSampler>;
  runs: RunResult[];
  /** Scenario E: the link's relay processes, whose CPU is counted apart (`cpu.link`), not as `other`. */
  linkPids?: () => number[];
  /** Scenario E: the link's rate, recorded on every run. */
  linkMbit?: number;
}

export interface RunOutput {
  bytes: number;
  clients?: RunResult['clients'];
  requests?: RunResult['requests'];
}

/**
 * Times `body` against one contestant with quiet upstream before and after, and records CPU, RSS
 * and the upstream traffic it caused (including background work `after` waits for). A failure is
 * recorded, not thrown: one broken contestant must not hide the others' numbers.
 */
export async function measure(
  ctx: SuiteContext,
  c: Contestant,
  scenario: RunResult['scenario'],
  phase: string,
  body: (signal: AbortSignal) => Promise<RunOutput>,
  opts: {
    /** Background work the run caused, waited for after the clock stops (a contestant storing). */
    after?: (signal: AbortSignal) => Promise<void>;
    /** Bytes the run may write to disk (cold runs): the page cache is prefaulted for that much. */
    writes?: number;
    /** The run's own time limit, when a slow link needs more than STEP_LIMIT_MS. */
    limitMs?: number;
  } = {},
): Promise<RunResult> {
  const { after, writes = 0, limitMs = STEP_LIMIT_MS } = opts;
  // Past the run's time limit or interrupted: stop measuring and unwind to the cleanup.
  ctx.global.throwIfAborted();
  await settleUpstream(ctx.hub, 500);
  syncDisks();
  // Other work on the machine (2 cores) skews a run: start only once it has been quiet for 1 s.
  const busyBefore = await waitForQuiet(QUIET_WAIT_MS, 0.2, 1000);
  const mark = await upstreamMark(ctx.hub);
  // Right before the run: the VM hands freed memory back to its host within seconds.
  if (writes > 0 && ctx.params.prefault) prefaultPageCache(writes);
  const sampler = ctx.samplers.get(c.name);
  const pids = c.pid === undefined ? [] : [c.pid];
  const hubPids = [ctx.hub.registryPid() ?? -1];
  const linkPids = ctx.linkPids?.() ?? [];
  const linkCpu0 = treeCpu(linkPids);
  const serverCpu0 = treeCpu(pids);
  const hubCpu0 = treeCpu(hubPids);
  const clientCpu0 = process.cpuUsage();
  const busy0 = systemBusySeconds();
  const rssBefore = sampler?.sample() ?? 0;
  const t0 = performance.now();
  const signal = stepSignal(ctx.global, limitMs);
  let out: RunOutput = { bytes: 0 };
  let error: string | undefined;
  try {
    out = await body(signal);
  } catch (err) {
    error = errorText(err);
  }
  const t1 = performance.now();
  ctx.global.throwIfAborted();
  const rss = sampler === undefined ? undefined : rssWindow(sampler, rssBefore, t0, t1);
  const clientCpu = process.cpuUsage(clientCpu0);
  const serverCpu = treeCpu(pids) - serverCpu0;
  const hubCpu = treeCpu(hubPids) - hubCpu0;
  const linkCpu = treeCpu(linkPids) - linkCpu0;
  const busy = systemBusySeconds() - busy0;
  const clientSeconds = (clientCpu.user + clientCpu.system) / 1e6;
  if (error === undefined && after !== undefined) {
    try {
      await after(signal);
    } catch (err) {
      error = `after the run: ${errorText(err)}`;
    }
  }
  await settleUpstream(ctx.hub);
  const upstream = await upstreamSince(ctx.hub, mark);
  const wallMs = t1 - t0;
  const result: RunResult = {
    scenario,
    contestant: c.name,
    phase,
    ...(ctx.linkMbit === undefined ? {} : { linkMbit: ctx.linkMbit }),
    ok: error === undefined,
    ...(error === undefined ? {} : { error }),
    wallMs,
    bytes: out.bytes,
    mbps: error === undefined ? out.bytes / MB / (wallMs / 1000) : NaN,
    ...(out.clients === undefined ? {} : { clients: out.clients }),
    ...(out.requests === undefined ? {} : { requests: out.requests }),
    upstream,
    cpu: {
      server: c.pid === undefined ? undefined : serverCpu,
      hub: hubCpu,
      client: clientSeconds,
      other: Math.max(0, busy - serverCpu - hubCpu - clientSeconds - linkCpu),
      ...(ctx.linkPids === undefined ? {} : { link: linkCpu }),
    },
    ...(rss === undefined ? {} : { rss }),
    busyBefore,
    disturbed: false,
  };
  result.disturbed = result.cpu.other > 0.25 * (wallMs / 1000) + 0.1;
  ctx.runs.push(result);
  const what = `${scenario} ${c.name}${phase === '' ? '' : ` ${phase}`}`;
  if (error !== undefined) {
    log(`${what}: FAILED ${error}`);
    const tail = c.log().slice(-1500);
    if (tail !== '') log(`${c.name} log tail:\n${tail}`);
  } else if (out.requests !== undefined) {
    log(`${what}: ${fmt(out.requests.rps, 0)} req/s`);
  } else {
    log(
      `${what}: ${fmt(wallMs / 1000, 2)} s, ${fmt(result.mbps, 0)} MB/s, upstream blob GETs ${upstream.blobGets}`,
    );
  }
  return result;
}

/** Runs `run` for each contestant with an agent of its own, closed afterwards. */
export async function eachContestant(
  contestants: readonly Contestant[],
  run: (c: Contestant, agent: Agent) => Promise<void>,
): Promise<void> {
  for (const c of contestants) {
    const agent = newAgent();
    try {
      await run(c, agent);
    } finally {
      await agent.close();
    }
  }
}
