/**
 * A Docxy fleet for tests (issue 12): `startFleet` runs the whole thing — RADOS Gateway bucket,
 * Redis, fake hub, N replicas and a round-robin nginx in front — and stops it by PID.
 *
 * One replica of a Docxy fleet as a separate process (SIGKILL-able): its own data folder and
 * internal endpoint (`cluster.listen` on a free port), the fleet's S3 bucket on the RADOS Gateway,
 * its Redis and its shared secret file. Stopped by PID through the process helper.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { stringify } from 'yaml';
import { need } from './client-steps.ts';
import { spawnDocxy, type DocxyProcess } from './docxy-process.ts';
import { startFakeHub, type FakeHub } from './fake-hub.ts';
import { startRoundRobinNginx, type RoundRobinNginx } from './nginx.ts';
import { freePort, waitForPort } from './process.ts';
import { startRedis, type RedisServer } from './redis.ts';
import { startRgw, type Rgw } from './rgw.ts';
import { makeTmpDir } from './tmp.ts';

/** The replicas' `storage.s3.prefix`. */
const PREFIX = 'mirror/';

export interface FleetReplica {
  readonly name: string;
  readonly proc: DocxyProcess;
  /** The public listener, `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** The internal endpoint, `http://127.0.0.1:PORT` (also its `cluster.advertise`). */
  readonly clusterUrl: string;
  /** Removes the replica's folder (after it stopped). */
  remove(): void;
}

export interface FleetOptions {
  readonly rgw: Rgw;
  readonly bucket: string;
  readonly upstreamUrl: string;
  readonly redisUrl: string;
  /** A file holding the fleet's secret (`cluster.secret_file`). */
  readonly secretFile: string;
  /** `public_url`: the address in front of the fleet (a load balancer), which realms name. */
  readonly publicUrl?: string;
  /** `cluster.lease_ttl` (default `2s`: a takeover within a test's patience). */
  readonly leaseTtl?: string;
}

export async function spawnReplica(name: string, opts: FleetOptions): Promise<FleetReplica> {
  const dir = makeTmpDir(`fleet-${name}`);
  try {
    const clusterPort = await freePort();
    const configFile = join(dir.path, 'docxy.yaml');
    const config = {
      data: join(dir.path, 'data'),
      log_level: 'info',
      ...(opts.publicUrl === undefined ? {} : { public_url: opts.publicUrl }),
      upstream: { url: opts.upstreamUrl },
      storage: {
        driver: 's3',
        s3: {
          endpoint: opts.rgw.endpoint,
          bucket: opts.bucket,
          prefix: PREFIX,
          region: opts.rgw.region,
          force_path_style: true,
          access_key_id: opts.rgw.accessKeyId,
          secret_access_key: opts.rgw.secretAccessKey,
          part_size: '8MiB',
        },
      },
      coordination: { redis: { url: opts.redisUrl } },
      cluster: {
        listen: `127.0.0.1:${String(clusterPort)}`,
        secret_file: opts.secretFile,
        lease_ttl: opts.leaseTtl ?? '2s',
      },
    };
    writeFileSync(configFile, stringify(config));
    const proc = await spawnDocxy({ configFile, logFile: join(dir.path, 'docxy.log') });
    try {
      await waitForPort(clusterPort, '127.0.0.1', 10_000, proc.proc.exited);
    } catch (err) {
      await proc.stop();
      throw err;
    }
    return {
      name,
      proc,
      url: proc.url,
      clusterUrl: `http://127.0.0.1:${String(clusterPort)}`,
      remove: dir.remove,
    };
  } catch (err) {
    dir.remove();
    throw err;
  }
}

export interface StartFleetOptions {
  /** One replica per name (`a`, `b`, …), each its own process behind nginx. */
  readonly names: readonly string[];
  /** The fleet's shared secret (written to the `cluster.secret_file` every replica reads). */
  readonly secret: string;
  /**
   * Pushes what the test needs to the hub. It runs while the replicas start (tsx compiles for a
   * few seconds), and `startFleet` returns only once it is done.
   */
  readonly seed?: (hub: FakeHub) => Promise<void>;
  /** `cluster.lease_ttl` of every replica (spawnReplica's default when omitted). */
  readonly leaseTtl?: string;
}

