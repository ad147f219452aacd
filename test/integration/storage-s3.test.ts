/**
 * Runs the StorageDriver conformance suite against the S3 driver on a real RADOS Gateway (one per
 * file; each test gets its own key prefix in one bucket), then what only S3 can show: multipart
 * uploads that are cancelled or abandoned leave none open, and lastAccess comes from the access
 * index rather than from rewriting objects. It lives with the integration tests, not in
 * test/conformance, because the gateway needs the Ceph daemons and ~12 s to start.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createMemoryAccessIndex, type AccessIndex } from '../../src/storage/s3/access-index.ts';
import { createS3Driver } from '../../src/storage/s3/s3-driver.ts';
import type { StorageDriver } from '../../src/storage/driver.ts';
import { startRgw, type Rgw } from '../helpers/rgw.ts';
import { makeTmpDir } from '../helpers/tmp.ts';
import { pattern, runStorageConformance } from '../conformance/storage-suite.ts';

const MiB = 1024 * 1024;
let rgw: Rgw | undefined;
let client: S3Client | undefined;
let bucket = '';
let n = 0;
const spool = makeTmpDir('s3-spool');

before(async () => {
  rgw = await startRgw();
  client = rgw.client();
  bucket = await rgw.createBucket('conformance');
});

after(async () => {
  client?.destroy();
  await rgw?.stop();
  spool.remove();
});

function makeDriver(prefix: string, index: AccessIndex = createMemoryAccessIndex()): StorageDriver {
  assert.ok(client !== undefined);
  return createS3Driver({
    client,
    bucket,
    prefix,
    spoolDir: `${spool.path}/${prefix}`,
    accessIndex: index,
    partSize: 5 * MiB,
    abandonedUploadAgeMs: 0,
  });
}

runStorageConformance('s3 (RADOS Gateway)', () => {
  const prefix = `t${++n}/`;
  return Promise.resolve({ driver: makeDriver(prefix), cleanup: () => Promise.resolve() });
});

describe('s3 driver only (multipart uploads and the access index)', () => {
  const uploadsUnder = async (prefix: string): Promise<number> => {
    assert.ok(client !== undefined);
    const r = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
    return r.Uploads?.length ?? 0;
  };
  const objectsUnder = async (prefix: string): Promise<number> => {
    assert.ok(client !== undefined);
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return r.KeyCount ?? 0;
  };

  it('a cancelled multipart write leaves no object and no open upload', async () => {
    const prefix = 'only-cancel/';
    const d = makeDriver(prefix);
    const w = await d.createWriter('blobs/sha256/aa/aa01');
    await w.write(pattern(1, 12 * MiB + 5));
    assert.ok((await uploadsUnder(prefix)) >= 1, 'two full parts must have started an upload');
    await w.cancel();
    assert.equal(await uploadsUnder(prefix), 0);
    assert.equal(await objectsUnder(prefix), 0);
  });

  it('cleanupTemporary aborts an upload a crashed writer left open', async () => {
    const prefix = 'only-crash/';
    const d = makeDriver(prefix);
    const w = await d.createWriter('blobs/sha256/bb/bb01');
    await w.write(pattern(2, 6 * MiB));
    assert.equal(await uploadsUnder(prefix), 1);
    // A new process on the same bucket (the writer is never committed or cancelled).
    const again = makeDriver(prefix);
    assert.ok((await again.cleanupTemporary()) >= 1);
    assert.equal(await uploadsUnder(prefix), 0);
    assert.equal(await objectsUnder(prefix), 0);
    assert.equal(await again.cleanupTemporary(), 0);
  });

  it('lastAccess is the later of the access index and LastModified, and touch writes the index', async () => {
    const prefix = 'only-access/';
    const index = createMemoryAccessIndex();
    const d = makeDriver(prefix, index);
    const key = 'manifests/sha256/cc/cc01';
    const w = await d.createWriter(key);
    await w.write(pattern(3, 100));
    await w.commit();
    const later = Date.now() + 3_600_000;
    index.set(key, later);
    assert.equal((await d.stat(key))?.lastAccess.getTime(), later);
    const listed = [];
    for await (const e of d.list('manifests/')) listed.push(e);
    assert.deepEqual(
      listed.map((e) => [e.key, e.lastAccess.getTime()]),
      [[key, later]],
    );
    // A fresh index knows nothing: LastModified stands in, and touch records the read.
    const freshIndex = createMemoryAccessIndex();
    const fresh = makeDriver(prefix, freshIndex);
    const modified = (await fresh.stat(key))?.lastAccess.getTime();
    assert.ok(modified !== undefined && modified < later);
    const t = Date.now();
    await fresh.touch(key);
    assert.ok((freshIndex.get(key) ?? 0) >= t);
    assert.ok(((await fresh.stat(key))?.lastAccess.getTime() ?? 0) >= t);
  });
});
