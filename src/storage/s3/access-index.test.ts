import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createMemoryStamps } from '../../coordination/memory/memory-coordination.ts';
import { makeTmpDir } from '../../../test/helpers/tmp.ts';
import { createFileAccessIndex, createMemoryAccessIndex, createSharedAccessIndex } from './access-index.ts';

test('the file index keeps the latest access per key and survives a restart through its file', async () => {
  const dir = makeTmpDir('access-index');
  try {
    const file = join(dir.path, 's3', 'index.json');
    const a = createFileAccessIndex(file);
    a.set('blobs/x', 2_000);
    a.set('blobs/x', 1_000);
    a.set('blobs/y', 3_000);
    a.delete('blobs/y');
    await a.flush();
    const again = createFileAccessIndex(file);
    assert.equal(again.get('blobs/x'), 2_000);
    assert.equal(again.get('blobs/y'), undefined);
  } finally {
    dir.remove();
  }
});

test('shared indexes: what one replica flushes, another loads; deletes are forgotten fleet-wide', async () => {
  const stamps = createMemoryStamps();
  const a = createSharedAccessIndex(createMemoryAccessIndex(), stamps, 'bucket/p/');
  const b = createSharedAccessIndex(createMemoryAccessIndex(), stamps, 'bucket/p/');
  const other = createSharedAccessIndex(createMemoryAccessIndex(), stamps, 'other/');
  a.set('blobs/x', 5_000);
  a.set('blobs/z', 7_000);
  b.set('blobs/x', 4_000);
  assert.equal(a.get('blobs/x'), 5_000);
  // Nothing is shared before a flush.
  await b.load?.(['blobs/x', 'blobs/z']);
  assert.equal(b.get('blobs/x'), 4_000);
  assert.equal(b.get('blobs/z'), undefined);
  await a.flush();
  await b.flush();
  await b.load?.(['blobs/x', 'blobs/z']);
  assert.equal(b.get('blobs/x'), 5_000, 'the later access wins');
  assert.equal(b.get('blobs/z'), 7_000);
  await other.load?.(['blobs/x']);
  assert.equal(other.get('blobs/x'), undefined, 'another namespace (bucket) sees nothing');
  b.delete('blobs/z');
  await b.flush();
  const c = createSharedAccessIndex(createMemoryAccessIndex(), stamps, 'bucket/p/');
  await c.load?.(['blobs/x', 'blobs/z']);
  assert.equal(c.get('blobs/x'), 5_000);
  assert.equal(c.get('blobs/z'), undefined);
});