/** Everything a fleet test runs: upstream, bucket, Redis, the replicas and the nginx in front. */
export interface Fleet {
  readonly rgw: Rgw;
  /** A client of the bucket's gateway (destroyed by `stop`). */
  readonly s3: S3Client;
  readonly bucket: string;
  /** The fake hub (registry, CDN, token service) every replica pulls from. */
  readonly hub: FakeHub;
  readonly redis: RedisServer;
  /** The round-robin nginx; its URL is every replica's `public_url`. */
  readonly nginx: RoundRobinNginx;
  readonly replicas: readonly FleetReplica[];
  /** One line per start-up step with its time, for diagnostics. */
  readonly timings: readonly string[];
  /** Whether the bucket holds `key` (a `paths.*` key, under the replicas' `mirror/` prefix). */
  inBucket(key: string): Promise<boolean>;
  /** Stops everything by PID and removes every folder; tries all and throws the first failure. */
  stop(): Promise<void>;
}

/** The pieces started so far, so that a start that fails halfway stops exactly those. */
interface Parts {
  rgw?: Rgw;
  s3?: S3Client;
  hub?: FakeHub;
  redis?: RedisServer;
  nginx?: RoundRobinNginx;
  replicas: FleetReplica[];
  dirs: { remove(): void }[];
}

async function stopParts(p: Parts): Promise<void> {
  // The front and the replicas first: nothing then talks to the bucket, hub or Redis any more.
  const front = await Promise.allSettled([p.nginx?.stop(), ...p.replicas.map((r) => r.proc.stop())]);
  p.s3?.destroy();
  const back = await Promise.allSettled([p.rgw?.stop(), p.hub?.stop(), p.redis?.close()]);
  for (const r of p.replicas) r.remove();
  for (const d of p.dirs) d.remove();
  const failed = [...front, ...back].find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** Throws the first rejection of `results` (after the caller kept what was fulfilled). */
function throwFirstRejection(results: readonly PromiseSettledResult<unknown>[]): void {
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/**
 * Starts a fleet: the RADOS Gateway, the fake hub and Redis in parallel, a fresh bucket, the secret
 * file, one replica per name (`public_url` = nginx's URL, the realm clients are sent to) while
 * `seed` fills the hub, then nginx round-robin in front. A failure at any step stops what started.
 */
export async function startFleet(opts: StartFleetOptions): Promise<Fleet> {
  const p: Parts = { replicas: [], dirs: [] };
  const timings: string[] = [];
  const t0 = Date.now();
  const step = (what: string): void => {
    timings.push(`${what} at ${String(Date.now() - t0)} ms`);
  };
  try {
    const [rgw, hub, redis] = await Promise.allSettled([
      startRgw().then((x) => (p.rgw = x)),
      startFakeHub().then((x) => (p.hub = x)),
      startRedis().then((x) => (p.redis = x)),
    ]);
    throwFirstRejection([rgw, hub, redis]);
    const [g, h, r] = [need(p.rgw, 'rgw'), need(p.hub, 'hub'), need(p.redis, 'redis')];
    step('RADOS Gateway, fake hub and Redis up');
    const g3 = g.client();
    p.s3 = g3;
    const bucket = await g.createBucket('fleet');
    const secretDir = makeTmpDir('fleet-secret');
    p.dirs.push(secretDir);
    const secretFile = join(secretDir.path, 'secret');
    writeFileSync(secretFile, `${opts.secret}\n`, { mode: 0o600 });
    // nginx's port first: every replica names it as its public URL.
    const nginxPort = await freePort();
    const fleet: FleetOptions = {
      rgw: g,
      bucket,
      upstreamUrl: h.registryUrl,
      redisUrl: r.url,
      secretFile,
      publicUrl: `http://127.0.0.1:${String(nginxPort)}`,
      ...(opts.leaseTtl === undefined ? {} : { leaseTtl: opts.leaseTtl }),
    };
    const [started, seeded] = await Promise.all([
      Promise.allSettled(opts.names.map((n) => spawnReplica(n, fleet))),
      Promise.allSettled([opts.seed?.(h)]),
    ]);
    // Kept in the order of `names`, whichever started first.
    for (const s of started) if (s.status === 'fulfilled') p.replicas.push(s.value);
    throwFirstRejection([...started, ...seeded]);
    step(`replicas ${opts.names.join(', ')} up and the hub seeded`);
    p.nginx = await startRoundRobinNginx({
      backends: p.replicas.map((x) => `127.0.0.1:${String(x.proc.port)}`),
      port: nginxPort,
    });
    step('nginx up');
    const parts = p;
    return {
      rgw: g,
      s3: g3,
      bucket,
      hub: h,
      redis: r,
      nginx: p.nginx,
      replicas: p.replicas,
      timings,
      async inBucket(key) {
        try {
          await g3.send(new HeadObjectCommand({ Bucket: bucket, Key: `${PREFIX}${key}` }));
          return true;
        } catch {
          return false;
        }
      },
      stop: () => stopParts(parts),
    };
  } catch (err) {
    await stopParts(p).catch(() => undefined);
    throw err;
  }
}
