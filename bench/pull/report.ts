/**
 * The pull benchmark's printed report: one table per scenario with ratios between contestants,
 * the cold-pull CPU budget, and the targets checked against the runs.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { cpus } from 'node:os';
import { ALL_CONTESTANTS, type ContestantName } from '../contestants.ts';
import { fmt, MB, MiB, mib, table, type UpstreamStats } from '../measure.ts';
import { cpuPerGib } from '../results-tables.ts';
import { evaluateLinkTargets, printLinkSuite } from './report-e.ts';
import type { BenchParams, RunResult, SuiteResult, TargetResult } from './runner.ts';

const SHORT: Record<ContestantName, string> = {
  direct: 'direct',
  docxy: 'docxy',
  'docxy-nometrics': 'docxy-nm',
  distribution: 'distrib',
  nginx: 'nginx',
  'nginx-static': 'ngx-static',
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
  all: readonly ContestantName[],
): string {
  const names = all.filter((n) => suite.runs.some((r) => r.scenario === scenario && r.contestant === n));
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

function manifestTable(suite: SuiteResult, all: readonly ContestantName[]): string {
  const names = all.filter((n) => suite.runs.some((r) => r.scenario === 'D' && r.contestant === n));
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
    'srv CPU-ms/1k',
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
      fmt(cpuMsPer1k(r), 1),
    ]);
  }
  return table(headers, rows);
}

/** Issue 14's targets 1, 3 and 4 (2 is scenario E's, in report-e.ts; 5 is scenario C). */
export const COLD_CPU_PER_GIB_MAX = 1.5;
export const MANIFEST_CPU_MS_PER_1K_MAX = 40;
export const MANIFEST_VS_DISTRIBUTION_MIN = 50;
export const RSS_MAX = 150 * MiB;

/** Server CPU-ms per 1000 answered requests of a D run. */
export function cpuMsPer1k(r: RunResult | undefined): number | undefined {
  if (r?.requests === undefined || r.cpu.server === undefined || r.requests.count === 0) return undefined;
  return (r.cpu.server * 1e6) / r.requests.count;
}

export function evaluateTargets(suite: SuiteResult, params: BenchParams): TargetResult[] {
  const runs = suite.runs;
  const out: TargetResult[] = [];
  const check = (target: string, measured: string, pass: boolean | undefined): void => {
    out.push({ target, measured, pass });
  };
  // 1. Cold 1 GiB: at least Distribution's MB/s, at most 1.5 CPU-s per GiB of Docxy's process.
  const bCold = find(runs, 'B', 'docxy', 'cold');
  const bDistCold = find(runs, 'B', 'distribution', 'cold');
  check(
    `1: B cold ${mib(params.bBlobSize)}: Docxy MB/s >= Distribution's`,
    `${fmt(bCold?.mbps, 0)} vs ${fmt(bDistCold?.mbps, 0)} MB/s = ${ratio(bCold?.mbps, bDistCold?.mbps)}`,
    bCold === undefined || bDistCold === undefined ? undefined : bCold.mbps >= bDistCold.mbps,
  );
  const coldCpu = bCold === undefined ? undefined : cpuPerGib(bCold);
  check(
    `1: B cold: Docxy <= ${COLD_CPU_PER_GIB_MAX} CPU-s per GiB`,
    `${fmt(coldCpu, 2)} CPU-s/GiB (Distribution ${fmt(bDistCold === undefined ? undefined : cpuPerGib(bDistCold), 2)})`,
    coldCpu === undefined ? undefined : coldCpu <= COLD_CPU_PER_GIB_MAX,
  );
  // 3. Warm: 1 GiB at least nginx's static sendfile; manifests 50x Distribution at <= 40 CPU-ms/1k.
  const bWarm = find(runs, 'B', 'docxy', 'warm');
  const bStatic = find(runs, 'B', 'nginx-static', 'warm');
  check(
    '3: B warm: Docxy >= 1.0x nginx static sendfile',
    `${fmt(bWarm?.mbps, 0)} vs ${fmt(bStatic?.mbps, 0)} MB/s = ${ratio(bWarm?.mbps, bStatic?.mbps)}`,
    bWarm === undefined || bStatic === undefined ? undefined : bWarm.mbps >= bStatic.mbps,
  );
  const dDocxy = find(runs, 'D', 'docxy');
  const dDist = find(runs, 'D', 'distribution');
  const dRps = dDocxy?.requests?.rps;
  const distRps = dDist?.requests?.rps;
  check(
    `3: D: Docxy warm manifest req/s >= ${MANIFEST_VS_DISTRIBUTION_MIN}x Distribution`,
    `${fmt(dRps, 0)} vs ${fmt(distRps, 0)} req/s = ${ratio(dRps, distRps)}; Docxy p99 ${fmt(dDocxy?.requests?.p99Ms, 2)} ms`,
    dRps === undefined || distRps === undefined ? undefined : dRps >= MANIFEST_VS_DISTRIBUTION_MIN * distRps,
  );
  const perK = cpuMsPer1k(dDocxy);
  check(
    `3: D: Docxy <= ${MANIFEST_CPU_MS_PER_1K_MAX} CPU-ms per 1k manifest requests`,
    `${fmt(perK, 1)} CPU-ms (nginx ${fmt(cpuMsPer1k(find(runs, 'D', 'nginx')), 1)}, Distribution ${fmt(cpuMsPer1k(dDist), 1)})`,
    perK === undefined ? undefined : perK <= MANIFEST_CPU_MS_PER_1K_MAX,
  );
  // 4. Flat memory: Docxy's peak RSS <= 150 MiB in every scenario.
  const docxyRuns = runs.filter((r) => r.contestant === 'docxy' && r.ok && r.rss !== undefined);
  const worst = docxyRuns.reduce<RunResult | undefined>(
    (w, r) => (w === undefined || r.rss!.peak > w.rss!.peak ? r : w),
    undefined,
  );
  const mem = suite.docxyMemory;
  const peak = Math.max(worst?.rss?.peak ?? 0, mem?.peakRss ?? 0);
  check(
    `4: Docxy peak RSS <= ${mib(RSS_MAX)} in every scenario (100 ms samples of its process tree)`,
    worst === undefined
      ? 'n/a'
      : `${mib(peak)} (highest run: ${worst.scenario}${worst.phase === '' ? '' : ` ${worst.phase}`} ${mib(worst.rss!.peak)}; VmHWM of the run ${mib(mem?.vmHwm ?? 0)})`,
    worst === undefined ? undefined : peak <= RSS_MAX,
  );
  // 5. Keep what is won: one upstream GET for N concurrent cold clients, wall <= N direct pulls.
  const cDocxy = find(runs, 'C', 'docxy');
  const cDirect = find(runs, 'C', 'direct');
  check(
    `5: C: Docxy ${params.cClients} cold clients -> 1 upstream blob GET`,
    cDocxy === undefined
      ? 'n/a'
      : `${cDocxy.upstream.blobGets} GETs, ${fmt(cDocxy.upstream.bytes / MB, 0)} MB upstream`,
    cDocxy === undefined ? undefined : cDocxy.upstream.blobGets === 1,
  );
  check(
    `5: C: Docxy wall <= ${params.cClients} clients pulling direct`,
    `${fmt((cDocxy?.wallMs ?? NaN) / 1000, 2)} s vs ${fmt((cDirect?.wallMs ?? NaN) / 1000, 2)} s`,
    cDocxy === undefined || cDirect === undefined ? undefined : cDocxy.wallMs <= cDirect.wallMs,
  );
  out.push(...evaluateLinkTargets(suite, params));
  return out;
}

