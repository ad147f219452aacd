/**
 * Pull benchmark: Docxy against a direct pull, CNCF Distribution's proxy mode and an nginx
 * proxy_cache mirror, all in front of the same fake Docker Hub. A benchmark, not a test: it prints
 * tables, checks the targets from the issue, and writes bench/results/latest.json.
 *
 *   npm run build && node --import tsx bench/pull-bench.ts [--quick] [--hub plain|cdn|both]
 *       [--only A,B,C,D] [--contestants direct,docxy,distribution,nginx] [--no-prefault]
 *
 * Before every run that writes a cache (A, B cold, C) the page cache is prefaulted for every
 * contestant alike (measure.ts, prefaultPageCache: on this VM, writes into never-touched memory
 * cost ten times more kernel time). BENCH_DOCXY_NODE_ARGS passes extra node flags to Docxy only
 * (profiling: "--cpu-prof --cpu-prof-dir=/tmp/prof").
 *
 * Scenarios (one after another; the machine has 2 cores):
 *   A  cold pull of library/big:1 (200 MB layer) through each contestant; Docxy's RSS growth
 *   B  a 1 GiB blob, cold (first pull) then warm (second pull), through each contestant
 *   C  N concurrent cold clients of a 64 MiB blob: wall time, upstream blob GETs and bytes
 *   D  warm tag-manifest GETs for a fixed time on 32 connections: requests per second
 *   E  Docxy's peak RSS over the whole run
 *
 * `--hub plain` (default) runs the hub without its CDN stand-in (the registry serves blobs
 * itself); `--hub cdn` redirects blob GETs to the CDN like Docker Hub; `both` runs the suite twice.
 */
import { execFileSync } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { cpus, loadavg, totalmem } from 'node:os';
import { closeSync, existsSync, mkdirSync, openSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createHash } from 'node:crypto';
import { Agent, Pool } from 'undici';
import { startFakeHub, type FakeHub } from '../test/helpers/fake-hub.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  bigImage,
  buildImage,
  pushImage,
  TINY,
  type TestImage,
} from '../test/helpers/images.ts';
import { deterministicBlobFile, pushBlobFile, type BlobFile } from './blob-file.ts';
import {
  ALL_CONTESTANTS,
  CONTESTANTS,
  NGINX_BINARY,
  REPO_ROOT,
  startContestant,
  type Contestant,
  type ContestantName,
} from './contestants.ts';
import {
  fmt,
  MB,
  MiB,
  mib,
  RssSampler,
  rssWindow,
  settleUpstream,
  table,
  systemBusySeconds,
  treeCpu,
  upstreamMark,
  upstreamSince,
  waitForQuiet,
  prefaultPageCache,
  type RssWindow,
  type UpstreamStats,
} from './measure.ts';
import { PullClient, type Transfer } from './pull-client.ts';

// ---------------------------------------------------------------------------------------------
// Parameters

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    hub: { type: 'string', default: 'plain' },
    // For focused work on one path: e.g. --only B --contestants direct,docxy (the targets that need
    // a skipped scenario or contestant are reported as n/a).
    only: { type: 'string', default: 'A,B,C,D' },
    contestants: { type: 'string', default: CONTESTANTS.join(',') },
    // See prefaultPageCache in measure.ts.
    'no-prefault': { type: 'boolean', default: false },
  },
  strict: true,
});
const QUICK = args.quick;
const HUB_MODES: readonly HubMode[] =
  args.hub === 'both'
    ? ['plain', 'cdn']
    : args.hub === 'cdn'
      ? ['cdn']
      : args.hub === 'plain'
        ? ['plain']
        : [];
if (HUB_MODES.length === 0) throw new Error(`--hub must be plain, cdn or both (got ${args.hub})`);

type HubMode = 'plain' | 'cdn';

const SCENARIOS = new Set(args.only.split(',').map((x) => x.trim().toUpperCase()));
for (const sc of SCENARIOS)
  if (!['A', 'B', 'C', 'D'].includes(sc)) throw new Error(`--only takes A, B, C, D (got ${sc})`);
const SELECTED = new Set(args.contestants.split(',').map((x) => x.trim()));
for (const name of SELECTED)
  if (!(ALL_CONTESTANTS as readonly string[]).includes(name))
    throw new Error(`--contestants takes ${ALL_CONTESTANTS.join(', ')} (got ${name})`);

