/**
 * The metrics' cost: warm tag-manifest GETs against two Docxy processes that differ only in
 * `metrics.enabled`, side by side in one run. A benchmark script, not a test.
 *
 *   npm run build && node --import tsx bench/metrics-cost.ts               # 6 rounds of 5 s
 *   node --import tsx bench/metrics-cost.ts --rounds 4 --seconds 3         # a quick look
 *
 * Why rounds: on a small shared machine one 5 s trial's req/s moves by 10-20 % from one trial to
 * the next (other processes, CPU frequency, page cache), far more than the effect being measured.
 * Both servers run the whole time; the trials alternate between them in an ABBA order (round 1:
 * with, without; round 2: without, with; …), so a drift over the run hits both alike. The verdict
 * takes the median of the per-round ratios (with/without), plus Docxy's own CPU per request
 * (user + system from /proc), which is steadier than req/s because it does not depend on how
 * much CPU the load generator got.
 *
 * Load: wrk (Debian's `wrk`, C, two threads) when it is installed, so the client takes little CPU
 * from the two servers; otherwise an undici Pool. Every trial checks the answer first (one GET
 * whose body must hash to the manifest's digest) and counts non-2xx answers as errors.
 * Flags: --rounds N (6), --seconds S (5), --warmup S (5, untimed, per server), --connections C (32),
 * --log-level L (info: as shipped), --control (an A/A run: both servers with metrics on).
 * The result goes to bench/results/metrics-cost-latest.json (metrics-cost-control-latest.json).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { startFakeHub } from '../test/helpers/fake-hub.ts';
import { ACCEPT_ALL_MANIFESTS, TINY, seedImages } from '../test/helpers/images.ts';
import { type Contestant, REPO_ROOT, startDocxy } from './contestants.ts';
import { fmt, table, treeCpu } from './measure.ts';

const { values: flags } = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '32' },
    warmup: { type: 'string', default: '5' },
    'log-level': { type: 'string', default: 'info' },
    control: { type: 'boolean', default: false },
  },
});
const rounds = Number(flags.rounds);
const trialSeconds = Number(flags.seconds);
const warmupSeconds = Number(flags.warmup);
const connections = Number(flags.connections);
// --control: an A/A run, both servers with metrics on, so the spread of its ratio shows how
// much of a with/without difference this machine's noise alone produces.
const control = flags.control;
const WRK = '/usr/bin/wrk';
const useWrk = existsSync(WRK);

interface Trial {
  readonly round: number;
  readonly variant: 'metrics' | 'nometrics';
  readonly rps: number;
  readonly errors: number;
  /** Docxy's CPU (user + system) per request, microseconds. */
  readonly cpuUsPerRequest: number;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** One answer checked by hand before the load: right status, bytes that hash to the digest. */
async function check(url: string, path: string, headers: Record<string, string>): Promise<void> {
  const res = await fetch(url + path, { headers });
  const body = Buffer.from(await res.arrayBuffer());
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  if (res.status !== 200 || digest !== TINY.digest)
    throw new Error(`${url}${path}: HTTP ${res.status}, digest ${digest} (want ${TINY.digest})`);
}

/** Requests and non-2xx answers in `seconds` of load on `connections` keep-alive connections. */
async function load(
  url: string,
  path: string,
  headers: Record<string, string>,
  seconds = trialSeconds,
): Promise<{ requests: number; errors: number; secs: number }> {
  if (useWrk) {
    const args = ['-t2', `-c${connections}`, `-d${seconds}s`];
    for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
    const r = spawnSync(WRK, [...args, url + path], { encoding: 'utf8' });
    const out = r.stdout;
    const total = /(\d+) requests in ([\d.]+)(m?s)/.exec(out);
    if (r.status !== 0 || total === null) throw new Error(`wrk failed: ${r.stderr}${out}`);
    const secs = Number(total[2]) / (total[3] === 'ms' ? 1000 : 1);
    const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
    const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    const errors =
      Number(non2xx?.[1] ?? 0) + (socketErrors?.slice(1).reduce((a, b) => a + Number(b), 0) ?? 0);
    return { requests: Number(total[1]), errors, secs };
  }
  const pool = new Pool(url, { connections, pipelining: 1 });
  let requests = 0;
  let errors = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  try {
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (performance.now() < deadline) {
          const res = await pool.request({ path, method: 'GET', headers });
          await res.body.dump();
          if (res.statusCode === 200) requests++;
          else errors++;
        }
      }),
    );
  } finally {
    await pool.close();
  }
  return { requests, errors, secs: (performance.now() - start) / 1000 };
}

