/**
 * The fleet builder createApp calls: with `cluster:` (and Redis coordination), cold blob fills take
 * a fleet-wide lease and replicas stream each other's fills over the internal endpoint
 * (cache/fleet-fill.ts, cluster/). Without it, nothing here runs and fills stay per process.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BlobService } from './cache/blob-service.ts';
import { createFleetFills, type FleetFills } from './cache/fleet-fill.ts';
import { createClusterServer } from './cluster/cluster-server.ts';
import { createPeerClient } from './cluster/peer-client.ts';
import type { Config } from './config/load.ts';
import type { Coordination, LeaseOwner } from './coordination/coordination.ts';
import type { StorageDriver } from './storage/driver.ts';
import { createFilesystemDriver } from './storage/filesystem/filesystem-driver.ts';

export interface Fleet {
  /** For the blob service. */
  readonly fills: FleetFills;
  /** Starts the internal endpoint (serving `blobs`' running fills) and clears the spool. */
  start(blobs: BlobService): Promise<void>;
  close(): Promise<void>;
}

export function buildFleet(
  config: Config,
  coordination: Coordination,
  owner: LeaseOwner,
  storage: StorageDriver | undefined,
  log: Logger,
): Fleet | undefined {
  const cluster = config.cluster;
  if (cluster === undefined) return undefined;
  if (storage === undefined || coordination.kind !== 'redis') {
    log.warn('cluster: is set but the cache is off or coordination is in-process; replicas fill alone');
    return undefined;
  }
  const clog = log.child({ module: 'cluster' });
  // A peer waiting on a slow upstream sends nothing for up to the upstream's idle timeout.
  const idle = Math.max(60_000, ...config.upstreams.map((u) => 2 * u.timeouts.idle));
  const peers = createPeerClient({ secret: cluster.secret, idleMs: idle });
  const spool = createFilesystemDriver(join(config.data, 'fleet-spool'));
  const fills = createFleetFills({
    leases: coordination.leases,
    owner,
    ttlMs: cluster.lease_ttl,
    peers,
    storage,
    spool,
    log: clog,
  });
  let server: ReturnType<typeof createClusterServer> | undefined;
  return {
    fills,
    async start(blobs) {
      await spool.cleanupTemporary();
      server = createClusterServer({
        listen: cluster.listen,
        secret: cluster.secret,
        inFlight: (digest, start) => blobs.inFlight(digest, start),
        log: clog,
      });
      const address = await server.listen();
      clog.info(
        { listen: `${address.address}:${String(address.port)}`, advertise: cluster.advertise },
        'cluster endpoint listening',
      );
    },
    async close() {
      await server?.close();
      await peers.close();
    },
  };
}
