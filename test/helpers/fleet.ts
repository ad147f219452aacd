/**
 * One replica of a Docxy fleet as a separate process (SIGKILL-able): its own data folder and
 * internal endpoint (`cluster.listen` on a free port), the fleet's S3 bucket on the RADOS Gateway,
 * its Redis and its shared secret file. Stopped by PID through the process helper.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { spawnDocxy, type DocxyProcess } from './docxy-process.ts';
import { freePort, waitForPort } from './process.ts';
import type { Rgw } from './rgw.ts';
import { makeTmpDir } from './tmp.ts';

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
          prefix: 'mirror/',
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