const hub = await startFakeHub({ cdn: false });
const servers: Contestant[] = [];
try {
  await seedImages(hub, ['tiny']);
  const logLevel = flags['log-level'] as 'info';
  const withMetrics = await startDocxy(hub, { log_level: logLevel });
  servers.push(withMetrics);
  const without = await startDocxy(hub, { log_level: logLevel, metrics: { enabled: control } });
  servers.push(without);
  const path = `/v2/${TINY.repo}/manifests/${TINY.tag}`;
  const variants = { metrics: withMetrics, nometrics: without } as const;
  const headers = new Map<Contestant, Record<string, string>>();
  for (const d of servers) {
    const tokenUrl = new URL('/auth/token', d.url);
    tokenUrl.searchParams.set('service', 'registry.docker.io');
    tokenUrl.searchParams.set('scope', `repository:${TINY.repo}:pull`);
    const token = ((await (await fetch(tokenUrl)).json()) as { token: string }).token;
    const h = { accept: ACCEPT_ALL_MANIFESTS, authorization: `Bearer ${token}` };
    headers.set(d, h);
    // Fill the cache (first GET) and check that the cached answer is right (second GET).
    await check(d.url, path, h);
    await check(d.url, path, h);
  }
  const metricsText = await (await fetch(`${withMetrics.url}/metrics`)).text();
  if (!metricsText.includes('docxy_http_requests_total'))
    throw new Error('the metrics server exports no request counter');
  if ((await fetch(`${without.url}/metrics`)).status !== (control ? 200 : 404))
    throw new Error(`the second server's /metrics does not match metrics.enabled ${String(control)}`);

  // Untimed warm-up of each server first: V8's JIT compiles the hot path in the first seconds of
  // load, which would otherwise make round 1 slower than the rest for whichever ran first.
  for (const d of servers) await load(d.url, path, headers.get(d)!, warmupSeconds);
  const load0 = loadavg()[0]!;
  const trials: Trial[] = [];
  for (let round = 1; round <= rounds; round++) {
    const order: (keyof typeof variants)[] =
      round % 2 === 1 ? ['metrics', 'nometrics'] : ['nometrics', 'metrics'];
    for (const variant of order) {
      const d = variants[variant];
      const cpu0 = treeCpu([d.pid!]);
      const r = await load(d.url, path, headers.get(d)!);
      const cpu = treeCpu([d.pid!]) - cpu0;
      const t: Trial = {
        round,
        variant,
        rps: r.requests / r.secs,
        errors: r.errors,
        cpuUsPerRequest: (cpu / r.requests) * 1e6,
      };
      trials.push(t);
      console.log(
        `round ${round} ${variant.padEnd(9)} ${fmt(t.rps, 0)} req/s, ${fmt(t.cpuUsPerRequest, 1)} CPU-us/request, ${t.errors} errors`,
      );
    }
  }
  const load1 = loadavg()[0]!;

  const of = (v: Trial['variant']): Trial[] => trials.filter((t) => t.variant === v);
  const ratios = Array.from({ length: rounds }, (_, i) => {
    const a = trials.find((t) => t.round === i + 1 && t.variant === 'metrics')!;
    const b = trials.find((t) => t.round === i + 1 && t.variant === 'nometrics')!;
    return { rps: a.rps / b.rps, cpu: a.cpuUsPerRequest / b.cpuUsPerRequest };
  });
  const summary = {
    rpsMetrics: median(of('metrics').map((t) => t.rps)),
    rpsNoMetrics: median(of('nometrics').map((t) => t.rps)),
    cpuMetrics: median(of('metrics').map((t) => t.cpuUsPerRequest)),
    cpuNoMetrics: median(of('nometrics').map((t) => t.cpuUsPerRequest)),
    medianRpsRatio: median(ratios.map((r) => r.rps)),
    medianCpuRatio: median(ratios.map((r) => r.cpu)),
    errors: trials.reduce((a, t) => a + t.errors, 0),
  };
  console.log('');
  console.log(
    table(
      ['variant', 'median req/s', 'median CPU-us/request', 'trials'],
      [
        ['metrics.enabled true', fmt(summary.rpsMetrics, 0), fmt(summary.cpuMetrics, 1), String(rounds)],
        ['metrics.enabled false', fmt(summary.rpsNoMetrics, 0), fmt(summary.cpuNoMetrics, 1), String(rounds)],
      ],
    ),
  );
  const rpsCost = (1 - summary.medianRpsRatio) * 100;
  const cpuCost = (summary.medianCpuRatio - 1) * 100;
  console.log(`per-round req/s ratios (with/without): ${ratios.map((r) => r.rps.toFixed(3)).join(', ')}`);
  console.log(
    `median req/s ratio ${summary.medianRpsRatio.toFixed(3)} (metrics cost ${fmt(rpsCost, 1)} %); median CPU/request ratio ${summary.medianCpuRatio.toFixed(3)} (${fmt(cpuCost, 1)} %)`,
  );
  console.log(
    `${control ? 'A/A control (both servers with metrics on, so this is noise): ' : ''}target: at most 5 % slower -> ${rpsCost <= 5 && summary.errors === 0 ? 'PASS' : 'FAIL'} (load average ${fmt(load0, 2)} at start, ${fmt(load1, 2)} at end; ${useWrk ? 'wrk' : 'undici'} load, ${connections} connections, ${trialSeconds} s trials)`,
  );
  const outDir = join(REPO_ROOT, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(
    join(outDir, control ? 'metrics-cost-control-latest.json' : 'metrics-cost-latest.json'),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        cores: cpus().length,
        loadAverage: { start: load0, end: load1 },
        load: useWrk ? 'wrk -t2' : 'undici Pool',
        connections,
        seconds: trialSeconds,
        warmupSeconds,
        rounds,
        control,
        trials,
        summary,
      },
      null,
      2,
    )}\n`,
  );
} finally {
  for (const s of servers) await s.stop();
  await hub.stop();
}
