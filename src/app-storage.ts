/**
 * The storage builder createApp and the `docxy cache` commands call: the filesystem driver under
 * `data:` (the default), or the S3 driver on `storage.s3` with its access index and spool under
 * `data:` (both local to this replica). `start()` checks the bucket before serving; `close()`
 * writes the access index and closes the client's sockets.
 */
import { join } from 'node:path';
import { HeadBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { pino, type Logger } from 'pino';
import type { Config } from './config/load.ts';
import type { StorageDriver } from './storage/driver.ts';
import { createFilesystemDriver } from './storage/filesystem/filesystem-driver.ts';
import { buildCoordination } from './app-coordination.ts';
import type { Coordination, LeaseOwner } from './coordination/coordination.ts';
import {
  createFileAccessIndex,
  createSharedAccessIndex,
  type AccessIndex,
} from './storage/s3/access-index.ts';
import { createS3Client } from './storage/s3/s3-client.ts';
import { createS3Driver } from './storage/s3/s3-driver.ts';

/** What a command shares with the fleet when `coordination.redis` is set, and who it is in leases. */
export interface Fleet {
  readonly coordination: Coordination;
  readonly owner: LeaseOwner;
  /** The store's `namespace` (see BuiltStorage), which the fleet's pins are keyed in. */
  readonly namespace: string;
}

export interface BuiltStorage {
  readonly driver: StorageDriver;
  /** Where the objects live, for logs: a folder, or `s3://bucket/prefix at endpoint`. */
  readonly location: string;
  /** Names the store among others sharing one Redis: `bucket/prefix`, or the folder. */
  readonly namespace: string;
  /**
   * Checks the store before serving. Throws a clear error when the bucket is missing or the keys
   * are refused (a configuration error); resolves to false, not throwing, when the store is only
   * unreachable for now (Docxy serves meanwhile: relays, and 503 for what needs the store).
   */
  start(): Promise<boolean>;
  close(): Promise<void>;
}

/** HEAD of the bucket: 404 missing, 403 refused keys, else reachable or not. */
async function checkBucket(client: S3Client, bucket: string, where: string): Promise<boolean> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
    return true;
  } catch (err) {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404) throw new Error(`storage.s3.bucket: bucket "${bucket}" does not exist at ${where}`);
    if (status === 403 || status === 401) {
      throw new Error(`storage.s3: ${where} refused access to bucket "${bucket}" (check the keys)`);
    }
    if (status !== undefined && status < 500) {
      throw new Error(`storage.s3: ${where} answered ${status} for bucket "${bucket}"`);
    }
    return false;
  }
}

/**
 * With a Redis `coordination`, the S3 driver's last-access records are shared by the fleet, so
 * eviction (run by one replica at a time) orders by every replica's reads.
 */
export function buildStorage(config: Config, coordination?: Coordination): BuiltStorage {
  const s3 = config.storage.s3;
  if (config.storage.driver !== 's3' || s3 === undefined) {
    return {
      driver: createFilesystemDriver(config.data),
      location: config.data,
      namespace: config.data,
      start: () => Promise.resolve(true),
      close: () => Promise.resolve(),
    };
  }
  const client = createS3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: s3.force_path_style,
    credentials: config.storage.credentials,
    connectTimeoutMs: s3.connect_timeout,
    requestTimeoutMs: s3.request_timeout,
    maxAttempts: 2,
  });
  const localIndex = createFileAccessIndex(join(config.data, 's3', 'access-index.json'));
  const namespace = `${s3.bucket}/${s3.prefix}`;
  const index: AccessIndex =
    coordination?.kind === 'redis'
      ? createSharedAccessIndex(localIndex, coordination.stamps, namespace)
      : localIndex;
  const where = s3.endpoint ?? `AWS (${s3.region})`;
  return {
    driver: createS3Driver({
      client,
      bucket: s3.bucket,
      prefix: s3.prefix,
      spoolDir: join(config.data, 's3', 'spool'),
      accessIndex: index,
      partSize: s3.part_size,
      queueSize: s3.upload_concurrency,
      readAhead: s3.read_ahead,
    }),
    location: `s3://${s3.bucket}/${s3.prefix} at ${where}`,
    namespace,
    start: () => checkBucket(client, s3.bucket, where),
    async close() {
      await index.flush().catch(() => undefined);
      client.destroy();
    },
  };
}

/**
 * Runs `work` on the configured storage for a command (`docxy cache ...`), which, unlike the
 * server, has nothing to do while the store is unreachable, so that is an error here.
 */
export async function withStorage<T>(
  config: Config,
  work: (driver: StorageDriver, fleet: Fleet | undefined) => Promise<T>,
  log: Logger = pino({ level: 'silent' }),
): Promise<T> {
  // With Redis, a command sees the fleet's last-access stamps and takes the fleet's leases too.
  const { coordination, owner } = buildCoordination(config, log);
  const shared = coordination.kind === 'redis';
  // Calls made before Redis answers fall back in-process (a lease then excludes nobody): a
  // command has time to wait for the connection; without it, it runs alone, as the server would.
  if (shared && !(await coordination.connected(3000)))
    log.warn('redis unreachable: this command coordinates with no replica');
  const built = buildStorage(config, coordination);
  const fleet = shared ? { coordination, owner, namespace: built.namespace } : undefined;
  try {
    if (!(await built.start())) throw new Error(`object store unreachable: ${built.location}`);
    return await work(built.driver, fleet);
  } finally {
    await built.close();
    await coordination.close();
  }
}
