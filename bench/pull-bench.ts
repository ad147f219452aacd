/**
 * Pull benchmark: Docxy against a direct pull, CNCF Distribution's proxy mode and an nginx
 * proxy_cache mirror, all in front of the same fake Docker Hub. A benchmark, not a test: it prints
 * tables, checks the targets from the issue, and writes bench/results/latest.json.
 *
 *   npm run build && node --import tsx bench/pull-bench.ts [--quick] [--hub plain|cdn|both]
 *       [--only A,B,C,D,E] [--contestants direct,docxy,distribution,nginx] [--no-prefault]
 *       [--link-rates 1000,200] [--link-rtt-ms 0] [--link-size MiB] [--link-clients N]
 *       [--link-clients-size MiB]
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
 *   E  the hub behind a capped link (tc in a network namespace; needs root), per rate: a cold
 *      1 GiB blob, and 50 concurrent cold clients of a 256 MiB blob vs ONE direct pull
 *   M  Docxy's peak RSS over the whole run
 *
 * Each scenario is its own file in bench/pull/ (scenario-a.ts … scenario-e.ts) on one shared runner
 * (runner.ts: measure() and the result types); report.ts prints the tables and checks the targets.
 *
 * `--hub plain` (default) runs the hub without its CDN stand-in (the registry serves blobs
 * itself); `--hub cdn` redirects blob GETs to the CDN like Docker Hub; `both` runs the suite twice.
 */
import { cpus, loadavg, release, totalmem, type as osType, version as osVersion } from 'node:os';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startFakeHub } from '../test/helpers/fake-hub.ts';
import { bigImage, buildImage, pushImage, type TestImage } from '../test/helpers/images.ts';
import { deterministicBlobFile, pushBlobFile, type BlobFile } from './blob-file.ts';
import {
  ALL_CONTESTANTS,
  ALL_PULLERS,
  CONTESTANTS,
  REPO_ROOT,
  startContestant,
  type Contestant,
  type ContestantName,
} from './contestants.ts';
import { fmt, MiB, mib, RssSampler, waitForQuiet } from './measure.ts';
import { evaluateTargets, printSuite, sha256CpuSeconds } from './pull/report.ts';
import {
  errorText,
  log,
  manyListeners,
  stepSignal,
  tryExec,
  type BenchParams,
  type BenchReport,
  type HubMode,
  type SuiteContext,
  type SuiteResult,
} from './pull/runner.ts';
import { scenarioA } from './pull/scenario-a.ts';
import { B_REPO, scenarioB } from './pull/scenario-b.ts';
import { C_REPO, scenarioC } from './pull/scenario-c.ts';
import { D_REPO, scenarioD } from './pull/scenario-d.ts';
import { NGINX_BINARY, startNginxStatic } from './nginx.ts';
import { E_CLIENTS_REPO, E_REPO, scenarioE } from './pull/scenario-e.ts';
import { linkUnavailable } from './link/link.ts';

// Parameters

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    hub: { type: 'string', default: 'plain' },
    // For focused work on one path: e.g. --only B --contestants direct,docxy (the targets that need
    // a skipped scenario or contestant are reported as n/a).
    only: { type: 'string', default: 'A,B,C,D,E' },
    contestants: { type: 'string', default: CONTESTANTS.join(',') },
    // See prefaultPageCache in measure.ts.
    'no-prefault': { type: 'boolean', default: false },
    // Scenario E: the link's rates (Mbit/s), added round-trip time, and sizes (MiB) and client count.
    'link-rates': { type: 'string', default: '1000,200' },
    'link-rtt-ms': { type: 'string', default: '0' },
    'link-size': { type: 'string' },
    'link-clients': { type: 'string' },
    'link-clients-size': { type: 'string' },
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

const SCENARIOS = new Set(args.only.split(',').map((x) => x.trim().toUpperCase()));
for (const sc of SCENARIOS)
  if (!['A', 'B', 'C', 'D', 'E'].includes(sc)) throw new Error(`--only takes A, B, C, D, E (got ${sc})`);
