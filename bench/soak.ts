/**
 * Soak: many keep-alive connections for a long time against one Docxy, to show that memory stays
 * flat and nothing fails. A benchmark script, not a test (it takes minutes and its figures depend
 * on the machine).
 *
 *   npm run build && node --import tsx bench/soak.ts                   # 1000 connections, 10 min
 *   node --import tsx bench/soak.ts --connections 500 --seconds 30     # a quick look
 *
 * Flags: --connections N (1000), --seconds S (600), --big N (connections looping on the 64 MiB
 * blob, 4), --cold-percent P (5), --heap-target SIZE, --semi-space SIZE, --malloc-arenas N (Docxy's
 * memory.heap_target, semi_space, malloc_arenas; default: its own defaults), --warmup S (60: the
 * RSS "growth" is measured after it).
 *
 * The fake hub (Distribution 2.8 + token server, blobs served by the registry) holds the test
 * images (every manifest media type, a multi-arch index), a 64 MiB blob and a pool of 512 small
 * "cold" blobs. Each small connection loops over: manifests by tag and by digest with the
 * Accept headers docker sends, small blobs, and with --cold-percent probability a cold blob,
 * which the script first deletes from Docxy's storage (through the project's own filesystem
 * driver, as `docxy cache rm` does), so that request really goes upstream and fills the cache.
 * Every body is checked: length, and sha256 against the digest. Every answer must be 200.
 * Docxy's RSS is sampled every 100 ms; the result goes to bench/results/soak-latest.json.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from 'undici';
import { createFilesystemDriver } from '../src/storage/filesystem/filesystem-driver.ts';
import { paths } from '../src/storage/paths.ts';
import { startFakeHub } from '../test/helpers/fake-hub.ts';
import { ACCEPT_ALL_MANIFESTS, DEFAULT_IMAGES, pushBlob, seedImages } from '../test/helpers/images.ts';
import { deterministicBlobFile, pushBlobFile } from './blob-file.ts';
import { REPO_ROOT, startDocxy } from './contestants.ts';
import { RssSampler, treeCpu, mib } from './measure.ts';

const { values: flags } = parseArgs({
  options: {
    connections: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '600' },
    big: { type: 'string', default: '4' },
    'cold-percent': { type: 'string', default: '5' },
    'heap-target': { type: 'string' },
    'semi-space': { type: 'string' },
    'malloc-arenas': { type: 'string' },
    warmup: { type: 'string', default: '60' },
  },
});
const connections = Number(flags.connections);
const seconds = Number(flags.seconds);
const bigConnections = Number(flags.big);
const coldShare = Number(flags['cold-percent']) / 100;
const warmupMs = Math.min(Number(flags.warmup), seconds / 2) * 1000;

interface Target {
  readonly path: string;
  readonly repo: string;
  readonly digest: string;
  readonly size: number;
  readonly manifest: boolean;
}

/** Latency histogram in 0.1 ms buckets up to 60 s: fixed memory, whatever the request count. */
class Histogram {
  readonly #buckets = new Uint32Array(600_001);
  count = 0;
  record(ms: number): void {
    this.#buckets[Math.min(600_000, Math.round(ms * 10))]!++;
    this.count++;
  }
  quantile(q: number): number {
    let seen = 0;
    const want = q * this.count;
    for (let i = 0; i < this.#buckets.length; i++) {
      seen += this.#buckets[i]!;
      if (seen >= want && seen > 0) return i / 10;
    }
    return Number.NaN;
  }
}

