/**
 * The fleet benchmark (issue 12): N cold clients of one blob through a round-robin nginx in front of
 * three replicas on one S3 bucket (a real RADOS Gateway), against ONE direct pull of the same blob
 * from the upstream. A benchmark, not a test: it prints a table and writes
 * bench/results/fleet-latest.json.
 *
 *   node --import tsx bench/fleet-bench.ts [--clients 90] [--size-mib 256] [--only docxy,distribution]
 *
 * Contestants, each a fresh bucket and a cold cache:
 *   docxy         3 Docxy processes (test/helpers/fleet.ts: from source through tsx, `cluster:` on,
 *                 one Redis) — the fleet shares one upstream download
 *   distribution  3 Debian docker-registry 2.8 processes in proxy mode with its `s3` driver on the
 *                 same gateway (redirects off, so the bytes go through them like Docxy's)
 * Reported per contestant: wall time of all clients (and as a multiple of the one direct pull),
 * upstream blob GETs and body bytes (the fake hub's registry log), each replica's peak RSS.
 * Every 10th client hashes what it receives and checks the digest; the others count bytes (on two
 * cores, hashing 90 bodies would measure the client more than the fleet).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { startFakeHub, type FakeHub } from '../test/helpers/fake-hub.ts';
import { spawnReplica } from '../test/helpers/fleet.ts';
import { pullToken } from '../test/helpers/http.ts';
import { startRoundRobinNginx } from '../test/helpers/nginx.ts';
import { freePort } from '../test/helpers/process.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { startRgw, type Rgw } from '../test/helpers/rgw.ts';
import { makeTmpDir } from '../test/helpers/tmp.ts';
import { deterministicBlobFile, pushBlobFile, type BlobFile } from './blob-file.ts';
import { envWithout, REPO_ROOT } from './contestants.ts';
import { fmt, MiB, RssSampler, table, upstreamMark, upstreamSince, waitForQuiet } from './measure.ts';
import { ready, spawnServer, type ServerProcess } from './server-process.ts';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '90' },
    'size-mib': { type: 'string', default: '256' },
    only: { type: 'string', default: 'docxy,distribution' },
  },
  strict: true,
});
const CLIENTS = Number(args.clients);
const SIZE = Number(args['size-mib']) * MiB;
const ONLY = new Set(args.only.split(',').map((s) => s.trim()));
const REPO = 'library/fleetbench';
const REGISTRY_BINARY = '/usr/bin/docker-registry';

interface Fleet {
  readonly name: string;
  /** nginx's URL in front of the replicas. */
  readonly url: string;
  readonly pids: readonly number[];
  /** The repository as clients name it (Docxy adds `library/`, Distribution's proxy does not). */
  readonly repo: string;
  /** Headers a client sends (a pull token when the fleet asks for one). */
  readonly headers: Record<string, string>;
  stop(): Promise<void>;
}

interface Outcome {
  readonly contestant: string;
  readonly wallMs: number;
  readonly ofDirect: number;
  readonly upstreamBlobGets: number;
  readonly upstreamMiB: number;
  readonly verified: number;
  readonly peakRssMiB: readonly number[];
}

/** GETs `url` and counts its body; hashes it too when `verify`. Throws on a short or wrong body. */
async function getBlob(
  agent: Agent,
  url: string,
  headers: Record<string, string>,
  blob: BlobFile,
  verify: boolean,
): Promise<void> {
  const res = await request(url, { headers, dispatcher: agent });
  if (res.statusCode !== 200) {
    const text = await res.body.text();
    throw new Error(`${url}: ${String(res.statusCode)} ${text.slice(0, 200)}`);
  }
  const hash = verify ? createHash('sha256') : undefined;
  let bytes = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    hash?.update(chunk);
  }
  if (bytes !== blob.size) throw new Error(`${url}: ${String(bytes)} of ${String(blob.size)} bytes`);
  if (hash !== undefined && `sha256:${hash.digest('hex')}` !== blob.digest)
    throw new Error(`${url}: wrong digest`);
}