const SELECTED = new Set(args.contestants.split(',').map((x) => x.trim()));
for (const name of SELECTED)
  if (!(ALL_CONTESTANTS as readonly string[]).includes(name))
    throw new Error(`--contestants takes ${ALL_CONTESTANTS.join(', ')} (got ${name})`);

/** A positive number from a flag, or `fallback` when the flag is absent. */
function positive(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${flag} must be a positive number (got ${value})`);
  return n;
}
const LINK = {
  eRatesMbit: args['link-rates'].split(',').map((r) => positive('link-rates', r.trim(), 0)),
  eRttMs: args['link-rtt-ms'] === '0' ? 0 : positive('link-rtt-ms', args['link-rtt-ms'], 0),
  eBlobSize: positive('link-size', args['link-size'], QUICK ? 64 : 1024) * MiB,
  eClients: Math.round(positive('link-clients', args['link-clients'], QUICK ? 10 : 50)),
  eClientsBlobSize: positive('link-clients-size', args['link-clients-size'], QUICK ? 16 : 256) * MiB,
};

const PARAMS: BenchParams = QUICK
  ? {
      ...LINK,
      quick: true,
      prefault: !args['no-prefault'],
      bBlobSize: 64 * MiB,
      cClients: 10,
      cBlobSize: 16 * MiB,
      dSeconds: 2,
      dConnections: 32,
      dManifests: 20,
      aLayer: 32 * MiB,
    }
  : {
      ...LINK,
      quick: false,
      prefault: !args['no-prefault'],
      bBlobSize: 1024 * MiB,
      cClients: 50,
      cBlobSize: 64 * MiB,
      dSeconds: 10,
      dConnections: 64,
      dManifests: 200,
      aLayer: 0,
    };
/** Everything (setup included) must end within this; every request also has its own limit. */
const RUN_LIMIT_MS = QUICK ? 15 * 60_000 : 60 * 60_000;

const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');

async function runSuite(
  mode: HubMode,
  global: AbortSignal,
  aImage: TestImage,
  bBlob: BlobFile,
  cBlob: BlobFile,
  eBlobs: { one: BlobFile; clients: BlobFile } | undefined,
  dImages: readonly TestImage[],
): Promise<SuiteResult> {
  log(`suite: hub ${mode === 'cdn' ? 'with CDN' : 'without CDN'}; waiting up to 2 min for an idle machine`);
  const busyBefore = await waitForQuiet(120_000);
  const loadAverageBefore = loadavg();
  log(
    `machine busy ${fmt(busyBefore * 100, 0)}% of a core, load average ${loadAverageBefore.map((l) => fmt(l, 2)).join(' ')}`,
  );
  const hub = await startFakeHub({ cdn: mode === 'cdn' });
  const contestants: Contestant[] = [];
  const references: Contestant[] = [];
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
    for (const image of dImages) await pushImage(hub, image);
    await pushBlobFile(hub, B_REPO, bBlob, stepSignal(global));
    await pushBlobFile(hub, C_REPO, cBlob, stepSignal(global));
    if (eBlobs !== undefined) {
      await pushBlobFile(hub, E_REPO, eBlobs.one, stepSignal(global));
      await pushBlobFile(hub, E_CLIENTS_REPO, eBlobs.clients, stepSignal(global));
    }

    for (const name of ALL_CONTESTANTS) {
      if (!SELECTED.has(name)) continue;
      if (name.startsWith('nginx') && !existsSync(NGINX_BINARY)) {
        suite.skipped.push({ name, reason: `${NGINX_BINARY} missing (apt-get install -y nginx-light)` });
        continue;
      }
      // The static reference serves B's file and takes part in B's warm phase only.
      if (name === 'nginx-static' && !SCENARIOS.has('B')) continue;
      const c =
        name === 'nginx-static' ? await startNginxStatic(bBlob, B_REPO) : await startContestant(name, hub);
      (name === 'nginx-static' ? references : contestants).push(c);
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

    const ctx: SuiteContext = { hub, params: PARAMS, global, samplers, runs: suite.runs };
    const all = contestants;
    if (SCENARIOS.has('A')) await scenarioA(ctx, all, aImage);
    if (SCENARIOS.has('B')) await scenarioB(ctx, all, bBlob, references);
    if (SCENARIOS.has('C')) await scenarioC(ctx, all, cBlob);
    if (SCENARIOS.has('D')) await scenarioD(ctx, all, dImages);
    if (eBlobs !== undefined) {
      // The CDN stand-in would take blob bytes around the link: E runs on the plain hub only.
      suite.linkSkipped = mode === 'cdn' ? 'runs on the hub without CDN only' : linkUnavailable();
      if (suite.linkSkipped === undefined) {
        const names = ALL_PULLERS.filter((n) => contestants.some((c) => c.name === n));
        suite.link = await scenarioE(ctx, names, eBlobs, startContestant);
      } else {
        log(`E skipped: ${suite.linkSkipped}`);
      }
    }

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
    for (const c of [...references, ...contestants.reverse()]) {
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
  const loadAverageStart = loadavg();

  log(QUICK ? 'quick run' : 'full run');
  log('preparing blobs (generated once into the bench cache directory)');
  const aImage = QUICK
    ? await buildImage({ repo: 'library/bench-a', tag: '1', layerSize: PARAMS.aLayer })
    : await bigImage();
  const aLayerBytes = aImage.blobs.reduce((n, b) => Math.max(n, b.size), 0);
  const aLabel = `${aImage.repo}:${aImage.tag} (${mib(aLayerBytes)} layer)`;
  const bBlob = await deterministicBlobFile('docxy-bench-b', PARAMS.bBlobSize);
  const cBlob = await deterministicBlobFile('docxy-bench-c', PARAMS.cBlobSize);
  const eBlobs = SCENARIOS.has('E')
    ? {
        one: await deterministicBlobFile('docxy-bench-e', PARAMS.eBlobSize),
        clients: await deterministicBlobFile('docxy-bench-e-clients', PARAMS.eClientsBlobSize),
      }
    : undefined;
  // D: that many small single-layer images, tags 1..N of one repository (different manifests).
  const dImages: TestImage[] = [];
  if (SCENARIOS.has('D'))
    for (let i = 1; i <= PARAMS.dManifests; i++)
      dImages.push(await buildImage({ repo: D_REPO, tag: String(i) }));

  const hashCpuS = sha256CpuSeconds(bBlob.file);
  log(`sha256 of the ${mib(bBlob.size)} blob in this process: ${fmt(hashCpuS, 2)} CPU s`);
  const suites: SuiteResult[] = [];
  for (const mode of HUB_MODES) {
    const suite = await runSuite(mode, global, aImage, bBlob, cBlob, eBlobs, dImages);
    suite.sha256CpuS = hashCpuS;
    suite.targets = evaluateTargets(suite, PARAMS);
    suites.push(suite);
    printSuite(suite, aLabel, bBlob.size, PARAMS);
  }

  const gitStatus = tryExec('git', ['-C', REPO_ROOT, 'status', '--porcelain', '--', 'src']);
  const report: BenchReport = {
    generatedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    durationS: (Date.now() - started.getTime()) / 1000,
    argv: process.argv.slice(2),
    quick: QUICK,
    scenarios: [...SCENARIOS],
    params: {
      ...PARAMS,
      aImage: aLabel,
      aLayerBytes,
      bBlob: bBlob.digest,
      cBlob: cBlob.digest,
      ...(eBlobs === undefined ? {} : { eBlob: eBlobs.one.digest, eClientsBlob: eBlobs.clients.digest }),
    },
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? '',
      memoryBytes: totalmem(),
      kernel: `${osType()} ${release()} ${osVersion()}`,
      node: process.version,
      loadAverageStart,
      loadAverageEnd: loadavg(),
    },
    versions: {
      docxyCommit: tryExec('git', ['-C', REPO_ROOT, 'rev-parse', 'HEAD']),
      docxySrcDirty: gitStatus !== '',
      // `nginx -v` prints to stderr.
      nginx: existsSync(NGINX_BINARY) ? tryExec('sh', ['-c', `${NGINX_BINARY} -v 2>&1`]) : 'missing',
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