/** CPU seconds of one sha256 pass over `file` (read whole, hashed in 1 MiB steps). */
export function sha256CpuSeconds(file: string): number {
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

export function printSuite(suite: SuiteResult, aLabel: string, bSize: number, params: BenchParams): void {
  const names = ALL_CONTESTANTS.filter((n) => suite.contestants.some((c) => c.name === n));
  const hubText =
    suite.hub === 'cdn'
      ? 'hub with CDN (blob GET -> 307 -> CDN stand-in, a Node static server)'
      : 'hub without CDN (the registry serves blobs itself)';
  const say = (s: string): void => {
    process.stdout.write(`${s}\n`);
  };
  say('');
  say(`==== Suite: ${hubText}${params.quick ? ' [--quick sizes]' : ''}`);
  say(
    `machine before the suite: ${fmt(suite.busyBefore * 100, 0)}% of a core busy, load average ` +
      suite.loadAverageBefore.map((l) => fmt(l, 2)).join(' '),
  );
  say(
    '"other CPU s" is machine-wide busy time not used by the contestant, the hub or this process; ' +
      '* marks a run where it exceeded a quarter of the wall time (other work ran alongside)',
  );
  for (const s of suite.skipped) say(`(skipped ${s.name}: ${s.reason})`);
  // Only the scenarios that ran (--only).
  const ran = (sc: RunResult['scenario']): boolean => suite.runs.some((r) => r.scenario === sc);
  say('');
  if (ran('A')) {
    say(`A. cold pull of ${aLabel}: manifest + config + layer, one client`);
    say(transferTable(suite, 'A', names));
    say('');
  }
  if (ran('B')) {
    say(`B. ${mib(bSize)} blob, cold (first pull) then warm (second pull), one client`);
    say(transferTable(suite, 'B', names));
    const budget = coldBudget(suite);
    if (budget !== undefined) say(budget);
    say('');
  }
  if (ran('C')) {
    say(
      `C. ${params.cClients} concurrent cold clients of a ${mib(params.cBlobSize)} blob (MB/s = all clients' bytes / wall time)`,
    );
    say(transferTable(suite, 'C', names));
    say('');
  }
  if (ran('D')) {
    say(
      `D. warm GETs of ${params.dManifests} different tag manifests, ${params.dSeconds} s on ${params.dConnections} connections ` +
        `(load: ${find(suite.runs, 'D', 'docxy')?.requests?.load ?? '?'})`,
    );
    say(manifestTable(suite, names));
    say('');
  }
  printLinkSuite(suite, params, say);
  const mem = suite.docxyMemory;
  if (mem !== undefined) {
    say(
      `M. Docxy memory over the whole suite: after start RSS ${mib(mem.startRss)} (VmHWM ${mib(mem.startHwm)}); ` +
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