async function clientsThrough(
  agent: Agent,
  fleet: Fleet,
  blob: BlobFile,
): Promise<{ ms: number; verified: number }> {
  const url = `${fleet.url}/v2/${fleet.repo}/blobs/${blob.digest}`;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, (_, i) => getBlob(agent, url, fleet.headers, blob, i % 10 === 0)),
  );
  return { ms: performance.now() - t0, verified: Math.ceil(CLIENTS / 10) };
}

async function docxyFleet(rgw: Rgw, hub: FakeHub): Promise<Fleet> {
  const [redis, bucket] = await Promise.all([startRedis(), rgw.createBucket('docxy-fleet')]);
  const dir = makeTmpDir('fleet-bench-secret');
  const secretFile = join(dir.path, 'secret');
  writeFileSync(secretFile, 'fleet-bench-secret-0123456789\n', { mode: 0o600 });
  const port = await freePort();
  const opts = {
    rgw,
    bucket,
    upstreamUrl: hub.registryUrl,
    redisUrl: redis.url,
    secretFile,
    publicUrl: `http://127.0.0.1:${String(port)}`,
    leaseTtl: '10s',
  };
  const replicas = await Promise.all(['a', 'b', 'c'].map((n) => spawnReplica(n, opts)));
  const nginx = await startRoundRobinNginx({
    backends: replicas.map((r) => `127.0.0.1:${String(r.proc.port)}`),
    port,
  });
  const token = await pullToken(`${nginx.url}/auth/token`, hub.service, REPO.replace(/^library\//, ''));
  return {
    name: 'docxy',
    url: nginx.url,
    repo: REPO.replace(/^library\//, ''),
    pids: replicas.map((r) => r.proc.proc.pid),
    headers: { authorization: `Bearer ${token}` },
    async stop() {
      await nginx.stop();
      await Promise.allSettled(replicas.map((r) => r.proc.stop()));
      for (const r of replicas) r.remove();
      await redis.close();
      dir.remove();
    },
  };
}

/** Its AWS SDK cannot load AWS_CA_BUNDLE with its own transport (it panics at start). */
const { AWS_CA_BUNDLE: _caBundle, ...registryEnv } = envWithout('REGISTRY_');

async function distributionFleet(rgw: Rgw, hub: FakeHub): Promise<Fleet> {
  const bucket = await rgw.createBucket('dist-fleet');
  const dir = makeTmpDir('fleet-bench-distribution');
  const procs: { proc: ServerProcess; port: number }[] = [];
  try {
    for (const n of ['a', 'b', 'c']) {
      const port = await freePort();
      // Distribution 2.8's s3 driver: regionendpoint makes it path-style; redirects off so the
      // blob bytes pass through the registry, as through Docxy.
      const config = {
        version: 0.1,
        log: { level: 'warn', formatter: 'text' },
        storage: {
          s3: {
            accesskey: rgw.accessKeyId,
            secretkey: rgw.secretAccessKey,
            region: rgw.region,
            regionendpoint: rgw.endpoint,
            bucket,
            secure: false,
            v4auth: true,
            rootdirectory: '/dist',
          },
          redirect: { disable: true },
          delete: { enabled: true },
          maintenance: { uploadpurging: { enabled: false } },
        },
        http: { addr: `127.0.0.1:${String(port)}`, secret: 'fleet-bench-distribution-secret' },
        proxy: { remoteurl: hub.registryUrl },
      };
      const file = join(dir.path, `${n}.yml`);
      writeFileSync(file, stringify(config));
      const proc = spawnServer(REGISTRY_BINARY, ['serve', file], {
        logFile: join(dir.path, `${n}.log`),
        cwd: dir.path,
        env: registryEnv,
      });
      procs.push({ proc, port });
      await ready(proc, `distribution ${n}`, `http://127.0.0.1:${String(port)}/v2/`, (s) => s === 200);
    }
  } catch (err) {
    await Promise.allSettled(procs.map((p) => p.proc.stop()));
    dir.remove();
    throw err;
  }
  const nginx = await startRoundRobinNginx({ backends: procs.map((p) => `127.0.0.1:${String(p.port)}`) });
  return {
    name: 'distribution',
    url: nginx.url,
    repo: REPO,
    pids: procs.map((p) => p.proc.pid),
    headers: {},
    async stop() {
      await nginx.stop();
      await Promise.allSettled(procs.map((p) => p.proc.stop()));
      dir.remove();
    },
  };
}

async function main(): Promise<void> {
  const abort = new AbortController();
  const [rgw, hub] = await Promise.all([startRgw(), startFakeHub({ cdn: false })]);
  const agent = new Agent({ connections: CLIENTS + 10 });
  const outcomes: Outcome[] = [];
  try {
    const blob = await deterministicBlobFile('fleet-bench', SIZE);
    await pushBlobFile(hub, REPO, blob, abort.signal);
    const hubToken = await pullToken(hub.realm, hub.service, REPO);
    // ONE direct pull from the upstream: what a single client pays without any mirror.
    await waitForQuiet(10_000);
    const d0 = performance.now();
    await getBlob(
      agent,
      `${hub.registryUrl}/v2/${REPO}/blobs/${blob.digest}`,
      { authorization: `Bearer ${hubToken}` },
      blob,
      true,
    );
    const directMs = performance.now() - d0;
    console.log(`one direct pull of ${fmt(SIZE / MiB, 0)} MiB: ${fmt(directMs / 1000, 2)} s`);

    for (const [name, start] of [
      ['docxy', docxyFleet],
      ['distribution', distributionFleet],
    ] as const) {
      if (!ONLY.has(name)) continue;
      const fleet = await start(rgw, hub);
      const samplers = fleet.pids.map((pid) => new RssSampler(() => pid));
      try {
        await waitForQuiet(15_000);
        const mark = await upstreamMark(hub);
        for (const s of samplers) s.start();
        const { ms, verified } = await clientsThrough(agent, fleet, blob);
        for (const s of samplers) s.stop();
        // Distribution stores a proxied blob with a second GET in the background: count it too.
        await new Promise((r) => setTimeout(r, 3000));
        const up = await upstreamSince(hub, mark);
        outcomes.push({
          contestant: name,
          wallMs: ms,
          ofDirect: ms / directMs,
          upstreamBlobGets: up.blobGets,
          upstreamMiB: up.bytes / MiB,
          verified,
          peakRssMiB: samplers.map((s) => s.peak / MiB),
        });
        console.log(`${name}: ${fmt(ms / 1000, 2)} s, ${String(up.blobGets)} upstream blob GETs`);
      } finally {
        for (const s of samplers) s.stop();
        await fleet.stop();
      }
    }
    console.log(
      `\n${String(CLIENTS)} cold clients of one ${fmt(SIZE / MiB, 0)} MiB blob through nginx round robin over 3 replicas on one RGW bucket; one direct pull ${fmt(directMs / 1000, 2)} s\n`,
    );
    console.log(
      table(
        [
          'contestant',
          'wall s',
          'x one direct pull',
          'upstream blob GETs',
          'upstream MiB',
          'peak RSS MiB (a, b, c)',
        ],
        outcomes.map((o) => [
          o.contestant,
          fmt(o.wallMs / 1000, 2),
          fmt(o.ofDirect, 2),
          String(o.upstreamBlobGets),
          fmt(o.upstreamMiB, 0),
          o.peakRssMiB.map((m) => fmt(m, 0)).join(', '),
        ]),
      ),
    );
    const out = join(REPO_ROOT, 'bench', 'results');
    mkdirSync(out, { recursive: true });
    writeFileSync(
      join(out, 'fleet-latest.json'),
      `${JSON.stringify({ date: new Date().toISOString(), clients: CLIENTS, sizeBytes: SIZE, directMs, outcomes }, null, 2)}\n`,
    );
  } finally {
    await agent.close();
    await Promise.allSettled([rgw.stop(), hub.stop()]);
  }
}

await main();