const PARAMS = QUICK
  ? {
      bBlobSize: 64 * MiB,
      cClients: 10,
      cBlobSize: 16 * MiB,
      dSeconds: 2,
      dConnections: 32,
      aLayer: 32 * MiB,
    }
  : { bBlobSize: 1024 * MiB, cClients: 50, cBlobSize: 64 * MiB, dSeconds: 5, dConnections: 32, aLayer: 0 };
/** Everything (setup included) must end within this; every request also has its own limit. */
const RUN_LIMIT_MS = QUICK ? 15 * 60_000 : 60 * 60_000;
/** One measured run (one pull, or all concurrent clients of one contestant). */
const STEP_LIMIT_MS = 10 * 60_000;
/** Cap on requests per D run, besides its duration. */
const D_MAX_REQUESTS = 2_000_000;
/** Before each measured run, wait at most this long for the machine to be quiet. */
const QUIET_WAIT_MS = 30_000;

const B_REPO = 'library/bench-b';
const C_REPO = 'library/bench-c';
const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');

// ---------------------------------------------------------------------------------------------
// Results

interface RunResult {
  scenario: 'A' | 'B' | 'C' | 'D';
  contestant: ContestantName;
  /** `cold`, `warm`, or `` for single-pass scenarios. */
  phase: string;
  ok: boolean;
  error?: string;
  wallMs: number;
  /** Verified body bytes the client(s) received. */
  bytes: number;
  /** Client-side throughput in MB/s (10^6 bytes). */
  mbps: number;
  clients?: { count: number; minMs: number; medianMs: number; maxMs: number };
  requests?: { count: number; rps: number; p50Ms: number; p99Ms: number; errors: number };
  upstream: UpstreamStats;
  /**
   * CPU seconds used during the run: the contestant's process tree (undefined for direct), the
   * hub's registry process, and this process (the clients, plus the hub's token server and CDN,
   * which run in it), and `other`: what the whole machine spent busy minus those three (other
   * work on the machine, and kernel time not charged to them; high values mean a noisy run).
   */
  cpu: { server: number | undefined; hub: number; client: number; other: number };
  /** The contestant's summed RSS (process tree) around the run. */
  rss?: RssWindow;
  /** Busy fraction of one core in the 1 s before the run (after waiting up to 30 s for quiet). */
  busyBefore: number;
  /** `other` CPU above a quarter of the wall time: other work ran alongside; the numbers are suspect. */
  disturbed: boolean;
}

interface TargetResult {
  target: string;
  measured: string;
  pass: boolean | undefined;
}