const hub = await startFakeHub({ cdn: false });
let docxy: Awaited<ReturnType<typeof startDocxy>> | undefined;
try {
  const images = await seedImages(hub, DEFAULT_IMAGES);
  const big = await deterministicBlobFile('soak-64m', 64 * 1024 * 1024);
  await pushBlobFile(hub, 'library/big64', big, AbortSignal.timeout(120_000));
  const cold: Target[] = [];
  for (let i = 0; i < 512; i++) {
    const bytes = randomBytes(4096 + (i % 16) * 1024);
    const ref = await pushBlob(hub, 'library/cold', bytes);
    cold.push({
      path: `/v2/library/cold/blobs/${ref.digest}`,
      repo: 'library/cold',
      ...ref,
      manifest: false,
    });
  }
  const warm: Target[] = [];
  for (const img of Object.values(images)) {
    const m = { repo: img.repo, digest: img.digest, size: img.size, manifest: true };
    warm.push({ ...m, path: `/v2/${img.repo}/manifests/${img.tag}` });
    warm.push({ ...m, path: `/v2/${img.repo}/manifests/${img.digest}` });
    for (const c of img.children ?? [])
      warm.push({
        repo: img.repo,
        digest: c.digest,
        size: c.size,
        manifest: true,
        path: `/v2/${img.repo}/manifests/${c.digest}`,
      });
    for (const b of [...img.layers, ...(img.children ?? []).flatMap((c) => c.layers)])
      warm.push({
        repo: img.repo,
        digest: b.digest,
        size: b.size,
        manifest: false,
        path: `/v2/${img.repo}/blobs/${b.digest}`,
      });
  }
  const bigTarget: Target = {
    path: `/v2/library/big64/blobs/${big.digest}`,
    repo: 'library/big64',
    digest: big.digest,
    size: big.size,
    manifest: false,
  };

  const heapTarget = flags['heap-target'];
  const memory = {
    ...(heapTarget === undefined ? {} : { heap_target: heapTarget }),
    ...(flags['semi-space'] === undefined ? {} : { semi_space: flags['semi-space'] }),
    ...(flags['malloc-arenas'] === undefined ? {} : { malloc_arenas: Number(flags['malloc-arenas']) }),
  };
  const d = await startDocxy(hub, { log_level: 'warn', memory });
  docxy = d;
  const dataDir = /data: (.*)/.exec(d.config ?? '')?.[1] ?? '';
  const storage = createFilesystemDriver(dataDir);
  const pid = d.pid ?? 0;

  // One token for every repository, as a client would get from Docxy's realm.
  const repos = [...new Set([...warm, ...cold, bigTarget].map((t) => t.repo))];
  const tokenUrl = new URL('/auth/token', d.url);
  tokenUrl.searchParams.set('service', 'registry.docker.io');
  for (const r of repos) tokenUrl.searchParams.append('scope', `repository:${r}:pull`);
  const token = ((await (await fetch(tokenUrl)).json()) as { token: string }).token;
  const accept = ACCEPT_ALL_MANIFESTS;

  const latency = new Histogram();
  const counts = { requests: 0, bytes: 0, cold: 0, big: 0 };
  const failures = new Map<string, number>();
  const fail = (what: string): void => {
    failures.set(what, (failures.get(what) ?? 0) + 1);
  };
  let coldNext = 0;

  async function once(client: Client, t: Target): Promise<void> {
    const t0 = performance.now();
    try {
      const res = await client.request({
        method: 'GET',
        path: t.path,
        headers: { authorization: `Bearer ${token}`, ...(t.manifest ? { accept } : {}) },
      });
      const hash = createHash('sha256');
      let n = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        hash.update(chunk);
        n += chunk.length;
      }
      if (res.statusCode !== 200) fail(`HTTP ${res.statusCode} ${t.manifest ? 'manifest' : 'blob'}`);
      else if (n !== t.size || `sha256:${hash.digest('hex')}` !== t.digest) fail('wrong body');
      counts.bytes += n;
    } catch (err) {
      fail(`error ${(err as Error).name}: ${(err as Error).message.slice(0, 80)}`);
    }
    counts.requests++;
    if (t.manifest) latency.record(performance.now() - t0);
  }

  const warmup = new Client(d.url);
  for (const t of [...warm, bigTarget]) await once(warmup, t);
  await warmup.close();
  failures.clear();

  const sampler = new RssSampler(() => pid);
  const cpu0 = treeCpu([pid]);
  const start = performance.now();
  const end = start + seconds * 1000;
  sampler.start();
  const rssAtWarmup = new Promise<number>((resolve) =>
    setTimeout(() => {
      resolve(sampler.sample());
    }, warmupMs),
  );
  const loops = Array.from({ length: connections }, async (_, i) => {
    const client = new Client(d.url, {
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
      keepAliveTimeout: 120_000,
    });
    const isBig = i < bigConnections;
    let k = i;
    while (performance.now() < end) {
      if (isBig) {
        counts.big++;
        await once(client, bigTarget);
        continue;
      }
      if (Math.random() < coldShare) {
        const t = cold[coldNext++ % cold.length]!;
        await storage.delete(paths.blob(t.digest));
        counts.cold++;
        await once(client, t);
      } else await once(client, warm[k++ % warm.length]!);
    }
    await client.close();
  });
  await Promise.all(loops);
  const wallS = (performance.now() - start) / 1000;
  sampler.stop();
  const cpu = treeCpu([pid]) - cpu0;
  const afterWarmup = await rssAtWarmup;
  const peakAfterWarmup = sampler.maxBetween(start + warmupMs, performance.now());
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    connections,
    bigConnections,
    coldPercent: coldShare * 100,
    seconds: wallS,
    requests: counts.requests,
    requestsPerSecond: counts.requests / wallS,
    coldRequests: counts.cold,
    bigRequests: counts.big,
    bytes: counts.bytes,
    failures: Object.fromEntries(failures),
    manifestLatencyMs: { p50: latency.quantile(0.5), p99: latency.quantile(0.99), max: latency.quantile(1) },
    docxyCpuSeconds: cpu,
    rssMiB: {
      peak: sampler.peak / 2 ** 20,
      atWarmupEnd: afterWarmup / 2 ** 20,
      peakAfterWarmup: peakAfterWarmup / 2 ** 20,
      growthAfterWarmup: (peakAfterWarmup - afterWarmup) / 2 ** 20,
      hwm: sampler.rootHwm / 2 ** 20,
    },
    heapTarget: heapTarget ?? 'default',
    memory: { ...memory, cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(1, -1) },
  };
  const ok = failures.size === 0 && result.rssMiB.growthAfterWarmup < 20 && result.rssMiB.peak < 200;
  console.log(JSON.stringify(result, null, 2));
  console.log(
    `${counts.requests} requests in ${wallS.toFixed(0)} s (${result.requestsPerSecond.toFixed(0)}/s), ` +
      `${failures.size === 0 ? 'no failures' : `FAILURES ${JSON.stringify(result.failures)}`}; ` +
      `RSS peak ${mib(sampler.peak)}, growth after warm-up ${result.rssMiB.growthAfterWarmup.toFixed(1)} MiB; ` +
      `manifest p99 ${result.manifestLatencyMs.p99} ms; targets ${ok ? 'MET' : 'NOT MET'}`,
  );
  mkdirSync(join(REPO_ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(REPO_ROOT, 'bench', 'results', 'soak-latest.json'), JSON.stringify(result, null, 2));
} finally {
  await docxy?.stop();
  await hub.stop();
}
