/**
 * Runs the StorageDriver conformance suite against the filesystem driver, each test on a fresh root
 * in a temporary folder. A separate, clearly filesystem-only block checks what only this driver's
 * on-disk layout can show: temporaries live under <root>/tmp and never leak into <root>/objects.
 */
import assert from 'node:assert/strict';
import { readdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { ObjectWriter, StorageDriver } from '../../src/storage/driver.ts';
import { createFilesystemDriver } from '../../src/storage/filesystem/filesystem-driver.ts';
import { makeTmpDir } from '../helpers/tmp.ts';
import { assertBytes, pattern, runStorageConformance } from './storage-suite.ts';

runStorageConformance('filesystem', () => {
  const dir = makeTmpDir('storage-conformance');
  return Promise.resolve({
    driver: createFilesystemDriver(dir.path),
    cleanup: () => {
      dir.remove();
      return Promise.resolve();
    },
  });
});

/** Every file (not folder) under `dir`, relative to it; [] when `dir` does not exist. */
async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries
      .filter((e) => !e.isDirectory())
      .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

describe('filesystem driver only (on-disk layout, not part of the StorageDriver contract)', () => {
  let tmp: { path: string; remove: () => void } | undefined;
  let driver: StorageDriver | undefined;
  let openWriters: ObjectWriter[] = [];

  beforeEach(() => {
    tmp = makeTmpDir('storage-fs');
    driver = createFilesystemDriver(tmp.path);
  });

  afterEach(async () => {
    const writers = openWriters;
    openWriters = [];
    await Promise.allSettled(writers.map((w) => w.cancel()));
    driver = undefined;
    tmp?.remove();
    tmp = undefined;
  });

  const root = (): string => {
    assert.ok(tmp !== undefined);
    return tmp.path;
  };
  const drv = (): StorageDriver => {
    assert.ok(driver !== undefined);
    return driver;
  };
  const writer = async (key: string, metadata?: Record<string, string>): Promise<ObjectWriter> => {
    const w = await drv().createWriter(key, metadata === undefined ? undefined : { metadata });
    openWriters.push(w);
    return w;
  };

  it('cleanupTemporary removes every file under <root>/tmp and counts them', async () => {
    const d = drv();
    const kept = await writer('blobs/sha256/aa/aa01', { mediaType: 'x' });
    await kept.write(pattern(1, 100));
    await kept.commit();
    for (let i = 0; i < 3; i++) {
      const w = await writer(`blobs/sha256/aa/aa1${i}`);
      await w.write(pattern(2 + i, 1000 * (i + 1)));
    }
    const leftovers = await filesUnder(join(root(), 'tmp'));
    assert.equal(leftovers.length, 3, `tmp holds ${leftovers.join(', ')}`);

    assert.equal(await d.cleanupTemporary(), 3);
    assert.deepEqual(await filesUnder(join(root(), 'tmp')), []);
    assert.deepEqual(await filesUnder(join(root(), 'objects')), ['blobs/sha256/aa/aa01']);
    assertBytes(await d.getBytes('blobs/sha256/aa/aa01'), pattern(1, 100));
    assert.deepEqual({ ...(await d.stat('blobs/sha256/aa/aa01'))?.metadata }, { mediaType: 'x' });
    assert.equal(await d.cleanupTemporary(), 0);
  });

  it('cleanupTemporary on a root that was never written returns 0', async () => {
    assert.equal(await drv().cleanupTemporary(), 0);
  });

  it('a writer that is never committed leaves nothing under objects/, and cancel removes its temporary file', async () => {
    const d = drv();
    const w = await writer('tags/up/name/_tag/latest', { mediaType: 'x' });
    await w.write(pattern(10, 50_000));
    const r = await w.openPartialReader();
    await r.close();
    assert.deepEqual(await filesUnder(join(root(), 'objects')), []);
    assert.deepEqual(await filesUnder(join(root(), 'meta')), []);
    assert.equal((await filesUnder(join(root(), 'tmp'))).length, 1);

    await w.cancel();
    assert.deepEqual(await filesUnder(join(root(), 'objects')), []);
    assert.deepEqual(await filesUnder(join(root(), 'meta')), []);
    assert.deepEqual(await filesUnder(join(root(), 'tmp')), []);
    assert.equal(await d.stat('tags/up/name/_tag/latest'), undefined);
  });

  it('touch from a fresh driver instance moves a lastAccess in the past forward to now', async () => {
    const key = 'manifests/sha256/bb/bb01';
    const w = await writer(key);
    await w.write(pattern(20, 10));
    await w.commit();
    const past = new Date(Date.now() - 3_600_000);
    await utimes(join(root(), 'objects', key), past, past);
    const fresh = createFilesystemDriver(root());
    const before = (await fresh.stat(key))?.lastAccess;
    assert.ok(before !== undefined);
    assert.ok(
      Math.abs(before.getTime() - past.getTime()) < 1000,
      `lastAccess ${before.toISOString()} should be an hour ago`,
    );

    const t = Date.now();
    await fresh.touch(key);
    const after = (await fresh.stat(key))?.lastAccess;
    assert.ok(after !== undefined);
    assert.ok(
      after.getTime() >= t - 1000,
      `lastAccess ${after.toISOString()} should have moved to about ${new Date(t).toISOString()}`,
    );
    assertBytes(await fresh.getBytes(key), pattern(20, 10));
  });
});