interface SuiteResult {
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
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Many requests listen on one signal at once (50 clients, 32 connections): no leak warning. */
function manyListeners(signal: AbortSignal): AbortSignal {
  setMaxListeners(10_000, signal);
  return signal;
}

function stepSignal(global: AbortSignal): AbortSignal {
  return manyListeners(AbortSignal.any([global, AbortSignal.timeout(STEP_LIMIT_MS)]));
}

function newAgent(): Agent {
  return new Agent({ headersTimeout: STEP_LIMIT_MS, bodyTimeout: 120_000, keepAliveTimeout: 10_000 });
}

/** Flushes dirty pages (a contestant's cache writes) so write-back does not land in the next run. */
function syncDisks(): void {
  try {
    execFileSync('sync', { timeout: 120_000 });
  } catch {
    /* best effort */
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}

function tryExec(cmd: string, argv: readonly string[]): string {
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

function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

// ---------------------------------------------------------------------------------------------
// One measured run

interface SuiteContext {
  hub: FakeHub;
  global: AbortSignal;
  samplers: Map<ContestantName, RssSampler>;
  runs: RunResult[];
}

interface RunOutput {
  bytes: number;
  clients?: RunResult['clients'];
  requests?: RunResult['requests'];
}

/**
 * Times `body` against one contestant with quiet upstream before and after, and records CPU, RSS
 * and the upstream traffic it caused (including background work `after` waits for). A failure is
 * recorded, not thrown: one broken contestant must not hide the others' numbers.
 */
async function measure(
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
  } = {},
): Promise<RunResult> {
  const { after, writes = 0 } = opts;
  // Past the run's time limit or interrupted: stop measuring and unwind to the cleanup.
  ctx.global.throwIfAborted();
  await settleUpstream(ctx.hub, 500);
  syncDisks();
  // Other work on the machine (2 cores) skews a run: start only once it has been quiet for 1 s.
  const busyBefore = await waitForQuiet(QUIET_WAIT_MS, 0.2, 1000);
  const mark = await upstreamMark(ctx.hub);
  // Right before the run: the VM hands freed memory back to its host within seconds.
  if (writes > 0 && !args['no-prefault']) prefaultPageCache(writes);
  const sampler = ctx.samplers.get(c.name);
  const pids = c.pid === undefined ? [] : [c.pid];
  const hubPids = [ctx.hub.registryPid() ?? -1];
  const serverCpu0 = treeCpu(pids);
  const hubCpu0 = treeCpu(hubPids);
  const clientCpu0 = process.cpuUsage();
  const busy0 = systemBusySeconds();
  const rssBefore = sampler?.sample() ?? 0;
  const t0 = performance.now();
  const signal = stepSignal(ctx.global);
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
      other: Math.max(0, busy - serverCpu - hubCpu - clientSeconds),
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

// ---------------------------------------------------------------------------------------------
// Scenarios

/** Runs `run` for each contestant with an agent of its own, closed afterwards. */
async function eachContestant(
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

async function scenarioA(
  ctx: SuiteContext,
  contestants: readonly Contestant[],
  image: TestImage,
): Promise<void> {
  const writes = 2 * image.blobs.reduce((n, b) => n + b.size, 0);
  await eachContestant(contestants, async (c, agent) => {
    const pull = async (signal: AbortSignal): Promise<RunOutput> => {
      const t: Transfer = await new PullClient(c.url, agent, signal).pullImage(image);
      return { bytes: t.bytes };
    };
    await measure(ctx, c, 'A', '', pull, { writes });
  });
}

async function scenarioB(
  ctx: SuiteContext,
  contestants: readonly Contestant[],
  blob: BlobFile,
): Promise<void> {
  await eachContestant(contestants, async (c, agent) => {
    const pull = async (signal: AbortSignal): Promise<RunOutput> => {
      const t = await new PullClient(c.url, agent, signal).pullBlob(B_REPO, blob.digest, blob.size);
      return { bytes: t.bytes };
    };
    const after = (signal: AbortSignal): Promise<void> => c.stored(blob.digest, blob.size, signal);
    await measure(ctx, c, 'B', 'cold', pull, { after, writes: 2 * blob.size });
    await measure(ctx, c, 'B', 'warm', pull);
  });
}

async function scenarioC(
  ctx: SuiteContext,
  contestants: readonly Contestant[],
  blob: BlobFile,
): Promise<void> {
  await eachContestant(contestants, async (c, agent) => {
    const pullAll = async (signal: AbortSignal): Promise<RunOutput> => {
      // Every client is its own puller: its own token, its own connection.
      const times = await Promise.all(
        Array.from({ length: PARAMS.cClients }, async () => {
          const t = await new PullClient(c.url, agent, signal).pullBlob(C_REPO, blob.digest, blob.size);
          return t.ms;
        }),
      );
      times.sort((a, b) => a - b);
      return {
        bytes: blob.size * PARAMS.cClients,
        clients: {
          count: times.length,
          minMs: times[0] ?? NaN,
          medianMs: percentile(times, 50),
          maxMs: times[times.length - 1] ?? NaN,
        },
      };
    };
    const after = (signal: AbortSignal): Promise<void> => c.stored(blob.digest, blob.size, signal);
    await measure(ctx, c, 'C', '', pullAll, { after, writes: 2 * blob.size });
  });
}

async function scenarioD(ctx: SuiteContext, contestants: readonly Contestant[]): Promise<void> {
  const image = TINY;
  const path = `/v2/${image.repo}/manifests/${image.tag}`;
  for (const c of contestants) {
    // Warm it up (and get a token when the contestant asks for one): two GETs, so a cache has it.
    const agent = newAgent();
    let token: string | undefined;
    try {
      const client = new PullClient(c.url, agent, stepSignal(ctx.global));
      await client.pullManifest(image.repo, image.tag, image.digest);
      await client.pullManifest(image.repo, image.tag, image.digest);
      token = client.tokenFor(image.repo);
    } catch (err) {
      log(`D ${c.name}: warm-up failed: ${errorText(err)}`);
    } finally {
      await agent.close();
    }
    const headers: Record<string, string> = { accept: ACCEPT_ALL_MANIFESTS, 'user-agent': 'docxy-bench' };
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const pool = new Pool(c.url, {
      connections: PARAMS.dConnections,
      pipelining: 1,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    try {
      await measure(ctx, c, 'D', '', async (signal) => {
        const latencies: number[] = [];
        let errors = 0;
        let firstError: string | undefined;
        let bytes = 0;
        const start = performance.now();
        const deadline = start + PARAMS.dSeconds * 1000;
        const worker = async (): Promise<void> => {
          while (
            performance.now() < deadline &&
            latencies.length + errors < D_MAX_REQUESTS &&
            !signal.aborted
          ) {
            const t0 = performance.now();
            try {
              const res = await pool.request({ path, method: 'GET', headers, signal });
              const buf = Buffer.from(await res.body.arrayBuffer());
              const digest = `sha256:${createHash('sha256').update(buf).digest('hex')}`;
              if (res.statusCode !== 200 || digest !== image.digest) {
                errors++;
                firstError ??= `HTTP ${res.statusCode} ${buf.toString('utf8').slice(0, 200)}`;
                continue;
              }
              bytes += buf.length;
              latencies.push(performance.now() - t0);
            } catch (err) {
              signal.throwIfAborted();
              errors++;
              firstError ??= errorText(err);
            }
          }
        };
        await Promise.all(Array.from({ length: PARAMS.dConnections }, worker));
        const elapsed = (performance.now() - start) / 1000;
        latencies.sort((a, b) => a - b);
        if (latencies.length === 0)
          throw new Error(`no successful request (${errors} errors: ${String(firstError)})`);
        if (errors > 0) log(`D ${c.name}: ${errors} failed requests, first: ${String(firstError)}`);
        return {
          bytes,
          requests: {
            count: latencies.length,
            rps: latencies.length / elapsed,
            p50Ms: percentile(latencies, 50),
            p99Ms: percentile(latencies, 99),
            errors,
          },
        };
      });
    } finally {
      await pool.close();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const SHORT: Record<ContestantName, string> = {
  direct: 'direct',
  docxy: 'docxy',
  'docxy-nometrics': 'docxy-nm',
  distribution: 'distrib',
  nginx: 'nginx',
};

function find(
  runs: readonly RunResult[],
  scenario: string,
  name: ContestantName,
  phase = '',
): RunResult | undefined {
  return runs.find((r) => r.scenario === scenario && r.contestant === name && r.phase === phase && r.ok);
}

/** `row / other` for the metric, as `1.23x`. */
function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '-';
  return `${(a / b).toFixed(2)}x`;
}

function upstreamCells(u: UpstreamStats, cdn: boolean): string[] {
  return [
    String(u.requests),
    String(u.refused),
    String(u.blobGets),
    String(u.blobHeads),
    ...(cdn ? [String(u.cdnGets)] : []),
    fmt(u.bytes / MB, 0),
    String(u.tokens),
  ];
}

function upstreamHeaders(cdn: boolean): string[] {
  return ['up reqs', 'up 401', 'up blob GET', 'up blob HEAD', ...(cdn ? ['CDN GET'] : []), 'up MB', 'tokens'];
}

const CPU_HEADERS = ['srv CPU s', 'hub CPU s', 'cli CPU s', 'other CPU s'];

function cpuCells(r: RunResult): string[] {
  return [fmt(r.cpu.server, 1), fmt(r.cpu.hub, 1), fmt(r.cpu.client, 1), fmt(r.cpu.other, 1)];
}

function transferTable(
  suite: SuiteResult,
  scenario: 'A' | 'B' | 'C',
  names: readonly ContestantName[],
): string {
  const cdn = suite.hub === 'cdn';
  const phases = scenario === 'B' ? ['cold', 'warm'] : [''];
  const headers = [
    'contestant',
    'wall s',
    'MB/s',
    ...names.map((n) => `vs ${SHORT[n]}`),
    ...(scenario === 'C' ? ['client p50 s', 'client max s'] : []),
    ...upstreamHeaders(cdn),
    ...CPU_HEADERS,
    'srv RSS peak',
  ];
  const rows: string[][] = [];
  for (const phase of phases) {
    for (const name of names) {
      const label = phase === '' ? name : `${name} ${phase}`;
      const r = suite.runs.find((x) => x.scenario === scenario && x.contestant === name && x.phase === phase);
      if (r === undefined) continue;
      if (!r.ok) {
        rows.push([label, 'FAILED', r.error?.slice(0, 60) ?? '']);
        continue;
      }
      rows.push([
        `${label}${r.disturbed ? ' *' : ''}`,
        fmt(r.wallMs / 1000, 2),
        fmt(r.mbps, 0),
        ...names.map((other) =>
          other === name ? '' : ratio(r.mbps, find(suite.runs, scenario, other, phase)?.mbps),
        ),
        ...(scenario === 'C' && r.clients !== undefined
          ? [fmt(r.clients.medianMs / 1000, 2), fmt(r.clients.maxMs / 1000, 2)]
          : []),
        ...upstreamCells(r.upstream, cdn),
        ...cpuCells(r),
        r.rss === undefined ? '-' : mib(r.rss.peak),
      ]);
    }
  }
  return table(headers, rows);
}

function manifestTable(suite: SuiteResult, names: readonly ContestantName[]): string {
  const headers = [
    'contestant',
    'req/s',
    'p50 ms',
    'p99 ms',
    'errors',
    ...names.map((n) => `vs ${SHORT[n]}`),
    'up reqs',
    'up mfst GET',
    'up mfst HEAD',
    'tokens',
    ...CPU_HEADERS,
  ];
  const rps = (n: ContestantName): number | undefined => find(suite.runs, 'D', n)?.requests?.rps;
  const rows: string[][] = [];
  for (const name of names) {
    const r = suite.runs.find((x) => x.scenario === 'D' && x.contestant === name);
    if (r === undefined) continue;
    if (!r.ok || r.requests === undefined) {
      rows.push([name, 'FAILED', r.error?.slice(0, 60) ?? '']);
      continue;
    }
    rows.push([
      `${name}${r.disturbed ? ' *' : ''}`,
      fmt(r.requests.rps, 0),
      fmt(r.requests.p50Ms, 2),
      fmt(r.requests.p99Ms, 2),
      String(r.requests.errors),
      ...names.map((other) => (other === name ? '' : ratio(r.requests?.rps, rps(other)))),
      String(r.upstream.requests),
      String(r.upstream.manifestGets),
      String(r.upstream.manifestHeads),
      String(r.upstream.tokens),
      ...cpuCells(r),
    ]);
  }
  return table(headers, rows);
}

function evaluateTargets(suite: SuiteResult, aLabel: string): TargetResult[] {
  const runs = suite.runs;
  const out: TargetResult[] = [];
  const check = (target: string, measured: string, pass: boolean | undefined): void => {
    out.push({ target, measured, pass });
  };
  const aDocxy = find(runs, 'A', 'docxy');
  check(
    `A: Docxy RSS growth during the ${aLabel} cold pull < 64 MiB`,
    aDocxy?.rss === undefined
      ? 'n/a'
      : `${mib(aDocxy.rss.growth)} (${mib(aDocxy.rss.before)} -> ${mib(aDocxy.rss.peak)})`,
    aDocxy?.rss === undefined ? undefined : aDocxy.rss.growth < 64 * MiB,
  );
  const bWarm = find(runs, 'B', 'docxy', 'warm');
  const bNginxWarm = find(runs, 'B', 'nginx', 'warm');
  check(
    'B: Docxy warm >= 0.9x nginx warm',
    `${fmt(bWarm?.mbps, 0)} vs ${fmt(bNginxWarm?.mbps, 0)} MB/s = ${ratio(bWarm?.mbps, bNginxWarm?.mbps)}`,
    bWarm === undefined || bNginxWarm === undefined ? undefined : bWarm.mbps >= 0.9 * bNginxWarm.mbps,
  );
  const bCold = find(runs, 'B', 'docxy', 'cold');
  const bDirect = find(runs, 'B', 'direct', 'cold');
  check(
    'B: Docxy cold >= 0.9x direct',
    `${fmt(bCold?.mbps, 0)} vs ${fmt(bDirect?.mbps, 0)} MB/s = ${ratio(bCold?.mbps, bDirect?.mbps)}`,
    bCold === undefined || bDirect === undefined ? undefined : bCold.mbps >= 0.9 * bDirect.mbps,
  );
  const cDocxy = find(runs, 'C', 'docxy');
  const cDirect = find(runs, 'C', 'direct');
  check(
    `C: Docxy ${PARAMS.cClients} cold clients -> 1 upstream blob GET`,
    cDocxy === undefined
      ? 'n/a'
      : `${cDocxy.upstream.blobGets} GETs, ${fmt(cDocxy.upstream.bytes / MB, 0)} MB upstream`,
    cDocxy === undefined ? undefined : cDocxy.upstream.blobGets === 1,
  );
  check(
    `C: Docxy total time <= ${PARAMS.cClients} clients pulling direct`,
    `${fmt((cDocxy?.wallMs ?? NaN) / 1000, 2)} s vs ${fmt((cDirect?.wallMs ?? NaN) / 1000, 2)} s`,
    cDocxy === undefined || cDirect === undefined ? undefined : cDocxy.wallMs <= cDirect.wallMs,
  );
  const dRps = (n: ContestantName): number | undefined => find(runs, 'D', n)?.requests?.rps;
  const dDocxy = dRps('docxy');
  const dNginx = dRps('nginx');
  const dDist = dRps('distribution');
  check(
    'D: Docxy warm manifest req/s >= 0.5x nginx',
    `${fmt(dDocxy, 0)} vs ${fmt(dNginx, 0)} req/s = ${ratio(dDocxy, dNginx)}`,
    dDocxy === undefined || dNginx === undefined ? undefined : dDocxy >= 0.5 * dNginx,
  );
  check(
    'D: Docxy warm manifest req/s >= 50x distribution',
    `${fmt(dDocxy, 0)} vs ${fmt(dDist, 0)} req/s = ${ratio(dDocxy, dDist)}`,
    dDocxy === undefined || dDist === undefined ? undefined : dDocxy >= 50 * dDist,
  );
  const mem = suite.docxyMemory;
  check(
    'E: Docxy peak RSS over the whole run < 100 MiB',
    mem === undefined ? 'n/a' : `VmHWM ${mib(mem.vmHwm)}, highest 100 ms sample ${mib(mem.peakRss)}`,
    mem === undefined ? undefined : Math.max(mem.vmHwm, mem.peakRss) < 100 * MiB,
  );
  return out;
}

/** CPU seconds of one sha256 pass over `file` (read whole, hashed in 1 MiB steps). */
function sha256CpuSeconds(file: string): number {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(MiB);
    const hash = createHash('sha256');
    let hashing = 0;
    for (let pos = 0; ;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      pos += n;
      const c0 = process.cpuUsage();
      hash.update(n === buf.length ? buf : buf.subarray(0, n));
      const c = process.cpuUsage(c0);
      hashing += (c.user + c.system) / 1e6;
    }
    hash.digest();
    return hashing;
  } finally {
    closeSync(fd);
  }
}

/**
 * What the cold target leaves a cache on this machine: at 0.9x of the direct pull's wall time the
 * cores offer so many CPU seconds; the client and the hub spend what they spent pulling direct
 * (the same bytes to receive, hash and send); the rest is all a cache may use, and verifying the
 * digest alone costs the sha256 pass measured in this process.
 */
function coldBudget(suite: SuiteResult): string | undefined {
  const d = find(suite.runs, 'B', 'direct', 'cold');
  if (d === undefined || suite.sha256CpuS === undefined) return undefined;
  const wall = d.wallMs / 1000 / 0.9;
  const offered = cpus().length * wall;
  const used = d.cpu.client + d.cpu.hub;
  return (
    `cold budget at 0.9x direct: ${fmt(wall, 2)} s x ${cpus().length} cores = ${fmt(offered, 2)} CPU s; ` +
    `direct's client + hub used ${fmt(used, 2)}; left for a cache: ${fmt(offered - used, 2)} CPU s, ` +
    `of which its sha256 pass alone takes ${fmt(suite.sha256CpuS, 2)}`
  );
}

function printSuite(suite: SuiteResult, aLabel: string, bSize: number): void {
  const names = ALL_CONTESTANTS.filter((n) => suite.contestants.some((c) => c.name === n));
  const hubText =
    suite.hub === 'cdn'
      ? 'hub with CDN (blob GET -> 307 -> CDN stand-in, a Node static server)'
      : 'hub without CDN (the registry serves blobs itself)';
  const say = (s: string): void => {
    process.stdout.write(`${s}\n`);
  };
  say('');
  say(`==== Suite: ${hubText}${QUICK ? ' [--quick sizes]' : ''}`);
  say(
    `machine before the suite: ${fmt(suite.busyBefore * 100, 0)}% of a core busy, load average ` +
      suite.loadAverageBefore.map((l) => fmt(l, 2)).join(' '),
  );
  say(
    '"other CPU s" is machine-wide busy time not used by the contestant, the hub or this process; ' +
      '* marks a run where it exceeded a quarter of the wall time (other work ran alongside)',
  );
  for (const s of suite.skipped) say(`(skipped ${s.name}: ${s.reason})`);
  say('');
  say(`A. cold pull of ${aLabel}: manifest + config + layer, one client`);
  say(transferTable(suite, 'A', names));
  say('');
  say(`B. ${mib(bSize)} blob, cold (first pull) then warm (second pull), one client`);
  say(transferTable(suite, 'B', names));
  const budget = coldBudget(suite);
  if (budget !== undefined) say(budget);
  say('');
  say(
    `C. ${PARAMS.cClients} concurrent cold clients of a ${mib(PARAMS.cBlobSize)} blob (MB/s = all clients' bytes / wall time)`,
  );
  say(transferTable(suite, 'C', names));
  say('');
  say(
    `D. warm tag-manifest GETs (${TINY.repo}:${TINY.tag}), ${PARAMS.dSeconds} s on ${PARAMS.dConnections} connections`,
  );
  say(manifestTable(suite, names));
  say('');
  const mem = suite.docxyMemory;
  if (mem !== undefined) {
    say(
      `E. Docxy memory over the whole suite: after start RSS ${mib(mem.startRss)} (VmHWM ${mib(mem.startHwm)}); ` +
        `highest 100 ms sample ${mib(mem.peakRss)}; VmHWM at the end ${mib(mem.vmHwm)}`,
    );
  }
  const peaks = Object.entries(suite.memoryPeaks)
    .map(([n, v]) => `${n} ${mib(v)}`)
    .join(', ');
  if (peaks !== '') say(`   peak RSS of each server's process tree (100 ms samples): ${peaks}`);
  say('');
  say('Targets:');
  say(
    table(
      ['target', 'measured', 'result'],
      suite.targets.map((t) => [
        t.target,
        t.measured,
        t.pass === undefined ? 'n/a' : t.pass ? 'PASS' : 'FAIL',
      ]),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Suite

async function runSuite(
  mode: HubMode,
  global: AbortSignal,
  aImage: TestImage,
  bBlob: BlobFile,
  cBlob: BlobFile,
): Promise<SuiteResult> {
  log(`suite: hub ${mode === 'cdn' ? 'with CDN' : 'without CDN'}; waiting up to 2 min for an idle machine`);
  const busyBefore = await waitForQuiet(120_000);
  const loadAverageBefore = loadavg();
  log(
    `machine busy ${fmt(busyBefore * 100, 0)}% of a core, load average ${loadAverageBefore.map((l) => fmt(l, 2)).join(' ')}`,
  );
  const hub = await startFakeHub({ cdn: mode === 'cdn' });
  const contestants: Contestant[] = [];
  const samplers = new Map<ContestantName, RssSampler>();
  const suite: SuiteResult = {
    hub: mode,
    busyBefore,
    loadAverageBefore,
    contestants: [],
    skipped: [],
    runs: [],
    docxyMemory: undefined,
    memoryPeaks: {},
    targets: [],
  };
  try {
    log('seeding the hub');
    await pushImage(hub, aImage);
    await pushImage(hub, TINY);
    await pushBlobFile(hub, B_REPO, bBlob, stepSignal(global));
    await pushBlobFile(hub, C_REPO, cBlob, stepSignal(global));

    for (const name of ALL_CONTESTANTS) {
      if (!SELECTED.has(name)) continue;
      if (name === 'nginx' && !existsSync(NGINX_BINARY)) {
        suite.skipped.push({ name, reason: `${NGINX_BINARY} missing (apt-get install -y nginx-light)` });
        continue;
      }
      const c = await startContestant(name, hub);
      contestants.push(c);
      suite.contestants.push({ name: c.name, url: c.url, summary: c.summary, config: c.config });
      const pid = c.pid;
      if (pid !== undefined) {
        const sampler = new RssSampler(() => pid);
        sampler.start();
        samplers.set(name, sampler);
      }
      log(`started ${name} at ${c.url}${pid === undefined ? '' : ` (pid ${pid})`}`);
    }
    const docxySampler = samplers.get('docxy');
    const docxyStartRss = docxySampler?.sample() ?? 0;
    const docxyStartHwm = docxySampler?.rootHwm ?? 0;

    const ctx: SuiteContext = { hub, global, samplers, runs: suite.runs };
    const all = contestants;
    if (SCENARIOS.has('A')) await scenarioA(ctx, all, aImage);
    if (SCENARIOS.has('B')) await scenarioB(ctx, all, bBlob);
    if (SCENARIOS.has('C')) await scenarioC(ctx, all, cBlob);
    if (SCENARIOS.has('D')) await scenarioD(ctx, all);

    if (docxySampler !== undefined) {
      docxySampler.sample();
      suite.docxyMemory = {
        startRss: docxyStartRss,
        startHwm: docxyStartHwm,
        peakRss: docxySampler.peak,
        vmHwm: docxySampler.rootHwm,
      };
    }
    for (const [name, s] of samplers) suite.memoryPeaks[name] = s.peak;
    return suite;
  } finally {
    for (const s of samplers.values()) s.stop();
    for (const c of contestants.reverse()) {
      try {
        await c.stop();
      } catch (err) {
        log(`stopping ${c.name} failed: ${errorText(err)}`);
      }
    }
    await hub.stop();
  }
}

async function main(): Promise<void> {
  if (!existsSync(join(REPO_ROOT, 'dist', 'main.js'))) {
    throw new Error('dist/main.js is missing: run `npm run build` first (Docxy runs as node bin/docxy.js)');
  }
  // Ctrl-C (or SIGTERM) aborts the run, which unwinds through the finally blocks that stop every
  // process and remove every temp dir. A second one exits at once; the exit hooks still kill, by
  // PID, every process the run started.
  const interrupt = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (interrupt.signal.aborted) process.exit(130);
      log(`${sig}: stopping and cleaning up (again to exit at once)`);
      interrupt.abort(new Error(`interrupted by ${sig}`));
    });
  }
  const global = manyListeners(AbortSignal.any([interrupt.signal, AbortSignal.timeout(RUN_LIMIT_MS)]));
  const started = new Date();

  log(QUICK ? 'quick run' : 'full run');
  log('preparing blobs (generated once into the bench cache directory)');
  const aImage = QUICK
    ? await buildImage({ repo: 'library/bench-a', tag: '1', layerSize: PARAMS.aLayer })
    : await bigImage();
  const aLayerBytes = aImage.blobs.reduce((n, b) => Math.max(n, b.size), 0);
  const aLabel = `${aImage.repo}:${aImage.tag} (${mib(aLayerBytes)} layer)`;
  const bBlob = await deterministicBlobFile('docxy-bench-b', PARAMS.bBlobSize);
  const cBlob = await deterministicBlobFile('docxy-bench-c', PARAMS.cBlobSize);

  const hashCpuS = sha256CpuSeconds(bBlob.file);
  log(`sha256 of the ${mib(bBlob.size)} blob in this process: ${fmt(hashCpuS, 2)} CPU s`);
  const suites: SuiteResult[] = [];
  for (const mode of HUB_MODES) {
    const suite = await runSuite(mode, global, aImage, bBlob, cBlob);
    suite.sha256CpuS = hashCpuS;
    suite.targets = evaluateTargets(suite, aLabel);
    suites.push(suite);
    printSuite(suite, aLabel, bBlob.size);
  }

  const gitStatus = tryExec('git', ['-C', REPO_ROOT, 'status', '--porcelain', '--', 'src']);
  const report = {
    generatedAt: started.toISOString(),
    durationS: (Date.now() - started.getTime()) / 1000,
    argv: process.argv.slice(2),
    quick: QUICK,
    params: { ...PARAMS, aImage: aLabel, aLayerBytes, bBlob: bBlob.digest, cBlob: cBlob.digest },
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? '',
      memoryBytes: totalmem(),
      node: process.version,
    },
    versions: {
      docxyCommit: tryExec('git', ['-C', REPO_ROOT, 'rev-parse', 'HEAD']),
      docxySrcDirty: gitStatus !== '',
      nginx: existsSync(NGINX_BINARY) ? tryExec(NGINX_BINARY, ['-v']) : 'missing',
      distribution: tryExec('/usr/bin/docker-registry', ['--version']),
    },
    units: { mbps: 'MB/s, 1 MB = 10^6 bytes', rss: 'bytes', cpu: 'seconds' },
    suites,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const out = join(RESULTS_DIR, 'latest.json');
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nwrote ${out} (${fmt(report.durationS, 0)} s)\n`);
}

main().then(
  () => {
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
